//! DurableLog over SimFs: a model-based property test with crashes of every kind, fsync
//! failure, and ENOSPC.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::fs::Fs;
use crate::retention::Retention;
use crate::sim::{Crash, FaultOp, FaultRule, SimFs};

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

fn dir() -> PathBuf {
    PathBuf::from("/data/streams/t/ns/s")
}

fn sim() -> Arc<SimFs> {
    let fs = SimFs::new();
    fs.mkdir_durable(Path::new("/data/streams/t/ns")).unwrap();
    fs
}

fn config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync,
        segment_bytes: 4096,
        index_interval_bytes: 512,
        hot_tail_bytes: 1024,
        read_chunk_bytes: 700,
        retention: Retention {
            max_records: 60,
            ..Retention::default()
        },
        ..LogConfig::default()
    }
}

fn open(fs: &Arc<SimFs>, c: &LogConfig) -> (DurableLog, Recovery) {
    let f: Arc<dyn Fs> = fs.clone();
    DurableLog::open(f, &dir(), c.clone()).unwrap()
}

fn payload(tag: u64, len: usize) -> Bytes {
    let mut v = format!("{tag}:").into_bytes();
    v.resize(len.max(v.len()), b'a' + (tag % 26) as u8);
    Bytes::from(v)
}

/// Everything readable from `from`, in max-record/max-byte steps as a reader would.
fn read_from(log: &DurableLog, from: u64) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let r = log.read(at, 5, 400).unwrap();
        let Some(&(last, _)) = r.records.last() else {
            return out;
        };
        at = last + 1;
        out.extend(r.records);
    }
}

/// Heals, retrying while an injected fault fails a step (each fault is one-shot).
fn heal(log: &DurableLog, now: u64) -> Result<Option<Healed>, TestCaseError> {
    for _ in 0..50 {
        match log.heal(now) {
            Ok(h) => return Ok(h),
            Err(StorageError::Io { .. }) => continue,
            Err(e) => return Err(TestCaseError::fail(format!("heal: {e}"))),
        }
    }
    Err(TestCaseError::fail("heal kept failing"))
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<usize>),
    Wait,
    Read(u64),
    Retention,
    Crash(u8, u64),
    /// The next fdatasync of a segment fails (EIO, pages dropped as Linux does).
    FailSync,
    /// The clock jumps forward by this many ms (age retention, segment age).
    Advance(u64),
    /// One bit of a segment file flips, in the page cache and on the platter (a disk fault):
    /// (which segment, which bit), both taken modulo what exists.
    Flip(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => proptest::collection::vec(1usize..300, 1..4).prop_map(Op::Append),
        3 => Just(Op::Wait),
        2 => (0u64..400).prop_map(Op::Read),
        1 => Just(Op::Retention),
        1 => (0u8..4, any::<u64>()).prop_map(|(k, s)| Op::Crash(k, s)),
        1 => Just(Op::FailSync),
        1 => (0u64..400).prop_map(Op::Advance),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Op::Flip(a, b)),
    ]
}

fn policy() -> impl Strategy<Value = FsyncPolicy> {
    prop_oneof![
        Just(FsyncPolicy::Always),
        Just(FsyncPolicy::Interval(Duration::from_millis(2))),
        Just(FsyncPolicy::Os),
    ]
}

/// The model: every appended payload by offset (offsets are never reused within an epoch
/// unless a crash dropped them), and how far acks promise survival.
struct Model {
    appended: Vec<Bytes>,
    /// Records below this were acked under `always` (ticket resolved Ok): survive power loss.
    acked: u64,
    tickets: Vec<(u64, Ticket)>,
    /// Size of the last append, which a torn write may take back.
    last_batch: u64,
    /// A sync fault was injected: appends and tickets may fail from then on.
    faulted: bool,
    /// Timestamp of each record in `appended`.
    ts: Vec<u64>,
    /// A bit was flipped: reads may fail (never return other bytes), a restart may quarantine.
    flipped: bool,
}

fn check_contents(log: &DurableLog, m: &Model) -> Result<(), TestCaseError> {
    let first = log.first_offset();
    if m.flipped {
        // Damage ends a read (an error naming its offset); what is returned is right.
        let mut at = first;
        while let Ok(r) = log.read(at, 5, 400) {
            let Some(&(last, _)) = r.records.last() else {
                break;
            };
            for (o, p) in &r.records {
                prop_assert_eq!(p, &m.appended[*o as usize], "record {} differs", o);
            }
            at = last + 1;
        }
        return Ok(());
    }
    let got = read_from(log, 0);
    let visible = log.visible_offset();
    prop_assert_eq!(got.len() as u64, visible - first);
    for (i, (o, p)) in got.iter().enumerate() {
        prop_assert_eq!(*o, first + i as u64);
        prop_assert_eq!(p, &m.appended[*o as usize], "record {} differs", o);
    }
    Ok(())
}

/// The model test's configuration: `by_age` bounds the log by age alone (review r1: the age
/// rule was never exercised, which is how finding 1 went unseen); checkpoints after every
/// sync, so a flipped bit in acked data is always told from a torn tail (the residual window
/// of storage.md 8.2 is then empty and the model can hold recovery to it).
fn model_config(policy: FsyncPolicy, by_age: bool) -> LogConfig {
    let mut c = config(policy);
    c.checkpoint_interval = Duration::ZERO;
    if by_age {
        c.retention = Retention {
            max_records: 0,
            max_bytes: 0,
            max_age: Some(Duration::from_millis(MAX_AGE_MS)),
        };
        c.segment_age = Some(Duration::from_millis(100));
    }
    c
}

const MAX_AGE_MS: u64 = 300;

fn run(policy: FsyncPolicy, by_age: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let c = model_config(policy, by_age);
    let mut fs = sim();
    let (mut log, _) = open(&fs, &c);
    let mut epoch = log.epoch();
    let mut now = 1_000u64;
    let mut m = Model {
        appended: Vec::new(),
        acked: 0,
        tickets: Vec::new(),
        last_batch: 0,
        faulted: false,
        ts: Vec::new(),
        flipped: false,
    };
    for op in ops {
        now += 7;
        // Never an fsync over pages a failed one dropped, even when the process died before
        // recording the failure: recovery evicts such pages before it reads (review r1, 4).
        prop_assert_eq!(fs.fsyncgate_violations(), 0);
        match op {
            Op::Append(sizes) => {
                let start = m.appended.len() as u64;
                let ps: Vec<Bytes> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| payload(start + i as u64, l))
                    .collect();
                let a = match log.append(&ps, now) {
                    Ok(a) => a,
                    Err(StorageError::Quarantined { .. }) if m.flipped => return Ok(()),
                    Err(e) => {
                        // Only a failed fsync makes a log refuse; healing brings it back.
                        prop_assert!(m.faulted, "append failed: {}", e);
                        let sync_error = matches!(e, StorageError::Io { op: IoOp::Sync, .. });
                        prop_assert!(sync_error, "{:?}", e);
                        let h = heal(&log, now)?.expect("a failed log heals");
                        prop_assert!(h.next_offset >= m.acked, "heal dropped an acked record");
                        prop_assert_eq!(h.next_offset + h.dropped, m.appended.len() as u64);
                        m.appended.truncate(h.next_offset as usize);
                        m.ts.truncate(h.next_offset as usize);
                        m.tickets.clear();
                        epoch = log.epoch();
                        continue;
                    }
                };
                prop_assert_eq!(a.offsets.clone(), start..start + ps.len() as u64);
                m.ts.extend(std::iter::repeat_n(now, ps.len()));
                m.appended.extend(ps);
                m.last_batch = a.offsets.end - a.offsets.start;
                m.tickets.push((a.offsets.end, a.ticket));
            }
            Op::Wait => {
                for (end, t) in m.tickets.drain(..) {
                    let r = t.wait_timeout(Duration::from_secs(20));
                    prop_assert!(r.is_some(), "a ticket never resolved");
                    if r != Some(Ok(())) {
                        prop_assert!(m.faulted, "{:?}", r);
                        continue;
                    }
                    if policy == FsyncPolicy::Always {
                        m.acked = m.acked.max(end);
                    }
                }
                // What was acked is visible (always: synced; others: written).
                prop_assert!(log.visible_offset() >= m.acked);
            }
            Op::Read(from) => {
                let r = match log.read(from, 10, 1000) {
                    Ok(r) => r,
                    Err(StorageError::Quarantined { .. }) if m.flipped => continue,
                    Err(e) => return Err(TestCaseError::fail(format!("read: {e}"))),
                };
                let first = log.first_offset();
                prop_assert!(r.first_available == first);
                for (i, (o, p)) in r.records.iter().enumerate() {
                    prop_assert_eq!(*o, from.max(first) + i as u64);
                    prop_assert!(*o < r.next_offset);
                    prop_assert_eq!(p, &m.appended[*o as usize]);
                }
            }
            Op::Retention => {
                let before = log.first_offset();
                match log.apply_retention(now) {
                    Ok(_) => {}
                    // Its age roll seals the active segment: an injected sync fault fails it.
                    Err(StorageError::Io { op: IoOp::Sync, .. }) if m.faulted => continue,
                    Err(e) => return Err(TestCaseError::fail(format!("retention: {e}"))),
                }
                let first = log.first_offset();
                prop_assert!(first >= before);
                if by_age {
                    // No record younger than max_age is gone (timestamps never decrease, so
                    // the first young record bounds them all).
                    let limit = now.saturating_sub(MAX_AGE_MS);
                    let young = m.ts.iter().position(|&t| t >= limit);
                    if let Some(young) = young {
                        prop_assert!(
                            first <= young as u64,
                            "record {} (ts {}) deleted at {} by max_age {}",
                            young,
                            m.ts[young],
                            now,
                            MAX_AGE_MS
                        );
                    }
                } else {
                    prop_assert!(log.next_offset() - first >= 60.min(log.next_offset() - before));
                }
            }
            Op::Advance(ms) => now += ms,
            Op::Flip(which, bit) => {
                let mut segs: Vec<String> = fs
                    .list_dir(&dir())
                    .unwrap()
                    .into_iter()
                    .filter(|n| n.ends_with(".seg"))
                    .collect();
                segs.sort();
                let path = dir().join(&segs[(which % segs.len() as u64) as usize]);
                let len = fs.contents(&path).map_or(0, |b| b.len() as u64);
                if len > 0 {
                    fs.flip_bit(&path, bit % (len * 8));
                    m.flipped = true;
                }
            }
            Op::FailSync => {
                fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
                m.faulted = true;
            }
            Op::Crash(kind, seed) => {
                let how = match kind {
                    0 => Crash::ProcessKill,
                    1 => Crash::TornWrite { seed },
                    2 => Crash::PowerLoss { seed },
                    _ => Crash::PowerLossReordered { seed },
                };
                let appended = m.appended.len() as u64;
                let next_fs = fs.crash(how);
                // Tickets of the dead process are unknown outcomes, never acks.
                m.tickets.clear();
                drop(log);
                fs = next_fs;
                let (l, r) = open(&fs, &c);
                log = l;
                prop_assert_eq!(fs.fsyncgate_violations(), 0);
                let n = log.next_offset();
                prop_assert!(n <= appended, "a record that was never appended");
                let quarantined = matches!(log.refusal(), Some(StorageError::Quarantined { .. }));
                prop_assert_eq!(
                    quarantined,
                    matches!(r.damage, Some(Damage::Corrupt { .. })),
                    "{:?}",
                    r.damage
                );
                if quarantined && m.flipped {
                    // Quarantined: served up to the damage, nothing else to check.
                    m.appended.truncate(n as usize);
                    return check_contents(&log, &m);
                }
                // A flipped bit is never taken for a torn tail where that would cut acked
                // records (the NATS 2.12.1 failure; review r1, 2).
                prop_assert!(
                    n >= m.acked,
                    "acked {} but recovered {} ({:?})",
                    m.acked,
                    n,
                    r.damage
                );
                if m.faulted {
                    // After a failed fsync dropped pages (fsyncgate), a process that died before
                    // healing leaves data no later open can vouch for: only the acked records
                    // and "nothing that was not appended" are promised, and damage found then
                    // may be quarantined.
                    m.appended.truncate(n as usize);
                    if matches!(r.damage, Some(Damage::Corrupt { .. })) {
                        return check_contents(&log, &m);
                    }
                } else if !m.flipped {
                    match how {
                        Crash::ProcessKill => {
                            prop_assert_eq!(n, appended, "kill -9 lost an appended record");
                            prop_assert_eq!(r.truncated_bytes, 0);
                        }
                        Crash::TornWrite { .. } => {
                            prop_assert!(n + m.last_batch >= appended, "{} of {}", n, appended);
                        }
                        _ => {}
                    }
                    prop_assert!(
                        !matches!(r.damage, Some(Damage::Corrupt { .. })),
                        "a crash is never corruption: {:?}",
                        r.damage
                    );
                    let power = matches!(
                        how,
                        Crash::PowerLoss { .. } | Crash::PowerLossReordered { .. }
                    );
                    if !power || policy == FsyncPolicy::Always {
                        prop_assert_eq!(log.epoch(), epoch, "epoch changed after {:?}", how);
                    }
                }
                epoch = log.epoch();
                // Offsets past the recovered end are handed out again: the model forgets them.
                m.appended.truncate(n as usize);
                m.ts.truncate(n as usize);
                m.last_batch = 0;
                check_contents(&log, &m)?;
            }
        }
    }
    for (_, t) in m.tickets.drain(..) {
        let r = t.wait_timeout(Duration::from_secs(20));
        prop_assert!(r == Some(Ok(())) || (m.faulted && r.is_some()), "{:?}", r);
    }
    if heal(&log, now + 1)?.is_some() {
        m.appended.truncate(log.next_offset() as usize);
    }
    check_contents(&log, &m)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn model_holds_through_appends_reads_retention_and_crashes(
        policy in policy(),
        by_age in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(policy, by_age, ops)?;
    }
}

#[test]
fn a_failed_fsync_fails_its_tickets_and_is_never_retried() {
    let fs = sim();
    let (log, _) = open(&fs, &config(FsyncPolicy::Always));
    log.append(&[payload(0, 10)], 1)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
    let t = log.append(&[payload(1, 10)], 2).unwrap().ticket;
    assert!(matches!(
        t.wait_timeout(Duration::from_secs(20)),
        Some(Err(StorageError::Io {
            op: IoOp::Sync,
            errno: EIO,
            ..
        }))
    ));
    // The log refuses writes instead of fsyncing the same pages again.
    assert!(matches!(
        log.append(&[payload(2, 10)], 3),
        Err(StorageError::Io { op: IoOp::Sync, .. })
    ));
    assert!(matches!(log.refusal(), Some(StorageError::Io { .. })));
    assert_eq!(
        log.visible_offset(),
        1,
        "the unsynced record never became visible"
    );
    assert_eq!(log.read(0, 10, 1000).unwrap().records.len(), 1);
    // Healing cuts back to the last durable point and goes on in a new segment, same epoch.
    let epoch = log.epoch();
    let segs = log.segment_count();
    let h = log.heal(4).unwrap().unwrap();
    assert_eq!((h.next_offset, h.dropped, h.epoch_changed), (1, 1, false));
    assert_eq!((log.epoch(), log.segment_count()), (epoch, segs + 1));
    assert_eq!(log.heal(5).unwrap(), None, "healed once");
    let a = log.append(&[payload(5, 10)], 6).unwrap();
    assert_eq!(a.offsets, 1..2);
    a.ticket.wait_blocking().unwrap();
    drop(log);
    assert_eq!(fs.fsyncgate_violations(), 0);
    // Everything acked survives a power loss; the dropped record is not resurrected.
    let after = fs.crash(Crash::PowerLoss { seed: 3 });
    let (log, r) = open(&after, &config(FsyncPolicy::Always));
    assert_eq!(r.damage, None);
    assert_eq!(
        read_from(&log, 0),
        vec![(0, payload(0, 10)), (1, payload(5, 10))]
    );
}

#[test]
fn healing_an_interval_log_that_lost_visible_records_changes_its_epoch() {
    let fs = sim();
    let c = config(FsyncPolicy::Interval(Duration::from_millis(1)));
    let (log, _) = open(&fs, &c);
    fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
    log.append(&[payload(0, 10)], 1)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while log.refusal().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the interval sync never ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(log.visible_offset(), 1, "interval: visible once written");
    let epoch = log.epoch();
    let h = log.heal(2).unwrap().unwrap();
    assert_eq!((h.next_offset, h.dropped, h.epoch_changed), (0, 1, true));
    assert_ne!(log.epoch(), epoch);
    assert_eq!(log.read(0, 10, 100).unwrap().records, vec![]);
    assert_eq!(log.append(&[payload(1, 10)], 3).unwrap().offsets, 0..1);
    drop(log);
    assert_eq!(fs.fsyncgate_violations(), 0);
    let (l2, _) = open(&fs.crash(Crash::ProcessKill), &c);
    assert_ne!(l2.epoch(), epoch, "the new epoch is persisted");
    assert_eq!(read_from(&l2, 0), vec![(0, payload(1, 10))]);
}

#[test]
fn enospc_fails_the_append_alone_and_the_next_one_takes_its_offset() {
    let fs = sim();
    let (log, _) = open(&fs, &config(FsyncPolicy::Always));
    for i in 0..3 {
        log.append(&[payload(i, 100)], 1)
            .unwrap()
            .ticket
            .wait_blocking()
            .unwrap();
    }
    let seg = dir().join("00000000000000000000.seg");
    let before = fs.contents(&seg).unwrap();
    // Room for part of the next frame only: a short write, then ENOSPC.
    fs.set_quota(Some(fs.used_bytes() + 60));
    let err = log.append(&[payload(3, 500)], 2).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Io {
                op: IoOp::Write,
                errno: ENOSPC,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.retryable());
    assert_eq!(
        fs.contents(&seg).unwrap(),
        before,
        "cut back to the frame boundary"
    );
    assert_eq!(log.next_offset(), 3);
    fs.set_quota(None);
    let a = log.append(&[payload(3, 500)], 3).unwrap();
    assert_eq!(a.offsets, 3..4);
    a.ticket.wait_blocking().unwrap();
    let got: Vec<u64> = read_from(&log, 0).iter().map(|r| r.0).collect();
    assert_eq!(got, vec![0, 1, 2, 3]);
    drop(log);
    let (log, r) = open(
        &fs.crash(Crash::PowerLoss { seed: 9 }),
        &config(FsyncPolicy::Always),
    );
    assert_eq!((r.damage, log.next_offset()), (None, 4));
}

#[test]
fn a_failed_write_mid_batch_leaves_no_partial_frame_after_a_crash() {
    let fs = sim();
    let (log, _) = open(&fs, &config(FsyncPolicy::Os));
    log.append(&[payload(0, 50)], 1).unwrap();
    fs.fail(FaultRule::new(FaultOp::Write, 1, EIO).on_path(".seg"));
    assert!(log.append(&[payload(1, 50)], 2).is_err());
    let (log2, r) = open(&fs.crash(Crash::ProcessKill), &config(FsyncPolicy::Os));
    drop(log);
    assert_eq!(
        (r.damage, r.truncated_bytes, log2.next_offset()),
        (None, 0, 1)
    );
}

#[test]
fn rolling_segments_survives_power_loss_of_everything_acked() {
    let c = config(FsyncPolicy::Always);
    for seed in 0..6 {
        let fs = sim();
        let (log, _) = open(&fs, &c);
        for i in 0..200 {
            log.append(&[payload(i, 64)], 10 + i)
                .unwrap()
                .ticket
                .wait_blocking()
                .unwrap();
        }
        assert!(log.segment_count() > 3);
        let (l, r) = open(&fs.crash(Crash::PowerLossReordered { seed }), &c);
        assert_eq!(l.next_offset(), 200, "seed {seed}: {r:?}");
        assert_eq!(l.epoch(), log.epoch());
        assert_eq!(read_from(&l, 0).len(), 200);
    }
}

#[test]
fn a_failed_fsync_not_healed_before_a_crash_is_cut_back_on_open() {
    let fs = sim();
    let c = config(FsyncPolicy::Always);
    let (log, _) = open(&fs, &c);
    for i in 0..3 {
        log.append(&[payload(i, 10)], 1)
            .unwrap()
            .ticket
            .wait_blocking()
            .unwrap();
    }
    fs.fail(FaultRule::sync(1, EIO).on_path(".seg"));
    let t = log.append(&[payload(3, 10)], 2).unwrap().ticket;
    assert!(t.wait_blocking().is_err());
    // The process dies before healing. The kernel still returns the dropped pages...
    let fs = fs.crash(Crash::ProcessKill);
    drop(log);
    // ...but the open cuts back to the point recorded at the failure, never trusting them.
    let (log, r) = open(&fs, &c);
    assert_eq!(log.next_offset(), 3);
    assert!(r.truncated_bytes > 0);
    let a = log.append(&[payload(4, 10)], 3).unwrap();
    assert_eq!(a.offsets, 3..4);
    a.ticket.wait_blocking().unwrap();
    drop(log);
    assert_eq!(fs.fsyncgate_violations(), 0);
    // Every acked record survives a power loss.
    let (log, _) = open(&fs.crash(Crash::PowerLoss { seed: 1 }), &c);
    let got: Vec<Bytes> = read_from(&log, 0).into_iter().map(|r| r.1).collect();
    assert_eq!(got, [0, 1, 2, 4].map(|i| payload(i, 10)).to_vec());
}

/// `kill -9` at every operation of the write path (each write, fsync, directory fsync, rename,
/// truncate, open of a run that rolls segments), then a restart, then a power loss of that:
/// every acked record is there, nothing that was not appended, never "corruption".
#[test]
fn a_kill_at_any_operation_loses_nothing_acked() {
    let c = config(FsyncPolicy::Always);
    let mut kills = 0;
    for op in [
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::SyncDir,
        FaultOp::Rename,
        FaultOp::SetLen,
        FaultOp::Open,
    ] {
        for nth in 1..=60u64 {
            let fs = sim();
            fs.fail(FaultRule::kill(op, nth, nth * 31 + 7));
            let f: Arc<dyn Fs> = fs.clone();
            let mut appended: Vec<Bytes> = Vec::new();
            let mut acked = 0u64;
            if let Ok((log, _)) = DurableLog::open(f, &dir(), c.clone()) {
                for i in 0..60u64 {
                    let p = payload(i, 40 + (i as usize * 37) % 200);
                    let Ok(a) = log.append(std::slice::from_ref(&p), 10 + i) else {
                        break;
                    };
                    appended.push(p);
                    if a.ticket.wait_blocking().is_err() {
                        break;
                    }
                    acked = a.offsets.end;
                }
            }
            if acked < 60 {
                kills += 1;
            }
            let after = fs.crash(Crash::ProcessKill);
            let (log, r) = open(&after, &c);
            let what = format!("{op:?} #{nth}: {r:?}");
            assert!(!matches!(r.damage, Some(Damage::Corrupt { .. })), "{what}");
            let n = log.next_offset();
            assert!(
                n >= acked && n <= appended.len() as u64,
                "{what}: {n} of {acked}/{}",
                appended.len()
            );
            let got: Vec<Bytes> = read_from(&log, 0).into_iter().map(|r| r.1).collect();
            assert_eq!(got, appended[..n as usize].to_vec(), "{what}");
            // Power fails while the restarted process runs (no clean close).
            let lost = after.crash(Crash::PowerLoss { seed: nth });
            drop(log);
            let (log, r) = open(&lost, &c);
            assert!(log.next_offset() >= acked, "{what} then power loss: {r:?}");
        }
    }
    assert!(kills > 100, "the kills must land inside the run ({kills})");
}

#[test]
fn model_regression_age_roll_then_failed_sync() {
    let ops = vec![
        Op::Append(vec![1]),
        Op::Advance(287),
        Op::Retention,
        Op::FailSync,
        Op::Append(vec![1]),
    ];
    run(FsyncPolicy::Always, true, ops).unwrap();
}
