//! The client's error type. Every variant maps to one stable [`ErrorCode`], the same code the
//! broker sends and every binding exposes (C status, Python exception class, Node `err.code`,
//! Go `errors.Is`).

pub use felix_wire::ErrorCode;

/// What went wrong with a client call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker refused the request; `code` says why.
    #[error("{code}: {message}")]
    Broker {
        /// Stable code sent by the broker.
        code: ErrorCode,
        /// The broker's message.
        message: String,
    },
    /// No connection to any broker address could be made.
    #[error("unavailable: could not connect: {0}")]
    Connect(String),
    /// The connection was lost while the request was in flight.
    #[error("unavailable: connection lost: {0}")]
    ConnectionLost(String),
    /// The call did not complete before its deadline.
    #[error("timeout: no reply within {0:?}")]
    Timeout(std::time::Duration),
    /// The client or handle was closed.
    #[error("closed: {0} was closed")]
    Closed(&'static str),
    /// An argument was rejected before anything was sent.
    #[error("invalid_argument: {0}")]
    InvalidArgument(String),
    /// A payload is larger than the broker accepts.
    #[error("frame_too_large: {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Size of the encoded request.
        size: usize,
        /// The broker's limit.
        max: usize,
    },
    /// The broker does not support this operation (it did not grant the feature).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The broker sent something this client cannot understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The subscription fell behind and the broker ended it.
    #[error("slow_consumer: {0}")]
    SlowConsumer(String),
    /// No valid credential: the token source failed (a callback error, a refused token
    /// exchange) or the token expired and could not be refreshed.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Broker { code, .. } => *code,
            Error::Connect(_) | Error::ConnectionLost(_) => ErrorCode::Unavailable,
            Error::Timeout(_) => ErrorCode::Timeout,
            Error::Closed(_) => ErrorCode::Closed,
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            Error::Unsupported(_) => ErrorCode::Unsupported,
            Error::Protocol(_) => ErrorCode::Protocol,
            Error::SlowConsumer(_) => ErrorCode::SlowConsumer,
            Error::Cancelled => ErrorCode::Cancelled,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
        }
    }

    /// Whether the same call may succeed if retried later.
    pub fn retryable(&self) -> bool {
        self.code().retryable()
    }

    /// The message without the code prefix.
    pub fn message(&self) -> String {
        let s = self.to_string();
        match s.split_once(": ") {
            Some((_, m)) => m.to_owned(),
            None => s,
        }
    }

    pub(crate) fn broker(code: Option<&str>, message: String) -> Self {
        let code = code
            .and_then(ErrorCode::from_str_code)
            .unwrap_or(ErrorCode::Internal);
        Error::Broker { code, message }
    }
}

/// Result alias for client calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
