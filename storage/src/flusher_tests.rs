//! The flusher against a trivial in-test log that counts fsyncs and can hold one open (a gate),
//! so group commit is proven by counting, not by timing.

use super::*;

/// A log whose "file" is a counter: `append` bumps the written watermark, `sync` records how
/// many calls were made and what each covered, and blocks while the gate is closed.
struct CountingLog {
    sp: SyncPoint,
    syncs: Mutex<Vec<u64>>,
    gate_closed: Mutex<bool>,
    gate_cv: Condvar,
    in_sync: AtomicUsize,
    fail_next: AtomicBool,
}

impl CountingLog {
    fn new() -> Arc<Self> {
        Arc::new(CountingLog {
            sp: SyncPoint::new(0),
            syncs: Mutex::new(Vec::new()),
            gate_closed: Mutex::new(false),
            gate_cv: Condvar::new(),
            in_sync: AtomicUsize::new(0),
            fail_next: AtomicBool::new(false),
        })
    }

    fn append(&self, h: &FlushHandle) -> Ticket {
        let end = self.sp.written() + 1;
        self.sp.wrote(end);
        let t = self.sp.ticket(end);
        h.written();
        t
    }

    fn set_gate(&self, closed: bool) {
        *self.gate_closed.lock() = closed;
        self.gate_cv.notify_all();
    }
}

impl Flushable for CountingLog {
    fn sync(&self) -> Result<u64, StorageError> {
        let covered = self.sp.written();
        self.in_sync.fetch_add(1, Ordering::SeqCst);
        {
            let mut g = self.gate_closed.lock();
            while *g {
                self.gate_cv.wait(&mut g);
            }
        }
        self.syncs.lock().push(covered);
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StorageError::Io {
                op: crate::IoOp::Sync,
                errno: 5,
                path: Arc::from("counting"),
            });
        }
        Ok(covered)
    }
    fn sync_point(&self) -> &SyncPoint {
        &self.sp
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn register(log: &Arc<CountingLog>, f: &Flushers, p: FsyncPolicy) -> FlushHandle {
    let weak: Weak<dyn Flushable> = Arc::downgrade(&(log.clone() as Arc<dyn Flushable>));
    f.register(weak, p)
}

#[test]
fn one_fsync_serves_every_append_made_while_the_previous_one_ran() {
    let f = Flushers::new(1).unwrap();
    let log = CountingLog::new();
    let h = register(&log, &f, FsyncPolicy::Always);
    log.set_gate(true);
    let first = log.append(&h);
    wait_until("the first sync to start", || {
        log.in_sync.load(Ordering::SeqCst) == 1
    });
    // 50 appenders arrive while the first fsync is in the kernel.
    let later: Vec<Ticket> = (0..50).map(|_| log.append(&h)).collect();
    assert!(!first.is_resolved());
    assert!(later.iter().all(|t| !t.is_resolved()));
    log.set_gate(false);
    first.wait_blocking().unwrap();
    for t in later {
        assert_eq!(t.wait_timeout(Duration::from_secs(10)), Some(Ok(())));
    }
    // Exactly two fsyncs: the first covered offset 0, the second the 50 that queued behind it.
    assert_eq!(*log.syncs.lock(), vec![1, 51]);
    assert_eq!(log.sp.synced(), 51);
    assert_eq!(log.sp.stats(), (2, 51));
}

#[test]
fn concurrent_appenders_share_fsyncs() {
    let f = Flushers::new(1).unwrap();
    let log = CountingLog::new();
    let h = Arc::new(register(&log, &f, FsyncPolicy::Always));
    let appender = Arc::new(Mutex::new(())); // appends are serialised, as in the log
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (log, h, a) = (log.clone(), h.clone(), appender.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let t = {
                        let _g = a.lock();
                        log.append(&h)
                    };
                    t.wait_blocking().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (syncs, tickets) = log.sp.stats();
    assert_eq!(tickets, 400);
    assert!((1..=400).contains(&syncs), "{syncs} syncs");
    // Every sync covered more than the previous one: none was spent on nothing.
    let s = log.syncs.lock();
    assert!(s.windows(2).all(|w| w[0] < w[1]), "{s:?}");
}

#[test]
fn a_failed_fsync_fails_its_waiters_and_is_never_retried() {
    let f = Flushers::new(1).unwrap();
    let log = CountingLog::new();
    let h = register(&log, &f, FsyncPolicy::Always);
    log.set_gate(true);
    let first = log.append(&h);
    wait_until("the sync to start", || {
        log.in_sync.load(Ordering::SeqCst) == 1
    });
    let second = log.append(&h);
    log.fail_next.store(true, Ordering::SeqCst);
    log.set_gate(false);
    assert!(matches!(
        first.wait_blocking(),
        Err(StorageError::Io { errno: 5, .. })
    ));
    // The waiter behind it is failed too, not synced by a second call over the same bytes.
    assert!(matches!(
        second.wait_blocking(),
        Err(StorageError::Io { errno: 5, .. })
    ));
    let third = log.append(&h);
    assert!(matches!(
        third.wait_blocking(),
        Err(StorageError::Io { .. })
    ));
    // Give a wrongly retrying flusher every chance: wake it again and again.
    for _ in 0..10 {
        h.written();
        std::thread::yield_now();
    }
    drop(h);
    drop(f); // joins the thread: every queued request has been handled
    assert_eq!(log.syncs.lock().len(), 1);
    assert_eq!(log.sp.synced(), 0);
}

#[test]
fn interval_policy_syncs_on_its_timer_without_any_waiter() {
    let f = Flushers::new(1).unwrap();
    let log = CountingLog::new();
    let h = register(&log, &f, FsyncPolicy::Interval(Duration::from_millis(20)));
    let started = Instant::now();
    for _ in 0..3 {
        let end = log.sp.written() + 1;
        log.sp.wrote(end);
        h.written();
    }
    wait_until("the interval sync", || log.sp.synced() == 3);
    assert!(started.elapsed() >= Duration::from_millis(15));
    // Nothing new written: the timer does not fire again for nothing.
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(log.syncs.lock().len(), 1);
    let end = log.sp.written() + 1;
    log.sp.wrote(end);
    h.written();
    wait_until("the second interval sync", || log.sp.synced() == 4);
    assert_eq!(*log.syncs.lock(), vec![3, 4]);
}

#[test]
fn os_policy_never_syncs_in_the_flusher() {
    let f = Flushers::new(2).unwrap();
    let log = CountingLog::new();
    let h = register(&log, &f, FsyncPolicy::Os);
    log.sp.wrote(5);
    h.written();
    drop(f);
    assert!(log.syncs.lock().is_empty());
}

#[test]
fn ticket_future_resolves_through_its_waker() {
    use std::task::Wake;
    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let sp = SyncPoint::new(10);
    assert!(sp.ticket(10).is_resolved());
    let mut fut = Box::pin(sp.ticket(12).wait());
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    sp.synced_to(11);
    assert!(!flag.0.load(Ordering::SeqCst));
    sp.synced_to(12);
    assert!(flag.0.load(Ordering::SeqCst));
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
}

#[test]
fn an_fsync_that_hangs_fails_its_tickets_after_the_timeout_and_the_thread_recovers() {
    let f = Flushers::with_timeout(1, Some(Duration::from_millis(30))).unwrap();
    let log = CountingLog::new();
    let h = register(&log, &f, FsyncPolicy::Always);
    log.set_gate(true); // the disk hangs
    let t = log.append(&h);
    assert_eq!(
        t.wait_timeout(Duration::from_secs(20)),
        Some(Err(StorageError::SyncTimeout))
    );
    assert_eq!(log.sp.failed(), Some(StorageError::SyncTimeout));
    // Later appends are refused by the log (its SyncPoint is failed), not left waiting.
    assert_eq!(
        log.sp.ticket(5).wait_timeout(Duration::from_secs(1)),
        Some(Err(StorageError::SyncTimeout))
    );
    // The disk comes back: the blocked call returns and the thread serves other logs.
    log.set_gate(false);
    let other = CountingLog::new();
    let h2 = register(&other, &f, FsyncPolicy::Always);
    assert_eq!(
        other.append(&h2).wait_timeout(Duration::from_secs(20)),
        Some(Ok(()))
    );
    assert_eq!(
        log.syncs.lock().len(),
        1,
        "the timed-out log is not synced again"
    );
}
