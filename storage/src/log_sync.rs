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
    /// A synced point whose checkpoint was held back by `checkpoint_interval`: written by the
    /// flusher once the interval has passed, even if the log stays idle (so the last batch of
    /// an `always` log is never left exposed to being cut as a torn tail; review r1, 2).
    deferred: Option<(u64, u64, u64, u64)>,
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
            deferred: None,
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
            cp.deferred = Some(at);
            return;
        }
        let moved = match cp.last {
            // A non-clean checkpoint never replaces a clean one at the same point (a flusher
            // sync or deferred checkpoint finishing after `close`): only a later point does.
            Some(l) => (at.0, at.1) > (l.segment_base, l.position) || (clean && !l.clean),
            None => true,
        };
        let behind = cp.last.is_some_and(|l| at.2 < l.next_offset);
        if !moved || behind {
            return;
        }
        self.put_checkpoint(&mut cp, at, clean);
    }

    /// When the held-back checkpoint is due, if there is one.
    pub(super) fn checkpoint_due(&self) -> Option<Instant> {
        // Asked by the flusher with its queue locked: never wait here for a checkpoint write
        // in progress (an fdatasync), which would hold up every appender waking that flusher.
        let Some(cp) = self.checkpoint.try_lock() else {
            return Some(Instant::now() + std::time::Duration::from_millis(10));
        };
        cp.deferred?;
        Some(
            cp.written_at
                .map_or_else(Instant::now, |t| t + self.cfg.checkpoint_interval),
        )
    }

    /// Writes the held-back checkpoint if it is due (flusher thread). Its point was covered by
    /// a successful sync, and a heal only ever cuts back to the last synced point, which is at
    /// or past it: it is still on disk.
    pub(super) fn write_deferred_checkpoint(&self) {
        let at = {
            let mut cp = self.checkpoint.lock();
            let due = cp
                .written_at
                .is_none_or(|t| t.elapsed() >= self.cfg.checkpoint_interval);
            if !due {
                return;
            }
            match cp.deferred.take() {
                Some(at) => at,
                None => return,
            }
        };
        self.write_checkpoint(at, false, true);
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
                if cp.deferred.is_some_and(|d| d.2 <= at.2) {
                    cp.deferred = None;
                }
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
        match rec::write_state(self.fs.as_ref(), &self.dir, &state) {
            Ok(()) => *self.unrecorded.lock() = None,
            Err(e) => {
                // Kept: heal writes it before cutting anything. Until then a restart finds no
                // mark and relies on recovery's eviction of cached pages (review r1, 4).
                tracing::error!(error = %e, cause = %err, "storage: could not record a failed fsync");
                *self.unrecorded.lock() = Some(synced_at);
            }
        }
    }
}

impl Flushable for Inner {
    fn sync(&self) -> Result<u64, StorageError> {
        // Captured together: every record below `upto` is in this file or in a sealed (synced)
        // one, so syncing this file covers them all.
        let (file, point, path, gen) = {
            let st = self.state.lock();
            let a = st.segments.back().expect("active");
            let gen = self.heal_gen.load(Ordering::Acquire);
            (a.file(), st.durable_point(), a.path().clone(), gen)
        };
        #[cfg(test)]
        {
            let hook = self.sync_hook.lock().clone();
            if let Some(hook) = hook {
                hook();
            }
        }
        let at = (point.0, point.1, point.2);
        {
            let mut g = self.sync_guard.lock();
            if self.heal_gen.load(Ordering::Acquire) != gen {
                // Healed since the capture: that file was cut back and replaced, and `at` may
                // name offsets that now live, unsynced, in a new segment. Covers nothing.
                return Ok(0);
            }
            if let Some(e) = &*g {
                return Err(e.clone());
            }
            if let Err(e) = file.sync_data() {
                let e = StorageError::io(IoOp::Sync, Path::new(&*path), &e);
                *g = Some(e.clone());
                return Err(e);
            }
        }
        {
            let mut st = self.state.lock();
            if self.heal_gen.load(Ordering::Acquire) != gen {
                return Ok(0);
            }
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

    fn maintenance_due(&self) -> Option<Instant> {
        self.checkpoint_due()
    }

    fn maintain(&self) {
        self.write_deferred_checkpoint();
    }

    fn on_failure(&self, err: &StorageError) {
        let at = self.state.lock().synced_at;
        self.mark_failed(at, err);
    }
}
