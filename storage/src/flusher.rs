//! Tickets, the synced watermark, and the flusher threads that run the group-commit `fdatasync`
//! (docs/storage.md 4.2, 4.3, 11.3).
//!
//! The log writes each frame to the kernel inside `append` (so `kill -9` never loses an appended
//! record); what is left for the flusher is durability. A log with the `always` policy registers
//! a [`Ticket`] per append in its [`SyncPoint`] and asks its flusher for a sync. The flusher takes
//! the log off its queue **before** calling `fdatasync`, so appends that arrive while one runs
//! queue the log again and share the next call: one fsync per turn, however many appenders wait
//! (the group commit). The watermark a sync covers is the written watermark read before the call.
//!
//! `interval` logs are synced by the same thread when `interval` has passed since their last sync
//! and they have unsynced bytes; `os` logs are never synced here (only on seal and close).
//!
//! A failed sync is never retried over the same bytes (fsyncgate, 11.3): the log's
//! [`SyncPoint`] turns failed, every waiting ticket gets the error, and the flusher ignores the
//! log until it heals (`DurableLog::heal`: cut back to the last durable point, new segment) or
//! is reopened (recovery cuts back to the point recorded at the failure).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::StorageError;

/// When a log's writes are made durable, and so when its appends are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Ack after `fdatasync` (group commit). Nothing acked is lost to a power cut.
    Always,
    /// Ack after the write; `fdatasync` every interval. A power cut loses up to one interval.
    Interval(Duration),
    /// Ack after the write; `fdatasync` only when a segment is sealed and on close.
    Os,
}

/// The state of one ticket, shared by the waiter and the resolver.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
}

#[derive(Default)]
struct SlotState {
    result: Option<Result<(), StorageError>>,
    waker: Option<Waker>,
}

impl Slot {
    fn resolve(&self, r: Result<(), StorageError>) {
        let waker = {
            let mut s = self.state.lock();
            if s.result.is_some() {
                return;
            }
            s.result = Some(r);
            s.waker.take()
        };
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Resolves when the appended records reached the watermark their policy acks at; fails with the
/// error of the sync that should have covered them. Dropping it is fine (the append stands).
#[must_use = "an append is acknowledged only once its ticket resolves"]
pub struct Ticket {
    inner: TicketInner,
}

enum TicketInner {
    Ready(Option<Result<(), StorageError>>),
    Wait(Arc<Slot>),
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("resolved", &self.is_resolved())
            .finish()
    }
}

impl Ticket {
    /// A ticket that is already resolved (interval/os appends, or a failed log).
    pub fn ready(r: Result<(), StorageError>) -> Self {
        Ticket {
            inner: TicketInner::Ready(Some(r)),
        }
    }

    /// Whether waiting would return at once.
    pub fn is_resolved(&self) -> bool {
        match &self.inner {
            TicketInner::Ready(_) => true,
            TicketInner::Wait(slot) => slot.state.lock().result.is_some(),
        }
    }

    /// Waits without a runtime (any executor can poll it; no tokio needed).
    pub fn wait(self) -> TicketWait {
        TicketWait(self.inner)
    }

    /// Blocks the calling thread until resolved.
    pub fn wait_blocking(self) -> Result<(), StorageError> {
        match self.inner {
            TicketInner::Ready(r) => r.unwrap_or(Err(StorageError::Closed)),
            TicketInner::Wait(slot) => {
                let mut s = slot.state.lock();
                loop {
                    if let Some(r) = s.result.take() {
                        return r;
                    }
                    slot.cv.wait(&mut s);
                }
            }
        }
    }

    /// Blocks up to `timeout`; `None` if still unresolved (the ticket is consumed either way).
    pub fn wait_timeout(self, timeout: Duration) -> Option<Result<(), StorageError>> {
        match self.inner {
            TicketInner::Ready(r) => r,
            TicketInner::Wait(slot) => {
                let deadline = Instant::now() + timeout;
                let mut s = slot.state.lock();
                loop {
                    if let Some(r) = s.result.take() {
                        return Some(r);
                    }
                    if slot.cv.wait_until(&mut s, deadline).timed_out() {
                        return s.result.take();
                    }
                }
            }
        }
    }
}

/// The future of [`Ticket::wait`].
pub struct TicketWait(TicketInner);

impl Future for TicketWait {
    type Output = Result<(), StorageError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.0 {
            TicketInner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(StorageError::Closed))),
            TicketInner::Wait(slot) => {
                let mut s = slot.state.lock();
                match s.result.take() {
                    Some(r) => Poll::Ready(r),
                    None => {
                        s.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
        }
    }
}

/// One log's durability watermarks and waiting tickets. Watermarks are exclusive ends: "first
/// offset not yet written / not yet known durable", as the frame's synced hint (format 3.1).
pub struct SyncPoint {
    state: Mutex<SyncState>,
    syncs: AtomicU64,
    synced_tickets: AtomicU64,
    /// Told the synced watermark when it moves (on the flusher thread only).
    listener: Mutex<Option<VisibleListener>>,
    notified: AtomicU64,
}

/// Called with the new synced watermark, in increasing order, on the log's flusher thread and
/// never under the log's lock: the broker fans out `always` records from here (storage.md 4.5).
pub type VisibleListener = Arc<dyn Fn(u64) + Send + Sync>;

struct SyncState {
    written: u64,
    synced: u64,
    /// (end offset, slot), in offset order because appends are serialised.
    waiters: VecDeque<(u64, Arc<Slot>)>,
    failed: Option<StorageError>,
}

impl SyncPoint {
    /// A log whose offsets below `next` are all written and durable (a freshly recovered log).
    pub fn new(next: u64) -> Self {
        SyncPoint {
            state: Mutex::new(SyncState {
                written: next,
                synced: next,
                waiters: VecDeque::new(),
                failed: None,
            }),
            syncs: AtomicU64::new(0),
            synced_tickets: AtomicU64::new(0),
            listener: Mutex::new(None),
            notified: AtomicU64::new(next),
        }
    }

    pub fn set_listener(&self, l: Option<VisibleListener>) {
        *self.listener.lock() = l;
    }

    /// Tells the listener if the synced watermark moved since it was last told. Flusher only.
    fn notify(&self) {
        let synced = self.synced();
        if synced > self.notified.fetch_max(synced, Ordering::AcqRel) {
            let l = self.listener.lock().clone();
            if let Some(l) = l {
                l(synced);
            }
        }
    }

    pub fn written(&self) -> u64 {
        self.state.lock().written
    }

    pub fn synced(&self) -> u64 {
        self.state.lock().synced
    }

    /// The error that failed this log, if one did.
    pub fn failed(&self) -> Option<StorageError> {
        self.state.lock().failed.clone()
    }

    /// Records below `end` are in the kernel.
    pub fn wrote(&self, end: u64) {
        let mut s = self.state.lock();
        s.written = s.written.max(end);
    }

    /// A ticket that resolves once records below `end` are durable.
    pub fn ticket(&self, end: u64) -> Ticket {
        let mut s = self.state.lock();
        if let Some(e) = &s.failed {
            return Ticket::ready(Err(e.clone()));
        }
        if end <= s.synced {
            return Ticket::ready(Ok(()));
        }
        let slot = Arc::new(Slot::default());
        s.waiters.push_back((end, slot.clone()));
        Ticket {
            inner: TicketInner::Wait(slot),
        }
    }

    /// Whether some ticket waits for a sync.
    pub fn has_waiters(&self) -> bool {
        !self.state.lock().waiters.is_empty()
    }

    /// A sync covering everything below `upto` succeeded: resolve the tickets it covers.
    pub fn synced_to(&self, upto: u64) {
        let done: Vec<Arc<Slot>> = {
            let mut s = self.state.lock();
            s.synced = s.synced.max(upto);
            let mut done = Vec::new();
            while s.waiters.front().is_some_and(|(end, _)| *end <= s.synced) {
                done.push(s.waiters.pop_front().expect("front checked").1);
            }
            done
        };
        self.synced_tickets
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        for slot in done {
            slot.resolve(Ok(()));
        }
    }

    /// A sync failed (or the log died): fail every waiting ticket and every later one.
    pub fn fail(&self, err: StorageError) {
        let waiters = {
            let mut s = self.state.lock();
            if s.failed.is_none() {
                s.failed = Some(err.clone());
            }
            std::mem::take(&mut s.waiters)
        };
        for (_, slot) in waiters {
            slot.resolve(Err(err.clone()));
        }
    }

    /// After the log healed (cut back to `next`, the last durable point, on a fresh file): no
    /// longer failed, watermarks at `next`. Tickets of the failure were all failed already.
    pub fn reset(&self, next: u64) {
        let waiters = {
            let mut s = self.state.lock();
            s.failed = None;
            s.written = next;
            s.synced = next;
            std::mem::take(&mut s.waiters)
        };
        for (_, slot) in waiters {
            slot.resolve(Err(StorageError::Closed));
        }
    }

    /// (fdatasync calls made by a flusher, tickets they resolved): tickets / syncs is the
    /// group-commit width.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.syncs.load(Ordering::Relaxed),
            self.synced_tickets.load(Ordering::Relaxed),
        )
    }
}

/// What a flusher needs of a log.
pub trait Flushable: Send + Sync + 'static {
    /// `fdatasync` of everything written so far. Returns the watermark it covered: the written
    /// watermark read *before* the call (later writes may or may not be covered).
    fn sync(&self) -> Result<u64, StorageError>;
    fn sync_point(&self) -> &SyncPoint;
    /// Called when a sync failed, before its tickets are failed (the log records the failure).
    fn on_failure(&self, _err: &StorageError) {}
    /// When the log wants [`Flushable::maintain`] called though nothing is written (a held-back
    /// checkpoint of an idle log).
    fn maintenance_due(&self) -> Option<Instant> {
        None
    }
    /// Deferred work, on the flusher thread: called at each turn of the log, and when
    /// `maintenance_due` has passed.
    fn maintain(&self) {}
}

struct Entry {
    log: Weak<dyn Flushable>,
    policy: FsyncPolicy,
    /// On the thread's queue (always logs); cleared before the sync so later appends requeue.
    queued: AtomicBool,
    /// Has unsynced writes that the interval timer must cover (interval logs).
    armed: AtomicBool,
    last_sync: Mutex<Instant>,
}

struct Shared {
    state: Mutex<ThreadState>,
    cv: Condvar,
    /// The sync this thread is in: since when, for which log, and whether the watchdog
    /// already failed its tickets.
    in_flight: Mutex<Option<(Instant, Arc<Entry>, bool)>>,
}

struct ThreadState {
    queue: VecDeque<Arc<Entry>>,
    interval: Vec<Weak<Entry>>,
    stop: bool,
}

/// Flusher threads. A log is pinned to one of them so its syncs never run concurrently.
pub struct Flushers {
    threads: Vec<(Arc<Shared>, Option<JoinHandle<()>>)>,
    next: AtomicUsize,
    watchdog: Option<(Arc<StopFlag>, JoinHandle<()>)>,
}

/// Tells the watchdog to stop, and wakes it.
type StopFlag = (Mutex<bool>, Condvar);

/// A log's registration with its flusher; dropping it unregisters the log.
pub struct FlushHandle {
    entry: Arc<Entry>,
    shared: Arc<Shared>,
}

impl Flushers {
    /// `n` threads (at least one), named `felix-flush-<i>`, without a sync timeout.
    pub fn new(n: usize) -> std::io::Result<Arc<Self>> {
        Self::with_timeout(n, None)
    }

    /// As [`Flushers::new`]; with `sync_timeout`, a watchdog thread fails the tickets of an
    /// fdatasync that has not returned after it (`StorageError::SyncTimeout`) and marks the log
    /// failed (storage.md 11.3). The flusher thread itself stays blocked in the kernel until
    /// the call returns; the logs pinned to other threads go on.
    pub fn with_timeout(n: usize, sync_timeout: Option<Duration>) -> std::io::Result<Arc<Self>> {
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let shared = Arc::new(Shared {
                state: Mutex::new(ThreadState {
                    queue: VecDeque::new(),
                    interval: Vec::new(),
                    stop: false,
                }),
                cv: Condvar::new(),
                in_flight: Mutex::new(None),
            });
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("felix-flush-{i}"))
                .spawn(move || run(&s))?;
            threads.push((shared, Some(h)));
        }
        let watchdog = match sync_timeout {
            Some(t) => {
                let stop = Arc::new((Mutex::new(false), Condvar::new()));
                let (st, watched) = (stop.clone(), threads.iter().map(|x| x.0.clone()).collect());
                let h = std::thread::Builder::new()
                    .name("felix-flush-watchdog".into())
                    .spawn(move || watchdog(&st, watched, t))?;
                Some((stop, h))
            }
            None => None,
        };
        Ok(Arc::new(Flushers {
            threads,
            next: AtomicUsize::new(0),
            watchdog,
        }))
    }

    pub fn register(&self, log: Weak<dyn Flushable>, policy: FsyncPolicy) -> FlushHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        let shared = self.threads[i].0.clone();
        let entry = Arc::new(Entry {
            log,
            policy,
            queued: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            last_sync: Mutex::new(Instant::now()),
        });
        // Interval logs for their timer, `always` logs for their deferred maintenance.
        if policy != FsyncPolicy::Os {
            shared.state.lock().interval.push(Arc::downgrade(&entry));
        }
        FlushHandle { entry, shared }
    }
}

impl Drop for Flushers {
    fn drop(&mut self) {
        if let Some((stop, h)) = self.watchdog.take() {
            *stop.0.lock() = true;
            stop.1.notify_all();
            let _ = h.join();
        }
        for (shared, _) in &self.threads {
            shared.state.lock().stop = true;
            shared.cv.notify_all();
        }
        for (_, h) in &mut self.threads {
            if let Some(h) = h.take() {
                let _ = h.join();
            }
        }
    }
}

impl FlushHandle {
    /// Something was written: for `always`, sync soon (group commit); for `interval`, make sure
    /// the timer covers it. Cheap when already scheduled (one atomic swap).
    pub fn written(&self) {
        let flag = match self.entry.policy {
            FsyncPolicy::Always => &self.entry.queued,
            FsyncPolicy::Interval(_) => &self.entry.armed,
            FsyncPolicy::Os => return,
        };
        if !flag.swap(true, Ordering::AcqRel) {
            // Under the lock, so a flusher between its check and its wait cannot miss it.
            let mut st = self.shared.state.lock();
            if self.entry.policy == FsyncPolicy::Always {
                st.queue.push_back(self.entry.clone());
            }
            self.shared.cv.notify_one();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let entry = {
            let mut st = shared.state.lock();
            loop {
                if let Some(e) = st.queue.pop_front() {
                    break e;
                }
                if st.stop {
                    return;
                }
                // The earliest due interval log, dropping unregistered ones.
                st.interval.retain(|w| w.strong_count() > 0);
                let now = Instant::now();
                let mut due: Option<(Instant, Arc<Entry>)> = None;
                for e in st.interval.iter().filter_map(Weak::upgrade) {
                    let at = match e.policy {
                        FsyncPolicy::Interval(every) if e.armed.load(Ordering::Acquire) => {
                            *e.last_sync.lock() + every
                        }
                        FsyncPolicy::Always => {
                            match e.log.upgrade().and_then(|l| l.maintenance_due()) {
                                Some(at) => at,
                                None => continue,
                            }
                        }
                        _ => continue,
                    };
                    let earlier = match &due {
                        Some((d, _)) => at < *d,
                        None => true,
                    };
                    if earlier {
                        due = Some((at, e));
                    }
                }
                match due {
                    Some((at, e)) if at <= now => break e,
                    Some((at, _)) => {
                        shared.cv.wait_until(&mut st, at);
                    }
                    None => shared.cv.wait(&mut st),
                }
            }
        };
        sync_one(shared, &entry);
    }
}

/// Fails the tickets of syncs that outlive `timeout`, once each.
fn watchdog(stop: &StopFlag, watched: Vec<Arc<Shared>>, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let mut stopped = stop.0.lock();
    while !*stopped {
        stop.1.wait_for(&mut stopped, tick);
        for shared in &watched {
            let late = {
                let mut f = shared.in_flight.lock();
                match &mut *f {
                    Some((since, e, reported)) if !*reported && since.elapsed() >= timeout => {
                        *reported = true;
                        e.log.upgrade()
                    }
                    _ => None,
                }
            };
            if let Some(log) = late {
                let e = StorageError::SyncTimeout;
                tracing::error!("storage: fsync did not return within storage.sync_timeout_ms");
                // Answer the waiters first: recording the failure writes to what may be the
                // same hung disk.
                log.sync_point().fail(e.clone());
                log.on_failure(&e);
            }
        }
    }
}

fn sync_one(shared: &Shared, entry: &Arc<Entry>) {
    // Cleared before the sync: whatever is written from now on asks again.
    entry.queued.store(false, Ordering::Release);
    entry.armed.store(false, Ordering::Release);
    let Some(log) = entry.log.upgrade() else {
        return;
    };
    log.maintain();
    let sp = log.sync_point();
    if sp.failed().is_some() {
        return; // never a second fsync over bytes a failed one covered
    }
    if sp.synced() >= sp.written() && !sp.has_waiters() {
        sp.notify(); // a seal may have moved it
        return;
    }
    *entry.last_sync.lock() = Instant::now();
    sp.syncs.fetch_add(1, Ordering::Relaxed);
    *shared.in_flight.lock() = Some((Instant::now(), entry.clone(), false));
    let r = log.sync();
    *shared.in_flight.lock() = None;
    match r {
        Ok(upto) => {
            sp.synced_to(upto);
            sp.notify();
        }
        Err(e) => {
            tracing::error!(error = %e, "storage: fsync failed; the log refuses writes until healed");
            log.on_failure(&e);
            sp.fail(e);
        }
    }
}

#[cfg(test)]
#[path = "flusher_tests.rs"]
mod tests;
