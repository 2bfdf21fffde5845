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
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let r = log.read(at, 7, 300).unwrap();
        match r.records.last() {
            Some(&(last, _)) => {
                at = last + 1;
                out.extend(r.records);
            }
            None => return out,
        }
    }
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
