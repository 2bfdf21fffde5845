//! `kill -9` of a real process writing a log on real files: the parent test spawns this test
//! binary as a child that appends and prints each ack, kills it with SIGKILL at a moment of its
//! choosing, and checks the log a new open finds. Several cycles on one directory.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::fs::RealFs;

const CHILD_DIR: &str = "FELIX_STORAGE_KILL_CHILD_DIR";
const CHILD_POLICY: &str = "FELIX_STORAGE_KILL_CHILD_POLICY";

fn payload(offset: u64) -> Bytes {
    Bytes::from(format!("{offset}:{}", "k".repeat((offset % 97) as usize)))
}

fn policy(name: &str) -> FsyncPolicy {
    match name {
        "always" => FsyncPolicy::Always,
        "interval" => FsyncPolicy::Interval(Duration::from_millis(5)),
        _ => FsyncPolicy::Os,
    }
}

fn config(p: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync: p,
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

/// The child: appends forever from the log's next offset, printing `acked <end>` after each
/// ticket resolves. Only runs when the parent sets the environment.
#[test]
#[ignore]
fn kill9_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let p = policy(&std::env::var(CHILD_POLICY).unwrap_or_default());
    let (log, _) = DurableLog::open(RealFs::new(), std::path::Path::new(&dir), config(p)).unwrap();
    let mut out = std::io::stdout();
    for _ in 0..1_000_000 {
        let next = log.next_offset();
        let batch: Vec<Bytes> = (next..next + 1 + next % 3).map(payload).collect();
        let a = log.append(&batch, 1_000 + next).unwrap();
        a.ticket.wait_blocking().unwrap();
        use std::io::Write;
        writeln!(out, "acked {}", a.offsets.end).unwrap();
        out.flush().unwrap();
    }
}

fn kill_cycles(policy_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = 0u64;
    let mut epoch = None;
    for cycle in 0..8u64 {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "log::process_tests::kill9_child",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_POLICY, policy_name)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a varying number of acks, mid-stream.
        let want = 20 + cycle * 23;
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen < want {
            assert!(Instant::now() < deadline, "the child stopped acking");
            let line = lines.next().expect("child output").unwrap();
            if let Some(n) = line.strip_prefix("acked ") {
                acked = acked.max(n.parse().unwrap());
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (log, r) =
            DurableLog::open(RealFs::new(), dir.path(), config(policy(policy_name))).unwrap();
        let what = format!("{policy_name} cycle {cycle}: {r:?}");
        assert!(
            !matches!(
                r.damage,
                Some(Damage::Corrupt { .. } | Damage::PowerLossTear { .. })
            ),
            "{what}"
        );
        assert!(
            log.next_offset() >= acked,
            "{what}: acked {acked}, found {}",
            log.next_offset()
        );
        assert_eq!(*epoch.get_or_insert(log.epoch()), log.epoch(), "{what}");
        let mut at = 0;
        loop {
            let rd = log.read(at, 1000, usize::MAX).unwrap();
            let Some(&(last, _)) = rd.records.last() else {
                break;
            };
            for (o, p) in &rd.records {
                assert_eq!(p, &payload(*o), "{what}: offset {o}");
            }
            at = last + 1;
        }
        assert_eq!(at, log.next_offset(), "{what}");
        drop(log);
    }
}

#[test]
fn kill9_of_a_writing_process_loses_nothing_acked_always() {
    kill_cycles("always");
}

#[test]
fn kill9_of_a_writing_process_loses_nothing_acked_os() {
    kill_cycles("os");
}
