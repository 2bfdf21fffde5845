//! check and repair on real files written by `DurableLog` (RealFs in a tempdir), damaged by
//! hand, repaired, then opened again by `DurableLog::open`.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::*;
use crate::flusher::FsyncPolicy;
use crate::format::{encode_frame, FrameMeta, SegmentFile, SegmentHeader};
use crate::fs::{Fs, RealFs};
use crate::log::{DurableLog, LogConfig};
use crate::retention::Retention;

const LOG: &str = "streams/acme/orders/s";
const N: u64 = 300;

fn cfg() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Always,
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

/// A data directory with one log of `N` records over several segments, closed cleanly.
fn data_dir() -> (tempfile::TempDir, PathBuf, u64) {
    let (root, dir, log) = filled(false);
    let epoch = log.epoch();
    log.close().unwrap();
    drop(log);
    (root, dir, epoch)
}

/// A log of `N` records, open; with `one_by_one` each append waits for its fsync (so every
/// frame's synced hint says all before it was durable).
fn filled(one_by_one: bool) -> (tempfile::TempDir, PathBuf, DurableLog) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(LOG);
    let (log, _) = DurableLog::open(RealFs::new(), &dir, cfg()).unwrap();
    let mut tickets = Vec::new();
    for i in 0..N {
        let t = log.append(&[payload(i)], 1_000 + i).unwrap().ticket;
        if one_by_one {
            t.wait_blocking().unwrap();
        } else {
            tickets.push(t);
        }
    }
    for t in tickets {
        t.wait_blocking().unwrap();
    }
    (root, dir, log)
}

fn check(root: &Path, repair: bool) -> CheckRun {
    let opts = CheckOptions {
        repair,
        index_interval_bytes: 256,
        ..CheckOptions::default()
    };
    run(&RealFs, root, &opts)
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| SegmentFile::parse(e.unwrap().file_name().to_str()?))
        .filter(|(_, k)| *k == SegmentFile::Segment)
        .map(|(b, _)| b)
        .collect();
    v.sort_unstable();
    v
}

fn seg_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(SegmentFile::Segment.name(base))
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

/// Every record `DurableLog` serves from `from` on, skipping nothing.
fn read_all(log: &DurableLog, from: u64) -> Vec<(u64, Bytes)> {
    crate::test_util::read_all(log, from, 50, 1 << 20)
}

fn reopen(dir: &Path) -> DurableLog {
    DurableLog::open(RealFs::new(), dir, cfg()).unwrap().0
}

fn problems(r: &CheckRun) -> Vec<Problem> {
    r.report
        .logs
        .iter()
        .flat_map(|l| l.findings.iter().map(|f| f.problem))
        .collect()
}

fn lost_files(root: &Path) -> Vec<PathBuf> {
    let d = root.join(LOST_FOUND).join(LOG);
    let mut v: Vec<PathBuf> = match std::fs::read_dir(&d) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

#[test]
fn a_clean_log_checks_clean_and_the_report_says_what_it_holds() {
    let (root, dir, epoch) = data_dir();
    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    let log = &r.report.logs[0];
    assert_eq!(log.path, LOG);
    assert_eq!((log.records, log.first_offset, log.next_offset), (N, 0, N));
    assert_eq!(log.epoch, Some(epoch));
    assert!(log.clean_shutdown);
    assert_eq!(log.segments, segments(&dir).len() as u64);
    assert!(log.segments > 3);
    let bytes: u64 = segments(&dir)
        .iter()
        .map(|&b| std::fs::metadata(seg_path(&dir, b)).unwrap().len())
        .sum();
    assert_eq!(log.bytes, bytes);
    assert!(log.findings.is_empty(), "{:?}", log.findings);
    let text = r.report.to_string();
    assert!(text.contains(&format!("{LOG}: ok: {N} records")), "{text}");
    let json = r.report.to_json_lines();
    assert!(
        json.contains(&format!(
            "\"log\":\"{LOG}\",\"kind\":\"stream\",\"status\":\"ok\""
        )),
        "{json}"
    );
    assert!(json.contains("\"exit_code\":0"), "{json}");
    // A repair of a clean directory changes nothing.
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN);
    assert!(r.report.logs[0].repairs.is_empty());
    assert!(!root.path().join(LOST_FOUND).exists());
}

#[test]
fn a_torn_tail_is_cut_saved_and_keeps_the_epoch() {
    let (root, dir, epoch) = data_dir();
    // The process died (not closed cleanly) while writing one more frame.
    crate::recover::write_state(&RealFs, &dir, &crate::recover::LogState::open(epoch)).unwrap();
    let last = *segments(&dir).last().unwrap();
    let p = seg_path(&dir, last);
    let len = std::fs::metadata(&p).unwrap().len();
    // A write cut short: half a frame after the last one.
    let mut frame = Vec::new();
    let meta = FrameMeta {
        base_offset: N,
        timestamp_ms: 5_000,
        synced_hint: N,
    };
    encode_frame(&mut frame, meta, &[b"the torn one".as_slice()]).unwrap();
    let mut b = std::fs::read(&p).unwrap();
    b.extend_from_slice(&frame[..frame.len() / 2]);
    std::fs::write(&p, &b).unwrap();

    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_DAMAGE, "{}", r.report);
    assert_eq!(problems(&r), vec![Problem::TornTail]);
    let f = &r.report.logs[0].findings[0];
    assert_eq!(
        (f.position, f.file.clone()),
        (Some(len), SegmentFile::Segment.name(last))
    );
    assert!(r
        .report
        .to_json_lines()
        .contains("\"problem\":\"torn_tail\""));

    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    assert_eq!(
        r.report.logs[0].new_epoch, None,
        "a partial frame held no record"
    );
    assert_eq!(std::fs::metadata(&p).unwrap().len(), len);
    let saved = lost_files(root.path());
    assert_eq!(saved.len(), 1);
    assert_eq!(std::fs::read(&saved[0]).unwrap(), frame[..frame.len() / 2]);

    let log = reopen(&dir);
    assert_eq!(log.epoch(), epoch);
    assert_eq!(read_all(&log, 0).len() as u64, N);
    drop(log);
    assert_eq!(check(root.path(), false).exit_code, EXIT_CLEAN);
}

#[test]
fn a_corrupt_frame_in_a_sealed_segment_is_cut_out_to_lost_found_with_a_new_epoch() {
    let (root, dir, epoch) = data_dir();
    let segs = segments(&dir);
    let victim = segs[1];
    let next = segs[2];
    let p = seg_path(&dir, victim);
    let len = std::fs::metadata(&p).unwrap().len();
    flip(&p, len / 2);

    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_DAMAGE, "{}", r.report);
    let log = &r.report.logs[0];
    let f = log
        .findings
        .iter()
        .find(|f| f.problem == Problem::CorruptFrame)
        .unwrap();
    assert_eq!(f.file, SegmentFile::Segment.name(victim));
    let (at, first_lost) = (f.position.unwrap(), f.offsets.clone().unwrap().start);
    assert!(at < len / 2 && at >= 64);
    assert_eq!(f.offsets.clone().unwrap().end, next);
    assert!(log.records < N);

    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    let new_epoch = r.report.logs[0].new_epoch.expect("records were removed");
    assert_ne!(new_epoch, epoch);
    assert_eq!(r.report.logs[0].epoch, Some(new_epoch));
    assert!(
        problems(&r).contains(&Problem::Gap),
        "the hole is reported: {}",
        r.report
    );
    assert_eq!(std::fs::metadata(&p).unwrap().len(), at);
    let saved = lost_files(root.path());
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert_eq!(std::fs::metadata(&saved[0]).unwrap().len(), len - at);

    let log = reopen(&dir);
    assert_eq!(log.epoch(), new_epoch);
    assert!(log.refusal().is_none(), "not quarantined");
    // The cut-out frame's offsets are a hole: a reader from 0 gets everything before it, then
    // (as a gap) everything after it.
    let all = read_all(&log, 0);
    let offsets: Vec<u64> = all.iter().map(|(o, _)| *o).collect();
    let want: Vec<u64> = (0..first_lost).chain(next..N).collect();
    assert_eq!(offsets, want, "the hole reads as a gap");
    for (o, p) in &all {
        assert_eq!(*p, payload(*o));
    }
    let after = read_all(&log, next);
    assert_eq!(after.len() as u64, N - next);
    assert_eq!(after[0], (next, payload(next)));
    drop(log);
    assert_eq!(check(root.path(), false).exit_code, EXIT_CLEAN);
}

#[test]
fn a_quarantined_last_segment_opens_after_repair_and_appends_at_the_damage() {
    let (root, dir, log) = filled(true);
    let epoch = log.epoch();
    // The process dies (kill -9): no close, no clean checkpoint.
    std::mem::forget(log);
    let last = *segments(&dir).last().unwrap();
    let p = seg_path(&dir, last);
    flip(&p, 64 + 20); // inside the first frame's header fields: frames after it stay valid
    let (log, rec) = DurableLog::open(RealFs::new(), &dir, cfg()).unwrap();
    assert!(
        matches!(rec.damage, Some(crate::log::Damage::Corrupt { .. })),
        "{rec:?}"
    );
    assert!(log.refusal().is_some(), "quarantined");
    drop(log);

    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_DAMAGE, "{}", r.report);
    assert!(problems(&r).contains(&Problem::CorruptFrame));
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    let new_epoch = r.report.logs[0].new_epoch.unwrap();

    let log = reopen(&dir);
    assert!(log.refusal().is_none());
    assert_eq!(log.epoch(), new_epoch);
    assert_ne!(new_epoch, epoch);
    let got = read_all(&log, 0);
    assert_eq!(
        got.len() as u64,
        last,
        "every record before the damaged frame"
    );
    assert!(got.iter().all(|(o, p)| *p == payload(*o)));
    let a = log
        .append(&[Bytes::from_static(b"after repair")], 9_000)
        .unwrap();
    assert_eq!(a.offsets.start, last, "offsets go on from the damage");
    a.ticket.wait_blocking().unwrap();
    log.close().unwrap();
    drop(log);
    assert_eq!(check(root.path(), false).exit_code, EXIT_CLEAN);
}

#[test]
fn bad_and_missing_indexes_are_rebuilt_as_the_writer_wrote_them() {
    let (root, dir, _) = data_dir();
    let segs = segments(&dir);
    let idx = |b: u64| dir.join(SegmentFile::OffsetIndex.name(b));
    let original = std::fs::read(idx(segs[0])).unwrap();
    assert!(original.len() >= 16, "the test needs entries");
    // An entry pointing inside a frame, one naming the wrong offset, a missing file.
    let mut bad = original.clone();
    bad[4] = bad[4].wrapping_add(1);
    std::fs::write(idx(segs[0]), &bad).unwrap();
    let mut wrong = std::fs::read(idx(segs[1])).unwrap();
    wrong[0] = wrong[0].wrapping_add(1);
    std::fs::write(idx(segs[1]), &wrong).unwrap();
    std::fs::remove_file(idx(segs[2])).unwrap();
    // A time index that does not match its frames.
    std::fs::write(dir.join(SegmentFile::TimeIndex.name(segs[0])), [1u8; 12]).unwrap();

    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_DAMAGE, "{}", r.report);
    let p = problems(&r);
    for want in [
        Problem::BadIndex,
        Problem::MissingIndex,
        Problem::BadTimeIndex,
    ] {
        assert!(p.contains(&want), "{want:?} in {}", r.report);
    }
    assert_eq!(p.iter().filter(|x| **x == Problem::BadIndex).count(), 2);
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    assert_eq!(r.report.logs[0].new_epoch, None, "no record removed");
    assert_eq!(std::fs::read(idx(segs[0])).unwrap(), original);
    assert!(idx(segs[2]).exists());
    let log = reopen(&dir);
    assert_eq!(read_all(&log, 0).len() as u64, N);
}

#[test]
fn a_damaged_header_is_rewritten_and_no_record_is_lost() {
    let (root, dir, _) = data_dir();
    let segs = segments(&dir);
    let p = seg_path(&dir, segs[1]);
    flip(&p, 30); // the epoch field: CRC fails
    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_DAMAGE, "{}", r.report);
    assert_eq!(problems(&r), vec![Problem::BadHeader]);
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    let h = SegmentHeader::decode(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(h.base_offset, segs[1]);
    assert_eq!(lost_files(root.path()).len(), 1, "the old header is kept");
    let log = reopen(&dir);
    assert_eq!(read_all(&log, 0).len() as u64, N);
}

#[test]
fn leftovers_strays_bad_state_and_a_held_lock() {
    let (root, dir, _) = data_dir();
    std::fs::write(dir.join("log.state.tmp"), b"half").unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    std::fs::write(dir.join(SegmentFile::OffsetIndex.name(999_999)), [0u8; 8]).unwrap();
    std::fs::write(dir.join("checkpoint"), [7u8; 128]).unwrap();
    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_DAMAGE, "{}", r.report);
    let p = problems(&r);
    for want in [
        Problem::Leftover,
        Problem::Stray,
        Problem::OrphanIndex,
        Problem::BadCheckpoint,
    ] {
        assert!(p.contains(&want), "{want:?} in {}", r.report);
    }
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    assert!(
        dir.join("notes.txt").exists(),
        "strays are listed, never touched"
    );
    assert_eq!(problems(&r), vec![Problem::Stray]);

    // log.state lost: the epoch is unknown; repair gives a new one.
    std::fs::remove_file(dir.join("log.state")).unwrap();
    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_DAMAGE);
    assert!(problems(&r).contains(&Problem::BadState));
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    assert!(r.report.logs[0].epoch.is_some());

    // A broker holds the lock: exit 3, nothing read.
    let lock = RealFs.lock_exclusive(&root.path().join(LOCK_FILE)).unwrap();
    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_LOCKED);
    assert!(r.report.error.unwrap().contains("in use"));
    drop(lock);
    assert_eq!(check(root.path(), false).exit_code, EXIT_CLEAN);

    // Could not run.
    let r = run(&RealFs, &root.path().join("nope"), &CheckOptions::default());
    assert_eq!(r.exit_code, EXIT_FAILED);
    let only = CheckOptions {
        only: Some(PathBuf::from("../x")),
        ..CheckOptions::default()
    };
    assert_eq!(run(&RealFs, root.path(), &only).exit_code, EXIT_FAILED);
    let only = CheckOptions {
        only: Some(PathBuf::from(LOG)),
        ..CheckOptions::default()
    };
    let r = run(&RealFs, root.path(), &only);
    assert_eq!((r.exit_code, r.report.logs.len()), (EXIT_CLEAN, 1));
}

/// A group journal lives inside its stream's directory: two logs, each checked on its own,
/// and damage in one does not make the other dirty.
#[test]
fn nested_logs_are_found_and_checked_separately() {
    let (root, dir, _) = data_dir();
    let gdir = dir.join("groups").join("g1");
    let gcfg = LogConfig {
        kind: crate::format::LogKind::GroupJournal,
        ..cfg()
    };
    let (g, _) = DurableLog::open(RealFs::new(), &gdir, gcfg).unwrap();
    for i in 0..5 {
        g.append(&[payload(i)], 2_000 + i)
            .unwrap()
            .ticket
            .wait_blocking()
            .unwrap();
    }
    g.close().unwrap();
    drop(g);
    std::fs::create_dir_all(root.path().join("trash/old")).unwrap();
    std::fs::copy(
        seg_path(&dir, 0),
        root.path()
            .join("trash/old")
            .join(SegmentFile::Segment.name(0)),
    )
    .unwrap();
    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    let paths: Vec<&str> = r.report.logs.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![LOG.to_string(), format!("{LOG}/groups/g1")],
        "trash/ is not walked"
    );
    assert_eq!(
        r.report.logs[1].kind,
        Some(crate::format::LogKind::GroupJournal)
    );
    assert_eq!(r.report.logs[1].records, 5);
    flip(&seg_path(&gdir, 0), 64 + 20);
    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_DAMAGE);
    assert!(r.report.logs[0].findings.is_empty());
    assert!(r.report.logs[1].worst() == Some(Severity::Repairable));
}

#[test]
fn an_unknown_format_version_is_not_repaired() {
    let (root, dir, _) = data_dir();
    let p = seg_path(&dir, 0);
    let mut b = std::fs::read(&p).unwrap();
    b[8] = 2; // version 2, with a valid CRC: a newer broker's file
    let crc = crate::format::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_FAILED, "{}", r.report);
    assert_eq!(std::fs::read(&p).unwrap(), b, "left alone");
}

/// Frames appended in a burst carry synced hints from before the burst's fsync, so by the hints
/// alone a bit flip in the first of them looks like a power-loss tear (truncated). A log closed
/// cleanly was fsynced whole: check calls it corruption (and repair saves the rest).
#[test]
fn damage_in_a_cleanly_closed_log_is_corruption_whatever_the_hints() {
    let (root, dir, _) = data_dir();
    let last = *segments(&dir).last().unwrap();
    flip(&seg_path(&dir, last), 64 + 20);
    let r = check(root.path(), false);
    let p = problems(&r);
    assert!(p.contains(&Problem::CorruptFrame), "{}", r.report);
    assert!(!p.contains(&Problem::PowerLossTear), "{}", r.report);
    // The same bytes in a log that was not closed cleanly: the hints decide.
    crate::recover::write_state(&RealFs, &dir, &crate::recover::LogState::open(5)).unwrap();
    let r = check(root.path(), false);
    let p = problems(&r);
    assert!(
        p.contains(&Problem::PowerLossTear) || p.contains(&Problem::CorruptFrame),
        "{p:?}"
    );
}

/// `log.state` says an fsync failed at a durable point and the process died before healing:
/// check reports it, repair moves what follows that point to lost+found (whole later segments
/// too) and takes a new epoch; the log then opens with exactly the records before the point.
#[test]
fn an_unhealed_fsync_failure_is_cut_back_to_its_durable_point() {
    let (root, dir, epoch) = data_dir();
    let segs = segments(&dir);
    let k = segs[2];
    let idx = std::fs::read(dir.join(SegmentFile::OffsetIndex.name(k))).unwrap();
    let rel = u32::from_le_bytes(idx[0..4].try_into().unwrap()) as u64;
    let pos = u32::from_le_bytes(idx[4..8].try_into().unwrap()) as u64;
    let state = crate::recover::LogState {
        epoch,
        clean: false,
        failed_at: Some((k, pos, k + rel)),
    };
    crate::recover::write_state(&RealFs, &dir, &state).unwrap();

    let r = check(root.path(), false);
    assert_eq!(r.exit_code, EXIT_DAMAGE, "{}", r.report);
    assert!(problems(&r).contains(&Problem::UnhealedFsyncFailure));
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    let new_epoch = r.report.logs[0].new_epoch.unwrap();
    assert_ne!(new_epoch, epoch);
    assert_eq!(segments(&dir), segs[..3].to_vec());
    assert_eq!(std::fs::metadata(seg_path(&dir, k)).unwrap().len(), pos);
    // The cut bytes and every later segment (with its index) are in lost+found.
    let saved = lost_files(root.path());
    assert_eq!(saved.len(), 1 + 2 * (segs.len() - 3), "{saved:?}");
    assert_eq!(r.report.logs[0].next_offset, k + rel);

    let log = reopen(&dir);
    assert_eq!(log.epoch(), new_epoch);
    let got = read_all(&log, 0);
    assert_eq!(got.len() as u64, k + rel);
    assert!(got.iter().all(|(o, p)| *p == payload(*o)));
}

/// A checkpoint whose position is not a frame boundary (or names no segment) is reported and
/// removed; recovery then scans.
#[test]
fn a_checkpoint_off_a_frame_boundary_is_removed() {
    let (root, dir, _) = data_dir();
    let f = RealFs
        .open(&dir.join("checkpoint"), crate::fs::OpenMode::ReadWrite)
        .unwrap();
    let mut cp = crate::checkpoint::load(&*f)
        .unwrap()
        .expect("the log wrote one");
    cp = cp.next();
    cp.position += 1;
    crate::checkpoint::write(&*f, &cp).unwrap();
    drop(f);
    let r = check(root.path(), false);
    assert_eq!(problems(&r), vec![Problem::BadCheckpoint], "{}", r.report);
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    assert!(!dir.join("checkpoint").exists());
    let log = reopen(&dir);
    assert_eq!(read_all(&log, 0).len() as u64, N);
}

/// Damage in the first frame of a sealed segment leaves it empty (header only) after repair:
/// the log still opens, serves what is before and after the hole, and checks clean.
#[test]
fn a_sealed_segment_emptied_by_repair_still_opens() {
    let (root, dir, _) = data_dir();
    let segs = segments(&dir);
    flip(&seg_path(&dir, segs[1]), 64 + 20);
    let r = check(root.path(), true);
    assert_eq!(r.exit_code, EXIT_CLEAN, "{}", r.report);
    assert_eq!(
        std::fs::metadata(seg_path(&dir, segs[1])).unwrap().len(),
        64
    );
    let log = reopen(&dir);
    assert!(log.refusal().is_none());
    let offsets: Vec<u64> = read_all(&log, 0).iter().map(|(o, _)| *o).collect();
    let want: Vec<u64> = (0..segs[1]).chain(segs[2]..N).collect();
    assert_eq!(offsets, want, "the emptied segment reads as a gap");
    assert_eq!(read_all(&log, segs[2]).len() as u64, N - segs[2]);
    let a = log.append(&[payload(N)], 9_000).unwrap();
    assert_eq!(a.offsets.start, N);
    a.ticket.wait_blocking().unwrap();
    drop(log);
    assert_eq!(check(root.path(), false).exit_code, EXIT_CLEAN);
}
