//! Token sources in the C ABI: a callback returning fresh tokens, the token exchange at the
//! control plane, and the translation of both into the core's `TokenSource` (the core calls
//! the callback on a blocking thread and refreshes before expiry: nothing of that is here).

use std::ffi::c_void;

use felix_client::{SubjectToken, TokenCallbackError, TokenExchange, TokenSource};

use crate::error::{status_name, FelixStatus, Res};

/// Size of the buffer a `FelixTokenCallback` writes into: the longest token Felix accepts.
pub const FELIX_TOKEN_MAX_BYTES: usize = 16 * 1024;

/// Writes a fresh token into `out` (`cap` bytes, `FELIX_TOKEN_MAX_BYTES`), stores its length in
/// `*out_len` and returns 0 (`FELIX_STATUS_OK`); any other value fails the fetch (connect, or
/// calls once the current token has expired, see `FelixConnectOptions`) with
/// `FELIX_STATUS_UNAUTHORIZED`, whose message is what the callback wrote into `out` (UTF-8,
/// `*out_len` bytes), if anything, else the status's name. The return type is a plain
/// `int32_t`, not `FelixStatus`: any value is defined (one that is no `FelixStatus` fails the
/// fetch, its message saying so), where a C enum holding an unlisted value would be undefined
/// behaviour in the library. Called on a library thread, never on the thread reading
/// replies; it may block (read a file, ask a secrets manager), and may be called from several
/// threads over the client's life (not concurrently for one client). May be NULL.
pub type FelixTokenCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        out: *mut u8,
        cap: usize,
        out_len: *mut usize,
    ) -> i32,
>;

/// Releases a callback's `user_data` once the library will not call it again. May be NULL.
pub type FelixUserDataFree = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

type TokenFn = unsafe extern "C" fn(*mut c_void, *mut u8, usize, *mut usize) -> i32;
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
        if status != FelixStatus::Ok as i32 {
            return Err(callback_failure(status, &buf, len).into());
        }
        if len > buf.len() {
            return Err(format!("reported {len} bytes, more than the {} given", buf.len()).into());
        }
        buf.truncate(len);
        String::from_utf8(buf).map_err(|_| "returned a token that is not UTF-8".into())
    }
}

/// The message of a callback that returned `status` (not 0): what it wrote, if anything,
/// else the status's name, or that the value is no status at all.
fn callback_failure(status: i32, buf: &[u8], len: usize) -> String {
    if len > 0 && len <= buf.len() {
        return String::from_utf8_lossy(&buf[..len]).into_owned();
    }
    match status_name(status) {
        Some(name) => format!("returned {name}"),
        None => format!("returned {status}, which is not a FelixStatus"),
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
    /// contents of `subject_token_file`), the control plane verified against `exchange_ca_file`
    /// when given; `None`: the static token, if any.
    pub(crate) fn source(
        self,
        exchange_url: String,
        subject_token: String,
        subject_token_file: String,
        exchange_ca_file: String,
    ) -> Res<Option<TokenSource>> {
        if exchange_url.is_empty() {
            if !exchange_ca_file.is_empty() {
                return Err(crate::error::Failure::invalid(
                    "token_exchange_ca_file needs token_exchange_url",
                ));
            }
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
        let mut x = TokenExchange::new(exchange_url, subject);
        if !exchange_ca_file.is_empty() {
            x.ca_file = Some(exchange_ca_file.into());
        }
        Ok(Some(TokenSource::Exchange(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_status_names_itself_and_an_unknown_value_says_so() {
        let buf = [0u8; 8];
        assert_eq!(callback_failure(11, &buf, 0), "returned unavailable");
        assert_eq!(
            callback_failure(1234, &buf, 0),
            "returned 1234, which is not a FelixStatus"
        );
        assert_eq!(
            callback_failure(-1, &buf, 0),
            "returned -1, which is not a FelixStatus"
        );
        assert_eq!(callback_failure(5, b"vault", 5), "vault");
        // A length past the buffer is ignored rather than read.
        assert_eq!(callback_failure(5, b"vault", 6), "returned unauthorized");
    }
}
