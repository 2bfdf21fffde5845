//! Errors: every failure reaches JavaScript as a `FelixError` (see `lib/error.js`) with the
//! core's stable `code` string and `retryable` flag; the mapping lives here and nowhere else.

use felix_client::{Error, ErrorCode};

/// A failure on its way to JavaScript.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// Stable code string (`ErrorCode::as_str`).
    pub code: &'static str,
    /// Human-readable message (not part of the contract).
    pub message: String,
    /// Whether retrying later may succeed.
    pub retryable: bool,
}

impl Failure {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.as_str(),
            message: message.into(),
            retryable: code.retryable(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = e.code();
        Self {
            code: code.as_str(),
            message: e.to_string(),
            retryable: e.retryable(),
        }
    }
}

/// An argument was rejected before anything was sent.
pub(crate) fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::InvalidArgument, message)
}

/// A wait was cancelled (an `AbortSignal` fired).
pub(crate) fn cancelled() -> Failure {
    Failure::new(ErrorCode::Cancelled, "cancelled: the operation was aborted")
}

/// A handle was used after `close()`.
pub(crate) fn closed(what: &str) -> Failure {
    Failure::new(ErrorCode::Closed, format!("closed: {what} was closed"))
}

/// Result of a call's future.
pub(crate) type Outcome<T> = Result<T, Failure>;
