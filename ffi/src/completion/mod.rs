//! Completion queues: how calls started with `_start` come back.
//!
//! Three ways to call:
//! - **blocking** (`felix_cache_get`, ...): the calling thread waits for the result, driving the
//!   runtime itself: the request is sent and the reply read on the caller's thread;
//! - **start + completion queue** (`felix_cache_get_start(..., queue, token)`): returns at once;
//!   when the call finishes, a [`FelixCompletion`] `(token, status, result, error)` is pushed to
//!   the [`FelixCompletionQueue`]. One thread draining the queue with
//!   `felix_completion_queue_wait` serves any number of calls in flight, so a Go program with
//!   1,000 goroutines calling Felix has one OS thread blocked in C, not 1,000;
//! - **start + wait for it** (a deferred queue, `felix_completion_queue_wait_one`): runs like a
//!   blocking call on the waiting thread, and another thread can cancel it by token (how Go
//!   runs a call with a cancellable `context.Context` when no other call is in flight).
//!
//! A thread waiting in `felix_completion_queue_wait` while calls are in flight drives the
//! runtime itself ([`felix_client::Driver::block_on_returning`]), so the replies are read and the completions
//! queued on the thread that takes them. On a **driven** queue
//! (`felix_completion_queue_new_driven`) calls are also started by that thread: those started
//! while it was away (handing completions out) start together when it comes back, so their
//! requests share a packet; and they run inside its wait (polled there, not spawned as a task
//! each, which cost more than the call's own work). That is how Go serves many goroutines: one
//! thread in C both sends and receives, and no other thread needs waking for either. Between
//! parts of a batch it hands out, that thread calls `felix_completion_queue_poll` (the runtime
//! driven without sleeping) so that the calls of the goroutines already served leave at once and
//! the broker works on them while the others run.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::ptr;
use std::sync::{Arc, OnceLock, Weak};

use felix_client::sync::{Condvar, Mutex};
use felix_client::{DirectHandle, Wake};
use futures::stream::FuturesUnordered;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};

use crate::bytes::{FelixResult, Output};
use crate::error::{guard, quiet, Failure, FelixError, FelixStatus, Res};
use crate::runtime::{driver, run, Call, DirectWork, Work};

mod wait;
pub use wait::*;

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

/// A call started on a queue and not yet completed.
struct Entry {
    /// Cancels the call (taken by the first `felix_completion_queue_cancel`).
    cancel: Option<Cancel>,
    /// A deferred call not yet claimed by `felix_completion_queue_wait_one`.
    deferred: Option<Held>,
}

/// How a call is cancelled.
enum Cancel {
    /// A future's: it ends when this fires (or is dropped).
    Chan(oneshot::Sender<()>),
    /// A direct call not sent yet (its serial, see `QueueState::serial`): taking it stops the
    /// send.
    Unsent(u64),
    /// A direct call's, once sent.
    Direct(DirectHandle),
}

impl Cancel {
    fn fire(self) {
        match self {
            Cancel::Chan(tx) => {
                let _ = tx.send(());
            }
            Cancel::Direct(h) => {
                h.cancel();
            }
            Cancel::Unsent(_) => {}
        }
    }
}

/// A call not yet started: a future, or a direct call with its token and serial.
enum Held {
    Future(u64, Call, oneshot::Receiver<()>),
    Direct(u64, u64, Box<dyn DirectWork>),
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Done>,
    pending: HashMap<u64, Entry>,
    closed: bool,
    /// Numbers the direct calls, so that recording one as sent cannot touch the entry of a
    /// later call that reuses its token.
    serial: u64,
    /// Threads asleep on `Queue::cv` (a completion skips the futex call when there are none).
    sleepers: usize,
    /// A driven queue's calls not yet started: the next thread to wait starts them.
    unstarted: Vec<Held>,
    /// A thread drives the runtime in `felix_completion_queue_wait` on this queue and sleeps
    /// until `Queue::drivers` is notified (a start must wake it to have its call started).
    driver_asleep: bool,
}

/// Calls in progress on a driven queue.
type Running = FuturesUnordered<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>;

/// When a queue's calls run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// At once, on the runtime.
    #[default]
    Spawned,
    /// One at a time, on the thread that waits for it (`felix_completion_queue_wait_one`).
    Deferred,
    /// Together, on the thread that waits on the queue (`felix_completion_queue_wait`).
    Driven,
}

#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    cv: Condvar,
    /// Wakes the threads that drive the runtime while they wait for a completion.
    drivers: Notify,
    /// A driven queue's calls started by a waiting thread: polled by the thread that waits on
    /// the queue, not spawned as a task each (which cost more than the call's own work).
    running: Mutex<Running>,
    kind: Kind,
    /// Socket pair behind `felix_completion_queue_fd`: a byte is written to `.0` when a
    /// completion lands in an empty queue; `.1` is the readable end handed out.
    signal: OnceLock<(UnixStream, UnixStream)>,
}

/// A queue of finished `_start` calls. Thread-safe: any thread may start calls on it, and any
/// number of threads may wait on it (each completion goes to one of them).
pub struct FelixCompletionQueue {
    inner: Arc<Queue>,
}

impl Queue {
    /// Queues a call's outcome and says when the caller must [`Queue::signal`] (and whether a
    /// thread sleeps on the condition variable).
    fn complete(&self, token: u64, r: Res<Option<Output>>) -> (Wake, bool) {
        let done = Done::new(token, r);
        let mut st = self.state.lock();
        st.pending.remove(&token);
        if st.closed {
            drop(st);
            done.free();
            return (Wake::No, false);
        }
        let was_empty = st.ready.is_empty();
        st.ready.push_back(done);
        (
            Wake::after_push(was_empty, !st.pending.is_empty()),
            st.sleepers > 0,
        )
    }

    /// Wakes a waiting thread and makes the queue's descriptor readable.
    fn signal(&self, sleepers: bool) {
        // A thread driving the runtime in `felix_completion_queue_wait` is woken without a
        // system call when the completion came from its own turn (the common case).
        self.drivers.notify_waiters();
        if sleepers {
            self.cv.notify_one();
        }
        if let Some((tx, _)) = self.signal.get() {
            // A full socket buffer means a wake-up is pending already: nothing is lost.
            let _ = (&*tx).write(&[1]);
        }
    }
}

/// Starts `call` on the runtime (or, on a deferred queue, records it for
/// `felix_completion_queue_wait_one`); its completion goes to `queue` under `token`.
///
/// # Safety
/// `queue` is NULL or a live queue.
pub(crate) unsafe fn start(
    queue: *const FelixCompletionQueue,
    token: u64,
    call: Res<Call>,
) -> Res<()> {
    // SAFETY: per the contract.
    unsafe { start_work(queue, token, call.map(Work::Future)) }
}

/// [`start`] for any [`Work`].
///
/// # Safety
/// `queue` is NULL or a live queue.
pub(crate) unsafe fn start_work(
    queue: *const FelixCompletionQueue,
    token: u64,
    work: Res<Work>,
) -> Res<()> {
    // SAFETY: per the contract.
    let q = unsafe { queue_arg(queue) }?;
    let work = work?;
    let mut st = q.state.lock();
    if st.closed {
        return Err(Failure::closed("completion queue"));
    }
    if st.pending.contains_key(&token) {
        return Err(Failure::invalid(format!(
            "token {token} is already in flight on this queue"
        )));
    }
    let (held, cancel) = match work {
        Work::Direct(d) => {
            st.serial += 1;
            let serial = st.serial;
            (Held::Direct(token, serial, d), Cancel::Unsent(serial))
        }
        Work::Future(call) => {
            let (cancel_tx, cancel_rx) = oneshot::channel();
            (
                Held::Future(token, call, cancel_rx),
                Cancel::Chan(cancel_tx),
            )
        }
    };
    let cancel = Some(cancel);
    if q.kind == Kind::Deferred {
        // It waits in its entry for `felix_completion_queue_wait_one`.
        let deferred = Some(held);
        st.pending.insert(token, Entry { cancel, deferred });
        return Ok(());
    }
    st.pending.insert(
        token,
        Entry {
            cancel,
            deferred: None,
        },
    );
    if q.kind == Kind::Driven {
        // Held for the queue's next waiter.
        st.unstarted.push(held);
        let wake = std::mem::take(&mut st.driver_asleep);
        drop(st);
        if wake {
            q.drivers.notify_waiters();
        }
        return Ok(());
    }
    drop(st);
    launch_held(&q, vec![held], None);
    Ok(())
}

/// Runs a started call on the runtime (a task of its own) and queues its completion.
fn launch(q: Arc<Queue>, token: u64, call: Call, cancel_rx: oneshot::Receiver<()>) {
    driver().spawn(finish_call(Arc::downgrade(&q), token, call, cancel_rx));
}

/// Runs a call, then queues its completion (dropped if the queue is gone: a driven queue's
/// running calls live in the queue, so they must not keep it alive).
async fn finish_call(q: Weak<Queue>, token: u64, call: Call, mut cancel_rx: oneshot::Receiver<()>) {
    // A call cancelled before it began must not run at all.
    let r = if matches!(
        cancel_rx.try_recv(),
        Err(oneshot::error::TryRecvError::Empty)
    ) {
        tokio::select! {
            biased;
            r = run(call) => r,
            _ = cancel_rx => Err(cancelled()),
        }
    } else {
        Err(cancelled())
    };
    let Some(q) = q.upgrade() else {
        return;
    };
    let (wake, sleepers) = q.complete(token, r);
    signal(q, wake, sleepers);
}

/// Starts held calls: futures into `set` (polled by the caller) or, without one, as tasks;
/// direct calls at once, except those cancelled while held, which complete as cancelled.
fn launch_held(q: &Arc<Queue>, calls: Vec<Held>, mut set: Option<&mut Running>) {
    // A direct call's cancel before it is sent finds nothing to cancel in the core: look for
    // taken cancels before starting (skip those calls) and after (cancel those now).
    let mut started = Vec::new();
    let gone: Vec<u64> = if calls.iter().any(|h| matches!(h, Held::Direct(..))) {
        let st = q.state.lock();
        calls
            .iter()
            .filter_map(|h| match h {
                Held::Direct(t, _, _) if st.cancelled_unsent(*t) => Some(*t),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    for h in calls {
        match h {
            Held::Future(token, call, cancel_rx) => match set.as_deref_mut() {
                Some(set) => set.push(Box::pin(finish_call(
                    Arc::downgrade(q),
                    token,
                    call,
                    cancel_rx,
                ))),
                None => launch(q.clone(), token, call, cancel_rx),
            },
            Held::Direct(token, _, d) if gone.contains(&token) => {
                drop(d);
                complete_direct(&Arc::downgrade(q), token, Err(cancelled()));
            }
            Held::Direct(token, serial, d) => {
                started.push((token, serial, d.handle()));
                let weak = Arc::downgrade(q);
                d.start(Box::new(move |r| complete_direct(&weak, token, r)));
            }
        }
    }
    if !started.is_empty() {
        let late: Vec<DirectHandle> = {
            let mut st = q.state.lock();
            started
                .into_iter()
                .filter_map(|(t, serial, h)| sent(&mut st, t, serial, h))
                .collect()
        };
        for h in late {
            h.cancel();
        }
    }
}

impl QueueState {
    /// Whether a direct call not sent yet was cancelled (its cancel taken) or its queue freed.
    fn cancelled_unsent(&self, token: u64) -> bool {
        self.pending.get(&token).is_none_or(|e| e.cancel.is_none())
    }
}

/// Records that a direct call was sent (its entry can now cancel it); gives its handle back
/// when it was cancelled meanwhile, to be cancelled now (outside the lock). Cancelling a call
/// that already finished does nothing, so a handle given back for an entry that is not this
/// call's any more is harmless; only this call's own `Unsent` entry is replaced.
fn sent(st: &mut QueueState, token: u64, serial: u64, h: DirectHandle) -> Option<DirectHandle> {
    let e = st.pending.get_mut(&token)?;
    match e.cancel {
        Some(Cancel::Unsent(s)) if s == serial => {
            e.cancel = Some(Cancel::Direct(h));
            None
        }
        Some(_) => None,
        None => Some(h),
    }
}

/// Queues a direct call's outcome (run by its callback, on whatever thread that runs).
fn complete_direct(q: &Weak<Queue>, token: u64, r: Res<Option<Output>>) {
    let Some(q) = q.upgrade() else {
        return; // the queue was freed: the outcome is dropped
    };
    let (wake, sleepers) = q.complete(token, r);
    signal(q, wake, sleepers);
}

/// Wakes `q`'s consumer as `wake` says. A wake-up after the turn (other completions of this
/// turn ride on it) is a task of its own, not an await in the completing call: a driven
/// queue's running calls are polled only while a thread drives them, and a poll's last turn
/// ends with them, so an awaiting call could be left unfinished for good (holding its queue).
fn signal(q: Arc<Queue>, wake: Wake, sleepers: bool) {
    match wake {
        Wake::No => {}
        Wake::Now => q.signal(sleepers),
        Wake::AfterTurn => match Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    tokio::task::yield_now().await;
                    q.signal(sleepers);
                });
            }
            Err(_) => q.signal(sleepers),
        },
    }
}

fn cancelled() -> Failure {
    Failure::new(felix_client::ErrorCode::Cancelled, "cancelled")
}

/// Borrows a queue argument.
///
/// # Safety
/// `queue` is NULL or live.
unsafe fn queue_arg(queue: *const FelixCompletionQueue) -> Res<Arc<Queue>> {
    if queue.is_null() {
        return Err(Failure::invalid("completion queue is NULL"));
    }
    // SAFETY: per the contract.
    Ok(unsafe { &*queue }.inner.clone())
}

/// Creates a completion queue. Release with `felix_completion_queue_free`.
#[no_mangle]
pub extern "C" fn felix_completion_queue_new() -> *mut FelixCompletionQueue {
    quiet(ptr::null_mut(), || new_queue(Kind::Spawned))
}

/// Creates a deferred completion queue: a call started on it does not run until a thread
/// waits for it with `felix_completion_queue_wait_one`, and then runs on that thread, which
/// drives the library's runtime itself while it waits (no hand-off between threads: the
/// lowest latency for "start one call, wait for it"). `felix_completion_queue_cancel` works as
/// on any queue, including from another thread while the call runs; a call cancelled before it
/// was waited for never runs. `felix_completion_queue_wait` is refused on it. Release with
/// `felix_completion_queue_free`.
#[no_mangle]
pub extern "C" fn felix_completion_queue_new_deferred() -> *mut FelixCompletionQueue {
    quiet(ptr::null_mut(), || new_queue(Kind::Deferred))
}

/// Creates a driven completion queue: calls started on it run when a thread waits on it with
/// `felix_completion_queue_wait` (a nonzero timeout), together and on that thread, which
/// drives the library's runtime while it waits. The requests of every call started since the
/// last wait leave in one packet and the replies are read on the waiting thread, with no
/// wake-up from another thread: the highest throughput for one thread serving many callers (how
/// the Go package runs concurrent calls). A call started while a thread waits wakes it to
/// start the call. The calls run inside the waiting thread's wait, not as tasks of their own:
/// with nobody waiting they are held, or make no progress, until a thread waits or polls
/// again (`felix_completion_queue_poll` starts them and drives the runtime on its thread
/// without sleeping; it and a wait with `timeout_ms` 0 start held calls other than cache
/// get/put/delete as tasks, which the background thread runs to completion by themselves).
/// Release with `felix_completion_queue_free`.
#[no_mangle]
pub extern "C" fn felix_completion_queue_new_driven() -> *mut FelixCompletionQueue {
    quiet(ptr::null_mut(), || new_queue(Kind::Driven))
}

fn new_queue(kind: Kind) -> *mut FelixCompletionQueue {
    Box::into_raw(Box::new(FelixCompletionQueue {
        inner: Arc::new(Queue {
            kind,
            ..Queue::default()
        }),
    }))
}

/// Stores in `*fd_out` a file descriptor that becomes readable when completions are waiting on
/// `queue`, for event loops (epoll, kqueue, libuv, Go's netpoller) that would rather not block
/// a thread in `felix_completion_queue_wait`. When it is readable: read and discard its bytes,
/// then call `felix_completion_queue_wait` with `timeout_ms` 0 until it returns fewer than
/// `max` completions. Completions already waiting when the descriptor is first asked for do not
/// make it readable: drain once after setting it up. The descriptor is non-blocking and owned
/// by the queue (closed by `felix_completion_queue_free`): do not close it. Not available on a
/// deferred queue.
///
/// # Safety
/// `queue` is NULL or live; `fd_out` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_completion_queue_fd(
    queue: *const FelixCompletionQueue,
    fd_out: *mut std::ffi::c_int,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if fd_out.is_null() {
            return Err(Failure::invalid("fd_out must be non-NULL"));
        }
        // SAFETY: per the contract.
        let q = unsafe { queue_arg(queue) }?;
        if q.kind == Kind::Deferred {
            return Err(Failure::invalid(
                "a deferred queue has no completions to wait for: use felix_completion_queue_wait_one",
            ));
        }
        let (_, rx) = match q.signal.get() {
            Some(s) => s,
            None => {
                let (tx, rx) = UnixStream::pair()
                    .and_then(|(tx, rx)| {
                        tx.set_nonblocking(true)?;
                        rx.set_nonblocking(true)?;
                        Ok((tx, rx))
                    })
                    .map_err(|e| Failure::new(felix_client::ErrorCode::Internal, e.to_string()))?;
                let _ = q.signal.set((tx, rx));
                q.signal.get().expect("just set")
            }
        };
        // SAFETY: per the contract.
        unsafe { *fd_out = rx.as_raw_fd() };
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
        // SAFETY: per the contract.
        let q = unsafe { queue_arg(queue) }?;
        let cancel = q
            .state
            .lock()
            .pending
            .get_mut(&token)
            .and_then(|e| e.cancel.take());
        if let Some(c) = cancel {
            c.fire();
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
            st.unstarted.clear();
            (
                std::mem::take(&mut st.ready),
                std::mem::take(&mut st.pending),
            )
        };
        q.inner.cv.notify_all();
        q.inner.drivers.notify_waiters();
        // Dropping a future's sender cancels it; a direct call is cancelled by its handle.
        for (_, e) in pending {
            if let Some(Cancel::Direct(h)) = e.cancel {
                h.cancel();
            }
        }
        ready.into_iter().for_each(Done::free);
    })
}
