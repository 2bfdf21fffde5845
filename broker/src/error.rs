//! The broker's request error: a stable wire code plus a message for humans.

use felix_wire::ErrorCode;

/// Why a request failed; carried to the client as `error` / `publish_error` / binary error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct BrokerError {
    /// Stable code.
    pub code: ErrorCode,
    /// Detail for humans.
    pub message: String,
    /// Whether retrying may succeed: the code's default, except where the cause says
    /// otherwise (a `storage` error of a quarantined log is not retryable).
    pub retryable: bool,
}

impl BrokerError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: code.retryable(),
        }
    }

    /// `storage`, retryable as the storage error says.
    pub fn storage(e: &felix_storage::StorageError) -> Self {
        Self {
            code: ErrorCode::Storage,
            message: e.to_string(),
            retryable: e.retryable(),
        }
    }

    /// `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `overloaded`.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Overloaded, message)
    }
}

impl From<crate::names::NameError> for BrokerError {
    fn from(e: crate::names::NameError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<crate::auth::AuthError> for BrokerError {
    fn from(e: crate::auth::AuthError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}
