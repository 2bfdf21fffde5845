//! The one tokio runtime of the library, and what a call runs.
//!
//! All handles share a single [`Driver`] started on first use. The flavour is chosen by
//! `FELIX_FFI_RUNTIME`: `current-thread` (the default: one runtime, driven by the thread that
//! waits in a blocking call when nobody else does and by the background thread
//! `felix-runtime` otherwise; the lowest latency, as for the broker) or `multi-thread` (a
//! work-stealing pool of `FELIX_FFI_WORKERS` threads, default 2, for throughput on many cores).
//!
//! A call is a future ([`Call`]) or, for the hot single-key cache operations started on a
//! completion queue, a direct call ([`Work::Direct`], see `felix_client::DirectCall`): encoded and
//! sent at once, its reply read straight into a callback that queues the completion, its
//! deadline kept by the request stream's sweeper. No future, task, timer or channel per call:
//! through the C ABI a cache get then costs no more CPU than through the Rust core.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};

use felix_client::{DirectCall, DirectHandle, Driver, Flavor};
use futures::FutureExt;
use tokio::runtime::Handle;

use crate::bytes::Output;
use crate::error::{panic_failure, Failure, Res};

static DRIVER: OnceLock<Arc<Driver>> = OnceLock::new();

/// The shared runtime, started on first use.
pub(crate) fn driver() -> &'static Driver {
    DRIVER.get_or_init(|| {
        let flavor = if std::env::var("FELIX_FFI_RUNTIME").is_ok_and(|v| v == "multi-thread") {
            let workers = std::env::var("FELIX_FFI_WORKERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2usize);
            Flavor::MultiThread(workers)
        } else {
            Flavor::CurrentThread
        };
        Driver::start("felix-runtime", flavor).expect("felix: cannot start the runtime")
    })
}

/// The shared runtime's handle.
pub(crate) fn handle() -> &'static Handle {
    driver().handle()
}

/// Future type of every call: validated arguments already copied in.
pub(crate) type Call = std::pin::Pin<Box<dyn Future<Output = Res<Option<Output>>> + Send>>;

/// What a started call runs.
pub(crate) enum Work {
    /// A future, run to completion on the runtime.
    Future(Call),
    /// A call the client core sends at once and completes by callback
    /// ([`felix_client::DirectCall`]): no future, task or timer of its own.
    Direct(Box<dyn DirectWork>),
}

/// A [`DirectCall`] whose outcome becomes the C result.
pub(crate) trait DirectWork: Send {
    /// Cancels the call once started.
    fn handle(&self) -> DirectHandle;
    /// Sends it on the library's runtime; `done` runs once.
    fn start(self: Box<Self>, done: Box<dyn FnOnce(Res<Option<Output>>) + Send>);
}

/// A [`DirectCall`] and how its value becomes the C result.
pub(crate) struct Direct<T> {
    pub call: DirectCall<T>,
    pub output: fn(T) -> Option<Output>,
}

impl<T: Send + 'static> DirectWork for Direct<T> {
    fn handle(&self) -> DirectHandle {
        self.call.handle()
    }

    fn start(self: Box<Self>, done: Box<dyn FnOnce(Res<Option<Output>>) + Send>) {
        let output = self.output;
        // In flight until it completes: the runtime must stay driven for it.
        let tracked = driver().track();
        self.call.start(handle(), move |r| {
            let _tracked = tracked;
            // A panic turning the outcome into C data becomes the call's `internal` failure.
            let out =
                std::panic::catch_unwind(AssertUnwindSafe(|| r.map(output).map_err(Failure::from)))
                    .unwrap_or_else(|p| Err(panic_failure(p)));
            done(out)
        });
    }
}

/// Runs `call` on the runtime and waits for it on this thread.
pub(crate) fn block(call: Call) -> Res<Option<Output>> {
    if Handle::try_current().is_ok() {
        return Err(Failure::invalid(
            "a blocking felix call was made on a felix runtime thread (from a callback); \
             use a _start call or felix_subscription_try_next there",
        ));
    }
    // Driven on this thread when nobody else drives: no thread hop at all.
    driver().block_on(run(call))
}

pub(crate) async fn run(call: Call) -> Res<Option<Output>> {
    AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(panic_failure(p)))
}
