//! A simulated file system for tests: files in memory with what a process sees (the page cache)
//! apart from what survives power loss (synced), directory entries durable only after
//! `sync_dir`, crashes of several kinds, a disk quota (ENOSPC) and injected faults.
//!
//! Why not a tmpfs: a real file system cannot be made to lose exactly the unsynced pages, tear
//! a write at a chosen byte, or fail the third fsync with the pages dropped (fsyncgate), and
//! those are the cases recovery and the flusher exist for.
//!
//! Model: every file is an inode with `data` (what reads return) and `durable` (what is on the
//! platter) plus the list of writes and truncations since its last successful `sync_data`.
//! Directories are inodes too (so a renamed directory keeps its contents after a crash); each has
//! a durable copy of its entries, taken by `sync_dir`. Everything is behind one mutex: tests are
//! about semantics, not speed. Unlinked files stop counting against the quota at once (a real
//! file system frees them at the last close).

use std::io;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::fs::Fs;

/// How the process (or the machine) went down; [`SimFs::crash`] returns what a restarted
/// process finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Crash {
    /// `kill -9`: every byte written to the kernel stays (the page cache outlives the process),
    /// every directory change stays; unsynced data is still unsynced (a later power loss of the
    /// returned file system can still lose it).
    ProcessKill,
    /// The machine loses power: per file, the synced bytes plus a seeded random prefix of the
    /// unsynced writes (in order, the last one possibly cut at any byte); directory entries as
    /// of each directory's last `sync_dir`.
    PowerLoss { seed: u64 },
    /// `kill -9` during a write: as `ProcessKill`, but the last write of one file (chosen by the
    /// seed among files whose last change is an unsynced write) is cut to a random prefix.
    /// Tests must count the records of that write as never acknowledged.
    TornWrite { seed: u64 },
    /// Power loss with pages written back out of order: each unsynced write survives or not
    /// independently, and a lost write past the end of the file may leave zeros (xfs). What
    /// recovery's `PowerLossTear` classification exists for.
    PowerLossReordered { seed: u64 },
}

/// The operation a [`FaultRule`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultOp {
    Open,
    Read,
    Write,
    SetLen,
    Sync,
    SyncDir,
    Rename,
    /// `remove_file` (unlink).
    Remove,
}

/// An injected failure: the `nth` matching operation from now (1-based) fails with `errno`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultRule {
    pub op: FaultOp,
    pub nth: u64,
    pub errno: i32,
    /// Only operations on paths containing this string count.
    pub path_contains: Option<String>,
    /// For `Sync`: the file's unsynced writes are dropped from writeback as Linux does after a
    /// failed fsync (reads still return them, a power loss loses them, and a later fsync
    /// succeeds without saving them: [`SimFs::fsyncgate_violations`] counts such fsyncs).
    pub drop_unsynced: bool,
    /// Every matching operation from the `nth` on fails (a disk that stays broken), until
    /// [`SimFs::clear_faults`].
    pub sticky: bool,
    /// The process dies during this operation (`Some(seed)`): a write leaves a seeded prefix of
    /// its bytes (none to all) in the page cache, then this and every later operation fail with
    /// EIO, as after [`SimFs::crash`]. `crash(ProcessKill)` (or a power loss) of this file
    /// system then gives what the restarted process finds: a crash at any byte of the write
    /// path, chosen by counting operations.
    pub kill: Option<u64>,
}

impl FaultRule {
    pub fn new(op: FaultOp, nth: u64, errno: i32) -> Self {
        FaultRule {
            op,
            nth: nth.max(1),
            errno,
            path_contains: None,
            drop_unsynced: false,
            sticky: false,
            kill: None,
        }
    }

    /// The process is killed during the `nth` `op` (see [`FaultRule::kill`]).
    pub fn kill(op: FaultOp, nth: u64, seed: u64) -> Self {
        FaultRule {
            kill: Some(seed),
            ..FaultRule::new(op, nth, libc::EIO)
        }
    }

    /// The `nth` `sync_data` fails with `errno` and drops the unsynced pages (fsyncgate).
    pub fn sync(nth: u64, errno: i32) -> Self {
        FaultRule {
            drop_unsynced: true,
            ..FaultRule::new(FaultOp::Sync, nth, errno)
        }
    }

    pub fn write(nth: u64, errno: i32) -> Self {
        FaultRule::new(FaultOp::Write, nth, errno)
    }

    pub fn on_path(mut self, contains: &str) -> Self {
        self.path_contains = Some(contains.to_string());
        self
    }

    pub fn keep_unsynced(mut self) -> Self {
        self.drop_unsynced = false;
        self
    }

    pub fn sticky(mut self) -> Self {
        self.sticky = true;
        self
    }
}

/// The simulated file system. Cheap to share: clones see the same files.
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        write!(f, "SimFs({} entries, {} bytes)", s.live.len(), s.used)
    }
}

impl SimFs {
    pub fn new() -> Arc<Self> {
        Arc::new(SimFs::default())
    }

    /// Creates `path` and its parents with durable entries: the setup a test starts from ("the
    /// data directory exists").
    pub fn mkdir_durable(&self, path: &Path) -> io::Result<()> {
        self.create_dir_all(path)?;
        let mut dirs: Vec<&Path> = path.ancestors().collect();
        dirs.reverse();
        for d in dirs {
            self.sync_dir(d)?;
        }
        Ok(())
    }

    /// Bytes past which writes fail with ENOSPC (short first, then the error); `None`: none.
    pub fn set_quota(&self, bytes: Option<u64>) {
        self.state.lock().quota = bytes;
    }

    /// Bytes held by linked files (what the quota counts).
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used
    }

    pub fn fail(&self, rule: FaultRule) {
        self.state.lock().faults.push((rule, 0));
    }

    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Flips one bit of a file, in what reads return and on the platter (a disk fault). No-op
    /// past the end of the file.
    pub fn flip_bit(&self, path: &Path, bit: u64) {
        let mut s = self.state.lock();
        let Ok(ino) = s.file(path) else { return };
        let f = s.files.get_mut(&ino).expect("linked inode");
        let (i, m) = ((bit / 8) as usize, 1u8 << (bit % 8));
        for v in [&mut f.data, &mut f.durable] {
            if let Some(b) = v.get_mut(i) {
                *b ^= m;
            }
        }
    }

    /// What a read of the whole file returns now.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        let ino = s.file(path).ok()?;
        Some(s.files[&ino].data.clone())
    }

    /// Successful `sync_data` calls on the file now at `path`.
    pub fn sync_count(&self, path: &Path) -> u64 {
        let s = self.state.lock();
        s.file(path).map_or(0, |ino| s.files[&ino].syncs)
    }

    /// Successful fsyncs issued over data a failed fsync had dropped (never written again since):
    /// each is a "retried fsync" that Linux would report as success while the data is gone.
    pub fn fsyncgate_violations(&self) -> u64 {
        self.state.lock().violations
    }

    /// Whether every file's content is synced (nothing a power loss could take).
    pub fn all_synced(&self) -> bool {
        self.state.lock().files.values().all(|f| f.ops.is_empty())
    }
}

mod crash;
mod file;
mod state;

use state::State;

#[cfg(test)]
mod tests;
