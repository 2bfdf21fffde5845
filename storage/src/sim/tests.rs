use super::*;
use crate::fs::{read_exact_at, write_all_at, FsFile, OpenMode};
use std::collections::HashSet;
use std::path::PathBuf;

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// A file system with a durable `/data`, and a file in it whose entry is durable.
fn setup() -> (Arc<SimFs>, Box<dyn FsFile>) {
    let fs = SimFs::new();
    fs.mkdir_durable(&p("/data")).unwrap();
    let f = fs.open(&p("/data/a.seg"), OpenMode::CreateNew).unwrap();
    fs.sync_dir(&p("/data")).unwrap();
    (fs, f)
}

fn read_all(fs: &SimFs, path: &str) -> Option<Vec<u8>> {
    fs.contents(&p(path))
}

#[test]
fn process_kill_keeps_every_written_byte_power_loss_only_synced_ones() {
    let (fs, f) = setup();
    write_all_at(&*f, b"synced.", 0).unwrap();
    f.sync_data().unwrap();
    for (i, chunk) in [b"one.", b"two.", b"six."].iter().enumerate() {
        write_all_at(&*f, *chunk, 7 + 4 * i as u64).unwrap();
    }
    let full = b"synced.one.two.six.".to_vec();
    let killed = fs.crash(Crash::ProcessKill);
    assert_eq!(read_all(&killed, "/data/a.seg"), Some(full.clone()));
    // The page cache outlived the process, but nothing made it durable: a power loss of the
    // restarted system can still lose it.
    assert!(!killed.all_synced());
    let mut shortest = full.len();
    for seed in 0..64 {
        let after = killed.crash(Crash::PowerLoss { seed });
        let got = read_all(&after, "/data/a.seg").unwrap();
        assert!(got.starts_with(b"synced."), "seed {seed}: {got:?}");
        assert!(full.starts_with(&got), "seed {seed}: not a prefix: {got:?}");
        assert!(after.all_synced());
        shortest = shortest.min(got.len());
    }
    assert_eq!(shortest, 7, "some power loss must lose every unsynced byte");
    // Deterministic per seed.
    let a = fs.crash(Crash::PowerLoss { seed: 5 });
    let b = fs.crash(Crash::PowerLoss { seed: 5 });
    assert_eq!(read_all(&a, "/data/a.seg"), read_all(&b, "/data/a.seg"));
}

#[test]
fn directory_entries_survive_power_loss_only_after_sync_dir() {
    let fs = SimFs::new();
    fs.mkdir_durable(&p("/data")).unwrap();
    let f = fs.open(&p("/data/new.seg"), OpenMode::CreateNew).unwrap();
    write_all_at(&*f, b"x", 0).unwrap();
    f.sync_data().unwrap();
    fs.create_dir_all(&p("/data/s/t")).unwrap();
    assert_eq!(
        read_all(&fs.crash(Crash::ProcessKill), "/data/new.seg"),
        Some(b"x".to_vec())
    );
    let lost = fs.crash(Crash::PowerLoss { seed: 1 });
    assert_eq!(read_all(&lost, "/data/new.seg"), None);
    assert_eq!(lost.list_dir(&p("/data")).unwrap(), Vec::<String>::new());

    let fs = lost;
    let f = fs.open(&p("/data/new.seg"), OpenMode::CreateNew).unwrap();
    write_all_at(&*f, b"y", 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(&p("/data")).unwrap();
    let kept = fs.crash(Crash::PowerLoss { seed: 1 });
    assert_eq!(read_all(&kept, "/data/new.seg"), Some(b"y".to_vec()));
}

#[test]
fn atomic_rename_gives_old_or_new_content_never_a_mix() {
    let fs = SimFs::new();
    fs.mkdir_durable(&p("/d")).unwrap();
    for (i, content) in [&b"old"[..], b"new"].iter().enumerate() {
        let f = fs.open(&p("/d/meta.tmp"), OpenMode::CreateNew).unwrap();
        write_all_at(&*f, content, 0).unwrap();
        f.sync_data().unwrap();
        fs.rename(&p("/d/meta.tmp"), &p("/d/meta")).unwrap();
        if i == 0 {
            fs.sync_dir(&p("/d")).unwrap();
        }
    }
    assert_eq!(read_all(&fs, "/d/meta"), Some(b"new".to_vec()));
    let before_dir_sync = fs.crash(Crash::PowerLoss { seed: 3 });
    assert_eq!(read_all(&before_dir_sync, "/d/meta"), Some(b"old".to_vec()));
    assert_eq!(before_dir_sync.list_dir(&p("/d")).unwrap(), vec!["meta"]);
    let fs = fs.crash(Crash::ProcessKill);
    fs.sync_dir(&p("/d")).unwrap();
    let after = fs.crash(Crash::PowerLoss { seed: 3 });
    assert_eq!(read_all(&after, "/d/meta"), Some(b"new".to_vec()));
}

#[test]
fn a_renamed_directory_keeps_its_synced_contents() {
    let fs = SimFs::new();
    fs.mkdir_durable(&p("/data/streams/s")).unwrap();
    fs.mkdir_durable(&p("/data/trash")).unwrap();
    let f = fs
        .open(&p("/data/streams/s/x.seg"), OpenMode::CreateNew)
        .unwrap();
    write_all_at(&*f, b"abc", 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(&p("/data/streams/s")).unwrap();
    fs.rename(&p("/data/streams/s"), &p("/data/trash/s"))
        .unwrap();
    fs.sync_dir(&p("/data/streams")).unwrap();
    fs.sync_dir(&p("/data/trash")).unwrap();
    assert_eq!(read_all(&fs, "/data/trash/s/x.seg"), Some(b"abc".to_vec()));
    let after = fs.crash(Crash::PowerLoss { seed: 0 });
    assert_eq!(
        read_all(&after, "/data/trash/s/x.seg"),
        Some(b"abc".to_vec())
    );
    assert!(after.list_dir(&p("/data/streams")).unwrap().is_empty());
    after.remove_dir_all(&p("/data/trash/s")).unwrap();
    assert!(after.list_dir(&p("/data/trash")).unwrap().is_empty());
    assert_eq!(after.used_bytes(), 0);
}

#[test]
fn quota_gives_a_short_write_then_enospc_and_heals_when_raised() {
    let (fs, f) = setup();
    fs.set_quota(Some(100));
    write_all_at(&*f, &[1; 80], 0).unwrap();
    assert_eq!(fs.free_bytes(&p("/data")).unwrap(), 20);
    assert_eq!(f.write_at(&[2; 40], 80).unwrap(), 20);
    let e = f.write_at(&[3; 1], 100).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    let e = write_all_at(&*f, &[3; 10], 100).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    // Overwriting inside the file needs no space.
    write_all_at(&*f, &[4; 10], 0).unwrap();
    assert_eq!(
        f.set_len(101).unwrap_err().raw_os_error(),
        Some(libc::ENOSPC)
    );
    // Cut back to the last boundary, as the flusher does.
    f.set_len(80).unwrap();
    assert_eq!(fs.used_bytes(), 80);
    fs.set_quota(Some(1000));
    write_all_at(&*f, &[5; 40], 80).unwrap();
    assert_eq!(f.len().unwrap(), 120);
    fs.remove_file(&p("/data/a.seg")).unwrap();
    assert_eq!(fs.used_bytes(), 0);
}

#[test]
fn a_failed_fsync_drops_unsynced_pages_and_a_blind_retry_is_caught() {
    let (fs, f) = setup();
    write_all_at(&*f, b"durable|", 0).unwrap();
    fs.fail(FaultRule::sync(2, libc::EIO));
    f.sync_data().unwrap();
    write_all_at(&*f, b"doomed", 8).unwrap();
    assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
    // Reads still see the page cache, like Linux.
    assert_eq!(read_all(&fs, "/data/a.seg").unwrap(), b"durable|doomed");
    // The wrong reaction: fsync again. It "succeeds"...
    f.sync_data().unwrap();
    assert_eq!(fs.fsyncgate_violations(), 1);
    // ...and the data is still not on disk.
    for seed in 0..8 {
        let after = fs.crash(Crash::PowerLoss { seed });
        assert_eq!(read_all(&after, "/data/a.seg").unwrap(), b"durable|");
    }
}

#[test]
fn healing_by_truncating_and_rewriting_is_not_a_violation() {
    let (fs, f) = setup();
    write_all_at(&*f, b"durable|", 0).unwrap();
    f.sync_data().unwrap();
    fs.fail(FaultRule::sync(1, libc::EIO));
    write_all_at(&*f, b"doomed", 8).unwrap();
    assert!(f.sync_data().is_err());
    f.set_len(8).unwrap();
    write_all_at(&*f, b"again", 8).unwrap();
    f.sync_data().unwrap();
    assert_eq!(fs.fsyncgate_violations(), 0);
    assert_eq!(fs.sync_count(&p("/data/a.seg")), 2);
    let after = fs.crash(Crash::PowerLoss { seed: 9 });
    assert_eq!(read_all(&after, "/data/a.seg").unwrap(), b"durable|again");
}

#[test]
fn fault_rules_count_matching_operations_only() {
    let (fs, f) = setup();
    let g = fs.open(&p("/data/b.idx"), OpenMode::CreateNew).unwrap();
    fs.fail(FaultRule::write(2, libc::EIO).on_path(".seg"));
    write_all_at(&*g, b"1", 0).unwrap();
    write_all_at(&*g, b"2", 1).unwrap();
    write_all_at(&*f, b"1", 0).unwrap();
    assert_eq!(
        f.write_at(b"2", 1).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    write_all_at(&*f, b"3", 1).unwrap();
    fs.fail(FaultRule::new(FaultOp::Read, 1, libc::EIO).sticky());
    let mut b = [0u8; 1];
    for _ in 0..3 {
        assert!(read_exact_at(&*f, &mut b, 0).is_err());
    }
    fs.clear_faults();
    read_exact_at(&*f, &mut b, 0).unwrap();
    fs.fail(FaultRule::new(FaultOp::SyncDir, 1, libc::EIO));
    assert!(fs.sync_dir(&p("/data")).is_err());
    fs.sync_dir(&p("/data")).unwrap();
}

#[test]
fn flip_bit_damages_the_medium() {
    let (fs, f) = setup();
    write_all_at(&*f, &[0u8; 4], 0).unwrap();
    f.sync_data().unwrap();
    fs.flip_bit(&p("/data/a.seg"), 17);
    let mut b = [0u8; 4];
    read_exact_at(&*f, &mut b, 0).unwrap();
    assert_eq!(b, [0, 0, 2, 0]);
    let after = fs.crash(Crash::PowerLoss { seed: 0 });
    assert_eq!(read_all(&after, "/data/a.seg").unwrap(), [0, 0, 2, 0]);
    fs.flip_bit(&p("/data/a.seg"), 1 << 20); // past the end: nothing
}

#[test]
fn the_crashed_process_cannot_touch_the_new_state() {
    let (fs, f) = setup();
    write_all_at(&*f, b"a", 0).unwrap();
    let new = fs.crash(Crash::ProcessKill);
    assert_eq!(
        f.write_at(b"b", 1).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    assert!(fs.open(&p("/data/a.seg"), OpenMode::Read).is_err());
    assert_eq!(read_all(&new, "/data/a.seg").unwrap(), b"a");
}

#[test]
fn locks_are_exclusive_and_die_with_the_process() {
    let fs = SimFs::new();
    fs.mkdir_durable(&p("/data")).unwrap();
    let held = fs.lock_exclusive(&p("/data/LOCK")).unwrap();
    let e = fs.lock_exclusive(&p("/data/LOCK")).err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    let new = fs.crash(Crash::ProcessKill);
    let again = new.lock_exclusive(&p("/data/LOCK")).unwrap();
    drop(held);
    assert!(new.lock_exclusive(&p("/data/LOCK")).is_err());
    drop(again);
    new.lock_exclusive(&p("/data/LOCK")).unwrap();
}

#[test]
fn torn_write_cuts_the_last_unsynced_write_to_a_prefix() {
    let mut lens = HashSet::new();
    for seed in 0..32 {
        let (fs, f) = setup();
        write_all_at(&*f, b"first", 0).unwrap();
        f.sync_data().unwrap();
        write_all_at(&*f, b"second", 5).unwrap();
        write_all_at(&*f, b"last-write", 11).unwrap();
        let after = fs.crash(Crash::TornWrite { seed });
        let got = read_all(&after, "/data/a.seg").unwrap();
        assert!(got.starts_with(b"firstsecond"), "{got:?}");
        assert!(b"firstsecondlast-write".starts_with(&got));
        assert!(got.len() < 21, "the last write must be cut");
        lens.insert(got.len());
    }
    assert!(lens.len() > 3, "cuts should vary with the seed: {lens:?}");
}

#[test]
fn reordered_power_loss_keeps_synced_bytes_and_can_keep_later_writes_only() {
    let mut later_only = false;
    let mut zeros = false;
    for seed in 0..64 {
        let (fs, f) = setup();
        write_all_at(&*f, b"S", 0).unwrap();
        f.sync_data().unwrap();
        write_all_at(&*f, b"AAAA", 1).unwrap();
        write_all_at(&*f, b"BBBB", 5).unwrap();
        let after = fs.crash(Crash::PowerLossReordered { seed });
        let got = read_all(&after, "/data/a.seg").unwrap();
        assert_eq!(got[0], b'S');
        if got.len() == 9 && &got[1..5] != b"AAAA" && &got[5..9] == b"BBBB" {
            later_only = true;
        }
        if got.len() > 1 && got[1..].iter().all(|&b| b == 0) {
            zeros = true;
        }
    }
    assert!(
        later_only,
        "some seed must keep a later write without an earlier one"
    );
    assert!(zeros, "some seed must leave a zero-filled tail");
}

#[test]
fn namespace_errors_are_the_usual_errnos() {
    let (fs, _f) = setup();
    let errno = |r: io::Result<Box<dyn FsFile>>| r.err().unwrap().raw_os_error();
    assert_eq!(
        errno(fs.open(&p("/data/a.seg"), OpenMode::CreateNew)),
        Some(libc::EEXIST)
    );
    assert_eq!(
        errno(fs.open(&p("/nope/x"), OpenMode::CreateNew)),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno(fs.open(&p("/data/missing"), OpenMode::Read)),
        Some(libc::ENOENT)
    );
    assert_eq!(
        errno(fs.open(&p("/data"), OpenMode::Read)),
        Some(libc::EISDIR)
    );
    let ro = fs.open(&p("/data/a.seg"), OpenMode::Read).unwrap();
    assert_eq!(
        ro.write_at(b"x", 0).unwrap_err().raw_os_error(),
        Some(libc::EBADF)
    );
    assert_eq!(
        fs.list_dir(&p("/data/a.seg")).unwrap_err().raw_os_error(),
        Some(libc::ENOTDIR)
    );
    let mut names = fs.list_dir(&p("/")).unwrap();
    names.sort();
    assert_eq!(names, vec!["data"]);
}

#[test]
fn a_kill_during_the_nth_write_leaves_a_prefix_and_stops_the_process() {
    let mut kept = HashSet::new();
    for seed in 0..24 {
        let (fs, f) = setup();
        fs.fail(FaultRule::kill(FaultOp::Write, 3, seed).on_path(".seg"));
        write_all_at(&*f, b"one|", 0).unwrap();
        write_all_at(&*f, b"two|", 4).unwrap();
        assert_eq!(
            f.write_at(b"three|", 8).unwrap_err().raw_os_error(),
            Some(libc::EIO)
        );
        // Dead: nothing after the kill reaches the state.
        assert!(f.write_at(b"four", 8).is_err());
        assert!(f.sync_data().is_err());
        assert!(fs.open(&p("/data/b"), OpenMode::CreateNew).is_err());
        let after = fs.crash(Crash::ProcessKill);
        let got = read_all(&after, "/data/a.seg").unwrap();
        assert!(got.starts_with(b"one|two|"), "{got:?}");
        assert!(b"one|two|three|".starts_with(&got), "{got:?}");
        kept.insert(got.len());
        // The restarted process works normally.
        let g = after.open(&p("/data/a.seg"), OpenMode::ReadWrite).unwrap();
        write_all_at(&*g, b"x", got.len() as u64).unwrap();
    }
    assert!(
        kept.len() > 3,
        "prefixes should vary with the seed: {kept:?}"
    );

    // A kill at another operation dies before it happens.
    let (fs, f) = setup();
    write_all_at(&*f, b"data", 0).unwrap();
    fs.fail(FaultRule::kill(FaultOp::Sync, 1, 0));
    assert!(f.sync_data().is_err());
    assert!(f.len().is_err());
    // The sync never happened: the data is still only in the page cache.
    assert_eq!(fs.sync_count(&p("/data/a.seg")), 0);
    assert!(!fs.crash(Crash::ProcessKill).all_synced());
}
