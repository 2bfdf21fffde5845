//! The one tokio runtime of the library, and the completion queue.
//!
//! All handles share a single runtime started on first use on a dedicated background thread
//! named `felix-runtime`. The flavour is chosen by `FELIX_FFI_RUNTIME`: `current-thread` (the
//! default: one thread runs every connection and call, which measured the lowest latency on
//! small machines, as for the broker) or `multi-thread` (a work-stealing pool of
//! `FELIX_FFI_WORKERS` threads, default 2, for throughput on many cores).
//!
//! Two ways to call:
//! - **blocking** (`felix_cache_get`, ...): the calling thread waits for the result; simple for C;
//! - **start + completion queue** (`felix_cache_get_start(..., queue, token)`): returns at once;
//!   when the call finishes, a [`FelixCompletion`] `(token, status, result, error)` is pushed to
//!   the [`FelixCompletionQueue`]. One thread draining the queue with
//!   `felix_completion_queue_wait` serves any number of calls in flight, so a Go program with
//!   1,000 goroutines calling Felix has one OS thread blocked in C, not 1,000.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use parking_lot::{Condvar, Mutex};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::bytes::{FelixResult, Output};
use crate::error::{guard, panic_failure, quiet, Failure, FelixError, FelixStatus, Res};

static RUNTIME: OnceLock<Handle> = OnceLock::new();

/// The shared runtime, started on first use.
pub(crate) fn handle() -> &'static Handle {
    RUNTIME.get_or_init(start_runtime)
}

fn start_runtime() -> Handle {
    let multi = std::env::var("FELIX_FFI_RUNTIME").is_ok_and(|v| v == "multi-thread");
    let workers = std::env::var("FELIX_FFI_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2usize)
        .max(1);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("felix-runtime".into())
        .spawn(move || {
            let mut b = if multi {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(workers).thread_name("felix-worker");
                b
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            let rt = b
                .enable_all()
                .build()
                .expect("felix: cannot build the tokio runtime");
            let _ = tx.send(rt.handle().clone());
            // This thread drives the runtime (IO, timers, tasks) for the life of the process.
            rt.block_on(std::future::pending::<()>());
        })
        .expect("felix: cannot start the runtime thread");
    rx.recv().expect("felix: the runtime thread died")
}

/// Future type of every call: validated arguments already copied in.
pub(crate) type Call = std::pin::Pin<Box<dyn Future<Output = Res<Option<Output>>> + Send>>;

/// Runs `call` on the runtime and waits for it on this thread.
pub(crate) fn block(call: Call) -> Res<Option<Output>> {
    if Handle::try_current().is_ok() {
        return Err(Failure::invalid(
            "a blocking felix call was made on a felix runtime thread (from a callback); \
             use a _start call or felix_subscription_try_next there",
        ));
    }
    // Polled here, not on the runtime: one thread hop each way instead of two.
    felix_client::block_on(handle(), run(call))
}

async fn run(call: Call) -> Res<Option<Output>> {
    AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(panic_failure(p)))
}

/// One finished call, as delivered by `felix_completion_queue_wait`.
#[repr(C)]
#[derive(Debug)]
pub struct FelixCompletion {
    /// The token given to the `_start` call.
    pub token: u64,
    /// Its status.
    pub status: FelixStatus,
    /// Owned result (NULL when the call produced none or failed): `felix_result_free`.
    pub result: *mut FelixResult,
    /// Owned error (NULL on success): `felix_error_free`.
    pub error: *mut FelixError,
}

struct Done(FelixCompletion);
// SAFETY: the pointers are owned results/errors, handed from thread to thread whole.
unsafe impl Send for Done {}

impl Done {
    fn new(token: u64, r: Res<Option<Output>>) -> Self {
        Done(match r {
            Ok(o) => FelixCompletion {
                token,
                status: FelixStatus::Ok,
                result: o.map_or(ptr::null_mut(), Output::into_raw),
                error: ptr::null_mut(),
            },
            Err(f) => FelixCompletion {
                token,
                status: f.status(),
                result: ptr::null_mut(),
                error: f.into_raw(),
            },
        })
    }

    fn free(self) {
        // SAFETY: both were made by this library and are owned here.
        unsafe {
            crate::bytes::felix_result_free(self.0.result);
            crate::error::felix_error_free(self.0.error);
        }
    }
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Done>,
    pending: HashMap<u64, oneshot::Sender<()>>,
    closed: bool,
}

#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
}

/// A queue of finished `_start` calls. Thread-safe: any thread may start calls on it, and any
/// number of threads may wait on it (each completion goes to one of them).
pub struct FelixCompletionQueue {
    inner: Arc<Queue>,
}

impl Queue {
    fn complete(&self, token: u64, r: Res<Option<Output>>) {
        let done = Done::new(token, r);
        let mut st = self.state.lock();
        st.pending.remove(&token);
        if st.closed {
            drop(st);
            done.free();
            return;
        }
        st.ready.push_back(done);
        drop(st);
        self.cv.notify_one();
    }
}

/// Starts `call` on the runtime; its completion goes to `queue` under `token`.
///
/// # Safety
/// `queue` is NULL or a live queue.
pub(crate) unsafe fn start(
    queue: *const FelixCompletionQueue,
    token: u64,
    call: Res<Call>,
) -> Res<()> {
    if queue.is_null() {
        return Err(Failure::invalid("completion queue is NULL"));
    }
    // SAFETY: per the contract.
    let q = unsafe { &*queue }.inner.clone();
    let call = call?;
    let (cancel_tx, cancel_rx) = oneshot::channel();
    {
        let mut st = q.state.lock();
        if st.closed {
            return Err(Failure::closed("completion queue"));
        }
        if st.pending.contains_key(&token) {
            return Err(Failure::invalid(format!(
                "token {token} is already in flight on this queue"
            )));
        }
        st.pending.insert(token, cancel_tx);
    }
    handle().spawn(async move {
        let r = tokio::select! {
            biased;
            r = run(call) => r,
            _ = cancel_rx => Err(Failure::new(felix_client::ErrorCode::Cancelled, "cancelled")),
        };
        q.complete(token, r);
    });
    Ok(())
}

/// Creates a completion queue. Release with `felix_completion_queue_free`.
#[no_mangle]
pub extern "C" fn felix_completion_queue_new() -> *mut FelixCompletionQueue {
    quiet(ptr::null_mut(), || {
        Box::into_raw(Box::new(FelixCompletionQueue {
            inner: Arc::default(),
        }))
    })
}

/// Waits up to `timeout_ms` (negative: forever; 0: do not wait) for completions and moves up
/// to `max` of them into `out`, setting `*n_out` to how many (0 on timeout, which is
/// `FELIX_STATUS_OK`). The caller owns each completion's result and error. Returns
/// `FELIX_STATUS_CLOSED` once the queue was freed (waiters blocked at that moment are woken).
///
/// # Safety
/// `queue` is NULL or live; `out` is valid for `max` completions; `n_out` is valid.
#[no_mangle]
pub unsafe extern "C" fn felix_completion_queue_wait(
    queue: *const FelixCompletionQueue,
    out: *mut FelixCompletion,
    max: usize,
    timeout_ms: i32,
    n_out: *mut usize,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if queue.is_null() || out.is_null() || n_out.is_null() || max == 0 {
            return Err(Failure::invalid(
                "queue, out and n_out must be non-NULL, max > 0",
            ));
        }
        // SAFETY: per the contract.
        unsafe { *n_out = 0 };
        // SAFETY: per the contract.
        let q = unsafe { &*queue }.inner.clone();
        let deadline =
            (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        let mut st = q.state.lock();
        while st.ready.is_empty() {
            if st.closed {
                return Err(Failure::closed("completion queue"));
            }
            match deadline {
                None => q.cv.wait(&mut st),
                Some(d) => {
                    if q.cv.wait_until(&mut st, d).timed_out() {
                        break;
                    }
                }
            }
        }
        let n = st.ready.len().min(max);
        for i in 0..n {
            let Some(Done(c)) = st.ready.pop_front() else {
                break;
            };
            // SAFETY: `out` has room for `max` completions.
            unsafe { out.add(i).write(c) };
            // SAFETY: per the contract.
            unsafe { *n_out = i + 1 };
        }
        Ok(())
    })
}

/// Cancels the call started with `token`: it completes promptly with `FELIX_STATUS_CANCELLED`
/// (or with its real outcome if it finished first). Exactly one completion is delivered per
/// started call either way. Unknown tokens are a no-op.
///
/// # Safety
/// `queue` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn felix_completion_queue_cancel(
    queue: *const FelixCompletionQueue,
    token: u64,
) -> FelixStatus {
    guard(ptr::null_mut(), || {
        if queue.is_null() {
            return Err(Failure::invalid("completion queue is NULL"));
        }
        // SAFETY: per the contract.
        let q = unsafe { &*queue };
        if let Some(tx) = q.inner.state.lock().pending.remove(&token) {
            let _ = tx.send(());
        }
        Ok(())
    })
}

/// Frees a queue: calls still in flight are cancelled and their completions dropped,
/// undelivered completions are freed, and threads blocked in `felix_completion_queue_wait` return
/// `FELIX_STATUS_CLOSED`. NULL is a no-op.
///
/// # Safety
/// `queue` is NULL or a queue from `felix_completion_queue_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn felix_completion_queue_free(queue: *mut FelixCompletionQueue) {
    quiet((), || {
        if queue.is_null() {
            return;
        }
        // SAFETY: per the contract.
        let q = unsafe { Box::from_raw(queue) };
        let (ready, pending) = {
            let mut st = q.inner.state.lock();
            st.closed = true;
            (
                std::mem::take(&mut st.ready),
                std::mem::take(&mut st.pending),
            )
        };
        q.inner.cv.notify_all();
        drop(pending); // dropping the senders cancels the calls
        ready.into_iter().for_each(Done::free);
    })
}
