//! check and repair after crashes of every kind (SimFs): a crash without a bit flip is never
//! called corruption, repair leaves a log that checks clean and that `DurableLog::open` opens
//! without quarantine, and no acknowledged record is lost on the way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::flusher::FsyncPolicy;
use crate::fs::Fs;
use crate::log::{DurableLog, LogConfig};
use crate::retention::Retention;
use crate::sim::{Crash, SimFs};

const ROOT: &str = "/data";

fn dir() -> PathBuf {
    PathBuf::from("/data/streams/t/ns/s")
}

fn config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync,
        segment_bytes: 4096,
        index_interval_bytes: 256,
        hot_tail_bytes: 1024,
        read_chunk_bytes: 700,
        retention: Retention::default(),
        ..LogConfig::default()
    }
}

fn payload(i: u64, len: usize) -> Bytes {
    let mut v = format!("{i}:").into_bytes();
    v.resize(len.max(v.len()), b'a' + (i % 26) as u8);
    Bytes::from(v)
}

fn read_all(log: &DurableLog) -> Vec<(u64, Bytes)> {
    crate::test_util::read_all(log, 0, 64, 1 << 20)
}

fn check(fs: &SimFs, repair: bool) -> CheckRun {
    let opts = CheckOptions {
        repair,
        index_interval_bytes: 256,
        ..CheckOptions::default()
    };
    run(fs, Path::new(ROOT), &opts)
}

fn crash_kind(k: u8, seed: u64) -> Crash {
    match k {
        0 => Crash::ProcessKill,
        1 => Crash::TornWrite { seed },
        2 => Crash::PowerLoss { seed },
        _ => Crash::PowerLossReordered { seed },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn after_any_crash_repair_gives_an_openable_log_with_every_acked_record(
        policy in 0u8..3,
        sizes in proptest::collection::vec(1usize..300, 1..60),
        wait_every in 1usize..8,
        kind in 0u8..4,
        seed in any::<u64>(),
    ) {
        let policy = [FsyncPolicy::Always, FsyncPolicy::Interval(std::time::Duration::from_millis(5)), FsyncPolicy::Os][policy as usize];
        let fs = SimFs::new();
        fs.mkdir_durable(Path::new("/data/streams/t/ns")).unwrap();
        let f: Arc<dyn Fs> = fs.clone();
        let (log, _) = DurableLog::open(f, &dir(), config(policy)).unwrap();
        let mut acked = 0u64;
        let mut pending = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let a = log.append(&[payload(i as u64, n)], 1_000 + i as u64).unwrap();
            pending.push(a.ticket);
            if (i + 1) % wait_every == 0 {
                for t in pending.drain(..) {
                    t.wait_blocking().unwrap();
                }
                acked = i as u64 + 1;
            }
        }
        let crash = crash_kind(kind, seed);
        let after = fs.crash(crash);
        std::mem::forget(log); // the process is gone; nothing of it runs on `after`

        let first = check(&after, false);
        prop_assert!(first.exit_code == EXIT_CLEAN || first.exit_code == EXIT_DAMAGE, "{}", first.report);
        let p: Vec<Problem> = first.report.logs.iter().flat_map(|l| l.findings.iter().map(|f| f.problem)).collect();
        prop_assert!(!p.contains(&Problem::CorruptFrame), "a crash is never corruption: {}", first.report);
        if matches!(crash, Crash::ProcessKill | Crash::TornWrite { .. }) {
            prop_assert!(!p.contains(&Problem::PowerLossTear), "{}", first.report);
        }

        let repaired = check(&after, true);
        prop_assert_eq!(repaired.exit_code, EXIT_CLEAN, "{}", repaired.report);
        if matches!(crash, Crash::ProcessKill | Crash::TornWrite { .. }) {
            prop_assert_eq!(repaired.report.logs[0].new_epoch, None, "a torn tail held no record");
        }
        let again = check(&after, false);
        prop_assert_eq!(again.exit_code, EXIT_CLEAN, "{}", again.report);

        let f: Arc<dyn Fs> = after.clone();
        let (log, rec) = DurableLog::open(f, &dir(), config(policy)).unwrap();
        prop_assert!(log.refusal().is_none(), "{:?}", rec);
        prop_assert_eq!(rec.truncated_bytes, 0, "repair left nothing for recovery to cut");
        let got = read_all(&log);
        // What survives: everything appended after a process kill (the page cache outlives
        // the process); after a power loss, what was acked under `always`.
        let must = match (crash, policy) {
            (Crash::ProcessKill, _) => sizes.len() as u64,
            (Crash::TornWrite { .. }, _) => sizes.len() as u64 - 1,
            (_, FsyncPolicy::Always) => acked,
            _ => 0,
        };
        prop_assert!(got.len() as u64 >= must, "{} records, {} must be there", got.len(), must);
        for (k, (o, p)) in got.iter().enumerate() {
            prop_assert_eq!(*o, k as u64);
            prop_assert_eq!(p, &payload(*o, sizes[*o as usize]));
        }
    }
}
