//! The HTTP API: routes, shared state, admin authentication, body bounds.
//!
//! Public: `GET /live`, `GET /ready`, `GET /metrics`, `GET /.well-known/jwks.json`,
//! `POST /oauth/token`. Everything under `/v1/` needs `Authorization: Bearer <token>`
//! whenever an admin token is configured (always in production): writes and reads take an
//! admin token; the broker read token reads only what brokers poll (`GET /v1/revocations`,
//! `GET /v1/broker/definitions`; the JWKS is public) and gets `403 forbidden` elsewhere.
//!
//! Every request has a whole deadline (`request_timeout_ms`, body read included; long polls
//! get `max_long_poll_s` on top). In dev mode on a loopback address only loopback `Host`
//! names are served (DNS rebinding), and admin writes need `content-type: application/json`
//! (a cross-site "simple" form POST cannot set it without a CORS preflight we never grant).

pub mod broker_feed;
mod resources;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
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
    /// SHA-256 digests of the broker read tokens.
    pub broker_digests: Arc<Vec<[u8; 32]>>,
    /// Revocation long polls in progress (`long_poll_budget`).
    pub long_polls: Arc<tokio::sync::Semaphore>,
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

fn bearer_digest(headers: &HeaderMap) -> Option<[u8; 32]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 7235).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| digest(t.trim()))
}

/// Whether `d` is one of `set`; every digest compared in full, so timing says nothing about
/// which byte differed.
fn one_of(set: &[[u8; 32]], d: &[u8; 32]) -> bool {
    set.iter().fold(false, |acc, a| {
        acc | (a.iter().zip(d.iter()).fold(0u8, |x, (p, q)| x | (p ^ q)) == 0)
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn require_admin(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    // Who first (401 before any other answer), then the content type.
    if !st.admin_digests.is_empty() {
        let presented = bearer_digest(req.headers());
        let (admin, broker) = presented.map_or((false, false), |d| {
            // Both sets compared, whatever the first says.
            (
                one_of(&st.admin_digests, &d),
                one_of(&st.broker_digests, &d),
            )
        });
        // The broker read token reads what brokers poll, nothing else of the admin API
        // (tenants, issuers, keys' metadata): a leaked broker credential is not an admin read.
        let broker_path = matches!(
            req.uri().path(),
            "/v1/revocations" | "/v1/broker/definitions"
        );
        if !admin && broker && read && !broker_path {
            tracing::warn!(audit = "admin_denied", method = %req.method(), path = %req.uri().path(), "broker read token used outside the broker feed");
            return ApiError::Forbidden(
                "the broker read token reads only /v1/revocations and /v1/broker/definitions; \
                 this needs an admin token"
                    .into(),
            )
            .into_response();
        }
        if !(admin | (read & broker)) {
            tracing::warn!(audit = "admin_denied", method = %req.method(), path = %req.uri().path(), "request without a valid admin (or, for reads, broker) token");
            return ApiError::Unauthorized(if read {
                "an admin or broker read bearer token is required".into()
            } else {
                "an admin bearer token is required".into()
            })
            .into_response();
        }
    }
    // With no admin token configured (dev; the startup warning says so) anyone passes here.
    // Writes must be JSON even with no body (e.g. rotate): a cross-site HTML form or
    // `fetch` without preflight can only send form, multipart or text/plain bodies.
    if !read && *req.method() != Method::DELETE && !is_json(req.headers()) {
        return ApiError::InvalidArgument(
            "admin writes need content-type: application/json".into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Dev mode on loopback: only loopback `Host` names. A page on evil.example whose name
/// re-resolves to 127.0.0.1 (DNS rebinding) sends `Host: evil.example` and is refused.
async fn loopback_host_only(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let name = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let ok = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !ok {
        return ApiError::Forbidden(
            "dev mode on loopback serves only Host: localhost, 127.0.0.1 or [::1]".into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// The whole-request deadline: body read included, so a client trickling its body (or
/// never finishing it) loses its slot. A revocation long poll gets its wait on top.
async fn deadline(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let mut limit = Duration::from_millis(st.cfg.request_timeout_ms);
    if req.method() == Method::GET
        && req.uri().path() == "/v1/revocations"
        && req.uri().query().is_some_and(|q| q.contains("after="))
    {
        limit += Duration::from_secs(st.cfg.max_long_poll_s);
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            st.metrics.request_timed_out();
            let mut r =
                ApiError::Timeout("the request did not complete within request_timeout_ms".into())
                    .into_response();
            // The body may be half read: this connection cannot carry another request.
            r.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            r
        }
    }
}

async fn jwks(State(st): State<AppState>) -> Result<Response, ApiError> {
    let jwks = st.keys.jwks(now_s()).await?;
    let mut r = Json(jwks).into_response();
    // Caches may keep it for half the key propagation time at most: a next key published
    // by a rotation reaches every poller before it signs.
    let max_age = (st.cfg.key_propagation_s / 2).min(60);
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
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
        if !wait.is_zero() && st.store.revision() <= after {
            // Pollers have their own budget, so they cannot take every connection slot.
            let Ok(_permit) = st.long_polls.clone().try_acquire_owned() else {
                st.metrics.long_poll_refused();
                let mut r = ApiError::Overloaded(
                    "too many revocation long polls; retry in a second".into(),
                )
                .into_response();
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
                return Ok(r);
            };
            let mut rx = st.store.watch();
            // Either outcome answers the current list: the poller compares revisions.
            let _ = tokio::time::timeout(wait, rx.wait_for(|rev| *rev > after)).await;
        }
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

/// `?immediate=true`: the new key signs at once (emergency; brokers refuse its tokens until
/// they re-poll the JWKS).
#[derive(Debug, serde::Deserialize)]
struct RotateQuery {
    #[serde(default)]
    immediate: bool,
}

async fn rotate(
    State(st): State<AppState>,
    q: Result<axum::extract::Query<RotateQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(q) =
        q.map_err(|_| ApiError::InvalidArgument("query: immediate is true or false".into()))?;
    let (kid, signs_from_s) = st.keys.rotate(now_s(), q.immediate).await?;
    tracing::info!(audit = "admin_change", change = "rotate_key", %kid, signs_from_s, immediate = q.immediate, "signing key rotated");
    Ok(Json(serde_json::json!({
        "kid": kid,
        "signs_from_s": signs_from_s,
        "keys": st.keys.list().await?,
    }))
    .into_response())
}

async fn delete_key(
    State(st): State<AppState>,
    axum::extract::Path(kid): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    if !st.keys.delete(&kid, now_s()).await? {
        return Err(ApiError::NotFound("no such key".into()));
    }
    tracing::warn!(audit = "admin_change", change = "delete_key", %kid, "signing key deleted");
    Ok(Json(serde_json::json!({ "keys": st.keys.list().await? })).into_response())
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
        .route("/v1/keys/{kid}", delete(delete_key))
        .route("/v1/revocations", post(revoke).get(revocations))
        .route("/v1/broker/definitions", get(broker_feed::get))
        .route_layer(middleware::from_fn_with_state(st.clone(), require_admin));
    let mut app = Router::new()
        .route("/live", get(|| async { "ok" }))
        .route("/ready", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth/token", post(token))
        .merge(admin)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(st.cfg.max_body_bytes))
        .layer(middleware::from_fn_with_state(st.clone(), deadline));
    if st.cfg.dev && st.cfg.listen.ip().is_loopback() {
        app = app.layer(middleware::from_fn(loopback_host_only));
    }
    app.layer(middleware::from_fn_with_state(st.clone(), count_responses))
        .with_state(st)
}
