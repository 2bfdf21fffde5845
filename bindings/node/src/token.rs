//! `token` as a function: the core asks for a token on one of its blocking threads; a
//! JavaScript function can only run on the JavaScript thread, so the request goes there
//! through a (weak: it does not keep Node alive) threadsafe function with a request id, and
//! the blocking thread waits, bounded by `tokenTimeoutMs`, for `provideToken(id, ...)`, which
//! the JavaScript wrapper calls once the user's function (or its promise) settles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use felix_client::sync::Mutex;
use felix_client::TokenCallback;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{
    ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue,
};
use napi_derive::napi;

/// The wrapper's request function: called with a request id on the JavaScript thread.
pub type TokenRequest = ThreadsafeFunction<f64, UnknownReturnValue, f64, Status, false, true>;

type Answer = std::result::Result<String, String>;

static NEXT: AtomicU64 = AtomicU64::new(1);

fn waiting() -> &'static Mutex<HashMap<u64, mpsc::Sender<Answer>>> {
    static W: std::sync::OnceLock<Mutex<HashMap<u64, mpsc::Sender<Answer>>>> =
        std::sync::OnceLock::new();
    W.get_or_init(Default::default)
}

/// A core token callback that asks JavaScript through `request` and waits up to `wait`.
pub fn callback(request: TokenRequest, wait: Duration) -> TokenCallback {
    let request = Arc::new(request);
    Arc::new(move || {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        waiting().lock().insert(id, tx);
        let status = request.call(id as f64, ThreadsafeFunctionCallMode::NonBlocking);
        if status != Status::Ok {
            waiting().lock().remove(&id);
            return Err(format!("the token function could not be called ({status})").into());
        }
        match rx.recv_timeout(wait) {
            Ok(answer) => answer.map_err(Into::into),
            Err(_) => {
                waiting().lock().remove(&id);
                Err(
                    format!("the token function did not settle within {wait:?} (tokenTimeoutMs)")
                        .into(),
                )
            }
        }
    })
}

/// Settles token request `id` (called by the JavaScript wrapper): `token`, or `error`.
#[napi]
pub fn provide_token(id: f64, token: Option<String>, error: Option<String>) {
    let Some(tx) = waiting().lock().remove(&(id as u64)) else {
        return; // it timed out meanwhile
    };
    let answer = match (token, error) {
        (Some(t), None) => Ok(t),
        (_, Some(e)) => Err(e),
        (None, None) => Err("the token function returned nothing".into()),
    };
    let _ = tx.send(answer);
}
