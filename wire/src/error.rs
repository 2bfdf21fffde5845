//! Errors: decode failures of this crate ([`WireError`]) and the stable [`ErrorCode`]s that
//! every Felix component and every language binding shares.
//!
//! An error code is part of the public contract: its string form travels on the wire (in the
//! `code` field of our error extension), its number is the C ABI status, and the bindings map
//! it to exception classes / `err.code` / `errors.Is` targets. Codes are only ever added.

use std::fmt;

/// A stable error code shared by the broker, the client core and every binding.
///
/// The numeric value is stable (C ABI status); the string value is stable (wire, Node `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u16)]
pub enum ErrorCode {
    /// A request field is malformed or out of range.
    InvalidArgument = 1,
    /// The named stream, cache, group, key or message does not exist.
    NotFound = 2,
    /// The resource already exists with different settings.
    AlreadyExists = 3,
    /// A condition (put-if-absent, compare-and-set version) did not hold.
    Conflict = 4,
    /// No valid credentials were presented.
    Unauthorized = 5,
    /// The credentials do not grant this operation.
    Forbidden = 6,
    /// A limit was reached (connections, subscriptions, in-flight bytes); retry later.
    Overloaded = 7,
    /// A frame or payload is larger than the negotiated limit.
    FrameTooLarge = 8,
    /// The peer does not support this operation or frame type.
    Unsupported = 9,
    /// The operation did not complete before its deadline.
    Timeout = 10,
    /// The broker is unreachable, restarting or shutting down; retry later.
    Unavailable = 11,
    /// The peer sent bytes that are not valid Felix protocol.
    Protocol = 12,
    /// The subscriber could not keep up and was disconnected by its stream's policy.
    SlowConsumer = 13,
    /// The operation was cancelled by the caller.
    Cancelled = 14,
    /// The handle (client, subscription, consumer) was already closed.
    Closed = 15,
    /// A bug or unexpected failure inside Felix.
    Internal = 16,
    /// The tenant is past one of its quotas (connections, subscriptions, publish rate,
    /// cache bytes, queue depth); other tenants are unaffected. Retryable: rate quotas
    /// recover by themselves within a second, count quotas once the tenant's usage drops.
    QuotaExceeded = 17,
    /// Durable storage could not do it (disk full, disk quota, an I/O or fsync error, a
    /// quarantined log); nothing the request asked for happened. Retryable as a code (disk
    /// space frees up, a failed log heals onto a new segment); the error's own `retryable`
    /// field says `false` for the variants that need an operator (a quarantined log).
    Storage = 18,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Conflict,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::Overloaded,
        ErrorCode::FrameTooLarge,
        ErrorCode::Unsupported,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::Protocol,
        ErrorCode::SlowConsumer,
        ErrorCode::Cancelled,
        ErrorCode::Closed,
        ErrorCode::Internal,
        ErrorCode::QuotaExceeded,
        ErrorCode::Storage,
    ];

    /// The stable snake_case string carried on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Protocol => "protocol",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Closed => "closed",
            ErrorCode::Internal => "internal",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Storage => "storage",
        }
    }

    /// The stable number (also the C ABI status value).
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// Whether retrying the same request later may succeed.
    pub const fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Overloaded
                | ErrorCode::Timeout
                | ErrorCode::Unavailable
                | ErrorCode::QuotaExceeded
                | ErrorCode::Storage
        )
    }

    /// Parses the wire string; unknown strings (from a newer peer) give `None`.
    pub fn from_str_code(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// Parses the stable number.
    pub fn from_u16(n: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_u16() == n)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why bytes could not be decoded as a Felix frame or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The first four bytes were not `FLX1`.
    #[error("bad magic 0x{0:08x} (expected FLX1)")]
    BadMagic(u32),
    /// The header carries a protocol version this decoder does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// The declared payload length exceeds the receiver's limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Declared length.
        len: u32,
        /// Receiver's limit.
        max: u32,
    },
    /// A declared count or length runs past the end of the frame.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// The flags name no frame type this decoder knows.
    #[error("unknown frame flags 0x{0:04x}")]
    UnknownFlags(u16),
    /// The JSON payload is not valid UTF-8 JSON of the expected shape.
    #[error("invalid json: {0}")]
    InvalidJson(String),
    /// The JSON `type` names no message this decoder knows.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A string field is not valid UTF-8.
    #[error("invalid utf-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A field holds a value outside its domain (e.g. an ack mode byte).
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
    /// Bytes remain after a complete binary body.
    #[error("{0} trailing bytes after frame body")]
    TrailingBytes(usize),
}

impl WireError {
    /// The stable code a broker answers this decode failure with.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::UnknownFlags(_) | WireError::UnknownType(_) => ErrorCode::Unsupported,
            _ => ErrorCode::Protocol,
        }
    }
}
