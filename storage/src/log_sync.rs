//! The log's side of durability: the fdatasync the flusher calls, the guard that serialises
//! every segment fsync, and the failure mark written to `log.state` when one fails.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{FsyncPolicy, Inner, StorageError};
use crate::checkpoint::{self, Checkpoint};
use crate::error::IoOp;
use crate::flusher::{Flushable, SyncPoint};
use crate::fs::{Fs, FsFile, OpenMode};
use crate::recover as rec;

/// Name of a log's checkpoint file.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";

/// The checkpoint file of a log and what was last written to it.
pub(super) struct Checkpoints {
    /// `None` if it could not be opened: the log runs without checkpoints (recovery then
    /// relies on the frames' synced hints alone).
    file: Option<Box<dyn FsFile>>,
    last: Option<Checkpoint>,
    written_at: Option<Instant>,
}

impl Checkpoints {
    pub(super) fn open(fs: &dyn Fs, dir: &Path, last: Option<Checkpoint>) -> Self {
        let p = dir.join(CHECKPOINT_FILE);
        let file = fs.open(&p, OpenMode::ReadWrite).ok().or_else(|| {
            let f = fs.open(&p, OpenMode::CreateNew).ok()?;
            fs.sync_dir(dir).ok()?;
            Some(f)
        });
        if file.is_none() {
            tracing::warn!(dir = %dir.display(), "storage: no checkpoint file; recovery will scan");
        }
        Checkpoints {
            file,
            last,
            written_at: None,
        }
    }
}

impl Inner {
    /// Writes a checkpoint at `(base, position, next offset, last ts)`, which a successful sync
    /// covered (never a byte that is not on stable storage), unless it would not move or, when
    /// not `force`d, the last one is younger than `checkpoint_interval`. A failure is logged
    /// and costs only the checkpoint (the previous slot stays valid).
    pub(super) fn write_checkpoint(&self, at: (u64, u64, u64, u64), clean: bool, force: bool) {
        let mut cp = self.checkpoint.lock();
        let recent = cp
            .written_at
            .is_some_and(|t| t.elapsed() < self.cfg.checkpoint_interval);
        if recent && !force {
            return;
        }
        let moved = match cp.last {
            Some(l) => (at.0, at.1) > (l.segment_base, l.position) || clean != l.clean,
            None => true,
        };
        let behind = cp.last.is_some_and(|l| at.2 < l.next_offset);
        if !moved || behind {
            return;
        }
        self.put_checkpoint(&mut cp, at, clean);
    }

    /// At open: a checkpoint at what recovery found and synced, whatever the previous said.
    pub(super) fn reset_checkpoint(&self, at: (u64, u64, u64, u64)) {
        self.put_checkpoint(&mut self.checkpoint.lock(), at, false);
    }

    fn put_checkpoint(&self, cp: &mut Checkpoints, at: (u64, u64, u64, u64), clean: bool) {
        let Some(file) = &cp.file else { return };
        let next = Checkpoint {
            seq: cp.last.map_or(0, |l| l.seq + 1),
            epoch: self.epoch.load(Ordering::Acquire),
            segment_base: at.0,
            position: at.1,
            next_offset: at.2,
            last_ts: at.3,
            clean,
            quarantined: false,
        };
        match checkpoint::write(file.as_ref(), &next) {
            Ok(()) => {
                cp.last = Some(next);
                cp.written_at = Some(Instant::now());
            }
            Err(e) => tracing::warn!(dir = %self.dir.display(), error = %e,
                "storage: checkpoint write failed; the previous one stays"),
        }
    }

    /// Runs one fdatasync under the sync guard; refuses if an earlier one failed.
    pub(super) fn guarded_sync(
        &self,
        sync: impl FnOnce() -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut g = self.sync_guard.lock();
        if let Some(e) = &*g {
            return Err(e.clone());
        }
        let r = sync();
        if let Err(e) = &r {
            *g = Some(e.clone());
        }
        r
    }

    /// Records in `log.state` where the log was last durable, before anyone learns of the
    /// failure: a process that dies before healing leaves the next open the point to cut back
    /// to (the kernel may still return pages it will never write).
    pub(super) fn mark_failed(&self, synced_at: (u64, u64, u64), err: &StorageError) {
        let state = rec::LogState {
            failed_at: Some(synced_at),
            ..rec::LogState::open(self.epoch.load(Ordering::Acquire))
        };
        if let Err(e) = rec::write_state(self.fs.as_ref(), &self.dir, &state) {
            tracing::error!(error = %e, cause = %err, "storage: could not record a failed fsync");
        }
    }
}

impl Flushable for Inner {
    fn sync(&self) -> Result<u64, StorageError> {
        // Captured together: every record below `upto` is in this file or in a sealed (synced)
        // one, so syncing this file covers them all.
        let (file, point, path) = {
            let st = self.state.lock();
            let a = st.segments.back().expect("active");
            (a.file(), st.durable_point(), a.path().clone())
        };
        let at = (point.0, point.1, point.2);
        self.guarded_sync(|| {
            file.sync_data()
                .map_err(|e| StorageError::io(IoOp::Sync, Path::new(&*path), &e))
        })?;
        {
            let mut st = self.state.lock();
            if st.synced_at.2 < at.2 {
                st.synced_at = at;
            }
        }
        // `always`: at most one per checkpoint_interval; `interval`: after each of its syncs.
        let force = matches!(self.cfg.fsync, FsyncPolicy::Interval(_));
        self.write_checkpoint(point, false, force);
        Ok(at.2)
    }

    fn sync_point(&self) -> &SyncPoint {
        &self.sp
    }

    fn on_failure(&self, err: &StorageError) {
        let at = self.state.lock().synced_at;
        self.mark_failed(at, err);
    }
}
