//! Status codes and owned errors.
//!
//! Every export returns a [`FelixStatus`]: `FELIX_STATUS_OK` (0) or the stable error code
//! number shared with the wire protocol and every binding (1..18). Callers that want details
//! pass a `FelixError**`; on failure it receives an owned [`FelixError`] (code, message,
//! retryable) to release with `felix_error_free`. There is no thread-local "last error".
//! Every export runs inside [`guard`], so a Rust panic becomes `FELIX_STATUS_INTERNAL` instead of
//! unwinding through C.

use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use felix_client::{Error, ErrorCode};

/// Outcome of a call: 0 for success, otherwise the stable Felix error code.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FelixStatus {
    /// Success.
    Ok = 0,
    /// A request field is malformed or out of range (NULL pointer, invalid UTF-8, empty name).
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
    /// A limit was reached; retry later.
    Overloaded = 7,
    /// A frame or payload is larger than the negotiated limit.
    FrameTooLarge = 8,
    /// The broker does not support this operation.
    Unsupported = 9,
    /// The operation did not complete before its deadline (or a wait timed out).
    Timeout = 10,
    /// The broker is unreachable, restarting or shutting down; retry later.
    Unavailable = 11,
    /// The peer sent bytes that are not valid Felix protocol.
    Protocol = 12,
    /// The subscriber could not keep up and was disconnected.
    SlowConsumer = 13,
    /// The operation was cancelled (`felix_completion_queue_cancel`, or its queue was freed).
    Cancelled = 14,
    /// The handle was closed or freed, or the subscription ended.
    Closed = 15,
    /// A bug inside Felix (including a caught panic).
    Internal = 16,
    /// The tenant is past one of its quotas; other tenants are unaffected. Retryable: rate
    /// quotas recover within a second, count quotas once the tenant's usage drops.
    QuotaExceeded = 17,
    /// Durable storage could not do it (disk full, an I/O or fsync error, a quarantined log);
    /// nothing the call asked for happened. See the error's retryable flag.
    Storage = 18,
}

impl From<ErrorCode> for FelixStatus {
    fn from(c: ErrorCode) -> Self {
        match c {
            ErrorCode::InvalidArgument => Self::InvalidArgument,
            ErrorCode::NotFound => Self::NotFound,
            ErrorCode::AlreadyExists => Self::AlreadyExists,
            ErrorCode::Conflict => Self::Conflict,
            ErrorCode::Unauthorized => Self::Unauthorized,
            ErrorCode::Forbidden => Self::Forbidden,
            ErrorCode::Overloaded => Self::Overloaded,
            ErrorCode::FrameTooLarge => Self::FrameTooLarge,
            ErrorCode::Unsupported => Self::Unsupported,
            ErrorCode::Timeout => Self::Timeout,
            ErrorCode::Unavailable => Self::Unavailable,
            ErrorCode::Protocol => Self::Protocol,
            ErrorCode::SlowConsumer => Self::SlowConsumer,
            ErrorCode::Cancelled => Self::Cancelled,
            ErrorCode::Closed => Self::Closed,
            ErrorCode::QuotaExceeded => Self::QuotaExceeded,
            ErrorCode::Storage => Self::Storage,
            _ => Self::Internal,
        }
    }
}

/// An owned error: release with `felix_error_free`. Fields are read-only for the caller.
#[repr(C)]
#[derive(Debug)]
pub struct FelixError {
    /// The stable code (never `FELIX_STATUS_OK`).
    pub code: FelixStatus,
    /// Whether the same call may succeed if retried later.
    pub retryable: bool,
    /// Human-readable message: NUL-terminated UTF-8, owned by this error.
    pub message: *const c_char,
    /// Length of `message` in bytes, without the NUL.
    pub message_len: usize,
}

/// A failure inside the FFI layer, turned into a status (and an owned error) at the boundary.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn closed(what: &str) -> Self {
        Self::new(ErrorCode::Closed, format!("{what} was closed"))
    }
    pub fn status(&self) -> FelixStatus {
        self.code.into()
    }

    /// Moves this failure into an owned C error.
    pub fn into_raw(self) -> *mut FelixError {
        let msg = CString::new(self.message.replace('\0', " ")).unwrap_or_default();
        let message_len = msg.as_bytes().len();
        Box::into_raw(Box::new(FelixError {
            code: self.status(),
            retryable: self.code.retryable(),
            message: msg.into_raw(),
            message_len,
        }))
    }

    fn from_panic(p: Box<dyn std::any::Any + Send>) -> Self {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Self::new(ErrorCode::Internal, format!("panic inside felix: {what}"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::new(e.code(), e.message())
    }
}

/// Result alias of the FFI layer.
pub(crate) type Res<T> = Result<T, Failure>;

/// Stores `f`'s failure in `err` (when non-NULL) and returns its status; panics become
/// `internal`.
pub(crate) fn guard(err: *mut *mut FelixError, f: impl FnOnce() -> Res<()>) -> FelixStatus {
    if !err.is_null() {
        // SAFETY: the caller passes NULL or a valid `FelixError**`.
        unsafe { *err = ptr::null_mut() };
    }
    let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(Failure::from_panic(p)));
    match outcome {
        Ok(()) => FelixStatus::Ok,
        Err(failure) => {
            let status = failure.status();
            if !err.is_null() {
                // SAFETY: as above.
                unsafe { *err = failure.into_raw() };
            }
            status
        }
    }
}

/// Runs `f`, swallowing a panic (for exports without a status: frees, accessors).
pub(crate) fn quiet<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Turns a caught panic payload into a failure (for futures run on the runtime).
pub(crate) fn panic_failure(p: Box<dyn std::any::Any + Send>) -> Failure {
    Failure::from_panic(p)
}

/// Releases an error returned through a `FelixError**`. NULL is a no-op.
///
/// # Safety
/// `error` is NULL or an error from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn felix_error_free(error: *mut FelixError) {
    quiet((), || {
        if error.is_null() {
            return;
        }
        // SAFETY: per the contract, `error` came from `Failure::into_raw`.
        let e = unsafe { Box::from_raw(error) };
        if !e.message.is_null() {
            // SAFETY: `message` came from `CString::into_raw`.
            drop(unsafe { CString::from_raw(e.message as *mut c_char) });
        }
    })
}

/// The stable snake_case name of a status (`"ok"`, `"not_found"`, ...): a static string;
/// `"unknown"` for a number that is no `FelixStatus`. Takes a plain integer, so any value a C
/// caller passes is defined.
#[no_mangle]
pub extern "C" fn felix_status_name(status: i32) -> *const c_char {
    let s: &'static [u8] = match status {
        0 => b"ok\0",
        n => known_code(n).map(name_z).unwrap_or(b"unknown\0"),
    };
    s.as_ptr().cast()
}

/// The error code numbered `n`, if any.
fn known_code(n: i32) -> Option<ErrorCode> {
    ErrorCode::ALL
        .iter()
        .copied()
        .find(|c| i32::from(c.as_u16()) == n)
}

/// The name of status number `n` (without the NUL), if it is one.
pub(crate) fn status_name(n: i32) -> Option<&'static str> {
    let z: &'static [u8] = match n {
        0 => b"ok\0",
        n => name_z(known_code(n)?),
    };
    std::str::from_utf8(&z[..z.len() - 1]).ok()
}

fn name_z(c: ErrorCode) -> &'static [u8] {
    match c {
        ErrorCode::InvalidArgument => b"invalid_argument\0",
        ErrorCode::NotFound => b"not_found\0",
        ErrorCode::AlreadyExists => b"already_exists\0",
        ErrorCode::Conflict => b"conflict\0",
        ErrorCode::Unauthorized => b"unauthorized\0",
        ErrorCode::Forbidden => b"forbidden\0",
        ErrorCode::Overloaded => b"overloaded\0",
        ErrorCode::FrameTooLarge => b"frame_too_large\0",
        ErrorCode::Unsupported => b"unsupported\0",
        ErrorCode::Timeout => b"timeout\0",
        ErrorCode::Unavailable => b"unavailable\0",
        ErrorCode::Protocol => b"protocol\0",
        ErrorCode::SlowConsumer => b"slow_consumer\0",
        ErrorCode::Cancelled => b"cancelled\0",
        ErrorCode::Closed => b"closed\0",
        ErrorCode::QuotaExceeded => b"quota_exceeded\0",
        ErrorCode::Storage => b"storage\0",
        _ => b"internal\0",
    }
}
