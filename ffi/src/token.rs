//! Token sources in the C ABI: a callback returning fresh tokens, the token exchange at the
//! control plane, and the translation of both into the core's `TokenSource` (the core calls
//! the callback on a blocking thread and refreshes before expiry: nothing of that is here).

use std::ffi::c_void;

use felix_client::{SubjectToken, TokenCallbackError, TokenExchange, TokenSource};

use crate::error::{felix_status_name, FelixStatus, Res};

/// Size of the buffer a `FelixTokenCallback` writes into: the longest token Felix accepts.
pub const FELIX_TOKEN_MAX_BYTES: usize = 16 * 1024;

/// Writes a fresh token into `out` (`cap` bytes, `FELIX_TOKEN_MAX_BYTES`), stores its length in
/// `*out_len` and returns `FELIX_STATUS_OK`; any other status fails the fetch (connect, or
/// calls once the current token has expired, see `FelixConnectOptions`) with
/// `FELIX_STATUS_UNAUTHORIZED`, whose message is what the callback wrote into `out` (UTF-8,
/// `*out_len` bytes), if anything. Called on a library thread, never on the thread reading
/// replies; it may block (read a file, ask a secrets manager), and may be called from several
/// threads over the client's life (not concurrently for one client). May be NULL.
pub type FelixTokenCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        out: *mut u8,
        cap: usize,
        out_len: *mut usize,
    ) -> FelixStatus,
>;

/// Releases a callback's `user_data` once the library will not call it again. May be NULL.
pub type FelixUserDataFree = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

type TokenFn = unsafe extern "C" fn(*mut c_void, *mut u8, usize, *mut usize) -> FelixStatus;
type FreeFn = unsafe extern "C" fn(*mut c_void);

/// A C callback and its user data, owned by the core's token source.
struct CCallback {
    f: TokenFn,
    user_data: *mut c_void,
    free: Option<FreeFn>,
}

// SAFETY: the caller promises (see `FelixConnectOptions::token_callback`) that the callback
// and its user data may be used from any thread.
unsafe impl Send for CCallback {}
// SAFETY: as above; the core never calls it concurrently for one client.
unsafe impl Sync for CCallback {}

impl CCallback {
    fn call(&self) -> Result<String, TokenCallbackError> {
        let mut buf = vec![0u8; FELIX_TOKEN_MAX_BYTES];
        let mut len = 0usize;
        // SAFETY: the buffer is valid for `cap` bytes and `len` for a write; the caller
        // promised the callback is callable with its user data.
        let status = unsafe { (self.f)(self.user_data, buf.as_mut_ptr(), buf.len(), &mut len) };
        if status != FelixStatus::Ok {
            if len > 0 && len <= buf.len() {
                return Err(String::from_utf8_lossy(&buf[..len]).into_owned().into());
            }
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(felix_status_name(status)) };
            return Err(format!("returned {}", name.to_string_lossy()).into());
        }
        if len > buf.len() {
            return Err(format!("reported {len} bytes, more than the {} given", buf.len()).into());
        }
        buf.truncate(len);
        String::from_utf8(buf).map_err(|_| "returned a token that is not UTF-8".into())
    }
}

impl Drop for CCallback {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the library calls no callback with this user data any more.
            unsafe { free(self.user_data) }
        }
    }
}

/// What `FelixConnectOptions` says about tokens, read before anything can fail, so that the
/// user data is released exactly once whatever happens next.
pub(crate) struct TokenOptions {
    callback: Option<felix_client::TokenCallback>,
}

impl TokenOptions {
    pub(crate) fn new(
        f: FelixTokenCallback,
        user_data: *mut c_void,
        free: FelixUserDataFree,
    ) -> Self {
        let callback = match f {
            Some(f) => {
                let c = CCallback { f, user_data, free };
                Some(std::sync::Arc::new(move || c.call()) as felix_client::TokenCallback)
            }
            None => {
                if let Some(free) = free {
                    // SAFETY: no callback will ever use it.
                    unsafe { free(user_data) }
                }
                None
            }
        };
        Self { callback }
    }

    /// The core's token source: the callback's tokens; or, with `exchange_url`, Felix tokens
    /// exchanged for the subject token (the callback's, else `subject_token`, else the
    /// contents of `subject_token_file`); `None`: the static token, if any.
    pub(crate) fn source(
        self,
        exchange_url: String,
        subject_token: String,
        subject_token_file: String,
    ) -> Res<Option<TokenSource>> {
        if exchange_url.is_empty() {
            return Ok(self.callback.map(TokenSource::Callback));
        }
        let subject =
            match (self.callback, subject_token, subject_token_file) {
                (Some(cb), _, _) => SubjectToken::Callback(cb),
                (None, t, _) if !t.is_empty() => SubjectToken::Value(t),
                (None, _, f) if !f.is_empty() => SubjectToken::File(f.into()),
                _ => return Err(crate::error::Failure::invalid(
                    "token_exchange_url needs token_callback, subject_token or subject_token_file",
                )),
            };
        Ok(Some(TokenSource::Exchange(TokenExchange::new(
            exchange_url,
            subject,
        ))))
    }
}
