//! Recovery on real files damaged by hand: every cut of the tail, a bit flip in durable data,
//! a power-loss tear.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::flusher::FsyncPolicy;
use crate::format::SegmentFile;
use crate::fs::{Fs, RealFs};
use crate::log::{DurableLog, LogConfig};
use crate::recover::Damage;
use crate::StorageError;

fn cfg(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync,
        segment_bytes: 1 << 20,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("p{i}-{}", "y".repeat((i * 7 % 23) as usize)))
}

/// Byte position where each frame of single-record appends of `payload(0..n)` starts, and the end.
fn boundaries(n: u64) -> Vec<u64> {
    let mut v = vec![64];
    for i in 0..n {
        let last = *v.last().unwrap();
        v.push(last + 46 + payload(i).len() as u64);
    }
    v
}

fn seg0(dir: &std::path::Path) -> PathBuf {
    dir.join(SegmentFile::Segment.name(0))
}

fn all(log: &DurableLog) -> Vec<(u64, Bytes)> {
    log.read(0, usize::MAX, usize::MAX).unwrap().records
}

fn write_log(dir: &std::path::Path, fsync: FsyncPolicy, n: u64, wait_each: bool) -> u64 {
    let fs: Arc<dyn Fs> = RealFs::new();
    let (log, _) = DurableLog::open(fs, dir, cfg(fsync)).unwrap();
    for i in 0..n {
        let a = log.append(&[payload(i)], 10 + i).unwrap();
        if wait_each {
            a.ticket.wait_blocking().unwrap();
        }
    }
    let e = log.epoch();
    // No close: as a crash leaves it (a clean close would let the next open skip the scan).
    std::mem::forget(log);
    e
}

#[test]
fn every_cut_of_the_tail_truncates_to_the_last_whole_frame() {
    let dir = tempfile::tempdir().unwrap();
    let n = 6;
    let epoch = write_log(dir.path(), FsyncPolicy::Always, n, false);
    let bounds = boundaries(n);
    let full = std::fs::read(seg0(dir.path())).unwrap();
    assert_eq!(full.len() as u64, *bounds.last().unwrap());
    let fs: Arc<dyn Fs> = RealFs::new();
    // Every byte of the last frame, and each side of every boundary (each open costs several
    // real fsyncs; the every-byte property of the scan itself is format/scan's test).
    let mut cuts: Vec<usize> = (bounds[n as usize - 1] as usize..=full.len()).collect();
    for &b in &bounds {
        cuts.extend(
            [b as usize - 1, b as usize + 1]
                .iter()
                .filter(|&&c| c <= full.len()),
        );
    }
    for (k, cut) in cuts.into_iter().enumerate() {
        std::fs::write(seg0(dir.path()), &full[..cut]).unwrap();
        // The previous round's checkpoint describes the previous round's file.
        let _ = std::fs::remove_file(dir.path().join("checkpoint"));
        let (log, r) = DurableLog::open(fs.clone(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
        // A header cut short (crash while creating the segment): the segment starts over.
        let whole = bounds.iter().rposition(|&b| b <= cut as u64).unwrap_or(0) as u64;
        let kept = if cut < 64 { 0 } else { bounds[whole as usize] };
        assert_eq!(log.next_offset(), whole, "cut {cut}");
        assert_eq!(r.truncated_bytes, cut as u64 - kept, "cut {cut}");
        assert_eq!(
            r.damage.is_some(),
            cut >= 64 && r.truncated_bytes > 0,
            "cut {cut}"
        );
        if let Some(d) = &r.damage {
            assert!(matches!(d, Damage::Torn { .. }), "cut {cut}: {d:?}");
        }
        assert_eq!(log.epoch(), epoch, "a torn tail never changes the epoch");
        let got = all(&log);
        assert_eq!(got.len() as u64, whole);
        assert!(got.iter().all(|(o, p)| *p == payload(*o)));
        if k % 8 != 0 {
            continue;
        }
        // The log goes on at the cut offset.
        let a = log.append(&[Bytes::from_static(b"next")], 100).unwrap();
        assert_eq!(a.offsets.start, whole);
        a.ticket.wait_blocking().unwrap();
        drop(log);
    }
}

#[test]
fn a_flipped_bit_in_durable_data_quarantines_and_serves_up_to_it() {
    let dir = tempfile::tempdir().unwrap();
    // Each append waited for: every later frame carries a synced hint past the damaged one.
    let epoch = write_log(dir.path(), FsyncPolicy::Always, 10, true);
    let bounds = boundaries(10);
    let mut bytes = std::fs::read(seg0(dir.path())).unwrap();
    bytes[bounds[3] as usize + 45] ^= 0x10; // inside frame 3's payload
    std::fs::write(seg0(dir.path()), &bytes).unwrap();
    let (log, r) = DurableLog::open(RealFs::new(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    assert!(
        matches!(r.damage, Some(Damage::Corrupt { offset: 3, position, .. }) if position == bounds[3]),
        "{:?}",
        r.damage
    );
    assert_eq!(r.truncated_bytes, 0);
    assert_eq!(log.epoch(), epoch);
    let got = all(&log);
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(matches!(
        log.append(&[payload(0)], 1000),
        Err(StorageError::Quarantined { offset: 3, .. })
    ));
    drop(log);
    // Nothing was cut: the damage and everything after it are still on disk for repair.
    assert_eq!(std::fs::read(seg0(dir.path())).unwrap(), bytes);
}

#[test]
fn a_power_loss_tear_is_cut_and_changes_the_epoch_of_an_os_log() {
    let dir = tempfile::tempdir().unwrap();
    // `os`: nothing synced while writing, so every frame's hint is 0.
    let epoch = write_log(dir.path(), FsyncPolicy::Os, 10, false);
    let bounds = boundaries(10);
    let mut bytes = std::fs::read(seg0(dir.path())).unwrap();
    // A page that never reached the disk: zeros in the middle, valid frames after.
    for b in &mut bytes[bounds[4] as usize..bounds[5] as usize] {
        *b = 0;
    }
    std::fs::write(seg0(dir.path()), &bytes).unwrap();
    let (log, r) = DurableLog::open(RealFs::new(), dir.path(), cfg(FsyncPolicy::Os)).unwrap();
    assert!(
        matches!(r.damage, Some(Damage::PowerLossTear { .. })),
        "{:?}",
        r.damage
    );
    assert_eq!(log.next_offset(), 4);
    assert!(r.epoch_changed);
    assert_ne!(log.epoch(), epoch);
    assert_eq!(r.truncated_bytes, bounds[10] - bounds[4]);
    // The same damage under `always` keeps the epoch: nothing cut was ever visible.
    let dir = tempfile::tempdir().unwrap();
    let epoch = write_log(dir.path(), FsyncPolicy::Os, 10, false);
    std::fs::write(seg0(dir.path()), &bytes).unwrap();
    let (log, r) = DurableLog::open(RealFs::new(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    assert!(matches!(r.damage, Some(Damage::PowerLossTear { .. })));
    assert_eq!(log.epoch(), epoch);
    assert!(!r.epoch_changed);
}

#[test]
fn an_unclean_interval_log_after_a_reboot_gets_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let (log, _) = DurableLog::open(fs.clone(), dir.path(), cfg(FsyncPolicy::Os)).unwrap();
    let epoch = log.epoch();
    log.append(&[payload(0)], 1).unwrap();
    std::mem::forget(log); // no close: as if the process died
    let mut c = cfg(FsyncPolicy::Os);
    c.machine_restarted = true;
    let (log, r) = DurableLog::open(fs.clone(), dir.path(), c.clone()).unwrap();
    assert!(!r.was_clean && r.epoch_changed);
    let e2 = log.epoch();
    assert_ne!(e2, epoch);
    log.close().unwrap();
    drop(log);
    // Closed cleanly: a reboot afterwards changes nothing.
    let (log, r) = DurableLog::open(fs, dir.path(), c).unwrap();
    assert!(r.was_clean && !r.epoch_changed);
    assert_eq!(log.epoch(), e2);
}

#[test]
fn a_segment_whose_header_never_completed_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), FsyncPolicy::Always, 3, false);
    let next = dir.path().join(SegmentFile::Segment.name(3));
    std::fs::write(&next, b"FELIXSEG\x01").unwrap();
    let (log, r) = DurableLog::open(RealFs::new(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    assert_eq!(log.next_offset(), 3);
    assert_eq!(r.truncated_bytes, 9);
    assert!(!next.exists());
    log.append(&[payload(3)], 100)
        .unwrap()
        .ticket
        .wait_blocking()
        .unwrap();
    assert_eq!(all(&log).len(), 4);
}

#[test]
fn a_flipped_bit_in_the_last_frame_behind_a_checkpoint_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(FsyncPolicy::Always);
    c.checkpoint_interval = std::time::Duration::ZERO; // a checkpoint after every sync
    let (log, _) = DurableLog::open(RealFs::new(), dir.path(), c.clone()).unwrap();
    for i in 0..10 {
        log.append(&[payload(i)], 10 + i)
            .unwrap()
            .ticket
            .wait_blocking()
            .unwrap();
    }
    // The checkpoint follows the sync that acked the last record.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let bounds = boundaries(10);
    while crate::checkpoint::load(
        RealFs::new()
            .open(&dir.path().join("checkpoint"), crate::fs::OpenMode::Read)
            .unwrap()
            .as_ref(),
    )
    .unwrap()
    .map(|c| c.position)
        != Some(bounds[10])
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint at the end"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::mem::forget(log);
    let mut bytes = std::fs::read(seg0(dir.path())).unwrap();
    bytes[bounds[9] as usize + 45] ^= 1; // the last frame: nothing after it to tell by
    std::fs::write(seg0(dir.path()), &bytes).unwrap();
    let (log, r) = DurableLog::open(RealFs::new(), dir.path(), c).unwrap();
    // Without the checkpoint this is indistinguishable from a torn write, and an acked record
    // would be cut silently.
    assert!(
        matches!(r.damage, Some(Damage::Corrupt { offset: 9, .. })),
        "{:?}",
        r.damage
    );
    assert_eq!(r.truncated_bytes, 0);
    assert_eq!(all(&log).len(), 9);
    assert!(log.append(&[payload(10)], 100).is_err());
}

#[test]
fn a_clean_reopen_scans_nothing_and_reads_still_check_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = RealFs::new();
    let (log, _) = DurableLog::open(fs.clone(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    for i in 0..10 {
        log.append(&[payload(i)], 10 + i).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let (log, r) = DurableLog::open(fs.clone(), dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    assert_eq!((r.scanned_bytes, r.records, r.was_clean), (0, 10, true));
    assert_eq!(all(&log).len(), 10);
    log.close().unwrap();
    drop(log);
    // Damage after a clean close is not looked for at open, but no read serves it.
    let bounds = boundaries(10);
    let mut bytes = std::fs::read(seg0(dir.path())).unwrap();
    bytes[bounds[6] as usize + 45] ^= 1;
    std::fs::write(seg0(dir.path()), &bytes).unwrap();
    let (log, r) = DurableLog::open(fs, dir.path(), cfg(FsyncPolicy::Always)).unwrap();
    assert_eq!(r.scanned_bytes, 0);
    let got = log.read(0, 100, usize::MAX).unwrap().records;
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    assert!(matches!(
        log.read(6, 100, usize::MAX),
        Err(StorageError::Quarantined { offset: 6, .. })
    ));
}
