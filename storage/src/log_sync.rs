//! The log's side of durability: the fdatasync the flusher calls, the guard that serialises
//! every segment fsync, and the failure mark written to `log.state` when one fails.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::{Inner, StorageError};
use crate::error::IoOp;
use crate::flusher::{Flushable, SyncPoint};
use crate::recover as rec;

impl Inner {
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
        let (file, at, path) = {
            let st = self.state.lock();
            let a = st.segments.back().expect("active");
            let at = (a.base(), a.len(), st.next_offset);
            (a.file().clone(), at, a.path().clone())
        };
        self.guarded_sync(|| {
            file.sync_data()
                .map_err(|e| StorageError::io(IoOp::Sync, Path::new(&*path), &e))
        })?;
        let mut st = self.state.lock();
        if st.synced_at.2 < at.2 {
            st.synced_at = at;
        }
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
