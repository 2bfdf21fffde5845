//! CRUD of tenants, namespaces, stream/cache/group definitions, roles, trusted issuers and
//! quotas. Every write is one store transaction that also checks the parent exists (so a
//! child never outlives its tenant or namespace) and, with `If-Match: REVISION`, that the
//! item was not changed meanwhile. Deleting a parent that still has children is `conflict`.
//!
//! Item answers are the stored document with `name` and `revision` (its mod revision) added;
//! lists are `{"revision": N, "items": [...]}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{AppState, JsonBody};
use crate::error::ApiError;
use crate::model::{
    check_label, check_resource, check_segment, CacheDef, GroupDef, Namespace, Quotas, Role,
    StreamDef, Tenant, TrustedIssuer,
};
use crate::store::{Compare, Op, Txn, Versioned};

/// What kind of item a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tenant,
    Namespace,
    Stream,
    Cache,
    Group,
    Role,
    Issuer,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Tenant => "tenants",
            Kind::Namespace => "namespaces",
            Kind::Stream => "streams",
            Kind::Cache => "caches",
            Kind::Group => "groups",
            Kind::Role => "roles",
            Kind::Issuer => "issuers",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Tenant => "tenant",
            Kind::Namespace => "namespace",
            Kind::Stream => "stream",
            Kind::Cache => "cache",
            Kind::Group => "group",
            Kind::Role => "role",
            Kind::Issuer => "issuer",
        }
    }

    /// Key prefixes of children that block a delete.
    fn children(self, scope: &str) -> Vec<String> {
        match self {
            // A tenant's quotas are not a child: they go with it.
            Kind::Tenant => ["namespaces", "roles", "issuers"]
                .iter()
                .map(|p| format!("{p}/{scope}/"))
                .collect(),
            Kind::Namespace => ["streams", "caches", "groups"]
                .iter()
                .map(|p| format!("{p}/{scope}/"))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Where an item is: its tenant, namespace (for definitions) and name.
struct Loc {
    tenant: Option<String>,
    ns: Option<String>,
    name: String,
}

impl Loc {
    fn scope(&self) -> String {
        [
            self.tenant.as_deref(),
            self.ns.as_deref(),
            Some(self.name.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
    }

    fn key(&self, kind: Kind) -> String {
        format!("{}/{}", kind.prefix(), self.scope())
    }

    fn parents(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(t) = &self.tenant {
            out.push((format!("tenants/{t}"), format!("tenant {t}")));
            if let Some(ns) = &self.ns {
                out.push((
                    format!("namespaces/{t}/{ns}"),
                    format!("namespace {t}/{ns}"),
                ));
            }
        }
        out
    }

    fn check(&self, kind: Kind) -> Result<(), ApiError> {
        if let Some(t) = &self.tenant {
            check_segment("tenant", t)?;
        }
        if let Some(ns) = &self.ns {
            check_segment("namespace", ns)?;
        }
        match kind {
            Kind::Tenant => check_segment("tenant", &self.name),
            Kind::Namespace => check_segment("namespace", &self.name),
            Kind::Stream | Kind::Cache | Kind::Group => check_resource(kind.what(), &self.name),
            Kind::Role | Kind::Issuer => check_label(kind.what(), &self.name),
        }
    }
}

fn parse<T: DeserializeOwned + Serialize>(body: Value) -> Result<(T, Value), ApiError> {
    let doc: T = serde_json::from_value(body)
        .map_err(|e| ApiError::InvalidArgument(format!("body: {e}")))?;
    let normalized = serde_json::to_value(&doc).expect("documents serialize");
    Ok((doc, normalized))
}

/// The index key that makes an issuer URL unique per tenant inside the transaction that
/// stores the entry (two concurrent PUTs of one URL under two names cannot both commit).
fn issuer_url_key(tenant: &str, url: &str) -> String {
    let hex: String = url.bytes().map(|b| format!("{b:02x}")).collect();
    format!("issuer_urls/{tenant}/{hex}")
}

/// Validates a body for its kind; returns the normalized document, extra conditions and
/// extra operations of the same transaction.
async fn validate(
    st: &AppState,
    kind: Kind,
    loc: &Loc,
    body: Value,
) -> Result<(Value, Vec<Compare>, Vec<Op>), ApiError> {
    let mut extra = Vec::new();
    let mut ops = Vec::new();
    let doc = match kind {
        Kind::Tenant => parse::<Tenant>(body)?.1,
        Kind::Namespace => parse::<Namespace>(body)?.1,
        Kind::Stream => parse::<StreamDef>(body)?.1,
        Kind::Cache => parse::<CacheDef>(body)?.1,
        Kind::Group => {
            let (g, v) = parse::<GroupDef>(body)?;
            g.validate()?;
            let t = loc.tenant.as_deref().unwrap_or_default();
            let ns = loc.ns.as_deref().unwrap_or_default();
            extra.push(Compare::Present(format!("streams/{t}/{ns}/{}", g.stream)));
            v
        }
        Kind::Role => {
            let (r, v) = parse::<Role>(body)?;
            r.validate()?;
            v
        }
        Kind::Issuer => {
            let (i, v) = parse::<TrustedIssuer>(body)?;
            i.validate(st.cfg.dev)?;
            // One entry per issuer URL per tenant: the exchange must know which rules apply.
            let t = loc.tenant.as_deref().unwrap_or_default();
            for (k, other) in st.store.list(&format!("issuers/{t}/")).await?.1 {
                let same_url =
                    other.value.get("issuer").and_then(Value::as_str) == Some(i.issuer.as_str());
                if same_url && k != loc.key(Kind::Issuer) {
                    return Err(ApiError::Conflict(format!(
                        "tenant {t} already trusts {} as {}",
                        i.issuer,
                        &k[format!("issuers/{t}/").len()..]
                    )));
                }
            }
            // The index entry, claimed in the same transaction; and the entry's previous URL
            // (if it changes) released in it too.
            let index = issuer_url_key(t, &i.issuer);
            match st.store.get(&index).await? {
                Some(cur) if cur.value.get("name").and_then(Value::as_str) != Some(&loc.name) => {
                    return Err(ApiError::Conflict(format!(
                        "tenant {t} already trusts {} under another name",
                        i.issuer
                    )));
                }
                Some(cur) => extra.push(Compare::ModRevision(index.clone(), cur.mod_revision)),
                None => extra.push(Compare::Absent(index.clone())),
            }
            ops.push(Op::Put(index, serde_json::json!({ "name": loc.name })));
            let key = loc.key(Kind::Issuer);
            match st.store.get(&key).await? {
                Some(old) => {
                    extra.push(Compare::ModRevision(key, old.mod_revision));
                    if let Some(url) = old.value.get("issuer").and_then(Value::as_str) {
                        if url != i.issuer {
                            ops.push(Op::Delete(issuer_url_key(t, url)));
                        }
                    }
                }
                None => extra.push(Compare::Absent(key)),
            }
            v
        }
    };
    Ok((doc, extra, ops))
}

fn item(name: &str, v: &Versioned) -> Value {
    let mut doc = v.value.clone();
    if let Value::Object(m) = &mut doc {
        m.insert("name".into(), Value::String(name.to_string()));
        m.insert("revision".into(), Value::from(v.mod_revision));
    }
    doc
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get(axum::http::header::IF_MATCH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().trim_matches('"').parse().ok())
                .ok_or_else(|| ApiError::InvalidArgument("If-Match: a revision number".into()))
        })
        .transpose()
}

async fn put_item(
    st: &AppState,
    kind: Kind,
    loc: Loc,
    headers: &HeaderMap,
    body: Value,
) -> Result<Response, ApiError> {
    loc.check(kind)?;
    let (doc, extra, mut extra_ops) = validate(st, kind, &loc, body).await?;
    let key = loc.key(kind);
    let mut compare: Vec<Compare> = loc
        .parents()
        .into_iter()
        .map(|(k, _)| Compare::Present(k))
        .collect();
    compare.extend(extra.iter().cloned());
    let expected = if_match(headers)?;
    if let Some(rev) = expected {
        compare.push(Compare::ModRevision(key.clone(), rev));
    }
    let existed = st.store.get(&key).await?.is_some();
    let mut ops = vec![Op::Put(key.clone(), doc)];
    ops.append(&mut extra_ops);
    if !st.store.txn(Txn { compare, ops }).await?.committed() {
        for (k, what) in loc.parents() {
            if st.store.get(&k).await?.is_none() {
                return Err(ApiError::NotFound(format!("{what} does not exist")));
            }
        }
        for c in &extra {
            if let Compare::Present(k) = c {
                if st.store.get(k.as_str()).await?.is_none() {
                    return Err(ApiError::Conflict(format!(
                        "{} is not defined",
                        k.replacen("streams/", "stream ", 1)
                    )));
                }
            }
        }
        return Err(ApiError::Conflict(format!(
            "{} {} changed meanwhile (If-Match {:?})",
            kind.what(),
            loc.name,
            expected
        )));
    }
    tracing::info!(audit = "admin_change", change = "put", %key, "stored");
    let stored = st
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::Conflict("deleted meanwhile".into()))?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(item(&loc.name, &stored))).into_response())
}

async fn get_item(st: &AppState, kind: Kind, loc: Loc) -> Result<Response, ApiError> {
    loc.check(kind)?;
    match st.store.get(&loc.key(kind)).await? {
        Some(v) => Ok(Json(item(&loc.name, &v)).into_response()),
        None => Err(ApiError::NotFound(format!(
            "{} {} does not exist",
            kind.what(),
            loc.scope()
        ))),
    }
}

async fn delete_item(
    st: &AppState,
    kind: Kind,
    loc: Loc,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    loc.check(kind)?;
    let key = loc.key(kind);
    let children = kind.children(&loc.scope());
    let mut compare = vec![Compare::Present(key.clone())];
    compare.extend(children.iter().cloned().map(Compare::PrefixEmpty));
    if let Some(rev) = if_match(headers)? {
        compare.push(Compare::ModRevision(key.clone(), rev));
    }
    let mut ops = vec![Op::Delete(key.clone())];
    if kind == Kind::Tenant {
        ops.push(Op::Delete(format!("quotas/{}", loc.name)));
        ops.push(Op::DeletePrefix(format!("issuer_urls/{}/", loc.name)));
    }
    if kind == Kind::Issuer {
        // Release the URL's index entry with the entry itself.
        if let Some(old) = st.store.get(&key).await? {
            compare.push(Compare::ModRevision(key.clone(), old.mod_revision));
            if let Some(url) = old.value.get("issuer").and_then(Value::as_str) {
                let t = loc.tenant.as_deref().unwrap_or_default();
                ops.push(Op::Delete(issuer_url_key(t, url)));
            }
        }
    }
    if st.store.txn(Txn { compare, ops }).await?.committed() {
        tracing::info!(audit = "admin_change", change = "delete", %key, "deleted");
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if st.store.get(&key).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "{} {} does not exist",
            kind.what(),
            loc.scope()
        )));
    }
    for c in children {
        if !st.store.list(&c).await?.1.is_empty() {
            return Err(ApiError::Conflict(format!(
                "{} {} still has {}: delete them first",
                kind.what(),
                loc.scope(),
                c.split('/').next().unwrap_or("children")
            )));
        }
    }
    Err(ApiError::Conflict(format!(
        "{} {} changed meanwhile",
        kind.what(),
        loc.name
    )))
}

async fn list_items(
    st: &AppState,
    kind: Kind,
    tenant: Option<String>,
    ns: Option<String>,
) -> Result<Response, ApiError> {
    if let Some(t) = &tenant {
        check_segment("tenant", t)?;
        if st.store.get(&format!("tenants/{t}")).await?.is_none() {
            return Err(ApiError::NotFound(format!("tenant {t} does not exist")));
        }
    }
    if let Some(ns) = &ns {
        check_segment("namespace", ns)?;
    }
    let mut prefix = format!("{}/", kind.prefix());
    for s in [&tenant, &ns].into_iter().flatten() {
        prefix.push_str(s);
        prefix.push('/');
    }
    let (revision, items) = st.store.list(&prefix).await?;
    let items: Vec<Value> = items
        .iter()
        .filter(|(k, _)| !k[prefix.len()..].contains('/'))
        .map(|(k, v)| item(&k[prefix.len()..], v))
        .collect();
    Ok(Json(serde_json::json!({ "revision": revision, "items": items })).into_response())
}

type S = State<AppState>;

macro_rules! top {
    ($kind:expr) => {
        get(|State(st): S, Path(name): Path<String>| async move {
            get_item(&st, $kind, Loc { tenant: None, ns: None, name }).await
        })
        .put(|State(st): S, Path(name): Path<String>, h: HeaderMap, JsonBody(b): JsonBody<Value>| async move {
            put_item(&st, $kind, Loc { tenant: None, ns: None, name }, &h, b).await
        })
        .delete(|State(st): S, Path(name): Path<String>, h: HeaderMap| async move {
            delete_item(&st, $kind, Loc { tenant: None, ns: None, name }, &h).await
        })
    };
}

macro_rules! in_tenant {
    ($kind:expr) => {
        get(
            move |State(st): S, Path((t, name)): Path<(String, String)>| async move {
                get_item(
                    &st,
                    $kind,
                    Loc {
                        tenant: Some(t),
                        ns: None,
                        name,
                    },
                )
                .await
            },
        )
        .put(
            move |State(st): S,
                  Path((t, name)): Path<(String, String)>,
                  h: HeaderMap,
                  JsonBody(b): JsonBody<Value>| async move {
                put_item(
                    &st,
                    $kind,
                    Loc {
                        tenant: Some(t),
                        ns: None,
                        name,
                    },
                    &h,
                    b,
                )
                .await
            },
        )
        .delete(
            move |State(st): S, Path((t, name)): Path<(String, String)>, h: HeaderMap| async move {
                delete_item(
                    &st,
                    $kind,
                    Loc {
                        tenant: Some(t),
                        ns: None,
                        name,
                    },
                    &h,
                )
                .await
            },
        )
    };
}

macro_rules! in_ns {
    ($kind:expr) => {
        get(
            move |State(st): S, Path((t, ns, name)): Path<(String, String, String)>| async move {
                get_item(
                    &st,
                    $kind,
                    Loc {
                        tenant: Some(t),
                        ns: Some(ns),
                        name,
                    },
                )
                .await
            },
        )
        .put(
            move |State(st): S,
                  Path((t, ns, name)): Path<(String, String, String)>,
                  h: HeaderMap,
                  JsonBody(b): JsonBody<Value>| async move {
                put_item(
                    &st,
                    $kind,
                    Loc {
                        tenant: Some(t),
                        ns: Some(ns),
                        name,
                    },
                    &h,
                    b,
                )
                .await
            },
        )
        .delete(
            move |State(st): S,
                  Path((t, ns, name)): Path<(String, String, String)>,
                  h: HeaderMap| async move {
                delete_item(
                    &st,
                    $kind,
                    Loc {
                        tenant: Some(t),
                        ns: Some(ns),
                        name,
                    },
                    &h,
                )
                .await
            },
        )
    };
}

async fn get_quotas(State(st): S, Path(t): Path<String>) -> Result<Response, ApiError> {
    check_segment("tenant", &t)?;
    if st.store.get(&format!("tenants/{t}")).await?.is_none() {
        return Err(ApiError::NotFound(format!("tenant {t} does not exist")));
    }
    let doc = match st.store.get(&format!("quotas/{t}")).await? {
        Some(v) => item(&t, &v),
        None => serde_json::to_value(Quotas::default()).expect("serializes"),
    };
    Ok(Json(doc).into_response())
}

async fn put_quotas(
    State(st): S,
    Path(t): Path<String>,
    JsonBody(b): JsonBody<Value>,
) -> Result<Response, ApiError> {
    check_segment("tenant", &t)?;
    let (_, doc) = parse::<Quotas>(b)?;
    let key = format!("quotas/{t}");
    if !st
        .store
        .txn(Txn {
            compare: vec![Compare::Present(format!("tenants/{t}"))],
            ops: vec![Op::Put(key.clone(), doc)],
        })
        .await?
        .committed()
    {
        return Err(ApiError::NotFound(format!("tenant {t} does not exist")));
    }
    tracing::info!(audit = "admin_change", change = "put", %key, "stored");
    let v = st
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::Conflict("deleted meanwhile".into()))?;
    Ok(Json(item(&t, &v)).into_response())
}

async fn delete_quotas(State(st): S, Path(t): Path<String>) -> Result<Response, ApiError> {
    check_segment("tenant", &t)?;
    st.store
        .txn(Txn::ops(vec![Op::Delete(format!("quotas/{t}"))]))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The resource routes (all admin).
pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route(
            "/v1/tenants",
            get(|State(st): S| async move { list_items(&st, Kind::Tenant, None, None).await }),
        )
        .route("/v1/tenants/{tenant}", top!(Kind::Tenant))
        .route(
            "/v1/tenants/{tenant}/quotas",
            get(get_quotas).put(put_quotas).delete(delete_quotas),
        );
    // Items of a tenant: the same list / get / put / delete for each kind.
    for (kind, plural) in [
        (Kind::Namespace, "namespaces"),
        (Kind::Role, "roles"),
        (Kind::Issuer, "issuers"),
    ] {
        let base = format!("/v1/tenants/{{tenant}}/{plural}");
        router = router
            .route(
                &base,
                get(move |State(st): S, Path(t): Path<String>| async move {
                    list_items(&st, kind, Some(t), None).await
                }),
            )
            .route(&format!("{base}/{{name}}"), in_tenant!(kind));
    }
    // Definitions inside a namespace: the same list / get / put / delete for each kind.
    for (kind, plural) in [
        (Kind::Stream, "streams"),
        (Kind::Cache, "caches"),
        (Kind::Group, "groups"),
    ] {
        let base = format!("/v1/tenants/{{tenant}}/namespaces/{{ns}}/{plural}");
        router = router
            .route(
                &base,
                get(
                    move |State(st): S, Path((t, ns)): Path<(String, String)>| async move {
                        list_items(&st, kind, Some(t), Some(ns)).await
                    },
                ),
            )
            .route(&format!("{base}/{{name}}"), in_ns!(kind));
    }
    router
}
