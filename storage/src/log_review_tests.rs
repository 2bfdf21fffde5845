//! The findings of review r1 (`review-r1-storage.md`), each as a test that failed on the code
//! it was found in (branch s2 at ba1b4df or 60bac49) and must pass now.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::checkpoint;
use crate::fs::{Fs, RealFs};
use crate::retention::Retention;
use crate::sim::{Crash, FaultOp, FaultRule, SimFs};

const EIO: i32 = 5;

fn p(i: u64) -> Bytes {
    Bytes::from(format!("record-{i:04}-xxxxxxxxxxxxxxxx"))
}

fn seg(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

fn always() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".seg").map(|s| s.parse().unwrap())
        })
        .collect();
    v.sort();
    v
}

fn sim_dir() -> PathBuf {
    PathBuf::from("/d/log")
}

fn sim() -> Arc<SimFs> {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/d")).unwrap();
    fs
}

fn sim_open(fs: &Arc<SimFs>, c: &LogConfig) -> (DurableLog, Recovery) {
    let f: Arc<dyn Fs> = fs.clone();
    DurableLog::open(f, &sim_dir(), c.clone()).unwrap()
}

/// Finding 1: a pass that rolls a quiet segment by `segment_age` must not delete it in the same
/// breath because its successor is empty; nor after a restart.
#[test]
fn age_retention_keeps_a_just_rolled_segment_of_young_records() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let c = LogConfig {
        segment_age: Some(Duration::from_secs(3600)),
        retention: Retention {
            max_records: 0,
            max_bytes: 0,
            max_age: Some(Duration::from_secs(7 * 86400)),
        },
        ..always()
    };
    let (log, _) = DurableLog::open(fs.clone(), d.path(), c.clone()).unwrap();
    let t0 = 1_765_000_000_000u64;
    for i in 0..5 {
        let a = log.append(&[p(i)], t0 + i * 6 * 60_000).unwrap();
        a.ticket.wait_blocking().unwrap();
    }
    let now = t0 + 61 * 60_000; // newest record 37 min old, max_age 7 days
    let r = log.apply_retention(now).unwrap();
    assert_eq!(r, Retained::default(), "nothing is 7 days old");
    assert_eq!(log.segment_count(), 2, "the quiet segment rolled");
    assert_eq!((log.first_offset(), log.len()), (0, 5));
    drop(log);
    // After a restart the sealed segment's age comes from its successor's header.
    let (log, _) = DurableLog::open(fs.clone(), d.path(), c.clone()).unwrap();
    assert_eq!(log.apply_retention(now).unwrap(), Retained::default());
    assert_eq!(log.len(), 5);
    // ...and it does go once its newest record is older than max_age.
    let week = 7 * 86_400_000;
    let r = log.apply_retention(now + week + 1).unwrap();
    assert_eq!(r.segments, 1);
    assert_eq!(log.first_offset(), 5);
}

/// Finding 3: a flipped bit in a sealed segment's first frame header (not CRC-checked then)
/// made retention delete the previous, unexpired segment.
#[test]
fn a_flipped_timestamp_in_a_sealed_segments_first_frame_deletes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let c = LogConfig {
        segment_bytes: 4096,
        retention: Retention {
            max_records: 0,
            max_bytes: 0,
            max_age: Some(Duration::from_secs(3600)),
        },
        ..always()
    };
    let (log, _) = DurableLog::open(fs.clone(), d.path(), c.clone()).unwrap();
    let t = wall_ms();
    let big = Bytes::from(vec![7u8; 1500]);
    for _ in 0..9 {
        log.append(std::slice::from_ref(&big), t)
            .unwrap()
            .ticket
            .wait_blocking()
            .unwrap();
    }
    drop(log);
    let bases = segment_bases(d.path());
    assert!(bases.len() >= 4, "{bases:?}");
    let s2 = seg(d.path(), bases[1]);
    let mut b = std::fs::read(&s2).unwrap();
    b[64 + 16 + 5] ^= 0x01; // timestamp byte 5 (bit 40) of the first frame
    std::fs::write(&s2, &b).unwrap();
    let (log, _) = DurableLog::open(fs.clone(), d.path(), c).unwrap();
    let r = log.apply_retention(wall_ms()).unwrap();
    assert_eq!(
        r,
        Retained::default(),
        "records written < 1 s ago, max_age 1 h"
    );
    assert_eq!(log.first_offset(), 0);
}

/// Finding 2, clean close: one flipped bit in the last frame of a cleanly closed `always` log
/// is never cut as a torn tail, and its offset is never handed out again.
#[test]
fn a_flipped_bit_in_the_last_frame_after_a_clean_close_is_never_cut() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let (log, _) = DurableLog::open(fs.clone(), d.path(), always()).unwrap();
    for i in 0..10 {
        let a = log.append(&[p(i)], 1000 + i).unwrap();
        a.ticket.wait_blocking().unwrap();
    }
    let epoch = log.epoch();
    log.close().unwrap();
    drop(log);
    let mut b = std::fs::read(seg(d.path(), 0)).unwrap();
    let n = b.len();
    b[n - 3] ^= 0x01; // inside record 9's payload
    std::fs::write(seg(d.path(), 0), &b).unwrap();
    let (log, r) = DurableLog::open(fs.clone(), d.path(), always()).unwrap();
    assert_eq!(r.truncated_bytes, 0, "{r:?}");
    assert_eq!(log.next_offset(), 10, "an acked record was cut");
    assert_eq!(log.epoch(), epoch);
    // Records before the damage are served; the damaged one is an error, never other bytes.
    let got = log.read(0, 100, usize::MAX).unwrap();
    assert_eq!(got.records.len(), 9);
    match log.read(9, 1, usize::MAX) {
        Err(StorageError::Quarantined { offset, .. }) => assert_eq!(offset, 9),
        other => panic!("offset 9 read as {other:?}"),
    }
    if let Ok(a) = log.append(&[Bytes::from_static(b"DIFFERENT")], 5000) {
        assert_eq!(a.offsets, 10..11, "offset 9 handed out again");
    }
}

/// Finding 2, idle log: the last group commit of an `always` log that then goes quiet is
/// covered by a checkpoint once `checkpoint_interval` has passed, so a flipped bit in it
/// after a crash is corruption (quarantine), never a power-loss tear that cuts acked records.
#[test]
fn the_last_batch_of_an_idle_always_log_is_checkpointed_and_never_cut() {
    let fs = sim();
    let c = LogConfig {
        checkpoint_interval: Duration::from_millis(50),
        ..always()
    };
    let (log, _) = sim_open(&fs, &c);
    log.append(&[p(100)], 999)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    let ts: Vec<_> = (0..10)
        .map(|i| log.append(&[p(i)], 1000 + i).unwrap().ticket)
        .collect();
    for t in ts {
        t.wait_blocking().unwrap();
    }
    // No more appends: the checkpoint must still come to cover offset 11.
    let cp = sim_dir().join(CHECKPOINT_FILE);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bytes = fs.contents(&cp).unwrap_or_default();
        if checkpoint::choose(&bytes).is_some_and(|c| c.next_offset == 11) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint over the last batch of an idle log"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let fs = fs.crash(Crash::ProcessKill);
    drop(log);
    let fl = 40 + 6 + p(0).len() as u64;
    fs.flip_bit(&seg(&sim_dir(), 0), (64 + 6 * fl + 45) * 8 + 2); // inside frame 6
    let (log, r) = sim_open(&fs, &c);
    assert!(
        matches!(r.damage, Some(Damage::Corrupt { offset: 6, .. })),
        "{r:?}"
    );
    assert_eq!(r.truncated_bytes, 0);
    assert!(matches!(
        log.append(&[p(1)], 2000),
        Err(StorageError::Quarantined { .. })
    ));
    assert_eq!(log.read(0, 100, usize::MAX).unwrap().records.len(), 6);
}

/// Finding 4: an fsync failure that could not be recorded (log.state unwritable on the same
/// broken disk) must not let the next process serve the pages the kernel dropped.
#[test]
fn an_unrecorded_fsync_failure_never_serves_dropped_pages_after_a_restart() {
    let fs = sim();
    let (log, _) = sim_open(&fs, &always());
    log.append(&[p(0)], 1)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
    fs.fail(
        FaultRule::new(FaultOp::Open, 1, EIO)
            .on_path("log.state")
            .sticky(),
    );
    let r = log.append(&[p(1)], 2).unwrap().ticket.wait_blocking();
    assert!(r.is_err(), "record 1 was never durable: {r:?}");
    let epoch = log.epoch();
    let fs2 = fs.crash(Crash::ProcessKill);
    drop(log);
    let (log2, _) = sim_open(&fs2, &always());
    let rd = log2.read(0, 10, 1 << 20).unwrap();
    let offsets: Vec<u64> = rd.records.iter().map(|r| r.0).collect();
    assert_eq!(offsets, [0], "a record whose fsync failed is served");
    assert_eq!(log2.next_offset(), 1);
    assert_eq!(fs2.fsyncgate_violations(), 0);
    let a = log2.append(&[p(7)], 3).unwrap();
    assert_eq!(a.offsets, 1..2);
    a.ticket.wait_blocking().unwrap();
    let fs3 = fs2.crash(Crash::PowerLoss { seed: 1 });
    drop(log2);
    let (log3, _) = sim_open(&fs3, &always());
    assert_eq!(log3.next_offset(), 2);
    assert_eq!(log3.epoch(), epoch);
    let got: Vec<Bytes> = log3
        .read(0, 10, 1 << 20)
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(got, vec![p(0), p(7)]);
    assert_eq!(fs3.fsyncgate_violations(), 0);
}

/// Finding 7: a sealed segment missing from the middle of a log reads as a gap (the next
/// record has a higher offset, as after `check --repair` cut a hole), never as an empty
/// success forever.
#[test]
fn a_missing_sealed_segment_reads_as_a_gap_never_as_empty() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let c = LogConfig {
        segment_bytes: 4096,
        ..always()
    };
    let (log, _) = DurableLog::open(fs.clone(), d.path(), c.clone()).unwrap();
    let big = Bytes::from(vec![7u8; 1500]);
    for i in 0..9 {
        log.append(std::slice::from_ref(&big), 10 + i)
            .unwrap()
            .ticket
            .wait_blocking()
            .unwrap();
    }
    drop(log);
    let v = segment_bases(d.path());
    std::fs::remove_file(seg(d.path(), v[1])).unwrap();
    let (log, _) = DurableLog::open(fs.clone(), d.path(), c).unwrap();
    let r = log.read(v[1], 10, 1 << 20).unwrap();
    assert_eq!(r.records.first().map(|r| r.0), Some(v[2]), "{r:?}");
    // A reader walking the log: the records before the hole, then the gap, then the rest.
    let mut at = 0;
    let mut seen = Vec::new();
    while let Some(&(last, _)) = log.read(at, 3, 1 << 20).unwrap().records.last() {
        seen.extend(
            log.read(at, 3, 1 << 20)
                .unwrap()
                .records
                .iter()
                .map(|r| r.0),
        );
        at = last + 1;
    }
    let want: Vec<u64> = (0..9).filter(|&o| o < v[1] || o >= v[2]).collect();
    assert_eq!(seen, want);
}

/// Finding 7 (cause): retention deletes oldest first and syncs the directory after each
/// segment, so a crash can never keep an older segment and lose a newer one.
#[test]
fn retention_unlinks_oldest_first_with_a_directory_sync_after_each() {
    let d = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let fs: Arc<dyn Fs> = rec.clone();
    let c = LogConfig {
        segment_bytes: 4096,
        ..always()
    };
    let (log, _) = DurableLog::open(fs, d.path(), c).unwrap();
    let big = Bytes::from(vec![7u8; 1500]);
    for i in 0..12 {
        log.append(std::slice::from_ref(&big), 10 + i)
            .unwrap()
            .ticket
            .wait_blocking()
            .unwrap();
    }
    rec.ops.lock().clear();
    let tight = Retention {
        max_records: 1,
        max_bytes: 0,
        max_age: None,
    };
    // The config is fixed at open: reopen with the tight bound.
    drop(log);
    let fs: Arc<dyn Fs> = rec.clone();
    let c = LogConfig {
        segment_bytes: 4096,
        retention: tight,
        ..always()
    };
    let (log, _) = DurableLog::open(fs, d.path(), c).unwrap();
    rec.ops.lock().clear();
    let r = log.apply_retention(20).unwrap();
    assert!(r.segments >= 3, "{r:?}");
    let ops = rec.ops.lock().clone();
    // Sequence of (removed .seg base | dir sync): each removal followed by a sync before the
    // next removal, bases increasing.
    let mut last_base = None;
    let mut synced_since = true;
    for op in &ops {
        match op {
            RecOp::RemoveSeg(b) => {
                assert!(
                    synced_since,
                    "two segments unlinked without a sync: {ops:?}"
                );
                assert!(last_base.is_none_or(|l| l < *b), "{ops:?}");
                last_base = Some(*b);
                synced_since = false;
            }
            RecOp::SyncDir => synced_since = true,
        }
    }
    assert!(synced_since, "{ops:?}");
}

/// Finding 8: a segment that cut_back cannot remove fails the open; it never comes back at a
/// later open with frames at offsets newer records own.
#[test]
fn cut_back_fails_the_open_when_a_later_segment_cannot_be_removed() {
    let fs = sim();
    let c = LogConfig {
        segment_bytes: 4096,
        ..always()
    };
    let (log, _) = sim_open(&fs, &c);
    log.append(&[p(0)], 1)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    // The sync fails; healing cuts back and rolls onto a new segment, but the state file that
    // clears the mark cannot be written: the mark stays, with a segment after its point.
    fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
    assert!(log
        .append(&[p(1)], 2)
        .unwrap()
        .ticket
        .wait_blocking()
        .is_err());
    fs.fail(
        FaultRule::new(FaultOp::Open, 1, EIO)
            .on_path("log.state")
            .sticky(),
    );
    assert!(log.heal(3).is_err());
    assert!(log.segment_count() >= 2);
    let fs = fs.crash(Crash::ProcessKill);
    drop(log);
    fs.fail(FaultRule::new(FaultOp::Remove, 1, EIO).on_path(".seg"));
    let f: Arc<dyn Fs> = fs.clone();
    let r = DurableLog::open(f, &sim_dir(), c.clone());
    assert!(
        matches!(
            r,
            Err(StorageError::Io {
                op: IoOp::Remove,
                ..
            })
        ),
        "{:?}",
        r.map(|(_, r)| r)
    );
    // Once the disk lets it, the open cuts back and goes on.
    let (log, _) = sim_open(&fs, &c);
    assert_eq!(log.next_offset(), 1);
    assert_eq!(log.segment_count(), 1);
}

/// Finding 5: a flusher sync that captured the active file before a heal (then waited for the
/// guard) must not sync the stale file and resolve tickets of records now in the new segment.
#[test]
fn a_flusher_sync_that_raced_a_heal_acks_nothing_of_the_new_segment() {
    use std::sync::mpsc;
    let fs = sim();
    let c = LogConfig {
        segment_bytes: 4096,
        ..always()
    };
    let (log, _) = sim_open(&fs, &c);
    log.append(&[p(0)], 1)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    // Pause every flusher sync between its capture of the file and the guard.
    let (tx_in, rx_in) = mpsc::channel::<()>();
    let (tx_go, rx_go) = mpsc::channel::<()>();
    let rx_go = parking_lot::Mutex::new(rx_go);
    let tx_in = parking_lot::Mutex::new(tx_in);
    *log.inner.sync_hook.lock() = Some(Arc::new(move || {
        let _ = tx_in.lock().send(());
        let _ = rx_go.lock().recv_timeout(Duration::from_secs(20));
    }));
    let t1 = log.append(&[p(1)], 2).unwrap().ticket;
    rx_in.recv_timeout(Duration::from_secs(20)).unwrap(); // captured (A, .., 2)
                                                          // A roll's seal fails; heal cuts back to offset 1 and moves to a new segment.
    fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
    let big = Bytes::from(vec![1u8; 4096]);
    assert!(log.append(&[big], 3).is_err());
    assert!(t1.wait_blocking().is_err());
    let h = log.heal(4).unwrap().expect("failed");
    assert_eq!(h.next_offset, 1);
    let a = log.append(&[p(9)], 5).unwrap();
    assert_eq!(a.offsets, 1..2);
    // Let the stale sync go; wait until the flusher is in its next turn.
    tx_go.send(()).unwrap();
    let next_turn = rx_in.recv_timeout(Duration::from_secs(5));
    assert!(
        !a.ticket.is_resolved(),
        "acked by a sync of the file heal replaced"
    );
    next_turn.unwrap();
    assert_eq!(log.visible_offset(), 1);
    *log.inner.sync_hook.lock() = None;
    tx_go.send(()).unwrap();
    a.ticket.wait_blocking().unwrap();
    assert_eq!(log.visible_offset(), 2);
    drop(log);
    let (log, _) = sim_open(&fs.crash(Crash::PowerLoss { seed: 3 }), &c);
    assert_eq!(log.next_offset(), 2);
    // One segment per cold read: 0 in the first, 1 in the one heal started.
    assert_eq!(log.read(0, 10, 1 << 20).unwrap().records, vec![(0, p(0))]);
    assert_eq!(log.read(1, 10, 1 << 20).unwrap().records, vec![(1, p(9))]);
}

/// Finding 4 (mark): a failure mark log.state could not take is written by the next heal before
/// it cuts anything, so a process that dies mid-heal still leaves it; for an `interval` log
/// that means a new epoch at the next open (records past the mark were visible).
#[test]
fn a_failure_mark_that_could_not_be_written_is_written_by_the_next_heal() {
    let fs = sim();
    let c = LogConfig {
        fsync: FsyncPolicy::Interval(Duration::from_millis(5)),
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let (log, _) = sim_open(&fs, &c);
    let seg0 = seg(&sim_dir(), 0);
    log.append(&[p(0)], 1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs.all_synced() {
        assert!(Instant::now() < deadline, "interval sync never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
    let syncs = fs.sync_count(&seg0);
    fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
    fs.fail(FaultRule::new(FaultOp::Open, 1, EIO).on_path("log.state"));
    log.append(&[p(1)], 2).unwrap(); // visible at once (interval)
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.refusal().is_none() {
        assert!(Instant::now() < deadline, "the failing sync never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(fs.sync_count(&seg0), syncs);
    let epoch = log.epoch();
    // The heal writes the mark, then fails to reopen the segment; the process dies.
    fs.fail(FaultRule::new(FaultOp::Open, 1, EIO).on_path(".seg"));
    assert!(log.heal(3).is_err());
    let fs = fs.crash(Crash::ProcessKill);
    drop(log);
    let (log, r) = sim_open(&fs, &c);
    assert_eq!(log.next_offset(), 1);
    assert!(r.epoch_changed, "a visible record was dropped: {r:?}");
    assert_ne!(log.epoch(), epoch);
}

/// Finding 6: the hot tail's bound counted payload bytes only, so empty payloads were never
/// trimmed (200 000 of them stayed in memory under a 1 KiB bound).
#[test]
fn the_hot_tail_bound_holds_for_empty_payloads() {
    let fs = sim();
    let c = LogConfig {
        fsync: FsyncPolicy::Os,
        hot_tail_bytes: 1024,
        segment_bytes: 1 << 30,
        ..LogConfig::default()
    };
    let (log, _) = sim_open(&fs, &c);
    for i in 0..20_000u64 {
        let _ = log.append(&[Bytes::new()], i).unwrap();
    }
    assert!(
        log.memory_bytes() <= 1024 + TAIL_RECORD_OVERHEAD + 4096,
        "{} bytes held",
        log.memory_bytes()
    );
    let tail_len = log.inner.state.lock().tail.len();
    assert!(
        tail_len <= 1024 / TAIL_RECORD_OVERHEAD + 1,
        "{tail_len} records held"
    );
    // Older records come from the file.
    let r = log.read(0, 3, 1 << 20).unwrap();
    assert_eq!(r.records.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2]);
}

/// Found by the model test once it flipped bits and aged segments out: the only segment left
/// (retention deleted the older ones) is empty and its header is damaged, or a heal that
/// restarts it died between unlink and create. Recovery dropped it and started the log again
/// at offset 0, handing out acked offsets a second time in the same epoch.
#[test]
fn a_lone_empty_segment_with_a_bad_header_keeps_the_logs_next_offset() {
    let fs = sim();
    let c = LogConfig {
        segment_age: Some(Duration::from_millis(100)),
        retention: Retention {
            max_records: 0,
            max_bytes: 0,
            max_age: Some(Duration::from_millis(300)),
        },
        ..always()
    };
    let (log, _) = sim_open(&fs, &c);
    for i in 0..3 {
        let a = log.append(&[p(i)], 1000 + i).unwrap();
        a.ticket.wait_blocking().unwrap();
    }
    // Rolls the quiet segment, then deletes it: one empty segment at base 3 is left.
    assert_eq!(log.apply_retention(2000).unwrap().segments, 1);
    assert_eq!((log.first_offset(), log.next_offset()), (3, 3));
    let epoch = log.epoch();
    let fs = fs.crash(Crash::ProcessKill);
    drop(log);
    fs.flip_bit(&seg(&sim_dir(), 3), 0);
    let (log, _) = sim_open(&fs, &c);
    assert_eq!(
        log.next_offset(),
        3,
        "offsets 0..3 would be handed out again"
    );
    assert_eq!(log.epoch(), epoch);
    assert_eq!(log.append(&[p(3)], 2001).unwrap().offsets, 3..4);
}

/// Found by the model test: when recovery drops an empty last segment (bad header), the one
/// before it was sealed (fsynced whole) and is not covered by the checkpoint (which named the
/// dropped one): a flipped bit in it was cut as a torn tail, losing acked records.
#[test]
fn damage_in_a_sealed_segment_left_last_is_corruption_never_a_torn_tail() {
    let fs = sim();
    let (log, _) = sim_open(&fs, &always());
    for i in 0..3 {
        let a = log.append(&[p(i)], 1000 + i).unwrap();
        a.ticket.wait_blocking().unwrap();
    }
    // A failed sync, healed: segment 0 is cut back to offset 3 and sealed, an empty one follows.
    fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
    assert!(log
        .append(&[p(3)], 1003)
        .unwrap()
        .ticket
        .wait_blocking()
        .is_err());
    assert_eq!(log.heal(1004).unwrap().unwrap().next_offset, 3);
    assert_eq!(log.segment_count(), 2);
    let fs = fs.crash(Crash::ProcessKill);
    drop(log);
    // Two disk faults: a bit of record 2's frame, and the empty segment's header.
    let fl = 40 + 6 + p(0).len() as u64;
    fs.flip_bit(&seg(&sim_dir(), 0), (64 + 2 * fl + 45) * 8);
    fs.flip_bit(&seg(&sim_dir(), 3), 0);
    let (log, r) = sim_open(&fs, &always());
    assert!(
        matches!(r.damage, Some(Damage::Corrupt { offset: 2, .. })),
        "{r:?}"
    );
    assert_eq!(r.truncated_bytes, 64, "only the empty segment goes: {r:?}");
    assert_eq!(log.read(0, 10, 1 << 20).unwrap().records.len(), 2);
}

/// Smaller finding: a failed directory fsync in a roll was retried by the next append as if
/// nothing happened; it now fails the log, which heals onto a fresh segment.
#[test]
fn a_failed_directory_fsync_in_a_roll_fails_the_log_until_healed() {
    let fs = sim();
    let c = LogConfig {
        segment_bytes: 4096,
        ..always()
    };
    let (log, _) = sim_open(&fs, &c);
    let big = Bytes::from(vec![3u8; 3000]);
    let a = log.append(std::slice::from_ref(&big), 1).unwrap();
    a.ticket.wait_blocking().unwrap();
    fs.fail(FaultRule::new(FaultOp::SyncDir, 1, EIO));
    assert!(log.append(std::slice::from_ref(&big), 2).is_err());
    assert!(
        log.refusal().is_some(),
        "the log goes on as if the entry were durable"
    );
    assert!(log.append(&[p(1)], 3).is_err());
    let h = log.heal(4).unwrap().expect("failed");
    assert_eq!((h.next_offset, h.dropped), (1, 0));
    let a = log.append(&[p(1)], 5).unwrap();
    assert_eq!(a.offsets, 1..2);
    a.ticket.wait_blocking().unwrap();
    drop(log);
    let (log, r) = sim_open(&fs.crash(Crash::PowerLoss { seed: 9 }), &c);
    assert_eq!((log.next_offset(), r.damage), (2, None));
}

/// Smaller finding: directories created with the log (tenant, namespace) were not fsynced, so a
/// power cut could take the whole log with acked records.
#[test]
fn parents_created_with_the_log_survive_a_power_cut() {
    let fs = sim(); // only /d is durable
    let dir = Path::new("/d/tenant/ns/log");
    let f: Arc<dyn Fs> = fs.clone();
    let (log, _) = DurableLog::open(f, dir, always()).unwrap();
    log.append(&[p(0)], 1)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    let fs = fs.crash(Crash::PowerLoss { seed: 1 });
    drop(log);
    let f: Arc<dyn Fs> = fs.clone();
    let (log, _) = DurableLog::open(f, dir, always()).unwrap();
    assert_eq!(
        log.next_offset(),
        1,
        "an acked record lost with its directory"
    );
}

/// Smaller findings: a missing log.state gives a new epoch and says so; an empty segment after
/// a roll keeps the log's last timestamp across a restart (timestamps never go back); heal
/// writes the new epoch into the header of the segment it starts.
#[test]
fn epoch_and_timestamps_across_restarts_and_heals() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let c = LogConfig {
        segment_age: Some(Duration::from_millis(100)),
        ..always()
    };
    let (log, _) = DurableLog::open(fs.clone(), d.path(), c.clone()).unwrap();
    log.append(&[p(0)], 5_000)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    log.apply_retention(6_000).unwrap(); // rolls: an empty active segment stamped 6000
    assert_eq!(log.segment_count(), 2);
    let epoch = log.epoch();
    drop(log);
    let (log, r) = DurableLog::open(fs.clone(), d.path(), c.clone()).unwrap();
    assert!(!r.epoch_changed);
    assert_eq!(log.inner.state.lock().last_ts, 6_000);
    drop(log);
    std::fs::remove_file(d.path().join("log.state")).unwrap();
    let (log, r) = DurableLog::open(fs.clone(), d.path(), c).unwrap();
    assert!(r.epoch_changed, "{r:?}");
    assert_ne!(log.epoch(), epoch);

    // Heal of an `os` log that drops a visible record: the new segment carries the new epoch.
    let fs = sim();
    let c = LogConfig {
        fsync: FsyncPolicy::Os,
        ..LogConfig::default()
    };
    let (log, _) = sim_open(&fs, &c);
    log.append(&[p(0)], 1).unwrap();
    log.close().unwrap(); // synced
    drop(log);
    let (log, _) = sim_open(&fs, &c);
    let old = log.epoch();
    log.append(&[p(1)], 4).unwrap();
    // A roll with a failing seal, then heal: a visible record (1) dropped, epoch changes.
    fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
    let big = Bytes::from(vec![1u8; 64 << 20]);
    assert!(log.append(&[big], 5).is_err());
    let h = log.heal(6).unwrap().unwrap();
    assert!(h.epoch_changed);
    assert_ne!(log.epoch(), old);
    let newest = log.inner.state.lock().segments.back().unwrap().base();
    let head = fs.contents(&seg(&sim_dir(), newest)).unwrap();
    let hdr = crate::format::SegmentHeader::decode(&head[..64]).unwrap();
    assert_eq!(
        hdr.epoch,
        log.epoch(),
        "the new segment carries the old epoch"
    );
}

/// Smaller finding: a cold reader made before a heal cut the active segment back read past the
/// new end and failed with UnexpectedEof, though every record it wanted was below the cut.
#[test]
fn a_cold_read_over_a_file_cut_back_meanwhile_returns_what_is_below_the_cut() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let c = LogConfig {
        hot_tail_bytes: 0,
        read_chunk_bytes: 1 << 20,
        ..always()
    };
    let (log, _) = DurableLog::open(fs.clone(), d.path(), c).unwrap();
    for i in 0..10 {
        let a = log.append(&[p(i)], 1000 + i).unwrap();
        a.ticket.wait_blocking().unwrap();
    }
    let reader = {
        let st = log.inner.state.lock();
        st.segments.back().unwrap().reader(fs.as_ref(), 0).unwrap()
    };
    // What a heal does to the file: cut back (here to the end of record 4).
    let fl = 40 + 6 + p(0).len() as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(seg(d.path(), 0))
        .unwrap()
        .set_len(64 + 5 * fl)
        .unwrap();
    let r = reader.read(0, 5, 100, usize::MAX, 1 << 20).unwrap();
    assert_eq!(r.records.len(), 5);
    assert_eq!(r.records[4], (4, p(4)));
}

#[derive(Debug, Clone)]
enum RecOp {
    RemoveSeg(u64),
    SyncDir,
}

/// RealFs that records unlinks of segments and directory syncs, in order.
#[derive(Default)]
struct Recorder {
    ops: parking_lot::Mutex<Vec<RecOp>>,
}

impl Fs for Recorder {
    fn open(
        &self,
        p: &Path,
        mode: crate::fs::OpenMode,
    ) -> std::io::Result<Box<dyn crate::fs::FsFile>> {
        RealFs.open(p, mode)
    }
    fn list_dir(&self, p: &Path) -> std::io::Result<Vec<String>> {
        RealFs.list_dir(p)
    }
    fn create_dir_all(&self, p: &Path) -> std::io::Result<()> {
        RealFs.create_dir_all(p)
    }
    fn rename(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        RealFs.rename(a, b)
    }
    fn remove_file(&self, p: &Path) -> std::io::Result<()> {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if let Some(b) = name.strip_suffix(".seg") {
            self.ops.lock().push(RecOp::RemoveSeg(b.parse().unwrap()));
        }
        RealFs.remove_file(p)
    }
    fn remove_dir_all(&self, p: &Path) -> std::io::Result<()> {
        RealFs.remove_dir_all(p)
    }
    fn sync_dir(&self, p: &Path) -> std::io::Result<()> {
        self.ops.lock().push(RecOp::SyncDir);
        RealFs.sync_dir(p)
    }
    fn free_bytes(&self, p: &Path) -> std::io::Result<u64> {
        RealFs.free_bytes(p)
    }
    fn lock_exclusive(&self, p: &Path) -> std::io::Result<Box<dyn crate::fs::FsLock>> {
        RealFs.lock_exclusive(p)
    }
}
