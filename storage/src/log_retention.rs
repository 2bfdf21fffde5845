//! A retention pass of a [`DurableLog`] (docs/storage.md 7): the decision is
//! [`crate::retention::condemned`]; this applies it to the log's segments and files.

use super::{DurableLog, Retained, StorageError};
use crate::error::IoOp;
use crate::retention::{self, SegmentInfo};
use crate::segment::Segment;

impl DurableLog {
    /// Deletes the sealed segments retention condemns (storage.md 7), rolling an active segment
    /// older than `segment_age` first so a quiet log ages out. `first_offset` moves before any
    /// file is unlinked; open readers keep their descriptors.
    pub fn apply_retention(&self, now_unix_ms: u64) -> Result<Retained, StorageError> {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        let active = st.segments.back().expect("active");
        let old = inner
            .cfg
            .segment_age
            .is_some_and(|a| now_unix_ms.saturating_sub(active.first_ts()) >= a.as_millis() as u64);
        let failed = inner.sp.failed().is_some();
        if old && !active.is_empty() && st.quarantined.is_none() && !st.closed && !failed {
            let ts = now_unix_ms.max(st.last_ts);
            inner.roll(&mut st, ts)?;
            self.handle.written(); // the seal made records visible: let the flusher tell
        }
        let infos: Vec<SegmentInfo> = st
            .segments
            .iter()
            .map(|s| SegmentInfo {
                base: s.base(),
                bytes: s.len(),
                last_ts: s.last_ts(),
            })
            .collect();
        let k = retention::condemned(&infos, st.next_offset, &inner.cfg.retention, now_unix_ms);
        let gone: Vec<Segment> = st.segments.drain(..k).collect();
        let mut out = Retained::default();
        for s in &gone {
            out.segments += 1;
            out.bytes += s.len();
        }
        st.bytes -= out.bytes;
        let first = st.first_offset();
        while st.tail.front().is_some_and(|r| r.0 < first) {
            let (_, p) = st.tail.pop_front().expect("front checked");
            st.tail_bytes -= super::tail_cost(&p);
        }
        drop(st);
        if gone.is_empty() {
            return Ok(out);
        }
        // Oldest first, the directory synced after each: a crash keeps a suffix of the log,
        // never an older segment without a newer one (a hole no reader could cross; review
        // r1, 7). Usually one segment per pass, so one directory fsync.
        for s in &gone {
            for p in s.paths() {
                if let Err(e) = inner.fs.remove_file(p) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(StorageError::io(IoOp::Remove, p, &e));
                    }
                }
            }
            inner
                .fs
                .sync_dir(&inner.dir)
                .map_err(|e| StorageError::io(IoOp::Sync, &inner.dir, &e))?;
        }
        Ok(out)
    }
}
