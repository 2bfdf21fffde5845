//! A runtime for bindings, driven by the thread that waits.
//!
//! Bindings call the core from threads that are not a tokio runtime's (a C caller, a goroutine's
//! thread, Python with the GIL released). With a runtime on its own thread, every blocking call
//! costs two thread wake-ups (caller → runtime to send, runtime → caller with the reply), about
//! 15 µs here on top of a 55 µs round trip. [`Driver`] removes both: its current-thread runtime is
//! driven by whichever thread is waiting in [`Driver::block_on`], so the request is sent, the
//! reply read and the caller resumed on one thread, as in a Rust program on its own runtime.
//!
//! Someone must still drive the runtime when nobody waits (keep-alives, subscription events,
//! work started with [`Driver::spawn`]): a background thread holds the runtime then, and hands
//! it over whenever a caller arrives. Its policy:
//! - while a blocking caller holds the runtime, that caller drives everything;
//! - the moment the last blocking caller leaves with spawned work still pending, the background
//!   thread takes over at once, unless that caller said it will be back for that work
//!   ([`Driver::block_on_returning`], a completion-queue consumer): then only after [`QUIET`]
//!   without its return;
//! - with nothing pending, it takes over after [`QUIET`] without blocking callers, so a thread
//!   making call after call keeps the runtime to itself instead of paying a hand-over each time
//!   (while it is between calls, I/O waits at most [`QUIET`] to be read). While callers drive,
//!   the background thread looks every [`QUIET`] instead of being woken by each one leaving.
//!
//! Busy-polling (opt-in, `FELIX_SPIN_US`): while the background thread holds the runtime, it
//! can keep polling for I/O and submissions instead of sleeping, for up to that many µs after
//! the last call was submitted or finished. Each sleep costs a wake-up when the reply or the
//! next call arrives (on an idle virtual CPU here, tens of µs); spinning trades a core's worth
//! of CPU while calls flow for that latency. Off by default.
//!
//! The multi-thread flavour (for many cores) has its own workers and no background thread;
//! [`Driver::block_on`] then just waits.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex};
use futures::future::BoxFuture;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Notify;

/// How long after the last blocking call the background thread takes the runtime back.
pub const QUIET: Duration = Duration::from_millis(1);

/// Which runtime a [`Driver`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flavor {
    /// One runtime driven by the waiting thread or the background thread (lowest latency).
    CurrentThread,
    /// A work-stealing pool of this many worker threads (throughput on many cores).
    MultiThread(usize),
}

/// A tokio runtime that blocking callers drive themselves. See the [module docs](self).
pub struct Driver {
    rt: Runtime,
    current_thread: bool,
    s: Arc<Shared>,
}

struct Shared {
    /// Futures from [`Driver::spawn`] not yet handed to the runtime.
    submitted: Mutex<Vec<BoxFuture<'static, ()>>>,
    /// The pump task was notified and has not yet taken `submitted`.
    scheduled: AtomicBool,
    /// Wakes the pump task.
    submit: Notify,
    /// Threads inside [`Driver::block_on`].
    direct: AtomicUsize,
    /// When the last of them left, in µs since `epoch`.
    last_direct_us: AtomicU64,
    /// Tasks from [`Driver::spawn`] not finished yet.
    pending: AtomicUsize,
    /// The background thread is inside the runtime (or about to be).
    holding: AtomicBool,
    /// The last caller to leave [`Driver::block_on`] came through
    /// [`Driver::block_on_returning`] and has not come back yet.
    returning: AtomicBool,
    /// Asks the background thread to leave the runtime.
    release: Notify,
    lock: Mutex<()>,
    wake: Condvar,
    epoch: Instant,
    /// Busy-poll window after the last progress (zero: never spin).
    spin_us: u64,
    /// Last call submitted or finished, in µs since `epoch` (kept only when spinning).
    progress_us: AtomicU64,
}

impl Driver {
    /// Builds the runtime and, for [`Flavor::CurrentThread`], starts the background thread
    /// (named `name`), which lives as long as the process.
    ///
    /// The busy-poll window comes from `FELIX_SPIN_US` (see the [module docs](self)).
    pub fn start(name: &str, flavor: Flavor) -> std::io::Result<Arc<Driver>> {
        Self::start_spinning(name, flavor, Duration::from_micros(spin_from_env()))
    }

    /// As [`Driver::start`], with an explicit busy-poll window (zero: never spin; capped at
    /// 10 ms).
    pub fn start_spinning(
        name: &str,
        flavor: Flavor,
        spin: Duration,
    ) -> std::io::Result<Arc<Driver>> {
        let (rt, current_thread) = match flavor {
            Flavor::CurrentThread => (
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
                true,
            ),
            Flavor::MultiThread(n) => (
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n.max(1))
                    .thread_name(name)
                    .enable_all()
                    .build()?,
                false,
            ),
        };
        let d = Arc::new(Driver {
            rt,
            current_thread,
            s: Arc::new(Shared {
                submitted: Mutex::new(Vec::new()),
                scheduled: AtomicBool::new(false),
                submit: Notify::new(),
                direct: AtomicUsize::new(0),
                last_direct_us: AtomicU64::new(0),
                pending: AtomicUsize::new(0),
                holding: AtomicBool::new(false),
                returning: AtomicBool::new(false),
                release: Notify::new(),
                lock: Mutex::new(()),
                wake: Condvar::new(),
                epoch: Instant::now(),
                spin_us: (spin.as_micros() as u64).min(MAX_SPIN_US),
                progress_us: AtomicU64::new(0),
            }),
        });
        if current_thread {
            d.rt.spawn(pump(d.s.clone()));
            let bg = d.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || bg.background())
                .map(drop)?;
        }
        Ok(d)
    }

    /// The runtime's handle (to enter its context or spawn untracked tasks).
    pub fn handle(&self) -> &Handle {
        self.rt.handle()
    }

    /// Runs `f` to completion on this thread, driving the runtime here when nobody else is.
    ///
    /// # Panics
    /// When called from inside a tokio runtime (check with `Handle::try_current` first).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        if !self.current_thread {
            return self.rt.block_on(f);
        }
        self.enter();
        let _leave = Leave(&self.s, false);
        self.rt.block_on(f)
    }

    /// As [`Driver::block_on`], for a caller that may come back at once after handling what it
    /// waited for: a completion-queue consumer that drives the runtime while it waits and
    /// leaves only to hand results out. `f` gives its output and whether the caller will be
    /// back (it has calls in flight). If so, the background thread does not take the runtime
    /// over at once (which would cost two thread wake-ups per round, one to take it and one to
    /// give it back) but only if the caller has not come back within [`QUIET`]; meanwhile I/O
    /// waits for the caller's return.
    pub fn block_on_returning<T, F: Future<Output = (T, bool)>>(&self, f: F) -> T {
        if !self.current_thread {
            return self.rt.block_on(f).0;
        }
        self.enter();
        // A panic leaves as a caller that will not be back.
        let mut leave = Leave(&self.s, false);
        let (out, back) = self.rt.block_on(f);
        leave.1 = back;
        out
    }

    fn enter(&self) {
        self.s.direct.fetch_add(1, SeqCst);
        if self.s.holding.load(SeqCst) {
            self.s.release.notify_one();
        }
    }

    /// Counts work in flight that is not a task of [`Driver::spawn`] (a direct call waiting
    /// for its reply, `crate::DirectCall`) until the returned guard drops, so that the
    /// background thread takes the runtime over when the last blocking caller leaves it pending.
    pub fn track(&self) -> Tracked {
        if !self.current_thread {
            return Tracked { _pending: None };
        }
        self.s.pending.fetch_add(1, SeqCst);
        Tracked {
            _pending: Some(Pending(self.s.clone())),
        }
    }

    /// Spawns `f` (from any thread), counting it as work that keeps the runtime driven until it
    /// finishes. To cancel it, wrap it with `futures::future::abortable`.
    ///
    /// Futures spawned while the runtime is busy start together on its next turn, so a burst
    /// of calls from other threads writes its requests before the connection flushes: one
    /// packet and one wake-up for the burst instead of one each.
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if !self.current_thread {
            self.rt.spawn(f);
            return;
        }
        self.s.pending.fetch_add(1, SeqCst);
        let done = Pending(self.s.clone());
        // The guard is moved into the task, so a task dropped unfinished also counts down.
        let task = async move {
            let _done = done;
            f.await
        };
        self.s.submitted.lock().push(Box::pin(task));
        self.s.progress();
        self.s.schedule();
        if !self.s.holding.load(SeqCst)
            && self.s.direct.load(SeqCst) == 0
            && !self.s.returning.load(SeqCst)
        {
            let _g = self.s.lock.lock();
            self.s.wake.notify_one();
        }
    }

    fn background(&self) {
        loop {
            // Phase 1: drive the runtime until a blocking caller wants it.
            self.rt.block_on(async {
                self.s.holding.store(true, SeqCst);
                loop {
                    let released = self.s.release.notified();
                    tokio::pin!(released);
                    released.as_mut().enable();
                    if self.s.direct.load(SeqCst) > 0 {
                        break;
                    }
                    if self.s.spinning() {
                        // A turn without sleeping: ready tasks run, I/O is polled, and this
                        // loop comes back.
                        tokio::task::yield_now().await;
                        continue;
                    }
                    released.await;
                }
                self.s.holding.store(false, SeqCst);
            });
            // Phase 2: leave it to blocking callers until the policy says to take it back.
            let mut g = self.s.lock.lock();
            loop {
                // While callers drive, look every QUIET rather than be woken by each caller
                // that leaves: at one call after another, a wake-up per call cost every call a
                // futex system call and this thread a context switch (about 13,000 a second
                // for one Go goroutine). A leave wakes this thread only when work is pending.
                if self.s.direct.load(SeqCst) > 0 {
                    self.s.wake.wait_for(&mut g, QUIET);
                    continue;
                }
                let returning = self.s.returning.load(SeqCst);
                if self.s.pending.load(SeqCst) > 0 && !returning {
                    break;
                }
                let idle = self
                    .s
                    .now_us()
                    .saturating_sub(self.s.last_direct_us.load(SeqCst));
                let left = QUIET.saturating_sub(Duration::from_micros(idle));
                if left.is_zero() {
                    self.s.returning.store(false, SeqCst);
                    break;
                }
                self.s.wake.wait_for(&mut g, left);
            }
        }
    }
}

impl Shared {
    /// µs since `epoch`: the clock of `last_direct_us` and `progress_us`.
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Records that a call was submitted or finished (for the busy-poll window), and gets the
    /// background thread's loop to look (it may be asleep since the last window closed).
    fn progress(&self) {
        if self.spin_us > 0 {
            self.progress_us.store(self.now_us(), SeqCst);
            self.release.notify_one();
        }
    }

    /// Whether the background thread should poll rather than sleep right now.
    fn spinning(&self) -> bool {
        self.spin_us > 0
            && self.now_us().saturating_sub(self.progress_us.load(SeqCst)) < self.spin_us
    }

    /// Wakes the pump, unless it is awake already.
    fn schedule(&self) {
        if !self.scheduled.swap(true, SeqCst) {
            self.submit.notify_one();
        }
    }
}

/// Starts submitted futures on the runtime, a whole batch per turn (see [`Driver::spawn`]).
async fn pump(s: Arc<Shared>) {
    loop {
        s.submit.notified().await;
        // Cleared before taking the batch: a submission racing with this turn notifies again.
        s.scheduled.store(false, SeqCst);
        let batch = std::mem::take(&mut *s.submitted.lock());
        for f in batch {
            tokio::spawn(f);
        }
    }
}

/// Whether, and when, a finished call must wake the consumer of a binding's completion queue
/// (a thread, Go's netpoller, an event loop). Shared by every binding, so that they batch
/// wake-ups the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The queue was not idle: its consumer has been woken already.
    No,
    /// The queue was idle and no other call is in flight: wake at once.
    Now,
    /// The queue was idle and other calls are in flight: wake after this runtime turn, so the
    /// calls completed by the same reply packet ride on one wake-up.
    AfterTurn,
}

impl Wake {
    /// The decision for a completion that found the queue idle (`was_idle`) while other calls
    /// were still in flight (`others`).
    pub fn after_push(was_idle: bool, others: bool) -> Wake {
        match (was_idle, others) {
            (false, _) => Wake::No,
            (true, false) => Wake::Now,
            (true, true) => Wake::AfterTurn,
        }
    }

    /// Runs `signal` when this says to (awaiting the end of the turn first for `AfterTurn`).
    pub async fn signal(self, signal: impl FnOnce()) {
        match self {
            Wake::No => {}
            Wake::Now => signal(),
            Wake::AfterTurn => {
                tokio::task::yield_now().await;
                signal();
            }
        }
    }
}

/// Leaves [`Driver::block_on`]: records the time, and when this was the last blocking caller
/// and it leaves work pending, wakes the background thread to take it over — unless the caller
/// will be back for it (`.1`, [`Driver::block_on_returning`]). Otherwise the background thread
/// finds out on its next look, within [`QUIET`].
struct Leave<'a>(&'a Shared, bool);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let s = self.0;
        s.last_direct_us.store(s.now_us(), SeqCst);
        // Before `direct` falls: the background thread reads them in the other order.
        s.returning.store(self.1, SeqCst);
        let last = s.direct.fetch_sub(1, SeqCst) == 1;
        if last && !self.1 && s.pending.load(SeqCst) > 0 {
            let _g = s.lock.lock();
            s.wake.notify_one();
        }
    }
}

/// Counts down [`Shared::pending`] when a spawned task ends.
struct Pending(Arc<Shared>);

/// Work counted by [`Driver::track`]; dropping it counts it done.
#[must_use = "the work counts as pending until this drops"]
pub struct Tracked {
    _pending: Option<Pending>,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracked")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, SeqCst);
        self.0.progress();
    }
}

/// Longest busy-poll window: past this, sleeping costs less than the wake-up it saves.
const MAX_SPIN_US: u64 = 10_000;

/// `FELIX_SPIN_US`: the busy-poll window in µs (0, unset or unreadable: never spin).
fn spin_from_env() -> u64 {
    std::env::var("FELIX_SPIN_US")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// Whether the runtime is parked right now: its thread blocked until an event (I/O, a
    /// timer, a wake-up) arrives. tokio counts parks and unparks, so an odd count means
    /// parked. A spinning background thread never parks (each turn only peeks at I/O and
    /// comes back), so this tells a thread that stopped spinning from one that did not,
    /// without measuring CPU time (which a loaded machine makes meaningless).
    fn parked(d: &Driver) -> bool {
        d.handle().metrics().worker_park_unpark_count(0) % 2 == 1
    }

    /// Waits until the runtime is parked; panics with `why` at the deadline.
    fn wait_parked(d: &Driver, why: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !parked(d) {
            assert!(Instant::now() < deadline, "{why}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn work_left_by_a_returning_caller_that_stays_away_still_runs() {
        let d = Driver::start_spinning("t-ret", Flavor::CurrentThread, Duration::ZERO).unwrap();
        for round in 0..20u32 {
            let (tx, rx) = mpsc::channel();
            // Spawned while the caller drives, so it is pending when the caller leaves.
            d.block_on_returning(async {
                d.spawn(async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let _ = tx.send(round);
                });
                ((), true)
            });
            // The caller never comes back: the background thread must take the runtime over.
            assert_eq!(
                rx.recv_timeout(DEADLINE)
                    .expect("pending work was never driven"),
                round
            );
            // And work spawned while nobody drives runs too.
            let (tx, rx) = mpsc::channel();
            d.spawn(async move {
                let _ = tx.send(round);
            });
            assert_eq!(
                rx.recv_timeout(DEADLINE).expect("spawned work never ran"),
                round
            );
        }
    }

    #[test]
    fn spinning_serves_calls_then_stops_when_they_stop() {
        let d = Driver::start_spinning("t-spin", Flavor::CurrentThread, Duration::from_millis(2))
            .unwrap();
        for i in 0..200u32 {
            let (tx, rx) = mpsc::channel();
            d.spawn(async move {
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let _ = tx.send(i);
            });
            assert_eq!(rx.recv_timeout(DEADLINE).expect("call never finished"), i);
        }
        // Past the window (2 ms) the background thread must stop polling and park the
        // runtime until something happens.
        wait_parked(
            &d,
            "the background thread kept spinning after the calls stopped",
        );
        assert!(!d.s.spinning(), "parked inside the spin window");
        assert!(d.s.holding.load(SeqCst), "nobody drives the runtime");
        // A parked runtime still serves the next call, and parks again after its window.
        let (tx, rx) = mpsc::channel();
        d.spawn(async move {
            let _ = tx.send(7u32);
        });
        assert_eq!(rx.recv_timeout(DEADLINE).expect("call after parking"), 7);
        wait_parked(
            &d,
            "the background thread kept spinning after the last call",
        );
    }
}
