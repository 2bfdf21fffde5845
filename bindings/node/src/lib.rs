//! `felix-client` for Node.js: a napi-rs binding over the one Rust client core
//! (`felix_client`). No protocol logic lives here: each method is a thin translation of one
//! core call into a promise.
//!
//! Modules mirror the other bindings: `client`, `publish`, `subscribe`, `queue`, `cache`,
//! `error`; `runtime` is where futures become promises; `value` converts values. The
//! hand-written JavaScript layer (`lib/`) adds only what makes the API idiomatic: async
//! iterators, `AbortSignal`, the `FelixError` class and option defaults.

#![deny(clippy::undocumented_unsafe_blocks)]

/// mimalloc: the runtime's thread allocates what the JavaScript thread frees (and back) on
/// every call, which glibc's allocator serves from its slow path.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cache;
mod client;
mod error;
mod publish;
mod queue;
mod runtime;
mod subscribe;
mod token;

pub use token::provide_token;
mod value;

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::runtime::Cancel;

/// Registers the error class every rejection is built with:
/// `new FelixError(message, code, retryable)`.
#[napi(
    ts_args_type = "errorClass: new (message: string, code: string, retryable: boolean) => Error"
)]
pub fn set_error_class(env: Env, error_class: Unknown<'_>) -> Result<()> {
    runtime::set_error_class(env.raw(), error_class.raw())
}

/// Cancels the waits it was passed to (the JavaScript layer fires it from an `AbortSignal`).
#[napi]
#[derive(Default)]
pub struct CancelToken {
    inner: Arc<Cancel>,
}

#[napi]
impl CancelToken {
    #[napi(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every wait given this token; later waits fail at once.
    #[napi]
    pub fn cancel(&self) {
        self.inner.fire();
    }

    /// Whether `cancel()` was called.
    #[napi]
    pub fn is_cancelled(&self) -> bool {
        self.inner.is_fired()
    }
}

impl CancelToken {
    pub(crate) fn arc(t: Option<&CancelToken>) -> Option<Arc<Cancel>> {
        t.map(|t| t.inner.clone())
    }
}

/// Resolves a promise through the runtime thread without any I/O: the binding's own cost per
/// call (one hop to the runtime, one back). Diagnostics for `bench.mjs`.
#[napi(ts_return_type = "Promise<void>")]
pub fn runtime_round_trip(env: Env) -> Result<napi::sys::napi_value> {
    runtime::promise(&env, async { Ok(()) }, |env, ()| value::Js(env).undefined())
}
