//! DurableLog on real files (RealFs in a tempdir).

use super::*;
use crate::fs::RealFs;
use crate::retention::Retention;
use std::time::Duration;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn cfg(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync,
        segment_bytes: 4096,
        index_interval_bytes: 256,
        hot_tail_bytes: 512,
        read_chunk_bytes: 1000,
        retention: Retention::default(),
        ..LogConfig::default()
    }
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("record-{i:05}-{}", "x".repeat((i % 37) as usize)))
}

fn read_all(log: &DurableLog, from: u64) -> Vec<(u64, Bytes)> {
    crate::test_util::read_all(log, from, 7, 300)
}

#[test]
fn real_files_survive_drop_and_reopen_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let (log, r) = DurableLog::open(fs.clone(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    assert_eq!((r.records, r.damage.clone(), r.was_clean), (0, None, false));
    let epoch = log.epoch();
    let mut tickets = Vec::new();
    for i in 0..300u64 {
        let a = log.append(&[payload(i)], 1_000 + i).unwrap();
        assert_eq!(a.offsets, i..i + 1);
        tickets.push(a.ticket);
    }
    for t in tickets {
        t.wait_blocking().unwrap();
    }
    assert_eq!(log.visible_offset(), 300);
    assert!(log.segment_count() > 3, "{} segments", log.segment_count());
    // From the start: cold reads through several segments, then the hot tail.
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 300);
    for (i, (o, p)) in all.iter().enumerate() {
        assert_eq!((*o, p), (i as u64, &payload(i as u64)));
    }
    drop(log);

    let (log, r) = DurableLog::open(fs.clone(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    assert_eq!((r.records, r.truncated_bytes, r.damage), (300, 0, None));
    assert!(r.was_clean);
    assert_eq!(log.epoch(), epoch);
    assert_eq!(log.next_offset(), 300);
    assert_eq!(read_all(&log, 0), all);
    // Appends continue at the next offset, and from the middle of a segment too.
    let a = log.append(&[b("after"), b("reopen")], 5_000).unwrap();
    assert_eq!(a.offsets, 300..302);
    a.ticket.wait_blocking().unwrap();
    let r = log.read(150, 2, usize::MAX).unwrap();
    assert_eq!(r.records, all[150..152].to_vec());
    assert_eq!(read_all(&log, 299).len(), 3);
}

#[test]
fn retention_deletes_whole_old_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let mut c = cfg(FsyncPolicy::Os);
    c.retention.max_records = 100;
    let (log, _) = DurableLog::open(fs.clone(), dir.path(), c.clone()).unwrap();
    for i in 0..400u64 {
        log.append(&[payload(i)], 1_000 + i).unwrap();
    }
    let segs = log.segment_count();
    let r = log.apply_retention(2_000).unwrap();
    assert!(r.segments > 0 && r.segments < segs);
    let first = log.first_offset();
    assert!(first > 0 && 400 - first >= 100, "first {first}");
    // At most the bound plus one segment stays.
    assert!(400 - first < 100 + 100, "first {first}");
    let got = read_all(&log, 0);
    assert_eq!(got.first().unwrap().0, first);
    assert_eq!(got.len() as u64, 400 - first);
    assert_eq!(log.read(0, 1, 1).unwrap().first_available, first);
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    drop(log);
    let (log, rec) = DurableLog::open(fs, dir.path(), c).unwrap();
    assert_eq!(log.first_offset(), first);
    assert_eq!(rec.records, 400 - first);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), files);
}

#[test]
fn interval_and_os_acks_are_immediate_and_visible_at_write() {
    for p in [
        FsyncPolicy::Os,
        FsyncPolicy::Interval(Duration::from_millis(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = DurableLog::open(RealFs::new(), dir.path(), cfg(p)).unwrap();
        let a = log.append(&[b("a")], 1).unwrap();
        assert!(a.ticket.is_resolved());
        assert_eq!(log.visible_offset(), 1);
        assert_eq!(log.read(0, 10, 10).unwrap().records, vec![(0, b("a"))]);
    }
}

#[test]
fn always_tickets_resolve_through_the_async_future() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = DurableLog::open(RealFs::new(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    let a = log.append(&[b("a")], 1).unwrap();
    block_on(a.ticket.wait()).unwrap();
    assert_eq!(log.visible_offset(), 1);
}

/// A minimal executor: polls on a thread-parking waker (the crate has no runtime).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn pending_bytes_are_bounded_for_always() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(FsyncPolicy::Always);
    c.max_pending_bytes = 1;
    c.segment_bytes = 1 << 20;
    let (log, _) = DurableLog::open(RealFs::new(), dir.path(), c).unwrap();
    // The first unsynced append is always taken (a bound below one frame must not wedge the log).
    let mut refused = 0;
    let mut last = None;
    for _ in 0..1000 {
        match log.append(&[b("p")], 1) {
            Ok(a) => last = Some(a.ticket),
            Err(StorageError::PendingFull { limit: 1 }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    last.unwrap().wait_blocking().unwrap();
    // Once synced, appends are taken again.
    log.append(&[b("q")], 1)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    assert!(
        refused > 0 || log.sync_stats().0 >= 999,
        "{refused} refused"
    );
}

/// Group commit on a real disk: 8 appenders that each wait for their ack before the next
/// append share fsyncs. Prints the width (tickets per fdatasync); asserts only what cannot
/// depend on the machine's speed.
#[test]
fn group_commit_on_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(FsyncPolicy::Always);
    c.segment_bytes = 64 << 20;
    let (log, _) = DurableLog::open(RealFs::new(), dir.path(), c).unwrap();
    let log = Arc::new(log);
    let started = std::time::Instant::now();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    let a = log.append(&[payload(t * 1000 + i)], 1).unwrap();
                    a.ticket.wait_blocking().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (syncs, tickets) = log.sync_stats();
    assert_eq!(tickets, 800);
    assert!((1..=800).contains(&syncs));
    eprintln!(
        "group commit: 800 acked appends from 8 threads, {syncs} fdatasyncs ({:.1} appends per fsync), {:?}",
        tickets as f64 / syncs as f64,
        started.elapsed()
    );
    assert_eq!(read_all(&log, 0).len(), 800);
}

#[test]
fn a_wrong_index_entry_costs_a_scan_never_a_wrong_record() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let (log, _) = DurableLog::open(fs.clone(), dir.path(), cfg(FsyncPolicy::Os)).unwrap();
    for i in 0..100u64 {
        log.append(&[payload(i)], 1).unwrap();
    }
    assert!(log.segment_count() > 1);
    drop(log);
    // Point every entry of the first segment's index one frame off (still increasing, still
    // inside the file: plausible, wrong).
    let idx = dir.path().join("00000000000000000000.idx");
    let mut b = std::fs::read(&idx).unwrap();
    assert!(b.len() >= 8, "the test needs index entries");
    for e in b.chunks_exact_mut(8) {
        let rel = u32::from_le_bytes(e[..4].try_into().unwrap());
        e[..4].copy_from_slice(&(rel + 1).to_le_bytes());
    }
    std::fs::write(&idx, &b).unwrap();
    let (log, _) = DurableLog::open(fs, dir.path(), cfg(FsyncPolicy::Os)).unwrap();
    for from in 0..30u64 {
        let r = log.read(from, 1, usize::MAX).unwrap();
        assert_eq!(r.records, vec![(from, payload(from))], "from {from}");
    }
}

/// Readers (hot tail and cold reads, outside the log's lock) race appends, rolls and retention
/// on real files: every read returns contiguous records with the right payloads, below the
/// visible offset, never before `first_available`.
#[test]
fn reads_race_appends_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(FsyncPolicy::Always);
    c.retention.max_records = 300;
    let (log, _) = DurableLog::open(RealFs::new(), dir.path(), c).unwrap();
    let log = Arc::new(log);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3u64)
        .map(|k| {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut until_back = 5;
                let mut at = k * 7;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let r = log
                        .read(at, 1 + (at % 13) as usize, 50 + (at % 500) as usize)
                        .unwrap();
                    let start = at.max(r.first_available);
                    for (i, (o, p)) in r.records.iter().enumerate() {
                        assert_eq!(*o, start + i as u64);
                        assert!(*o < r.next_offset);
                        assert_eq!(p, &payload(*o));
                    }
                    reads += 1;
                    // Wander: forward, and sometimes back to the (cold) start.
                    until_back -= 1;
                    at = match r.records.last() {
                        Some(&(o, _)) if until_back > 0 => o + 1,
                        _ => {
                            until_back = 5;
                            reads % 200
                        }
                    };
                }
                reads
            })
        })
        .collect();
    for i in 0..1500u64 {
        let a = log.append(&[payload(i)], 1_000 + i).unwrap();
        if i % 10 == 9 {
            a.ticket.wait_blocking().unwrap();
        }
        if i % 100 == 99 {
            log.apply_retention(2_000 + i).unwrap();
        }
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(log.first_offset() > 0);
}

/// Figures, not a check (run with `--ignored --nocapture`, release build advised): appends per
/// second per policy and the time to reopen a 256 MiB log after a clean close and after a
/// crash (no close), on the real file system of the temp dir.
#[test]
#[ignore]
fn figures_append_rate_and_reopen_time() {
    let big = Bytes::from(vec![7u8; 4096]);
    for p in [FsyncPolicy::Os, FsyncPolicy::Always] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(p);
        c.segment_bytes = 64 << 20;
        let (log, _) = DurableLog::open(RealFs::new(), dir.path(), c).unwrap();
        let t = std::time::Instant::now();
        let n = if p == FsyncPolicy::Os { 20_000 } else { 500 };
        for _ in 0..n {
            log.append(std::slice::from_ref(&big), 1)
                .unwrap()
                .ticket
                .wait_blocking()
                .unwrap();
        }
        let el = t.elapsed();
        eprintln!(
            "{p:?}: {n} x 4 KiB acked appends, one writer: {:.0}/s",
            n as f64 / el.as_secs_f64()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(FsyncPolicy::Os);
    c.segment_bytes = 64 << 20;
    let (log, _) = DurableLog::open(RealFs::new(), dir.path(), c.clone()).unwrap();
    for _ in 0..(256 << 20) / 4096 {
        log.append(std::slice::from_ref(&big), 1).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let t = std::time::Instant::now();
    let (log, r) = DurableLog::open(RealFs::new(), dir.path(), c.clone()).unwrap();
    eprintln!(
        "reopen after clean close: {:?}, scanned {} bytes, {} records",
        t.elapsed(),
        r.scanned_bytes,
        r.records
    );
    // Fill the last segment more, then "crash" (no close).
    for _ in 0..(48 << 20) / 4096 {
        log.append(std::slice::from_ref(&big), 1).unwrap();
    }
    std::mem::forget(log);
    let t = std::time::Instant::now();
    let (_log, r) = DurableLog::open(RealFs::new(), dir.path(), c).unwrap();
    eprintln!(
        "reopen after a crash: {:?}, scanned {} bytes, {} records",
        t.elapsed(),
        r.scanned_bytes,
        r.records
    );
}

#[test]
fn the_visible_listener_hears_every_advance_in_order_on_the_flusher_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = DurableLog::open(RealFs::new(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    let heard: Arc<parking_lot::Mutex<Vec<(u64, String)>>> = Arc::default();
    let h = heard.clone();
    log.set_visible_listener(Some(Arc::new(move |v| {
        let name = std::thread::current().name().unwrap_or("").to_string();
        h.lock().push((v, name));
    })));
    let mut last = None;
    for i in 0..300u64 {
        last = Some(log.append(&[payload(i)], 1).unwrap().ticket);
    }
    last.unwrap().wait_blocking().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while heard.lock().last().map(|x| x.0) != Some(300) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            heard.lock().last()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let heard = heard.lock();
    assert!(heard.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        heard.iter().all(|(_, t)| t.starts_with("felix-flush")),
        "{heard:?}"
    );
    assert_eq!(log.visible_offset(), 300);
}

/// Counts the files a log holds open (a file system wrapper over RealFs).
struct CountingFs {
    inner: Arc<dyn Fs>,
    open: Arc<std::sync::atomic::AtomicI64>,
}

struct CountedFile(
    Box<dyn crate::fs::FsFile>,
    Arc<std::sync::atomic::AtomicI64>,
);

impl Drop for CountedFile {
    fn drop(&mut self) {
        self.1.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl crate::fs::FsFile for CountedFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> std::io::Result<usize> {
        self.0.write_at(buf, pos)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
}

impl Fs for CountingFs {
    fn open(
        &self,
        path: &std::path::Path,
        mode: crate::fs::OpenMode,
    ) -> std::io::Result<Box<dyn crate::fs::FsFile>> {
        let f = self.inner.open(path, mode)?;
        self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Box::new(CountedFile(f, self.open.clone())))
    }
    fn list_dir(&self, p: &std::path::Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dir(p)
    }
    fn create_dir_all(&self, p: &std::path::Path) -> std::io::Result<()> {
        self.inner.create_dir_all(p)
    }
    fn rename(&self, a: &std::path::Path, b: &std::path::Path) -> std::io::Result<()> {
        self.inner.rename(a, b)
    }
    fn remove_file(&self, p: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_file(p)
    }
    fn remove_dir_all(&self, p: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(p)
    }
    fn sync_dir(&self, p: &std::path::Path) -> std::io::Result<()> {
        self.inner.sync_dir(p)
    }
    fn free_bytes(&self, p: &std::path::Path) -> std::io::Result<u64> {
        self.inner.free_bytes(p)
    }
    fn lock_exclusive(&self, p: &std::path::Path) -> std::io::Result<Box<dyn crate::fs::FsLock>> {
        self.inner.lock_exclusive(p)
    }
}

#[test]
fn a_log_of_many_segments_holds_few_files_open() {
    let dir = tempfile::tempdir().unwrap();
    let open = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let fs: Arc<dyn Fs> = Arc::new(CountingFs {
        inner: RealFs::new(),
        open: open.clone(),
    });
    let count = || open.load(std::sync::atomic::Ordering::SeqCst);
    let (log, _) = DurableLog::open(fs.clone(), dir.path(), cfg(FsyncPolicy::Os)).unwrap();
    for i in 0..1000u64 {
        log.append(&[payload(i)], 1).unwrap();
    }
    assert!(log.segment_count() > 10, "{}", log.segment_count());
    // Active segment, its index, the checkpoint file.
    assert!(count() <= 3, "{} files open while writing", count());
    drop(log);
    assert_eq!(count(), 0, "a dropped log closes everything");
    let (log, _) = DurableLog::open(fs, dir.path(), cfg(FsyncPolicy::Os)).unwrap();
    assert!(count() <= 3, "{} files open after reopen", count());
    assert_eq!(
        log.read(0, 1, usize::MAX).unwrap().records,
        vec![(0, payload(0))]
    );
    assert!(count() <= 4, "a cold read opens its segment only");
}

#[test]
fn seek_time_finds_the_first_record_at_or_after_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let c = cfg(FsyncPolicy::Os);
    let (log, _) = DurableLog::open(fs.clone(), dir.path(), c.clone()).unwrap();
    // Batches with runs of equal times, and a clock that steps back (held by the clamp).
    let mut ts_of = Vec::new();
    let mut last = 0;
    for i in 0..400u64 {
        let now = 1_000 + (i / 3) * 10 - if i % 50 == 49 { 25 } else { 0 };
        let batch: Vec<Bytes> = (0..1 + i % 2).map(|k| payload(i * 2 + k)).collect();
        let a = log.append(&batch, now).unwrap();
        last = last.max(now);
        for _ in a.offsets {
            ts_of.push(last);
        }
    }
    assert!(log.segment_count() > 5);
    let model = |t: u64| {
        ts_of
            .iter()
            .position(|&x| x >= t)
            .map_or(ts_of.len() as u64, |p| p as u64)
    };
    let check = |log: &DurableLog| {
        for t in (0..2_500).step_by(7).chain([1_000, 1_010, 2_330, u64::MAX]) {
            assert_eq!(log.seek_time(t).unwrap(), model(t), "t = {t}");
        }
    };
    check(&log);
    drop(log);
    // Reopened: sealed segments' indexes load on demand.
    let (log, _) = DurableLog::open(fs, dir.path(), c).unwrap();
    check(&log);
    // Retention moved the start: never an offset before it.
    let mut c2 = cfg(FsyncPolicy::Os);
    c2.retention.max_records = 200;
    drop(log);
    let (log, _) = DurableLog::open(RealFs::new(), dir.path(), c2).unwrap();
    log.apply_retention(5_000).unwrap();
    let first = log.first_offset();
    assert!(first > 0);
    assert_eq!(log.seek_time(0).unwrap(), first);
    assert_eq!(
        log.seek_time(ts_of[first as usize + 5]).unwrap(),
        model(ts_of[first as usize + 5]).max(first)
    );
}

#[test]
fn the_api_types_cross_threads_and_tasks() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<DurableLog>();
    send_sync::<Ticket>();
    send::<TicketWait>();
    send_sync::<Read>();
    send_sync::<Flushers>();
}

#[test]
fn the_hot_tail_stays_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(FsyncPolicy::Os);
    c.hot_tail_bytes = 10_000;
    c.segment_bytes = 1 << 20;
    let (log, _) = DurableLog::open(RealFs::new(), dir.path(), c).unwrap();
    for i in 0..2_000u64 {
        log.append(&[payload(i)], 1).unwrap();
        // Every record visible at once (os): the tail never holds more than its bound plus
        // one record, and the frame buffer is small.
        assert!(
            log.memory_bytes() <= 10_000 + 200 + 4096,
            "{}",
            log.memory_bytes()
        );
    }
    assert_eq!(read_all(&log, 0).len(), 2_000);
}
