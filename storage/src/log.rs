//! [`DurableLog`]: one log directory of segments, with a hot tail in memory, watermarks, group
//! commit and recovery (docs/storage.md 4, 6, 7, 8). The broker adapts it to its `Log` trait.
//!
//! # API
//!
//! ```text
//! DurableLog::open(fs: Arc<dyn Fs>, dir: &Path, cfg: LogConfig)
//!     -> Result<(DurableLog, Recovery), StorageError>          // own flusher thread
//! DurableLog::open_with(fs, dir, cfg, flushers: Option<Arc<Flushers>>)   // shared threads
//! log.append(&self, payloads: &[Bytes], now_unix_ms: u64) -> Result<Appended, StorageError>
//!     Appended { offsets: Range<u64>, ticket: Ticket }
//!     ticket.wait() (a std Future, no runtime needed) / ticket.wait_blocking()
//!         / ticket.wait_timeout(Duration) -> Result<(), StorageError>
//! log.read(&self, from: u64, max_records: usize, max_bytes: usize) -> Result<Read, StorageError>
//!     Read { records: Vec<(u64, Bytes)>, first_available: u64, next_offset: u64 /* visible */ }
//! log.seek_time(&self, unix_ms: u64) -> Result<u64, StorageError>    // start by time
//! log.visible_offset() / next_offset() / first_offset() / len() / bytes() / epoch() -> u64
//! log.memory_bytes() -> usize
//! log.apply_retention(&self, now_unix_ms: u64) -> Result<Retained, StorageError>
//! log.heal(&self, now_unix_ms: u64) -> Result<Option<Healed>, StorageError>
//! log.set_visible_listener(&self, Option<Arc<dyn Fn(u64) + Send + Sync>>)   // always: fanout
//! log.refusal() -> Option<StorageError>; log.sync_stats() -> (fsyncs, tickets)
//! log.close(&self) -> Result<(), StorageError>   // final fdatasync, marks the log clean
//! ```
//!
//! Everything takes `&self` (one internal mutex serialises appends, which the broker does
//! anyway under its stream lock); share the log with an `Arc`. `read` does its `pread`s outside
//! that mutex. Dropping the log closes it.
//!
//! # Promises
//!
//! - `append` writes the frame to the kernel (`pwrite` into the page cache) before it returns,
//!   so `kill -9` never loses an appended record, whatever the policy.
//! - The ticket resolves when the records reached the watermark their policy acks at:
//!   `always` after an `fdatasync` that covered them (one per flusher turn for all appenders:
//!   group commit); `interval` and `os` at once (written). A failed fsync fails every waiting
//!   ticket with `StorageError::Io` (one that hangs past `sync_timeout`: `SyncTimeout`) and
//!   the log refuses appends until healed or reopened (never a second fsync over the same
//!   bytes).
//! - **Visibility**: `read` and `visible_offset` stop at the ack watermark. For `always` that is
//!   the synced watermark: a reader never sees a record that a power loss could take back, so
//!   the epoch survives crashes. For `interval`/`os` it is the written watermark: a power loss
//!   can take visible records back, and recovery then gives the log a new epoch.
//! - A failed write (`ENOSPC`, `EIO`) cuts the file back to the previous frame boundary and
//!   fails that append alone; the next append gets the same offsets.
//! - A failed fdatasync is recorded in `log.state` (the last durable point), fails every waiting
//!   ticket, and the log refuses appends until [`DurableLog::heal`] cuts it back to that point
//!   onto a new segment (or a reopen does). Under `interval`/`os` the records cut may have been
//!   read: the epoch changes and the caller must end its readers (`Healed::epoch_changed`).
//! - Reads come from the hot tail (recent records, in memory, bounded by `hot_tail_bytes`) or,
//!   below it, by `pread` from the segments via the offset index; every frame read from a file
//!   is CRC-checked first.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::IoOp;
use crate::flusher::{FlushHandle, Flushable, SyncPoint};
// Everything a user of the log names, from one place.
pub use crate::flusher::{Flushers, FsyncPolicy, Ticket, TicketWait, VisibleListener};
pub use crate::format::LogKind;
use crate::format::{self, FrameMeta, SegmentHeader};
use crate::fs::Fs;
use crate::recover::{self as rec, RecoverConfig};
pub use crate::recover::{Damage, Recovery};
pub use crate::retention::Retention;
use crate::segment::Segment;
use crate::StorageError;

/// A durable log. `append`, `read` and the rest take `&self` (an internal mutex serialises
/// appends); share it with an `Arc`.
pub struct DurableLog {
    inner: Arc<Inner>,
    handle: FlushHandle,
    // Declared last: dropped after `handle`, joining the thread if this log owned it.
    _own: Option<Arc<Flushers>>,
}

struct Inner {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    cfg: LogConfig,
    /// Changes only when healing drops records that were visible (interval/os).
    epoch: AtomicU64,
    sp: SyncPoint,
    state: Mutex<State>,
    /// Held around every fdatasync of a segment (flusher, seal); holds the error of the first
    /// that failed. Serialising them means no sync can succeed over pages a concurrent one
    /// failed on (and dropped) before the failure is known: after a failure, none runs until
    /// `heal`.
    sync_guard: Mutex<Option<StorageError>>,
    /// The checkpoint file and the last checkpoint written (storage.md 3.4).
    checkpoint: Mutex<sync::Checkpoints>,
    /// Bumped by each heal (under the sync guard, with the state locked): a flusher sync that
    /// captured the active file before a heal must neither sync that stale file nor resolve
    /// tickets with the watermark it captured (review r1, 5).
    heal_gen: AtomicU64,
    /// The failure mark `log.state` could not take: written again before a heal may cut.
    unrecorded: Mutex<Option<(u64, u64, u64)>>,
    /// Tests: called by the flusher's sync between capturing the file and taking the guard.
    #[cfg(test)]
    sync_hook: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

struct State {
    /// Oldest first; the last is active.
    segments: VecDeque<Segment>,
    next_offset: u64,
    last_ts: u64,
    bytes: u64,
    /// Recent records (visible and not yet visible), oldest first.
    tail: VecDeque<(u64, Bytes)>,
    tail_bytes: usize,
    /// Frame bytes appended since open, and (end offset, that count) per append not yet synced:
    /// the pending-bytes bound of `always`.
    appended: u64,
    unsynced: VecDeque<(u64, u64)>,
    /// `appended` at the last synced point seen.
    synced_cum: u64,
    /// The last point a successful fdatasync covered: (segment base, position, offset). What a
    /// failed log heals back to.
    synced_at: (u64, u64, u64),
    quarantined: Option<StorageError>,
    closed: bool,
    frame: Vec<u8>,
}

impl DurableLog {
    /// Opens (creating if needed) the log in `dir`, with a flusher thread of its own.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        cfg: LogConfig,
    ) -> Result<(DurableLog, Recovery), StorageError> {
        Self::open_with(fs, dir, cfg, None)
    }

    /// As [`DurableLog::open`], syncing on shared flusher threads when given.
    pub fn open_with(
        fs: Arc<dyn Fs>,
        dir: &Path,
        mut cfg: LogConfig,
        flushers: Option<Arc<Flushers>>,
    ) -> Result<(DurableLog, Recovery), StorageError> {
        cfg.segment_bytes = cfg.segment_bytes.clamp(4096, 1 << 30);
        let now = now_ms();
        let r = rec::recover(
            fs.as_ref(),
            dir,
            &RecoverConfig {
                kind: cfg.kind,
                policy: cfg.fsync,
                index_interval: cfg.index_interval_bytes,
                machine_restarted: cfg.machine_restarted,
                now_unix_ms: now,
            },
        )?;
        let segments: VecDeque<Segment> = r.segments.into();
        let active = segments.back().expect("recovery leaves a segment");
        let next_offset = active.next_offset();
        let last_ts = active.last_ts();
        let bytes = segments.iter().map(Segment::len).sum();
        let synced_at = (active.base(), active.len(), next_offset);
        let fs_for_cp = fs.clone();
        let inner = Arc::new(Inner {
            fs,
            dir: dir.to_path_buf(),
            epoch: AtomicU64::new(r.recovery.epoch),
            sp: SyncPoint::new(next_offset),
            state: Mutex::new(State {
                segments,
                next_offset,
                last_ts,
                bytes,
                tail: VecDeque::new(),
                tail_bytes: 0,
                appended: 0,
                unsynced: VecDeque::new(),
                synced_cum: 0,
                synced_at,
                quarantined: r.quarantined,
                closed: false,
                frame: Vec::new(),
            }),
            cfg,
            sync_guard: Mutex::new(None),
            heal_gen: AtomicU64::new(0),
            unrecorded: Mutex::new(None),
            #[cfg(test)]
            sync_hook: Mutex::new(None),
            checkpoint: Mutex::new(sync::Checkpoints::open(
                fs_for_cp.as_ref(),
                dir,
                r.checkpoint,
            )),
        });
        // What recovery found is on disk now: vouch for it, so damage before this point is
        // never mistaken for a torn tail later.
        // (Not for a quarantined log: its tail was not synced.) Unconditional: a checkpoint
        // ahead of what recovery found (a disk that lost flushed data) must not vouch for
        // whatever is written there next.
        let (at, quarantined) = {
            let st = inner.state.lock();
            (st.durable_point(), st.quarantined.is_some())
        };
        if !quarantined {
            inner.reset_checkpoint(at);
        }
        let (flushers, own) = match flushers {
            Some(f) => (f, None),
            None => {
                let f = Flushers::with_timeout(1, inner.cfg.sync_timeout)
                    .map_err(|e| StorageError::io(IoOp::Open, dir, &e))?;
                (f.clone(), Some(f))
            }
        };
        let weak: std::sync::Weak<dyn Flushable> =
            Arc::downgrade(&(inner.clone() as Arc<dyn Flushable>));
        let handle = flushers.register(weak, inner.cfg.fsync);
        Ok((
            DurableLog {
                inner,
                handle,
                _own: own,
            },
            r.recovery,
        ))
    }

    /// Appends `payloads` as one frame (atomic on disk) at the next offsets; see the module doc
    /// for what the ticket promises. An empty batch appends nothing.
    pub fn append(&self, payloads: &[Bytes], now_unix_ms: u64) -> Result<Appended, StorageError> {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        if st.closed {
            return Err(StorageError::Closed);
        }
        if let Some(e) = &st.quarantined {
            return Err(e.clone());
        }
        if let Some(e) = inner.sp.failed() {
            return Err(e);
        }
        let start = st.next_offset;
        if payloads.is_empty() {
            return Ok(Appended {
                offsets: start..start,
                ticket: Ticket::ready(Ok(())),
            });
        }
        let flen = format::frame_len(payloads);
        if flen >= format::MAX_FRAME as u64 {
            return Err(StorageError::TooLarge { bytes: flen });
        }
        if inner.cfg.fsync == FsyncPolicy::Always {
            let pending = st.pending_bytes(inner.sp.synced());
            if pending > 0 && pending + flen > inner.cfg.max_pending_bytes as u64 {
                return Err(StorageError::PendingFull {
                    limit: inner.cfg.max_pending_bytes,
                });
            }
        }
        let ts = now_unix_ms.max(st.last_ts);
        let active = st.segments.back().expect("a log has an active segment");
        let too_old = inner
            .cfg
            .segment_age
            .is_some_and(|a| ts.saturating_sub(active.first_ts()) >= a.as_millis() as u64);
        if !active.is_empty() && (active.len() + flen > inner.cfg.segment_bytes || too_old) {
            inner.roll(&mut st, ts)?;
        }
        let st = &mut *st;
        st.frame.clear();
        let meta = FrameMeta {
            base_offset: start,
            timestamp_ms: ts,
            synced_hint: inner.sp.synced(),
        };
        let h = format::encode_frame(&mut st.frame, meta, payloads)
            .map_err(|_| StorageError::TooLarge { bytes: flen })?;
        let active = st.segments.back_mut().expect("active");
        active.append(&st.frame, &h)?;
        if st.frame.capacity() > 1 << 20 {
            st.frame = Vec::new(); // one huge batch does not pin its buffer forever
        }
        let end = h.next_offset();
        st.next_offset = end;
        st.last_ts = ts;
        st.bytes += flen;
        st.appended += flen;
        for (i, p) in payloads.iter().enumerate() {
            st.tail.push_back((start + i as u64, p.clone()));
            st.tail_bytes += tail_cost(p);
        }
        inner.sp.wrote(end);
        let ticket = if inner.cfg.fsync == FsyncPolicy::Always {
            st.unsynced.push_back((end, st.appended));
            inner.sp.ticket(end)
        } else {
            Ticket::ready(Ok(()))
        };
        let visible = inner.visible(st);
        st.trim_tail(inner.cfg.hot_tail_bytes, visible);
        self.handle.written();
        Ok(Appended {
            offsets: start..end,
            ticket,
        })
    }

    /// Up to `max_records` records (and about `max_bytes` of payload, at least one record) from
    /// `from` (raised to the first available offset), all below the visible offset.
    pub fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Read, StorageError> {
        let inner = &*self.inner;
        let st = inner.state.lock();
        let first = st.first_offset();
        let visible = inner.visible(&st);
        let from = from.max(first);
        let mut out = Read {
            records: Vec::new(),
            first_available: first,
            next_offset: visible,
        };
        if from >= visible || max_records == 0 {
            return Ok(out);
        }
        let tail_start = st.tail.front().map_or(st.next_offset, |r| r.0);
        if from >= tail_start {
            let skip = (from - tail_start) as usize;
            let mut bytes = 0;
            for (o, p) in st.tail.range(skip..) {
                if *o >= visible || out.records.len() >= max_records {
                    break;
                }
                if !out.records.is_empty() && bytes + p.len() > max_bytes {
                    break;
                }
                bytes += p.len();
                out.records.push((*o, p.clone()));
            }
            return Ok(out);
        }
        // Cold: the segment holding `from`; read outside the lock (appends go on meanwhile).
        let i = st.segments.partition_point(|s| s.base() <= from).max(1) - 1;
        let reader = st.segments[i].reader(inner.fs.as_ref(), from)?;
        let seg_base = st.segments[i].base();
        let chunk = inner.cfg.read_chunk_bytes;
        drop(st);
        let r = reader.read(from, visible, max_records, max_bytes, chunk)?;
        if let (true, Some(at)) = (r.records.is_empty(), r.short_at) {
            // A hole: records [at, next segment's base) are in no file. The reader sees a gap
            // (the next record it gets has a higher offset), as after `check --repair` cut a
            // damaged frame out (storage.md 12).
            // A file a heal cut back while this read ran ends where the next segment starts:
            // no hole, the read just goes on there.
            let st = inner.state.lock();
            let next = st
                .segments
                .iter()
                .map(Segment::base)
                .find(|&b| b > seg_base && b >= at);
            let path = st.segments[i.min(st.segments.len() - 1)].path().clone();
            drop(st);
            if next != Some(at) {
                tracing::error!(offset = at, next = ?next, file = %path,
                    "storage: records missing from a segment file; readers skip them");
            }
            return match next {
                Some(b) => self.read(b, max_records, max_bytes),
                None => Err(StorageError::Quarantined { offset: at, path }),
            };
        }
        out.records = r.records;
        Ok(out)
    }

    /// The first visible offset whose record's timestamp is ≥ `unix_ms` (a subscription that
    /// starts by time, storage.md 6.3), or the visible offset if none is (start at the end).
    /// Timestamps are the broker clock at append, clamped to never go back. A few small
    /// `pread`s under the log's lock: one per step of a binary search in one segment's index
    /// plus a walk of at most one index interval.
    pub fn seek_time(&self, unix_ms: u64) -> Result<u64, StorageError> {
        let inner = &*self.inner;
        let st = inner.state.lock();
        let visible = inner.visible(&st);
        if st.last_ts < unix_ms {
            return Ok(visible); // even the newest record is older
        }
        // Segments whose first frame is older than `unix_ms`: the answer is in the last of them
        // or is the first record of the one after.
        let n = st
            .segments
            .partition_point(|s| s.first_ts() < unix_ms && !s.is_empty());
        let i = n.saturating_sub(1);
        for seg in st.segments.iter().skip(i) {
            if seg.base() >= visible {
                break;
            }
            if let Some(o) = seg.seek_time(inner.fs.as_ref(), unix_ms, visible)? {
                return Ok(o.max(st.first_offset()));
            }
        }
        Ok(visible)
    }

    /// `always` logs: `f(visible_offset)` is called on the flusher thread, never under the
    /// log's lock, each time records become visible (in increasing order), so the caller can
    /// fan them out in log order. `interval`/`os` records are visible when `append` returns.
    pub fn set_visible_listener(&self, f: Option<VisibleListener>) {
        self.inner.sp.set_listener(f);
    }

    /// Records below this are visible to readers (see the module doc).
    pub fn visible_offset(&self) -> u64 {
        let st = self.inner.state.lock();
        self.inner.visible(&st)
    }

    /// The offset the next append will get.
    pub fn next_offset(&self) -> u64 {
        self.inner.state.lock().next_offset
    }

    /// The oldest offset still held (retention moves it).
    pub fn first_offset(&self) -> u64 {
        self.inner.state.lock().first_offset()
    }

    /// Records held (appended, whether visible yet or not).
    pub fn len(&self) -> u64 {
        let st = self.inner.state.lock();
        st.next_offset - st.first_offset()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of segment files.
    pub fn bytes(&self) -> u64 {
        self.inner.state.lock().bytes
    }

    /// Bytes this log holds in memory for its records: the hot tail's payloads (shared with
    /// the appender's `Bytes`) and the frame buffer. For the broker's memory accounting.
    pub fn memory_bytes(&self) -> usize {
        let st = self.inner.state.lock();
        st.tail_bytes + st.frame.capacity()
    }

    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    pub fn segment_count(&self) -> usize {
        self.inner.state.lock().segments.len()
    }

    /// `(fdatasync calls by the flusher, tickets they resolved)`: the group-commit width.
    pub fn sync_stats(&self) -> (u64, u64) {
        self.inner.sp.stats()
    }

    /// Why appends are refused, if they are (quarantine, failed fsync, closed).
    pub fn refusal(&self) -> Option<StorageError> {
        let st = self.inner.state.lock();
        if st.closed {
            return Some(StorageError::Closed);
        }
        st.quarantined.clone().or_else(|| self.inner.sp.failed())
    }

    /// Final fdatasync of the active segment; resolves every waiting ticket and marks the log
    /// clean (so a restart does not count it as crashed). Later appends get `Closed`.
    pub fn close(&self) -> Result<(), StorageError> {
        self.inner.close()
    }
}

impl Drop for DurableLog {
    fn drop(&mut self) {
        // A dropped log is closed: its data is synced and its tickets resolved, never left
        // waiting for a flusher that is going away.
        let _ = self.inner.close();
        self.inner.sp.fail(StorageError::Closed);
    }
}

impl Inner {
    fn visible(&self, st: &State) -> u64 {
        match self.cfg.fsync {
            FsyncPolicy::Always => self.sp.synced().min(st.next_offset),
            _ => st.next_offset,
        }
    }

    /// Seals the active segment (data and index fsynced: everything written is now durable)
    /// and starts a new one at the next offset, fsyncing the directory before it is used.
    fn roll(&self, st: &mut State, now_unix_ms: u64) -> Result<(), StorageError> {
        let active = st.segments.back_mut().expect("active");
        if let Err(e) = self.guarded_sync(|| active.seal()) {
            self.mark_failed(st.synced_at, &e);
            self.sp.fail(e.clone());
            return Err(e);
        }
        self.sp.synced_to(st.next_offset);
        st.synced_at = (active.base(), active.len(), st.next_offset);
        let h = SegmentHeader {
            kind: self.cfg.kind,
            compacted: false,
            base_offset: st.next_offset,
            epoch: self.epoch.load(Ordering::Acquire),
            created_unix_ms: now_unix_ms,
        };
        let seg = Segment::create(
            self.fs.as_ref(),
            &self.dir,
            &h,
            self.cfg.index_interval_bytes,
        )?;
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            for p in seg.paths() {
                let _ = self.fs.remove_file(p);
            }
            // Never retried as if nothing happened (a failed directory fsync may have dropped
            // the entries it covered, as a failed fdatasync drops pages): the log fails and
            // heals onto a fresh segment, like after a failed data sync (review r1).
            let e = StorageError::io(IoOp::Sync, &self.dir, &e);
            self.mark_failed(st.synced_at, &e);
            self.sp.fail(e.clone());
            return Err(e);
        }
        st.synced_at = (seg.base(), seg.len(), st.next_offset);
        st.bytes += seg.len(); // its header: `bytes` is what the files hold
        st.segments.push_back(seg);
        let n = st.segments.len();
        st.segments[n - 2].release_file();
        // A checkpoint at each seal (the only one an `os` log gets while running).
        self.write_checkpoint(st.durable_point(), false, true);
        Ok(())
    }

    fn close(&self) -> Result<(), StorageError> {
        let mut st = self.state.lock();
        if st.closed {
            return Ok(());
        }
        st.closed = true;
        if st.quarantined.is_some() || self.sp.failed().is_some() {
            return Ok(()); // not clean: recovery must look again
        }
        let end = st.next_offset;
        let active = st.segments.back_mut().expect("active");
        if let Err(e) = self.guarded_sync(|| active.seal()) {
            self.mark_failed(st.synced_at, &e);
            self.sp.fail(e.clone());
            return Err(e);
        }
        self.sp.synced_to(end);
        self.write_checkpoint(st.durable_point(), true, true);
        let state = rec::LogState {
            clean: true,
            ..rec::LogState::open(self.epoch.load(Ordering::Acquire))
        };
        rec::write_state(self.fs.as_ref(), &self.dir, &state)
    }
}

impl State {
    /// `(segment base, position, next offset, last timestamp)` of the end of what was written:
    /// a checkpoint's content once a sync covered it.
    fn durable_point(&self) -> (u64, u64, u64, u64) {
        let a = self.segments.back().expect("active");
        (a.base(), a.len(), self.next_offset, self.last_ts)
    }

    fn first_offset(&self) -> u64 {
        self.segments
            .front()
            .map_or(self.next_offset, Segment::base)
    }

    /// Frame bytes written after the synced watermark.
    fn pending_bytes(&mut self, synced: u64) -> u64 {
        while let Some(&(end, cum)) = self.unsynced.front() {
            if end > synced {
                break;
            }
            self.synced_cum = cum;
            self.unsynced.pop_front();
        }
        self.appended - self.synced_cum
    }

    /// Drops the oldest visible records while the tail is over its bound; records not yet
    /// visible stay (bounded by the pending limit).
    fn trim_tail(&mut self, max: usize, visible: u64) {
        while self.tail_bytes > max && self.tail.front().is_some_and(|r| r.0 < visible) {
            let (_, p) = self.tail.pop_front().expect("front checked");
            self.tail_bytes -= tail_cost(&p);
        }
    }
}

/// What one record costs the hot tail's bound: its payload plus the ring slot and the `Bytes`
/// handle, so a stream of empty payloads is bounded too (review r1, 6).
pub(crate) const TAIL_RECORD_OVERHEAD: usize = 64;

pub(crate) fn tail_cost(p: &Bytes) -> usize {
    p.len() + TAIL_RECORD_OVERHEAD
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[path = "log_sync.rs"]
mod sync;
pub(crate) use sync::CHECKPOINT_FILE;

#[path = "log_retention.rs"]
mod retain;

#[path = "log_heal.rs"]
mod heal;
pub use heal::Healed;

#[path = "log_types.rs"]
mod types;
pub use types::{Appended, LogConfig, Read, Retained};

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "log_sim_tests.rs"]
mod sim_tests;

#[cfg(test)]
#[path = "log_process_tests.rs"]
mod process_tests;

#[cfg(test)]
#[path = "log_review_tests.rs"]
mod review_tests;
