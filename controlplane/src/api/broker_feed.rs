//! `GET /v1/broker/definitions[?since=REV]`: what brokers need besides keys and revocations,
//! in one snapshot: every tenant's stream / cache / queue-group definitions and quotas, at one
//! store revision.
//!
//! Read with the broker read token (or an admin token), like the revocation feed. With
//! `since=REV` equal to the store's current revision the answer is `304 Not Modified` with an
//! empty body: a broker polling every couple of seconds moves no document while nothing
//! changed. The revision is the store's global one, so any change (a revocation too) gives a
//! fresh snapshot; brokers compare documents, not revisions, to decide what to apply.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use crate::error::ApiError;

/// One tenant's part of the snapshot. Keys of the maps are `NAMESPACE/NAME`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantDefinitions {
    /// The tenant's quotas document (`PUT /v1/tenants/T/quotas`); `null` when none is stored.
    pub quotas: Option<Value>,
    /// Stream definitions.
    pub streams: BTreeMap<String, Value>,
    /// Cache definitions.
    pub caches: BTreeMap<String, Value>,
    /// Queue-group definitions (each names its stream).
    pub groups: BTreeMap<String, Value>,
}

/// The whole answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerDefinitions {
    /// Store revision the snapshot was read at.
    pub revision: u64,
    /// Every tenant, with or without definitions.
    pub tenants: BTreeMap<String, TenantDefinitions>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Since {
    since: Option<u64>,
}

/// Builds the snapshot from one listing of the store, so every part is at one revision.
pub async fn snapshot(st: &AppState) -> Result<BrokerDefinitions, ApiError> {
    // One list of the whole keyspace is the one read that is atomic across prefixes (the
    // data is small: tenants, definitions, roles, keys). Only the prefixes below are read
    // out of it; signing keys and revocations never leave this function.
    let (revision, items) = st.store.list("").await?;
    let mut out = BrokerDefinitions {
        revision,
        tenants: BTreeMap::new(),
    };
    for (k, _) in &items {
        if let Some(t) = k.strip_prefix("tenants/") {
            out.tenants.entry(t.to_string()).or_default();
        }
    }
    for (k, v) in items {
        let Some((kind, rest)) = k.split_once('/') else {
            continue;
        };
        let doc = v.value;
        match kind {
            "quotas" => {
                if let Some(t) = out.tenants.get_mut(rest) {
                    t.quotas = Some(doc);
                }
            }
            "streams" | "caches" | "groups" => {
                // rest = TENANT/NS/NAME
                let Some((tenant, ns_name)) = rest.split_once('/') else {
                    continue;
                };
                let Some(t) = out.tenants.get_mut(tenant) else {
                    continue;
                };
                let map = match kind {
                    "streams" => &mut t.streams,
                    "caches" => &mut t.caches,
                    _ => &mut t.groups,
                };
                map.insert(ns_name.to_string(), doc);
            }
            _ => {}
        }
    }
    Ok(out)
}

pub(super) async fn get(
    State(st): State<AppState>,
    q: Result<Query<Since>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        q.map_err(|_| ApiError::InvalidArgument("query: since is a non-negative integer".into()))?;
    if q.since.is_some_and(|s| s == st.store.revision()) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(Json(snapshot(&st).await?).into_response())
}
