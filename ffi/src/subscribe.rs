//! Subscriptions: a bounded buffer of events, pulled with a timeout, without waiting, or
//! through a completion queue; an optional wake callback integrates with event loops.
//!
//! A pump task on the runtime moves events from the core subscription into a buffer of
//! `subscription_buffer` events; when it is full the pump stops reading, which pushes back to
//! the broker (the stream's full policy applies there). Each event is an item with `payload`,
//! `text` = its stream, `offset` (when `present`).
//!
//! Gaps (events lost across a reconnect, or a broker restart that recreated the stream's log)
//! wait in the buffer in order: a batch of events never spans one, and a gap moves to the list
//! `felix_subscription_take_gaps` reads when the batch after it is taken. So the gaps taken
//! right after a batch precede its first event.
//!
//! Event-loop integration: `felix_subscription_set_wake(sub, cb, user_data)`; `cb(user_data)`
//! runs on a Felix runtime thread when the buffer goes from empty to non-empty or the
//! subscription ends. It must not block and must not make blocking Felix calls; it typically
//! writes to an eventfd/pipe or posts to the loop, which then drains with
//! `felix_subscription_try_next`.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use felix_client::sync::{Condvar, Mutex, ReentrantMutex};
use felix_client::{Event, Start, Subscription};
use tokio::sync::Notify;

use crate::bytes::{store, FelixBytes, FelixResult, ItemData, Output};
use crate::client::{live, FelixClient};
use crate::completion::{start, FelixCompletionQueue};
use crate::error::{guard, quiet, Failure, FelixError, FelixStatus, Res};
use crate::runtime::{block, handle, Call};

/// Where a subscription starts.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FelixStart {
    /// Only events published from now on.
    Latest = 0,
    /// The oldest event the broker still holds.
    Earliest = 1,
    /// The given offset.
    Offset = 2,
}

/// Wake callback: `user_data` as given to `felix_subscription_set_wake`.
pub type FelixWakeFn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

#[derive(Clone, Copy)]
struct Wake(unsafe extern "C" fn(*mut c_void), *mut c_void);
// SAFETY: the caller promises `user_data` may be used from the runtime thread.
unsafe impl Send for Wake {}

/// What waits in a subscription's buffer, in order.
enum Entry {
    Event(Res<Event>),
    Gap(ItemData),
}

#[derive(Default)]
struct Buf {
    events: VecDeque<Entry>,
    /// Gaps reached by `take`, for `felix_subscription_take_gaps`.
    gaps: Vec<ItemData>,
    ended: bool,
    closed: bool,
}

struct Shared {
    buf: Mutex<Buf>,
    cap: usize,
    /// Blocking waiters.
    cv: Condvar,
    /// Async waiters (`_start` calls).
    ready: Notify,
    /// The pump waits here for room.
    room: Notify,
    wake: ReentrantMutex<std::cell::Cell<Option<Wake>>>,
}

/// A live subscription. Thread-safe. Release with `felix_subscription_free`.
pub struct FelixSubscription {
    shared: Arc<Shared>,
    pump: tokio::task::AbortHandle,
}

impl Shared {
    fn signal(&self) {
        self.cv.notify_all();
        self.ready.notify_waiters();
    }

    fn call_wake(&self) {
        let g = self.wake.lock();
        if let Some(Wake(f, data)) = g.get() {
            // SAFETY: the callback and its data were registered together by the caller.
            unsafe { f(data) };
        }
    }

    /// Takes up to `max` buffered events; `Ok(None)` when empty and still live.
    fn take(&self, max: usize) -> Res<Option<Output>> {
        let mut b = self.buf.lock();
        if b.closed {
            return Err(Failure::closed("subscription"));
        }
        let mut items = Vec::new();
        let mut popped = false;
        while items.len() < max {
            // A batch ends before an error and before a gap (which must be seen between the
            // events around it).
            match b.events.front() {
                Some(Entry::Event(Err(_)) | Entry::Gap(_)) if !items.is_empty() => break,
                None => break,
                _ => {}
            }
            popped = true;
            match b.events.pop_front() {
                Some(Entry::Event(Ok(e))) => items.push(event_item(e)),
                Some(Entry::Gap(g)) => b.gaps.push(g),
                Some(Entry::Event(Err(f))) => {
                    drop(b);
                    self.room.notify_one();
                    return Err(f);
                }
                None => break,
            }
        }
        if popped && items.is_empty() {
            self.room.notify_one();
        }
        if !items.is_empty() {
            drop(b);
            self.room.notify_one();
            return Ok(Output::items(items));
        }
        if b.ended {
            return Err(Failure::closed("subscription (it ended)"));
        }
        Ok(None)
    }
}

fn event_item(e: Event) -> ItemData {
    ItemData {
        payload: e.payload,
        text: Some(e.stream),
        offset: e.offset.unwrap_or(0),
        present: e.offset.is_some(),
        ..Default::default()
    }
}

async fn pump(shared: Arc<Shared>, mut sub: Subscription) {
    loop {
        loop {
            let room = shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let b = shared.buf.lock();
                if b.closed {
                    return;
                }
                if b.events.len() < shared.cap {
                    break;
                }
            }
            room.await;
        }
        let next = sub.next().await;
        // Gaps taken right after an event precede it (see `felix_client::Subscription`).
        let gaps = sub.take_gaps();
        let was_empty = {
            let mut b = shared.buf.lock();
            let was_empty = b.events.is_empty();
            b.events.extend(gaps.into_iter().map(|g| {
                Entry::Gap(ItemData {
                    text: Some(g.stream.into()),
                    offset: g.from,
                    end: g.to,
                    present: g.reset,
                    ..Default::default()
                })
            }));
            match next {
                Some(r) => b.events.push_back(Entry::Event(r.map_err(Failure::from))),
                None => b.ended = true,
            }
            was_empty || b.ended
        };
        shared.signal();
        if was_empty {
            shared.call_wake();
        }
        if shared.buf.lock().ended {
            return;
        }
    }
}

unsafe fn subscribe_call(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    start_kind: u32,
    offset: u64,
) -> Res<Call> {
    let from = match start_kind {
        0 => Start::Latest,
        1 => Start::Earliest,
        2 => Start::Offset(offset),
        n => return Err(Failure::invalid(format!("unknown start {n}"))),
    };
    // SAFETY: forwarded from the export's contract.
    let (c, ns, st) = unsafe {
        (
            live(client)?.clone(),
            namespace.name("namespace")?,
            stream.name("stream")?,
        )
    };
    Ok(Box::pin(async move {
        let sub = c.subscribe(&ns, &st, from).await?;
        let shared = Arc::new(Shared {
            buf: Mutex::default(),
            cap: c.config().subscription_buffer.max(1),
            cv: Condvar::new(),
            ready: Notify::new(),
            room: Notify::new(),
            wake: ReentrantMutex::new(std::cell::Cell::new(None)),
        });
        let pump = tokio::spawn(pump(shared.clone(), sub)).abort_handle();
        Ok(Some(Output {
            subscription: Some(Box::new(FelixSubscription { shared, pump })),
            ..Default::default()
        }))
    }))
}

/// Subscribes to `namespace/stream` (wildcards `*`/`>` match several streams), blocking until
/// the broker accepted. `start` is a `FelixStart`; `offset` is used with
/// `FELIX_START_OFFSET`.
///
/// # Safety
/// `client` live; names valid for their lengths; `out` valid; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_subscribe(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    start: u32,
    offset: u64,
    out: *mut *mut FelixSubscription,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        // SAFETY: per the contract.
        unsafe { *out = ptr::null_mut() };
        // SAFETY: per the contract.
        let o = block(unsafe { subscribe_call(client, namespace, stream, start, offset) }?)?;
        let sub = o.and_then(|o| o.subscription);
        // SAFETY: per the contract.
        unsafe { *out = sub.map_or(ptr::null_mut(), Box::into_raw) };
        Ok(())
    })
}

/// Starts a subscribe; take the subscription from the completion's result with
/// `felix_result_take_subscription`.
///
/// # Safety
/// As `felix_subscribe`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_subscribe_start(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    start_kind: u32,
    offset: u64,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        let call = subscribe_call(client, namespace, stream, start_kind, offset);
        start(queue, token, call)
    })
}

unsafe fn shared<'a>(sub: *const FelixSubscription) -> Res<&'a Arc<Shared>> {
    // SAFETY: forwarded from the export's contract.
    unsafe { sub.as_ref() }
        .map(|s| &s.shared)
        .ok_or_else(|| Failure::invalid("subscription is NULL"))
}

/// Waits up to `timeout_ms` (negative: forever) for events on this thread and stores up to
/// `max` of them (at least 1) in `*out`. Fails with `FELIX_STATUS_TIMEOUT` when none came,
/// `FELIX_STATUS_CLOSED` once the subscription ended or was freed, or with the error that ended
/// it (e.g. `FELIX_STATUS_SLOW_CONSUMER`).
///
/// # Safety
/// `sub` live; `out` valid; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_subscription_next(
    sub: *const FelixSubscription,
    max: usize,
    timeout_ms: i64,
    out: *mut *mut FelixResult,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        // SAFETY: per the contract.
        unsafe { *out = ptr::null_mut() };
        // SAFETY: per the contract.
        let s = unsafe { shared(sub) }?.clone();
        let deadline =
            (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        loop {
            if let Some(o) = s.take(max.max(1))? {
                // SAFETY: per the contract.
                unsafe { store(out, Some(o)) };
                return Ok(());
            }
            let mut b = s.buf.lock();
            if !b.events.is_empty() || b.ended || b.closed {
                continue;
            }
            match deadline {
                None => s.cv.wait(&mut b),
                Some(d) => {
                    if s.cv.wait_until(&mut b, d).timed_out() && b.events.is_empty() {
                        return Err(Failure::new(
                            felix_client::ErrorCode::Timeout,
                            format!("no event within {timeout_ms} ms"),
                        ));
                    }
                }
            }
        }
    })
}

/// Stores up to `max` buffered events in `*out` without waiting; `*out` is NULL (status OK)
/// when none is buffered. Safe to call from the wake callback.
///
/// # Safety
/// `sub` live; `out` valid; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_subscription_try_next(
    sub: *const FelixSubscription,
    max: usize,
    out: *mut *mut FelixResult,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        // SAFETY: per the contract.
        unsafe {
            *out = ptr::null_mut();
            let o = shared(sub)?.take(max.max(1))?;
            store(out, o);
        }
        Ok(())
    })
}

/// Starts waiting for up to `max` events; completes on `queue` with them (or the error).
/// Cancel with `felix_completion_queue_cancel` (no event is lost by cancelling).
///
/// # Safety
/// `sub` and `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_subscription_next_start(
    sub: *const FelixSubscription,
    max: usize,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        // SAFETY: per the contract.
        let s = unsafe { shared(sub) }?.clone();
        let call: Call = Box::pin(async move {
            loop {
                let ready = s.ready.notified();
                tokio::pin!(ready);
                ready.as_mut().enable();
                if let Some(o) = s.take(max.max(1))? {
                    return Ok(Some(o));
                }
                ready.await;
            }
        });
        // SAFETY: per the contract.
        unsafe { start(queue, token, Ok(call)) }
    })
}

/// Moves the gaps recorded since the last call (events lost across a reconnect or a broker
/// restart) to `*out`: one item per gap with `text` = stream, `offset` = first missed, `end` =
/// first delivered after, `present` = reset: the broker recreated the stream's log (an
/// in-memory broker restarted), so `offset` is in the old log (its events from there on that
/// were not delivered are lost, how many is unknown) and `end` in the new one. `*out` is NULL
/// when there are none. Gaps show in order: those taken right after a batch of events
/// precede the batch's first event (a batch never spans a gap).
///
/// # Safety
/// `sub` live; `out` valid; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_subscription_take_gaps(
    sub: *const FelixSubscription,
    out: *mut *mut FelixResult,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        // SAFETY: per the contract.
        let s = unsafe { shared(sub) }?;
        let gaps = std::mem::take(&mut s.buf.lock().gaps);
        let o = (!gaps.is_empty()).then(|| Output::items(gaps)).flatten();
        // SAFETY: per the contract.
        unsafe { store(out, o) };
        Ok(())
    })
}

/// Sets (or with NULL `wake`, clears) the wake callback; see the module documentation. Once
/// this returns, the previous callback is not running and will not run again (unless this is
/// called from inside that callback).
///
/// # Safety
/// `sub` live; `user_data` usable from another thread until replaced or the subscription is
/// freed.
#[no_mangle]
pub unsafe extern "C" fn felix_subscription_set_wake(
    sub: *const FelixSubscription,
    wake: FelixWakeFn,
    user_data: *mut c_void,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        // SAFETY: per the contract.
        let s = unsafe { shared(sub) }?;
        let nonempty = {
            let g = s.wake.lock();
            g.set(wake.map(|f| Wake(f, user_data)));
            let b = s.buf.lock();
            !b.events.is_empty() || b.ended
        };
        if nonempty && wake.is_some() {
            // Events already waiting: wake once from the runtime so none is missed.
            let s = s.clone();
            handle().spawn(async move { s.call_wake() });
        }
        Ok(())
    })
}

/// Ends the subscription and releases it: waiting calls fail with `FELIX_STATUS_CLOSED`, the
/// wake callback is cleared (see `felix_subscription_set_wake`). NULL is a no-op.
///
/// # Safety
/// `sub` is NULL or a subscription from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn felix_subscription_free(sub: *mut FelixSubscription) {
    quiet((), || {
        if sub.is_null() {
            return;
        }
        // SAFETY: per the contract.
        let s = unsafe { Box::from_raw(sub) };
        s.shared.wake.lock().set(None);
        {
            let mut b = s.shared.buf.lock();
            b.closed = true;
            b.events.clear();
        }
        s.shared.signal();
        s.shared.room.notify_one();
        s.pump.abort();
    })
}
