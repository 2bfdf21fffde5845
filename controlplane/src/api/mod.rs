//! The HTTP API: routes, shared state, admin authentication, body bounds.
//!
//! Public: `GET /live`, `GET /ready`, `GET /.well-known/jwks.json`, `POST /oauth/token`,
//! `GET /v1/revocations` (brokers poll the last two read-only feeds). Everything else under
//! `/v1/` needs `Authorization: Bearer <admin token>` whenever an admin token is configured
//! (always in production).

mod resources;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use crate::config::CpConfig;
use crate::error::ApiError;
use crate::exchange::issuers::IssuerKeys;
use crate::keys::Keys;
use crate::revocations::{Revocations, RevokeRequest};
use crate::store::Store;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Effective configuration.
    pub cfg: Arc<CpConfig>,
    /// The state store.
    pub store: Arc<dyn Store>,
    /// Felix signing keys.
    pub keys: Arc<Keys>,
    /// Revocations.
    pub revocations: Arc<Revocations>,
    /// Trusted issuers' keys.
    pub issuer_keys: Arc<IssuerKeys>,
    /// SHA-256 digests of the admin tokens (the tokens themselves are not kept).
    pub admin_digests: Arc<Vec<[u8; 32]>>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A JSON body: `application/json`, at most `max_body_bytes`, errors as [`ApiError`].
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::InvalidArgument(
                "the body must be application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidArgument(format!("body: {e}")))
    }
}

fn body_rejection(e: axum::extract::rejection::BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge("the request body is over max_body_bytes".into())
    } else {
        ApiError::InvalidArgument(format!("body: {e}"))
    }
}

async fn require_admin(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.admin_digests.is_empty() {
        // Dev mode without an admin token (the startup warning says so).
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 7235).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| digest(t.trim()));
    let ok = presented.is_some_and(|d| {
        // Compare every digest in full: timing says nothing about which byte differed.
        st.admin_digests.iter().fold(false, |acc, a| {
            acc | (a.iter().zip(d.iter()).fold(0u8, |x, (p, q)| x | (p ^ q)) == 0)
        })
    });
    if !ok {
        tracing::warn!(audit = "admin_denied", path = %req.uri().path(), "admin request without a valid admin token");
        return ApiError::Unauthorized("an admin bearer token is required".into()).into_response();
    }
    next.run(req).await
}

async fn jwks(State(st): State<AppState>) -> Result<Response, ApiError> {
    let jwks = st.keys.jwks(now_s()).await?;
    let mut r = Json(jwks).into_response();
    // Brokers and verifiers may cache briefly; a rotation is visible within a minute.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("public, max-age=60"),
    );
    Ok(r)
}

async fn token(State(st): State<AppState>, headers: HeaderMap, req: Request) -> Response {
    let body = match Bytes::from_request(req, &()).await {
        Ok(b) => b,
        Err(e) => {
            let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "the request body is over max_body_bytes"
            } else {
                "the body could not be read"
            };
            st.metrics.exchange("invalid_request");
            return crate::exchange::OAuthError {
                code: "invalid_request",
                description: code.into(),
            }
            .into_response();
        }
    };
    let outcome = crate::exchange::token(&st, &headers, &body, now_s()).await;
    st.metrics
        .exchange(outcome.as_ref().map_or_else(|e| e.code, |_| "ok"));
    match outcome {
        Ok(v) => {
            let mut r = Json(v).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) => e.into_response(),
    }
}

/// `?after=REV&wait_s=N`: answer once the store's revision passes REV, or after N seconds.
#[derive(Debug, serde::Deserialize)]
struct LongPoll {
    after: Option<u64>,
    wait_s: Option<u64>,
}

async fn revocations(
    State(st): State<AppState>,
    q: Result<axum::extract::Query<LongPoll>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(q) = q.map_err(|_| {
        ApiError::InvalidArgument("query: after and wait_s are non-negative integers".into())
    })?;
    if let Some(after) = q.after {
        let wait = Duration::from_secs(q.wait_s.unwrap_or(0).min(st.cfg.max_long_poll_s));
        let mut rx = st.store.watch();
        // Either outcome answers the current list: the poller compares revisions.
        let _ = tokio::time::timeout(wait, rx.wait_for(|rev| *rev > after)).await;
    }
    Ok(Json(st.revocations.list(now_s()).await?).into_response())
}

async fn revoke(
    State(st): State<AppState>,
    JsonBody(req): JsonBody<RevokeRequest>,
) -> Result<Response, ApiError> {
    let what = format!("{req:?}");
    st.revocations.revoke(req, now_s()).await?;
    tracing::info!(audit = "admin_change", change = "revoke", %what, "revocation recorded");
    Ok((
        StatusCode::CREATED,
        Json(st.revocations.list(now_s()).await?),
    )
        .into_response())
}

async fn rotate(State(st): State<AppState>) -> Result<Response, ApiError> {
    let kid = st.keys.rotate(now_s()).await?;
    tracing::info!(audit = "admin_change", change = "rotate_key", %kid, "signing key rotated");
    Ok(Json(serde_json::json!({ "kid": kid, "keys": st.keys.list().await? })).into_response())
}

async fn list_keys(State(st): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(serde_json::json!({ "keys": st.keys.list().await? })).into_response())
}

async fn metrics(State(st): State<AppState>) -> Response {
    let (fetch_ok, fetch_err, limited) = st.issuer_keys.stats();
    let published = st
        .keys
        .jwks(now_s())
        .await
        .map_or(0, |j| j.keys.len() as u64);
    let text = st.metrics.render(&[
        (
            "felix_cp_store_revision",
            "Revision of the state store.",
            st.store.revision(),
        ),
        (
            "felix_cp_signing_keys_published",
            "Felix public keys in the JWKS (2 during a rotation overlap).",
            published,
        ),
        (
            "felix_cp_issuer_fetches_ok",
            "Successful discovery+JWKS fetches from OIDC issuers (counter).",
            fetch_ok,
        ),
        (
            "felix_cp_issuer_fetches_failed",
            "Failed discovery+JWKS fetches from OIDC issuers (counter).",
            fetch_err,
        ),
        (
            "felix_cp_issuer_refetches_limited",
            "Unknown-kid refetches refused by min_refetch_interval_s (counter).",
            limited,
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn count_responses(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    st.metrics.response(r.status().as_u16());
    r
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such resource".into())
}

/// The whole API.
pub fn router(st: AppState) -> Router {
    let admin = resources::routes()
        .route("/v1/keys", get(list_keys))
        .route("/v1/keys/rotate", post(rotate))
        .route("/v1/revocations", post(revoke))
        .route_layer(middleware::from_fn_with_state(st.clone(), require_admin));
    Router::new()
        .route("/live", get(|| async { "ok" }))
        .route("/ready", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth/token", post(token))
        .route("/v1/revocations", get(revocations))
        .merge(admin)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(st.cfg.max_body_bytes))
        .layer(middleware::from_fn_with_state(st.clone(), count_responses))
        .with_state(st)
}
