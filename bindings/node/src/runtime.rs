//! The one place where Rust futures meet JavaScript promises.
//!
//! - **Runtime**: the client core runs on a dedicated tokio runtime thread, not on napi's
//!   shared multi-thread runtime: one current-thread runtime (like `felix-bench`) keeps every
//!   wake-up of a request (the caller's task, the connection driver, the reply) on one core.
//!   `FELIX_NODE_WORKER_THREADS=N` (N > 1) switches to a multi-thread runtime for measurement.
//! - **Promises**: a call creates its promise on the JavaScript thread, spawns the future on
//!   the runtime and returns at once; the event loop never waits. A finished future pushes its
//!   outcome onto this thread's completion queue and, when the queue was empty, signals one
//!   long-lived thread-safe function; its callback drains every queued outcome in one turn of
//!   the event loop. So there is no thread-safe function per call (the cost of napi's own
//!   async functions), and under load many replies settle per wake-up.
//! - **Liveness**: the thread-safe function is referenced (keeps Node alive) only while some
//!   promise is pending, so an idle client, or an open subscription nobody waits on, never
//!   holds the process open, and pending waits end when the client is closed.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::future::Future;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use felix_client::sync::Mutex;
use felix_client::Wake;
use napi::{sys, Env, Status};
use tokio::sync::Notify;

use crate::error::{self, Failure};

/// Result of turning an outcome into a JavaScript value (`Err` rejects the promise).
pub(crate) type Settled = Result<sys::napi_value, Failure>;

/// Turns a finished call's outcome into JavaScript, on the JavaScript thread.
type Settle = Box<dyn FnOnce(sys::napi_env) -> Settled + Send>;

/// The runtime every client of this process shares.
pub(crate) fn handle() -> &'static tokio::runtime::Handle {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let workers = std::env::var("FELIX_NODE_WORKER_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        if workers > 1 {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("felix-rt")
                .enable_all()
                .build()
                .expect("felix: cannot start the tokio runtime");
            let h = rt.handle().clone();
            // The runtime lives as long as the process.
            std::mem::forget(rt);
            return h;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("felix: cannot start the tokio runtime");
        let h = rt.handle().clone();
        std::thread::Builder::new()
            .name("felix-rt".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("felix: cannot start the runtime thread");
        h
    })
}

/// A raw pointer that may cross threads: only ever dereferenced on the JavaScript thread.
#[derive(Clone, Copy)]
struct SendPtr(*mut c_void);
// SAFETY: the pointers wrapped here (napi deferreds and the thread-safe function) are only
// used on the JavaScript thread, or through napi calls documented as thread-safe.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

struct Completion {
    deferred: SendPtr,
    settle: Settle,
}

/// State shared between the runtime thread (producers) and the JavaScript thread.
struct Shared {
    queue: Mutex<Vec<Completion>>,
    /// Calls submitted and not yet pushed.
    in_flight: AtomicUsize,
    tsfn: SendPtr,
}

impl Shared {
    /// Queues an outcome and says when the caller must [`Shared::signal`]: at once when no other
    /// call is in flight, else after this runtime turn, so the calls completed by the same
    /// reply packet settle in one turn of the event loop.
    fn push(&self, c: Completion) -> Wake {
        let others = self.in_flight.fetch_sub(1, Ordering::AcqRel) > 1;
        let mut q = self.queue.lock();
        q.push(c);
        Wake::after_push(q.len() == 1, others)
    }

    /// Wakes the JavaScript thread to settle what is queued.
    fn signal(&self) {
        // SAFETY: the thread-safe function lives as long as the environment; calling it from
        // any thread is what it is for.
        unsafe {
            sys::napi_call_threadsafe_function(
                self.tsfn.0 as sys::napi_threadsafe_function,
                ptr::null_mut(),
                sys::ThreadsafeFunctionCallMode::nonblocking,
            );
        }
    }
}

/// Per-environment dispatcher (one per JavaScript thread: the main thread or a worker).
struct Dispatcher {
    shared: Arc<Shared>,
    pending: Cell<usize>,
    error_class: Cell<sys::napi_ref>,
    /// `queueMicrotask` and the native `flush` function it is given.
    queue_microtask: sys::napi_ref,
    flush: sys::napi_ref,
    flush_queued: Cell<bool>,
}

thread_local! {
    static DISPATCHER: RefCell<Option<&'static Dispatcher>> = const { RefCell::new(None) };
}

fn dispatcher(env: sys::napi_env) -> napi::Result<&'static Dispatcher> {
    DISPATCHER.with(|d| {
        if let Some(d) = *d.borrow() {
            return Ok(d);
        }
        let created: &'static Dispatcher = Box::leak(Box::new(Dispatcher::new(env)?));
        *d.borrow_mut() = Some(created);
        Ok(created)
    })
}

fn check(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            Status::from(status),
            "napi call failed".to_owned(),
        ))
    }
}

impl Dispatcher {
    fn new(env: sys::napi_env) -> napi::Result<Self> {
        let mut name = ptr::null_mut();
        let mut tsfn = ptr::null_mut();
        let label = "felix-client";
        // SAFETY: called on the JavaScript thread with its live environment.
        unsafe {
            check(sys::napi_create_string_utf8(
                env,
                label.as_ptr().cast(),
                label.len() as isize,
                &mut name,
            ))?;
            check(sys::napi_create_threadsafe_function(
                env,
                ptr::null_mut(),
                ptr::null_mut(),
                name,
                0,
                1,
                ptr::null_mut(),
                None,
                ptr::null_mut(),
                Some(drain),
                &mut tsfn,
            ))?;
            check(sys::napi_unref_threadsafe_function(env, tsfn))?;
        }
        let mut global = ptr::null_mut();
        let mut qm = ptr::null_mut();
        let mut flush_fn = ptr::null_mut();
        let mut queue_microtask = ptr::null_mut();
        let mut flush = ptr::null_mut();
        // SAFETY: JavaScript thread, live environment.
        unsafe {
            check(sys::napi_get_global(env, &mut global))?;
            check(sys::napi_get_named_property(
                env,
                global,
                c"queueMicrotask".as_ptr(),
                &mut qm,
            ))?;
            check(sys::napi_create_function(
                env,
                c"felixFlush".as_ptr(),
                10,
                Some(flush_submissions),
                ptr::null_mut(),
                &mut flush_fn,
            ))?;
            check(sys::napi_create_reference(env, qm, 1, &mut queue_microtask))?;
            check(sys::napi_create_reference(env, flush_fn, 1, &mut flush))?;
        }
        Ok(Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                tsfn: SendPtr(tsfn.cast()),
            }),
            pending: Cell::new(0),
            error_class: Cell::new(ptr::null_mut()),
            queue_microtask,
            flush,
            flush_queued: Cell::new(false),
        })
    }

    fn hold(&self, env: sys::napi_env) {
        let n = self.pending.get();
        if n == 0 {
            // SAFETY: JavaScript thread, live environment.
            unsafe {
                sys::napi_ref_threadsafe_function(env, self.shared.tsfn.0.cast());
            }
        }
        self.pending.set(n + 1);
    }

    /// Wakes the runtime for the calls submitted in this turn once the current microtasks
    /// (typically every continuation of one batch of replies) have run, so that a burst of
    /// calls reaches the runtime, and the wire, together.
    fn schedule_flush(&self, env: sys::napi_env) {
        if self.flush_queued.replace(true) {
            return;
        }
        // SAFETY: JavaScript thread, live environment; both references are held by `self`.
        let queued = unsafe {
            let mut qm = ptr::null_mut();
            let mut f = ptr::null_mut();
            let mut undefined = ptr::null_mut();
            sys::napi_get_reference_value(env, self.queue_microtask, &mut qm);
            sys::napi_get_reference_value(env, self.flush, &mut f);
            sys::napi_get_undefined(env, &mut undefined);
            sys::napi_call_function(env, undefined, qm, 1, &f, ptr::null_mut())
                == sys::Status::napi_ok
        };
        if !queued {
            // No microtask queue (environment shutting down): wake the runtime at once.
            self.flush_queued.set(false);
            submissions().notify.notify_one();
        }
    }

    fn release(&self, env: sys::napi_env, count: usize) {
        let n = self.pending.get().saturating_sub(count);
        self.pending.set(n);
        if n == 0 {
            // SAFETY: JavaScript thread, live environment.
            unsafe {
                sys::napi_unref_threadsafe_function(env, self.shared.tsfn.0.cast());
            }
        }
    }
}

/// The microtask queued by `schedule_flush`: wakes the runtime for the submitted calls.
unsafe extern "C" fn flush_submissions(
    env: sys::napi_env,
    _info: sys::napi_callback_info,
) -> sys::napi_value {
    if let Ok(d) = dispatcher(env) {
        d.flush_queued.set(false);
    }
    submissions().notify.notify_one();
    ptr::null_mut()
}

/// The thread-safe function's callback: settles every queued outcome.
unsafe extern "C" fn drain(
    env: sys::napi_env,
    _js_cb: sys::napi_value,
    _context: *mut c_void,
    _data: *mut c_void,
) {
    if env.is_null() {
        return; // the environment is shutting down
    }
    let Ok(d) = dispatcher(env) else { return };
    let batch = std::mem::take(&mut *d.shared.queue.lock());
    let count = batch.len();
    for c in batch {
        let mut scope = ptr::null_mut();
        // SAFETY: JavaScript thread, inside a napi callback; the deferred came from
        // `napi_create_promise` on this environment and is settled exactly once.
        unsafe {
            sys::napi_open_handle_scope(env, &mut scope);
            let deferred = c.deferred.0 as sys::napi_deferred;
            match (c.settle)(env) {
                Ok(v) => {
                    sys::napi_resolve_deferred(env, deferred, v);
                }
                Err(f) => {
                    let e = make_error(env, d, &f);
                    sys::napi_reject_deferred(env, deferred, e);
                }
            }
            sys::napi_close_handle_scope(env, scope);
        }
    }
    d.release(env, count);
}

/// Builds a `FelixError` (the registered class) or, before registration, a plain `Error`
/// with `code` and `retryable`.
///
/// # Safety
/// JavaScript thread, live environment.
unsafe fn make_error(env: sys::napi_env, d: &Dispatcher, f: &Failure) -> sys::napi_value {
    let mut msg = ptr::null_mut();
    let mut code = ptr::null_mut();
    let mut retryable = ptr::null_mut();
    let mut out = ptr::null_mut();
    sys::napi_create_string_utf8(
        env,
        f.message.as_ptr().cast(),
        f.message.len() as isize,
        &mut msg,
    );
    sys::napi_create_string_utf8(
        env,
        f.code.as_ptr().cast(),
        f.code.len() as isize,
        &mut code,
    );
    sys::napi_get_boolean(env, f.retryable, &mut retryable);
    let class = d.error_class.get();
    if !class.is_null() {
        let mut ctor = ptr::null_mut();
        sys::napi_get_reference_value(env, class, &mut ctor);
        let args = [msg, code, retryable];
        if sys::napi_new_instance(env, ctor, args.len(), args.as_ptr(), &mut out)
            == sys::Status::napi_ok
        {
            return out;
        }
    }
    sys::napi_create_error(env, code, msg, &mut out);
    sys::napi_set_named_property(env, out, c"code".as_ptr(), code);
    sys::napi_set_named_property(env, out, c"retryable".as_ptr(), retryable);
    out
}

/// Registers the class rejections are made of: `new Class(message, code, retryable)`.
pub(crate) fn set_error_class(env: sys::napi_env, ctor: sys::napi_value) -> napi::Result<()> {
    let d = dispatcher(env)?;
    let mut r = ptr::null_mut();
    // SAFETY: JavaScript thread, live environment; `ctor` is a value of this call.
    unsafe { check(sys::napi_create_reference(env, ctor, 1, &mut r))? };
    let old = d.error_class.replace(r);
    if !old.is_null() {
        // SAFETY: `old` was created by `napi_create_reference` above.
        unsafe { sys::napi_delete_reference(env, old) };
    }
    Ok(())
}

/// Throws (synchronously) a `FelixError` for `f`; returns the error to propagate.
pub(crate) fn throw(env: sys::napi_env, f: Failure) -> napi::Error {
    if let Ok(d) = dispatcher(env) {
        // SAFETY: JavaScript thread, live environment.
        unsafe {
            let e = make_error(env, d, &f);
            sys::napi_throw(env, e);
        }
    }
    // napi-rs does not throw again while an exception is pending.
    napi::Error::new(Status::PendingException, f.message)
}

/// Runs `fut` on the runtime and returns a promise of its outcome, converted by `to_js` on
/// the JavaScript thread.
pub(crate) fn promise<T, F>(
    env: &Env,
    fut: F,
    to_js: fn(sys::napi_env, T) -> Settled,
) -> napi::Result<sys::napi_value>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Failure>> + Send + 'static,
{
    let raw = env.raw();
    let d = dispatcher(raw)?;
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: JavaScript thread, live environment.
    unsafe { check(sys::napi_create_promise(raw, &mut deferred, &mut promise))? };
    d.hold(raw);
    let shared = d.shared.clone();
    shared.in_flight.fetch_add(1, Ordering::AcqRel);
    let deferred = SendPtr(deferred.cast());
    let first = submit(Box::pin(async move {
        let out = fut.await;
        shared
            .push(Completion {
                deferred,
                settle: Box::new(move |env| to_js(env, out?)),
            })
            .signal(|| shared.signal())
            .await;
    }));
    if first {
        if d.pending.get() == 1 {
            // The only call in flight: nothing will join it, wake the runtime now.
            submissions().notify.notify_one();
        } else {
            d.schedule_flush(raw);
        }
    }
    Ok(promise)
}

type Job = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Calls waiting to be spawned on the runtime. Waking the runtime thread costs a system call
/// and a thread wake-up, so under load it is woken once per burst: the call that finds the
/// queue empty queues a microtask that wakes it after the calls of the same turn (typically
/// the continuations of one batch of replies) joined the queue, which also lets the core
/// put them on the wire together. A lone call (nothing else in flight) wakes it at once.
struct Submissions {
    jobs: Mutex<Vec<Job>>,
    notify: Notify,
}

fn submissions() -> &'static Submissions {
    static SUBMISSIONS: OnceLock<&'static Submissions> = OnceLock::new();
    SUBMISSIONS.get_or_init(|| {
        let s: &'static Submissions = Box::leak(Box::new(Submissions {
            jobs: Mutex::new(Vec::new()),
            notify: Notify::new(),
        }));
        handle().spawn(async move {
            loop {
                s.notify.notified().await;
                let jobs = std::mem::take(&mut *s.jobs.lock());
                for j in jobs {
                    tokio::spawn(j);
                }
            }
        });
        s
    })
}

/// Queues a job; true when the queue was empty (the caller must see that the runtime is
/// woken).
fn submit(job: Job) -> bool {
    let mut q = submissions().jobs.lock();
    q.push(job);
    q.len() == 1
}

/// A promise rejected at once with `f` (argument errors found before any I/O).
pub(crate) fn rejected(env: &Env, f: Failure) -> napi::Result<sys::napi_value> {
    promise::<(), _>(env, async move { Err(f) }, |_, _| unreachable!())
}

/// Cancellation shared between JavaScript (an `AbortSignal`, `close()`) and running futures.
#[derive(Default)]
pub(crate) struct Cancel {
    fired: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Resolves once [`Cancel::fire`] was called (at once if it already was).
    pub(crate) async fn fired(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_fired() {
            return;
        }
        notified.await;
    }
}

/// Runs `fut` unless `cancel` fires first (then `cancelled`).
pub(crate) async fn cancellable<T>(
    cancel: Option<Arc<Cancel>>,
    fut: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match cancel {
        None => fut.await,
        Some(c) => tokio::select! {
            r = fut => r,
            _ = c.fired() => Err(error::cancelled()),
        },
    }
}
