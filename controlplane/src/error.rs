//! Errors as the HTTP API answers them: `{"error": CODE, "error_description": TEXT}` with a
//! stable `CODE` (the same shape as OAuth errors, so one client parser reads both).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store::StoreError;

/// A failed API call. The code strings are stable; the descriptions are for humans.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400 `invalid_argument`: the request is malformed or a value is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// 401 `unauthorized`: no or a wrong admin token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: refused whoever asks (e.g. a non-loopback `Host` in dev mode).
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `conflict`: the parent is missing, or children still exist, or a concurrent change won.
    #[error("{0}")]
    Conflict(String),
    /// 413 `request_too_large`: body over `max_body_bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// 408 `request_timeout`: the request (body included) took over `request_timeout_ms`.
    #[error("{0}")]
    Timeout(String),
    /// 503 `overloaded`: a budget is exhausted (e.g. `max_long_polls`); retry later.
    #[error("{0}")]
    Overloaded(String),
    /// 500 `internal`: the store failed (details in the log only).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "invalid_argument",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Timeout(_) => "request_timeout",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "request_too_large",
            ApiError::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        ApiError::Internal("the store failed; see the control plane's log".into())
    }
}

/// The JSON body of an error.
pub fn error_body(code: &str, description: &str) -> serde_json::Value {
    serde_json::json!({ "error": code, "error_description": description })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status(),
            Json(error_body(self.code(), &self.to_string())),
        )
            .into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}
