//! Healing a log after a failed fsync (docs/storage.md 11.3).
//!
//! After a failed `fdatasync` Linux may have marked the pages clean and dropped the error, so
//! a second fsync could succeed while the data never reached the disk. The log therefore never
//! syncs those bytes again: it reopens the active segment (a fresh descriptor), cuts it back to
//! the last position a *successful* fsync covered, syncs that, and continues on a new segment.
//! Records past that point are gone: under `always` none of them was acked or visible, so the
//! epoch stays; under `interval`/`os` they may have been read, so the log takes a new epoch and
//! the caller must tell its readers (the broker ends subscriptions with `storage`).

use std::sync::atomic::Ordering;

use super::{DurableLog, FsyncPolicy, StorageError};
use crate::error::IoOp;
use crate::format;
use crate::recover as rec;
use crate::segment::Segment;

/// What [`DurableLog::heal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Healed {
    /// The log's next offset now (the last durable point).
    pub next_offset: u64,
    /// Records appended after that point, now gone.
    pub dropped: u64,
    /// Whether the epoch changed (some dropped record may have been visible).
    pub epoch_changed: bool,
}

impl DurableLog {
    /// Brings a log failed by an fsync error back: `Ok(None)` if it was not failed; an error if
    /// a step failed (the log stays failed; call again later, e.g. every `storage.retry_ms`).
    pub fn heal(&self, now_unix_ms: u64) -> Result<Option<Healed>, StorageError> {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        if st.closed {
            return Err(StorageError::Closed);
        }
        if let Some(q) = &st.quarantined {
            return Err(q.clone());
        }
        if inner.sp.failed().is_none() {
            return Ok(None);
        }
        // An fsync still blocked in the kernel (failed by the watchdog) holds the guard: nothing
        // can be cut back under it. Answer at once rather than block the caller with it.
        match inner.sync_guard.try_lock() {
            None => return Err(StorageError::SyncTimeout),
            // Under the guard and the state lock: a flusher that captured the file before this
            // point finds the generation changed and syncs nothing (review r1, 5).
            Some(_g) => inner.heal_gen.fetch_add(1, Ordering::AcqRel),
        };
        // A failure mark log.state could not take is written before anything is cut: a
        // process that dies mid-heal leaves the next open the point to cut back to (and,
        // under interval/os, the reason to change the epoch).
        let unrecorded = *inner.unrecorded.lock();
        if let Some(at) = unrecorded {
            let mark = rec::LogState {
                failed_at: Some(at),
                ..rec::LogState::open(inner.epoch.load(Ordering::Acquire))
            };
            rec::write_state(inner.fs.as_ref(), &inner.dir, &mark)?;
            *inner.unrecorded.lock() = None;
        }
        let (base, pos, upto) = st.synced_at;
        let fs = inner.fs.as_ref();
        let ii = inner.cfg.index_interval_bytes;
        let active = st.segments.back().expect("active");
        debug_assert_eq!(
            active.base(),
            base,
            "every earlier segment was sealed (synced)"
        );
        let old_len = active.len();
        let dropped = st.next_offset - upto;
        // Times of the new segments: never below the last record's (retention judges a sealed
        // segment by its successor's header time after a restart).
        let now_unix_ms = now_unix_ms.max(st.last_ts);
        // The epoch first: the new segment's header carries it.
        let epoch_changed = dropped > 0 && inner.cfg.fsync != FsyncPolicy::Always;
        let mut epoch = inner.epoch.load(Ordering::Acquire);
        if epoch_changed {
            epoch = rec::new_epoch(epoch);
        }
        let healed = if pos <= format::SEGMENT_HEADER_LEN {
            // Nothing of it was durable: start the segment over.
            for p in active.paths() {
                let _ = fs.remove_file(p);
            }
            let h = format::SegmentHeader {
                kind: inner.cfg.kind,
                compacted: false,
                base_offset: base,
                epoch,
                created_unix_ms: now_unix_ms,
            };
            let seg = Segment::create(fs, &inner.dir, &h, ii)?;
            fs.sync_dir(&inner.dir)
                .map_err(|e| StorageError::io(IoOp::Sync, &inner.dir, &e))?;
            seg
        } else {
            let ts = (active.first_ts(), st.last_ts);
            let index = active.index_below(pos);
            let seg = Segment::open(fs, &inner.dir, base, pos, upto, ts, Some(index), ii, true)?;
            let path = std::path::PathBuf::from(&**seg.path());
            seg.file()
                .set_len(pos)
                .map_err(|e| StorageError::io(IoOp::Truncate, &path, &e))?;
            seg.sync()?;
            seg
        };
        st.bytes = st.bytes - old_len + healed.len();
        st.segments.pop_back();
        st.segments.push_back(healed);
        st.next_offset = upto;
        while st.tail.back().is_some_and(|r| r.0 >= upto) {
            let (_, p) = st.tail.pop_back().expect("back checked");
            st.tail_bytes -= super::tail_cost(&p);
        }
        st.unsynced.clear();
        st.synced_cum = st.appended;
        st.synced_at = (base, pos.max(format::SEGMENT_HEADER_LEN), upto);
        // In memory before the roll (its header carries it): if the write below fails, the
        // next heal writes this epoch.
        inner.epoch.store(epoch, Ordering::Release);
        *inner.sync_guard.lock() = None;
        inner.sp.reset(upto);
        if pos > format::SEGMENT_HEADER_LEN {
            // Continue on a new file, away from the pages the failed fsync left behind.
            inner.roll(&mut st, now_unix_ms)?;
        }
        // Clears the failure mark: the cut it asked for is done. Until it is written the log
        // stays failed (a restart would cut back to the mark, which is still right).
        if let Err(e) = rec::write_state(fs, &inner.dir, &rec::LogState::open(epoch)) {
            inner.sp.fail(e.clone());
            return Err(e);
        }
        tracing::warn!(dir = %inner.dir.display(), next_offset = upto, dropped, epoch_changed,
            "storage: log healed after a failed fsync");
        Ok(Some(Healed {
            next_offset: upto,
            dropped,
            epoch_changed,
        }))
    }
}
