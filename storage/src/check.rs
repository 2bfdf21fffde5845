//! `felix-broker check`: the offline verifier of a data directory (docs/storage.md 12).
//!
//! It walks the data directory, treats every directory holding segment files (or a `log.state`)
//! as a log, and verifies each one completely: segment headers, **every frame** of every
//! segment (CRC, record layout, offset continuity, time order; through [`crate::scan`], the
//! same code recovery uses, so there is no second parser), continuity across segments, the
//! offset and time indexes against the frames, the checkpoint slots, `log.state`, and leftovers.
//! The result is a [`Report`] (one [`LogReport`] per log) and an exit code.
//!
//! Without `repair` nothing is written. With it, [`crate::repair`] applies the fixes the check
//! planned (truncate torn tails, move data after a corrupt frame to `lost+found/`, rebuild
//! indexes, new epoch when records that may have been visible were removed) and the log is
//! checked again: the exit code describes the directory as it is left.
//!
//! # Entry point for the broker
//!
//! ```text
//! let run = felix_storage::check::run(&RealFs, data_dir, &CheckOptions { repair, ..Default::default() });
//! print!("{}", if json { run.report.to_json_lines() } else { run.report.to_string() });
//! std::process::exit(run.exit_code);
//! ```
//!
//! # Exit codes
//!
//! | code | meaning |
//! | ---: | --- |
//! | 0 | clean (after `repair`: clean now, whatever was fixed) |
//! | 1 | damage found that `repair` can fix (after `repair`: some remains) |
//! | 2 | damage `repair` cannot fix (unknown format, unreadable file), or check could not run |
//! | 3 | the data directory is locked by a running broker |

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::format::LogKind;
use crate::fs::Fs;

mod log;
mod report;
pub mod segment_scan;
mod walk;

pub use log::check_log_dir;

/// Clean.
pub const EXIT_CLEAN: i32 = 0;
/// Damage that `repair` can fix.
pub const EXIT_DAMAGE: i32 = 1;
/// Damage `repair` cannot fix, or the check could not run.
pub const EXIT_FAILED: i32 = 2;
/// The data directory's lock is held (a broker is running on it).
pub const EXIT_LOCKED: i32 = 3;

/// The lock file a broker holds on its data directory (docs/storage.md 2.1).
pub const LOCK_FILE: &str = "LOCK";
/// Where repair moves the bytes it takes out of a log.
pub const LOST_FOUND: &str = "lost+found";
/// Directories of the data directory that hold no live log.
const NOT_LOGS: [&str; 2] = [LOST_FOUND, "trash"];

/// What to check and how.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Fix what can be fixed (docs/storage.md 12), then check again.
    pub repair: bool,
    /// Only this log directory (relative to the data directory, e.g. `streams/acme/ns/s`).
    pub only: Option<PathBuf>,
    /// Bytes of frames between offset-index entries when an index is rebuilt
    /// (`storage.index_interval_bytes`; any value gives a correct index, this one gives the
    /// index the writer would have written).
    pub index_interval_bytes: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            repair: false,
            only: None,
            index_interval_bytes: 4096,
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing, nothing to fix (a gap left by an earlier repair, a stray file).
    Info,
    /// Damage `repair` fixes.
    Repairable,
    /// Damage `repair` cannot fix.
    Unrepairable,
}

/// What kind of problem a finding is (stable names in the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A partial frame at the end of the last segment (a write cut short).
    TornTail,
    /// Unsynced frames lost out of order by a power cut at the end of the last segment.
    PowerLossTear,
    /// An invalid frame in data that was durable.
    CorruptFrame,
    /// A segment header that is short, or fails its magic or CRC.
    BadHeader,
    /// A header of a format or kind this code does not know, or naming another base offset.
    UnknownFormat,
    /// Frames of a segment reach into the next segment's offsets.
    Overlap,
    /// Offsets missing between two segments (an earlier repair's hole, or lost data).
    Gap,
    /// An offset-index entry that does not point at the frame it names.
    BadIndex,
    /// A time-index entry that does not match its frame.
    BadTimeIndex,
    /// A segment without its `.idx` file.
    MissingIndex,
    /// An index file without its segment.
    OrphanIndex,
    /// A checkpoint file with no valid slot, or whose slot does not match the frames.
    BadCheckpoint,
    /// `log.state` missing or damaged: the log's epoch is unknown.
    BadState,
    /// `log.state` records an fsync failure that was never healed.
    UnhealedFsyncFailure,
    /// A temporary file left by an interrupted write.
    Leftover,
    /// A file this code does not know.
    Stray,
    /// A file that cannot be read.
    Unreadable,
}

impl Problem {
    /// The stable name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            Problem::TornTail => "torn_tail",
            Problem::PowerLossTear => "power_loss_tear",
            Problem::CorruptFrame => "corrupt_frame",
            Problem::BadHeader => "bad_header",
            Problem::UnknownFormat => "unknown_format",
            Problem::Overlap => "overlap",
            Problem::Gap => "gap",
            Problem::BadIndex => "bad_index",
            Problem::BadTimeIndex => "bad_time_index",
            Problem::MissingIndex => "missing_index",
            Problem::OrphanIndex => "orphan_index",
            Problem::BadCheckpoint => "bad_checkpoint",
            Problem::BadState => "bad_state",
            Problem::UnhealedFsyncFailure => "unhealed_fsync_failure",
            Problem::Leftover => "leftover",
            Problem::Stray => "stray",
            Problem::Unreadable => "unreadable",
        }
    }
}

/// One problem (or note) found in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub problem: Problem,
    pub severity: Severity,
    /// File name inside the log directory.
    pub file: String,
    /// Byte position in the file, where it applies.
    pub position: Option<u64>,
    /// Offsets concerned, where known.
    pub offsets: Option<Range<u64>>,
    pub detail: String,
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairAction {
    pub file: String,
    pub action: String,
    /// Where the removed bytes went (inside the data directory), if anything was moved.
    pub saved_to: Option<String>,
}

/// One log: what it holds and what is wrong with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogReport {
    /// The log directory, relative to the data directory.
    pub path: String,
    pub kind: Option<LogKind>,
    pub segments: u64,
    /// Records in valid frames.
    pub records: u64,
    /// Bytes of segment files.
    pub bytes: u64,
    /// Base offset of the oldest segment.
    pub first_offset: u64,
    /// The offset after the last valid frame.
    pub next_offset: u64,
    /// From `log.state`.
    pub epoch: Option<u64>,
    /// `log.state` says the log was closed cleanly.
    pub clean_shutdown: bool,
    pub findings: Vec<Finding>,
    /// Filled by a repair: what it did (the findings are then those of the check after it).
    pub repairs: Vec<RepairAction>,
    /// Set by a repair that removed records: the log's new epoch (the broker must treat
    /// resuming readers as starting over, wire-protocol 7.4).
    pub new_epoch: Option<u64>,
    /// What repair would do (planned by the check).
    pub(crate) fixes: Vec<Fix>,
}

impl LogReport {
    /// The worst severity among the findings.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// A repair step planned by the check of a log (carried out by [`crate::repair`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fix {
    /// Delete a file that holds no user data (a `.tmp`, an orphan index).
    Remove(String),
    /// Remove a bad checkpoint file (no checkpoint means "scan more": always safe).
    RemoveCheckpoint,
    /// Write a reconstructed header over a damaged one (the old bytes are saved first).
    RewriteHeader { base: u64, header: [u8; 64] },
    /// Move everything from `position` on to lost+found and truncate there.
    Cut {
        base: u64,
        position: u64,
        bump: bool,
    },
    /// Move a whole segment (and its indexes) to lost+found.
    MoveSegment { base: u64 },
    /// Rebuild the segment's `.idx` (and `.tix` when `tix`) from its frames.
    RebuildIndex { base: u64, tix: bool },
    /// Write `log.state` anew: clear an unhealed failure, and/or take a new epoch.
    ResetState { bump: bool },
}

/// The whole directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub data_dir: String,
    pub repair: bool,
    pub logs: Vec<LogReport>,
    /// Set when the check could not run (exit code 2 or 3).
    pub error: Option<String>,
}

impl Report {
    /// The exit code this report stands for (see the module doc).
    pub fn exit_code(&self) -> i32 {
        if self.error.is_some() {
            return EXIT_FAILED;
        }
        match self.logs.iter().filter_map(LogReport::worst).max() {
            None | Some(Severity::Info) => EXIT_CLEAN,
            Some(Severity::Repairable) => EXIT_DAMAGE,
            Some(Severity::Unrepairable) => EXIT_FAILED,
        }
    }
}

/// What [`run`] returns: the report and the process exit code.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub report: Report,
    pub exit_code: i32,
}

/// Checks (and with `opts.repair`, repairs) the data directory `data_dir`: takes its lock,
/// walks it, checks every log. Never panics on what the files hold; I/O errors become findings
/// (`unreadable`) or, if nothing can be read, the report's `error`.
pub fn run(fs: &dyn Fs, data_dir: &Path, opts: &CheckOptions) -> CheckRun {
    let mut report = Report {
        data_dir: data_dir.display().to_string(),
        repair: opts.repair,
        ..Report::default()
    };
    let fail = |mut report: Report, msg: String, code: i32| {
        report.error = Some(msg);
        CheckRun {
            report,
            exit_code: code,
        }
    };
    if let Err(e) = fs.list_dir(data_dir) {
        let msg = format!("cannot read data directory {}: {e}", data_dir.display());
        return fail(report, msg, EXIT_FAILED);
    }
    // A running broker holds the lock; without `repair` an absent LOCK is not created (a check
    // never writes), and no broker runs on a directory without one.
    let lock_path = data_dir.join(LOCK_FILE);
    let _lock = if opts.repair || fs.open(&lock_path, crate::fs::OpenMode::Read).is_ok() {
        match fs.lock_exclusive(&lock_path) {
            Ok(l) => Some(l),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let msg = format!(
                    "data_dir {} is in use by another process (LOCK held); stop the broker first",
                    data_dir.display()
                );
                return fail(report, msg, EXIT_LOCKED);
            }
            Err(e) => {
                let msg = format!("cannot lock {}: {e}", lock_path.display());
                return fail(report, msg, EXIT_FAILED);
            }
        }
    } else {
        None
    };
    let dirs = match &opts.only {
        Some(rel) => {
            if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
                let msg = format!("{} is not a path inside the data directory", rel.display());
                return fail(report, msg, EXIT_FAILED);
            }
            if fs.list_dir(&data_dir.join(rel)).is_err() {
                let msg = format!(
                    "no log directory {} in {}",
                    rel.display(),
                    data_dir.display()
                );
                return fail(report, msg, EXIT_FAILED);
            }
            vec![rel.clone()]
        }
        None => log_dirs(fs, data_dir),
    };
    for rel in dirs {
        let dir = data_dir.join(&rel);
        let mut log = check_log_dir(fs, &dir, opts);
        log.path = rel.display().to_string();
        if opts.repair && !log.fixes.is_empty() {
            let lost = data_dir.join(LOST_FOUND).join(&rel);
            let (repairs, new_epoch) =
                crate::repair::repair_log(fs, &dir, &lost, &log, opts.index_interval_bytes);
            let mut after = check_log_dir(fs, &dir, opts);
            after.path = log.path.clone();
            after.repairs = repairs;
            after.new_epoch = new_epoch;
            log = after;
        }
        report.logs.push(log);
    }
    let exit_code = report.exit_code();
    CheckRun { report, exit_code }
}

/// Every directory under `data_dir` (relative paths, sorted) that holds log files, skipping
/// `lost+found/` and `trash/` at the top.
fn log_dirs(fs: &dyn Fs, data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(names) = fs.list_dir(&data_dir.join(&rel)) else {
            continue;
        };
        let mut is_log = false;
        for n in names {
            if rel.as_os_str().is_empty() && NOT_LOGS.contains(&n.as_str()) {
                continue;
            }
            if log::is_log_file(&n) {
                is_log = true;
            } else if !log::is_known_file(&n) {
                // Directories are walked; a file that is not a directory fails list_dir.
                stack.push(rel.join(&n));
            }
        }
        if is_log {
            out.push(rel);
        }
    }
    out.sort();
    out
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Repairable => "repairable",
            Severity::Unrepairable => "unrepairable",
        })
    }
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
