//! `felix admin quota ...`, `felix admin keys ...` and `felix admin revoke`.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use ureq::http::Method;

use super::http::{seg, Api};
use super::{deleted, item, written, Emit, IfMatch};
use crate::output::Failure;

/// `felix admin quota`.
#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Set a tenant's quotas (replaces them: limits not given are removed).
    Set {
        /// Tenant.
        tenant: String,
        #[command(flatten)]
        limits: QuotaLimits,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Show a tenant's quotas.
    Get {
        /// Tenant.
        tenant: String,
    },
    /// Remove a tenant's quotas.
    Delete {
        /// Tenant.
        tenant: String,
    },
}

/// The quota fields of the API.
#[derive(Debug, Args)]
pub struct QuotaLimits {
    /// Concurrent connections.
    #[arg(long)]
    max_connections: Option<u64>,
    /// Concurrent subscriptions.
    #[arg(long)]
    max_subscriptions: Option<u64>,
    /// Published bytes per second.
    #[arg(long)]
    publish_bytes_per_s: Option<u64>,
    /// Published messages per second.
    #[arg(long)]
    publish_messages_per_s: Option<u64>,
    /// Cache bytes.
    #[arg(long)]
    cache_bytes: Option<u64>,
    /// Queue depth.
    #[arg(long)]
    queue_depth: Option<u64>,
}

/// `felix admin keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// List signing keys (kids and times; never private material).
    List,
    /// Publish a new signing key; it signs after the control plane's propagation delay (so
    /// brokers know it first), and the previous one stays published for the overlap.
    Rotate {
        /// Sign with the new key at once (emergency: brokers refuse its tokens until they
        /// poll the JWKS again).
        #[arg(long)]
        immediate: bool,
    },
    /// Drop a (compromised) key at once: it leaves the JWKS, and a fresh key replaces it if it
    /// was signing.
    Delete {
        /// The key id (`felix admin keys list`).
        kid: String,
    },
}

/// `felix admin revoke`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["jti", "subject"]))]
pub struct RevokeArgs {
    /// One token, by its `jti`.
    #[arg(long, value_name = "JTI")]
    jti: Option<String>,
    /// With --jti: the token's `exp` (seconds since the epoch), to keep the entry no longer
    /// than needed.
    #[arg(long, value_name = "SECONDS", requires = "jti")]
    exp: Option<u64>,
    /// Every token of this principal issued until now (and its exchanges for a while).
    #[arg(long, value_name = "TENANT/SUB")]
    subject: Option<String>,
}

pub fn quota(api: &Api, c: QuotaCmd) -> Result<Emit, Failure> {
    let path =
        |t: &str| -> Result<String, Failure> { Ok(format!("/v1/tenants/{}/quotas", seg(t)?)) };
    match c {
        QuotaCmd::Set {
            tenant,
            limits: l,
            if_match,
        } => {
            let mut m = Map::new();
            for (k, v) in [
                ("max_connections", l.max_connections),
                ("max_subscriptions", l.max_subscriptions),
                ("publish_bytes_per_s", l.publish_bytes_per_s),
                ("publish_messages_per_s", l.publish_messages_per_s),
                ("cache_bytes", l.cache_bytes),
                ("queue_depth", l.queue_depth),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), Value::from(v));
                }
            }
            let body = Value::Object(m);
            let mut r = api.call(Method::PUT, &path(&tenant)?, Some(&body), if_match.if_match)?;
            if r.body.get("name").is_none() {
                r.body["name"] = Value::from(tenant.clone());
            }
            Ok(written("quotas of", r))
        }
        QuotaCmd::Get { tenant } => {
            let mut r = api.call(Method::GET, &path(&tenant)?, None, None)?;
            if r.body.get("name").is_none() {
                r.body["name"] = Value::from(tenant.clone());
            }
            Ok(item(r))
        }
        QuotaCmd::Delete { tenant } => {
            api.call(Method::DELETE, &path(&tenant)?, None, None)?;
            Ok(deleted("quotas of", &tenant))
        }
    }
}

pub fn keys(api: &Api, c: KeysCmd) -> Result<Emit, Failure> {
    let r = match c {
        KeysCmd::List => api.call(Method::GET, "/v1/keys", None, None)?,
        KeysCmd::Rotate { immediate } => {
            let path = if immediate {
                "/v1/keys/rotate?immediate=true"
            } else {
                "/v1/keys/rotate"
            };
            api.call(Method::POST, path, Some(&json!({})), None)?
        }
        KeysCmd::Delete { kid } => {
            let path = format!("/v1/keys/{}", seg(&kid)?);
            let r = api.call(Method::DELETE, &path, None, None)?;
            return Ok(Emit {
                text: format!("deleted key {kid}"),
                json: r.body,
            });
        }
    };
    let mut text = match r.body["kid"].as_str() {
        Some(kid) => match r.body["signs_from_s"].as_u64() {
            Some(t) => format!("rotated: {kid} signs from {t} (published now)\n"),
            None => format!("rotated: {kid} is the current key\n"),
        },
        None => String::new(),
    };
    text.push_str("KID                               CREATED     RETIRED     UNPUBLISH");
    for k in r.body["keys"].as_array().into_iter().flatten() {
        let t = |f: &str| k[f].as_u64().map_or("-".to_owned(), |v| v.to_string());
        text.push_str(&format!(
            "\n{:32}  {:10}  {:10}  {}",
            k["kid"].as_str().unwrap_or("?"),
            t("created_s"),
            t("retired_s"),
            t("unpublish_s")
        ));
    }
    Ok(Emit { text, json: r.body })
}

pub fn revoke(api: &Api, a: RevokeArgs) -> Result<Emit, Failure> {
    let (body, what) = match (a.jti, a.subject) {
        (Some(jti), _) => {
            let mut b = json!({ "jti": jti });
            if let Some(exp) = a.exp {
                b["exp"] = Value::from(exp);
            }
            (b, format!("token {jti}"))
        }
        (None, Some(s)) => {
            let (tenant, sub) = s
                .split_once('/')
                .filter(|(t, s)| !t.is_empty() && !s.is_empty())
                .ok_or_else(|| Failure::usage(format!("--subject {s:?}: expected TENANT/SUB")))?;
            (
                json!({ "tenant": tenant, "sub": sub }),
                format!("every token of {tenant}/{sub} issued until now"),
            )
        }
        (None, None) => return Err(Failure::usage("give --jti or --subject")),
    };
    let r = api.call(Method::POST, "/v1/revocations", Some(&body), None)?;
    Ok(Emit {
        text: format!(
            "revoked {what} (revocation list revision {})",
            r.body["revision"]
        ),
        json: r.body,
    })
}
