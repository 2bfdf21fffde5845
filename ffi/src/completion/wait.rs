//! Waiting on a completion queue: `felix_completion_queue_wait` (sleeps until completions
//! are ready, driving the runtime meanwhile), `felix_completion_queue_poll` (the runtime driven
//! without sleeping) and `felix_completion_queue_wait_one` (a deferred queue's call, run on
//! the waiting thread).

use std::sync::Arc;
use std::time::{Duration, Instant};

use felix_client::sync::MutexGuard;
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::{
    cancelled, launch_held, queue_arg, sent, Done, FelixCompletion, FelixCompletionQueue, Held,
    Kind, Queue, QueueState, Running,
};
use crate::error::{guard, Failure, FelixError, FelixStatus, Res};
use crate::runtime::{driver, run};

/// Waits up to `timeout_ms` (negative: forever; 0: do not wait) for completions and moves up
/// to `max` of them into `out`, setting `*n_out` to how many (0 on timeout, which is
/// `FELIX_STATUS_OK`). While calls are in flight (and always on a driven queue) the waiting
/// thread drives the library's runtime, as a blocking call does; on a driven queue it also
/// starts the calls started since the last wait (with `timeout_ms` 0 it hands them to the
/// background thread instead; `felix_completion_queue_poll` sends them on this thread). The
/// caller owns each completion's result and error. Returns `FELIX_STATUS_CLOSED` once the
/// queue was freed (waiters blocked at that moment are woken).
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
        // SAFETY: per the contract.
        let q = unsafe { waiter(queue, out, max, n_out) }?;
        let deadline =
            (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        let mut st = q.state.lock();
        let drive = !st.pending.is_empty() || q.kind == Kind::Driven;
        if st.ready.is_empty() && drive && timeout_ms != 0 {
            drop(st);
            drive_until_ready(&q, deadline);
            st = q.state.lock();
        } else if !st.unstarted.is_empty() {
            // No driving here (a poll): the background thread runs them.
            drop(st);
            launch_unstarted(&q);
            st = q.state.lock();
        }
        while st.ready.is_empty() {
            if st.closed {
                return Err(Failure::closed("completion queue"));
            }
            st.sleepers += 1;
            let timed_out = match deadline {
                None => {
                    q.cv.wait(&mut st);
                    false
                }
                Some(d) => q.cv.wait_until(&mut st, d).timed_out(),
            };
            st.sleepers -= 1;
            if timed_out {
                break;
            }
        }
        // SAFETY: per the contract.
        unsafe { take(&q, &mut st, out, max, n_out) };
        Ok(())
    })
}

/// Moves up to `max` completions that are ready into `out`, setting `*n_out` to how many (0:
/// none, `FELIX_STATUS_OK`), without sleeping — after first starting the calls held on a
/// driven queue and driving the library's runtime for two turns on this thread (unless another
/// thread is driving it): requests started since the last wait leave now, and replies that
/// have arrived are read. `felix_completion_queue_wait` with `timeout_ms` 0 instead leaves both to
/// the background thread. For a consumer that hands a batch of completions out in parts:
/// polling between parts sends the calls started meanwhile, so the broker works on them while
/// the rest are handed out, instead of after the whole batch. The held calls other than cache
/// get/put/delete start as tasks of their own. The consumer of a driven queue is expected to
/// wait or poll again promptly: the background thread drives the runtime for its calls in
/// flight only if it stays away for 1 ms, and those a wait started run only inside its waits
/// and polls (see `felix_completion_queue_new_driven`). When another thread is
/// driving the runtime at that moment, the poll only takes what is ready. Returns
/// `FELIX_STATUS_CLOSED` once the queue was freed and nothing is left in it.
///
/// # Safety
/// `queue` is NULL or live; `out` is valid for `max` completions; `n_out` is valid.
#[no_mangle]
pub unsafe extern "C" fn felix_completion_queue_poll(
    queue: *const FelixCompletionQueue,
    out: *mut FelixCompletion,
    max: usize,
    n_out: *mut usize,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        // SAFETY: per the contract.
        let q = unsafe { waiter(queue, out, max, n_out) }?;
        // Futures as tasks: a poller need not come back to poll them.
        launch_unstarted(&q);
        // A callback on the runtime's own thread cannot drive from there.
        if Handle::try_current().is_err() {
            drive_once(&q);
        }
        let mut st = q.state.lock();
        if st.ready.is_empty() && st.closed {
            return Err(Failure::closed("completion queue"));
        }
        // SAFETY: per the contract.
        unsafe { take(&q, &mut st, out, max, n_out) };
        Ok(())
    })
}

/// Checks the arguments of a wait or poll: the queue, and room for at least one completion.
///
/// # Safety
/// `queue` is NULL or live; `n_out` is NULL or valid.
unsafe fn waiter(
    queue: *const FelixCompletionQueue,
    out: *mut FelixCompletion,
    max: usize,
    n_out: *mut usize,
) -> Res<Arc<Queue>> {
    if queue.is_null() || out.is_null() || n_out.is_null() || max == 0 {
        return Err(Failure::invalid(
            "queue, out and n_out must be non-NULL, max > 0",
        ));
    }
    // SAFETY: per the contract.
    unsafe { *n_out = 0 };
    // SAFETY: per the contract.
    let q = unsafe { queue_arg(queue) }?;
    if q.kind == Kind::Deferred {
        return Err(Failure::invalid(
            "a deferred queue's calls are waited for one by one with felix_completion_queue_wait_one",
        ));
    }
    Ok(q)
}

/// Moves up to `max` ready completions into `out`, counting them in `*n_out`.
///
/// # Safety
/// `out` is valid for `max` completions; `n_out` is valid.
unsafe fn take(
    q: &Queue,
    st: &mut QueueState,
    out: *mut FelixCompletion,
    max: usize,
    n_out: *mut usize,
) {
    let n = st.ready.len().min(max);
    if st.ready.len() > n {
        // More than this waiter takes: hand the rest to another waiter, if any.
        q.cv.notify_one();
    }
    for i in 0..n {
        let Some(Done(c)) = st.ready.pop_front() else {
            break;
        };
        // SAFETY: `out` has room for `max` completions.
        unsafe { out.add(i).write(c) };
        // SAFETY: per the contract.
        unsafe { *n_out = i + 1 };
    }
}

/// Drives the runtime on this thread for [`felix_completion_queue_poll`], without sleeping:
/// two turns of the runtime — the first runs the tasks woken so far
/// (the connection sends what was written) and polls I/O without sleeping, the second runs the
/// tasks that I/O woke (replies that arrived are read, completions queued) — polling the
/// running set around each. When another thread holds the runtime, nothing is driven here.
fn drive_once(q: &Arc<Queue>) {
    driver().block_on_returning(async {
        let mut running = None;
        if q.kind == Kind::Driven {
            running = q.running.try_lock();
        }
        for _ in 0..2 {
            drain(&mut running);
            // Deferred to the end of the turn: the tasks that are ready run first, then I/O is
            // polled without sleeping.
            tokio::task::yield_now().await;
        }
        drain(&mut running);
        if running.take().is_some() {
            // A thread waiting on this queue polls the running calls from now on.
            q.drivers.notify_waiters();
        }
        // A driven queue's consumer comes back for its calls (by contract it drives them), so
        // the background thread need not take the runtime over at once; anyone else may not.
        let back = q.kind == Kind::Driven && !q.state.lock().pending.is_empty();
        ((), back)
    });
}

/// Starts the calls held on a driven queue without driving: futures as tasks of their own,
/// direct calls at once.
fn launch_unstarted(q: &Arc<Queue>) {
    let calls = std::mem::take(&mut q.state.lock().unstarted);
    if !calls.is_empty() {
        launch_held(q, calls, None);
    }
}

/// Polls a driven queue's running calls (those its waits started), when this thread holds
/// them, while they make progress (a finished one queues its completion); any left ready are
/// polled by the next thread to drive the set, which registers its own waker.
fn drain(running: &mut Option<MutexGuard<'_, Running>>) {
    let Some(set) = running.as_mut() else {
        return;
    };
    let waker = futures::task::noop_waker_ref();
    let mut cx = std::task::Context::from_waker(waker);
    while let std::task::Poll::Ready(Some(())) = set.poll_next_unpin(&mut cx) {}
}

/// While calls are in flight on `q`, waits for one to complete by driving the runtime on this
/// thread (as a blocking call does): the replies are read and the completions queued here, so
/// the waiter needs no wake-up from another thread. A driven queue's calls are started here
/// as they come. Returns when a completion is ready, the queue is closed, nothing is in
/// flight on a queue that is not driven, or at `deadline`; the caller then looks again.
fn drive_until_ready(q: &Arc<Queue>, deadline: Option<Instant>) {
    if Handle::try_current().is_ok() {
        // A callback on the runtime's own thread: it cannot drive from here.
        launch_unstarted(q);
        return;
    }
    driver().block_on_returning(async {
        // One thread at a time polls the queue's running calls; another waiter meanwhile
        // starts the calls it takes as tasks, and takes the polling over when the first leaves.
        let mut running = None;
        loop {
            let woken = q.drivers.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if running.is_none() && q.kind == Kind::Driven {
                running = q.running.try_lock();
            }
            let calls = {
                let mut st = q.state.lock();
                st.driver_asleep = false;
                if !st.ready.is_empty()
                    || st.closed
                    || (st.pending.is_empty() && q.kind != Kind::Driven)
                {
                    break;
                }
                st.driver_asleep = true;
                std::mem::take(&mut st.unstarted)
            };
            if !calls.is_empty() {
                launch_held(q, calls, running.as_deref_mut());
            }
            // Polls the running calls until none is ready; a finished call's completion
            // notifies `woken`.
            let drain = std::future::poll_fn(|cx| {
                if let Some(set) = running.as_mut() {
                    while let std::task::Poll::Ready(Some(())) = set.poll_next_unpin(cx) {}
                }
                std::task::Poll::<()>::Pending
            });
            match deadline {
                None => {
                    tokio::select! {
                        biased;
                        _ = woken => {}
                        _ = drain => {}
                    }
                }
                Some(d) => {
                    let timer = tokio::time::sleep_until(d.into());
                    tokio::select! {
                        biased;
                        _ = woken => {}
                        _ = drain => {}
                        _ = timer => break,
                    }
                }
            }
        }
        if running.take().is_some() {
            // Another thread waiting on this queue polls the running calls from now on.
            q.drivers.notify_waiters();
        }
        // With calls still in flight the waiter will be back for them: the background thread
        // need not take the runtime over the moment it leaves.
        ((), !q.state.lock().pending.is_empty())
    });
}

/// Waits for the call started on deferred `queue` under `token` and writes its completion to
/// `*out` (the caller owns its result and error). The call runs on this thread, which drives
/// the library's runtime while it waits (when no other thread is driving it). Returns
/// `FELIX_STATUS_OK` when a completion was written — its own `status` says how the call went —
/// or an error status when none was (NULL arguments, a queue that is not deferred, an unknown
/// token, or a token another thread already waits for). Must not be called from a Felix
/// callback.
///
/// # Safety
/// `queue` is NULL or live; `out` is NULL or valid for one completion.
#[no_mangle]
pub unsafe extern "C" fn felix_completion_queue_wait_one(
    queue: *const FelixCompletionQueue,
    token: u64,
    out: *mut FelixCompletion,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if out.is_null() {
            return Err(Failure::invalid("out must be non-NULL"));
        }
        // SAFETY: per the contract.
        let q = unsafe { queue_arg(queue) }?;
        if q.kind != Kind::Deferred {
            return Err(Failure::invalid(
                "felix_completion_queue_wait_one needs a queue from felix_completion_queue_new_deferred",
            ));
        }
        if Handle::try_current().is_ok() {
            return Err(Failure::invalid(
                "felix_completion_queue_wait_one was called on a felix runtime thread (from a callback)",
            ));
        }
        let held = {
            let mut st = q.state.lock();
            match st.pending.get_mut(&token).map(|e| e.deferred.take()) {
                Some(Some(c)) => c,
                Some(None) => {
                    return Err(Failure::invalid(format!(
                        "token {token} is already being waited for"
                    )))
                }
                None => {
                    return Err(Failure::invalid(format!(
                        "token {token} is not in flight on this queue"
                    )))
                }
            }
        };
        let mark_sent = |serial, h| sent(&mut q.state.lock(), token, serial, h);
        let r = match held {
            Held::Future(_, call, cancel_rx) => driver().block_on(async move {
                tokio::select! {
                    biased;
                    _ = cancel_rx => Err(cancelled()),
                    r = run(call) => r,
                }
            }),
            // A call cancelled before it was waited for must not run at all.
            Held::Direct(..) if q.state.lock().cancelled_unsent(token) => Err(cancelled()),
            Held::Direct(_, serial, d) => driver().block_on(async {
                let h = d.handle();
                let (tx, rx) = oneshot::channel();
                d.start(Box::new(move |r| {
                    let _ = tx.send(r);
                }));
                // A cancel that raced the start found nothing to cancel yet.
                if let Some(h) = mark_sent(serial, h) {
                    h.cancel();
                }
                rx.await.unwrap_or_else(|_| Err(cancelled()))
            }),
        };
        q.state.lock().pending.remove(&token);
        // SAFETY: `out` is valid for one completion.
        unsafe { out.write(Done::new(token, r).0) };
        Ok(())
    })
}
