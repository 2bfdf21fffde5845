//! Opening a log directory after any kind of stop (docs/storage.md 8.2): list the segments, check
//! their headers, scan the last one frame by frame, and decide what a damaged tail is.
//!
//! - **Torn tail** (no valid frame after the first invalid one): a write cut short by `kill -9`
//!   or a crash. Truncated to the last valid frame boundary; nothing acked is lost (an ack
//!   follows a completed write).
//! - **Power-loss tear** (valid frames after the damage, each encoded when nothing from the
//!   damage on was known durable: synced hint ≤ the damaged frame's offset): unsynced pages
//!   written back out of order. Truncated too; under `interval`/`os` records that were visible
//!   may be gone, so the log takes a **new epoch**.
//! - **Corruption** (a later frame was encoded after the damaged one was durable): damage to
//!   data that was on disk. Nothing is cut; the log is **quarantined**: reads are served up to
//!   the damage, appends fail with [`StorageError::Quarantined`].
//!
//! The log's own small state file `log.state` holds its epoch and whether it was closed
//! cleanly. Sealed segments are not scanned (they were fsynced when sealed); their frames are
//! checked when read.

use std::path::Path;
use std::sync::Arc;

use crate::error::IoOp;
use crate::flusher::FsyncPolicy;
use crate::format::{self, FrameHeader, LogKind, SegmentFile, SegmentHeader, FRAME_HEADER_LEN};
use crate::fs::{read_exact_at, Fs, FsFile, OpenMode};
use crate::segment::{self, IndexEntry, Segment};
use crate::StorageError;

/// What recovery found and did, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Records the log holds after recovery.
    pub records: u64,
    /// Bytes cut from the tail of the last segment.
    pub truncated_bytes: u64,
    /// Bytes CRC-checked by the tail scan.
    pub scanned_bytes: u64,
    /// What was wrong, if anything.
    pub damage: Option<Damage>,
    /// The log's epoch from now on.
    pub epoch: u64,
    /// Whether the epoch changed in this recovery (storage.md 5.2).
    pub epoch_changed: bool,
    /// Whether the log had been closed cleanly.
    pub was_clean: bool,
}

/// A damaged spot found by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// A partial frame at the end (cut back).
    Torn { path: Arc<str>, position: u64 },
    /// Unsynced frames lost out of order by a power cut (cut back).
    PowerLossTear { path: Arc<str>, position: u64 },
    /// Durable data damaged: the log is quarantined from `offset`.
    Corrupt {
        path: Arc<str>,
        position: u64,
        offset: u64,
    },
}

/// What [`recover`] needs of the log's configuration.
pub(crate) struct RecoverConfig {
    pub kind: LogKind,
    pub policy: FsyncPolicy,
    pub index_interval: u64,
    pub machine_restarted: bool,
    pub now_unix_ms: u64,
}

/// A recovered log, ready for appends (unless quarantined).
pub(crate) struct Recovered {
    /// Oldest first; the last one is active (open for writing unless quarantined).
    pub segments: Vec<Segment>,
    pub quarantined: Option<StorageError>,
    pub recovery: Recovery,
}

/// Result of scanning one segment's frames.
pub(crate) struct Scan {
    pub end: u64,
    pub next_offset: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    pub index: Vec<IndexEntry>,
    /// First invalid frame: (position, expected offset).
    pub bad: Option<(u64, u64)>,
}

const SCAN_CHUNK: u64 = 1 << 20;

/// Validates every frame of `file` from the header on (CRC, continuity, time order), building
/// the sparse index as a writer would have.
pub(crate) fn scan(
    file: &dyn FsFile,
    base: u64,
    len: u64,
    index_interval: u64,
) -> std::io::Result<Scan> {
    let mut s = Scan {
        end: format::SEGMENT_HEADER_LEN,
        next_offset: base,
        first_ts: 0,
        last_ts: 0,
        index: Vec::new(),
        bad: None,
    };
    let mut since_index = 0u64;
    while s.end < len {
        let mut head = [0u8; FRAME_HEADER_LEN];
        let have = ((len - s.end) as usize).min(FRAME_HEADER_LEN);
        read_exact_at(file, &mut head[..have], s.end)?;
        let ok = FrameHeader::decode(&head[..have]).ok().filter(|h| {
            s.end + h.total_len() <= len
                && format::validate(h, s.next_offset, s.last_ts, false).is_ok()
        });
        let Some(h) = ok else {
            s.bad = Some((s.end, s.next_offset));
            return Ok(s);
        };
        let mut buf = vec![0u8; h.total_len() as usize];
        read_exact_at(file, &mut buf, s.end)?;
        if format::decode_frame(&buf).is_err() {
            s.bad = Some((s.end, s.next_offset));
            return Ok(s);
        }
        if s.next_offset == base {
            s.first_ts = h.timestamp_ms;
        } else if since_index >= index_interval {
            s.index.push((h.base_offset, s.end));
            since_index = 0;
        }
        since_index += h.total_len();
        s.end += h.total_len();
        s.next_offset = h.next_offset();
        s.last_ts = h.timestamp_ms;
    }
    Ok(s)
}

/// Synced hints of the valid frames that start after `from` (the resync probe of 8.2 step 5):
/// positions where a header decodes with a base offset above `expected` and the whole frame
/// checks. Reads the rest of the file in chunks.
fn later_frames(
    file: &dyn FsFile,
    from: u64,
    len: u64,
    expected: u64,
) -> std::io::Result<Vec<u64>> {
    let mut hints = Vec::new();
    let mut chunk_start = from + 1;
    while chunk_start < len {
        let n = (len - chunk_start).min(SCAN_CHUNK + FRAME_HEADER_LEN as u64);
        let mut buf = vec![0u8; n as usize];
        read_exact_at(file, &mut buf, chunk_start)?;
        let positions = (n.min(SCAN_CHUNK)) as usize;
        let mut i = 0;
        while i < positions {
            let at = chunk_start + i as u64;
            if let Ok(h) = FrameHeader::decode(&buf[i..]) {
                if h.base_offset > expected && at + h.total_len() <= len {
                    let mut frame = vec![0u8; h.total_len() as usize];
                    read_exact_at(file, &mut frame, at)?;
                    if format::decode_frame(&frame).is_ok() {
                        hints.push(h.synced_hint);
                        // Skip the frame: its bytes cannot start another valid one we need.
                        i += h.total_len() as usize;
                        continue;
                    }
                }
            }
            i += 1;
        }
        chunk_start += positions as u64;
    }
    Ok(hints)
}

fn io(op: IoOp, path: &Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::io(op, path, &e)
}

fn first_ts_of(file: &dyn FsFile, len: u64) -> u64 {
    let mut head = [0u8; FRAME_HEADER_LEN];
    if len < format::SEGMENT_HEADER_LEN + FRAME_HEADER_LEN as u64
        || read_exact_at(file, &mut head, format::SEGMENT_HEADER_LEN).is_err()
    {
        return 0;
    }
    FrameHeader::decode(&head).map_or(0, |h| h.timestamp_ms)
}

fn header_ok(file: &dyn FsFile, base: u64, len: u64) -> bool {
    let mut b = [0u8; format::SEGMENT_HEADER_LEN as usize];
    len >= format::SEGMENT_HEADER_LEN
        && read_exact_at(file, &mut b, 0).is_ok()
        && SegmentHeader::decode(&b).is_ok_and(|h| h.base_offset == base)
}

/// Opens (creating if needed) the log in `dir`.
pub(crate) fn recover(
    fs: &dyn Fs,
    dir: &Path,
    cfg: &RecoverConfig,
) -> Result<Recovered, StorageError> {
    fs.create_dir_all(dir).map_err(io(IoOp::Open, dir))?;
    // The directory's own entry must survive a power cut before anything in it is acked.
    if let Some(parent) = dir.parent() {
        fs.sync_dir(parent).map_err(io(IoOp::Sync, parent))?;
    }
    let names = fs.list_dir(dir).map_err(io(IoOp::List, dir))?;
    let mut bases: Vec<u64> = Vec::new();
    for n in &names {
        if n.ends_with(".tmp") {
            let _ = fs.remove_file(&dir.join(n));
        } else if let Some((b, SegmentFile::Segment)) = SegmentFile::parse(n) {
            bases.push(b);
        }
    }
    bases.sort_unstable();
    let state = read_state(fs, dir);
    let old_epoch = state.map_or(0, |s| s.epoch);
    let was_clean = state.is_some_and(|s| s.clean);
    let mut epoch = state.map_or_else(|| new_epoch(0), |s| s.epoch);
    let mut rec = Recovery {
        records: 0,
        truncated_bytes: 0,
        scanned_bytes: 0,
        damage: None,
        epoch,
        epoch_changed: false,
        was_clean,
    };

    // A failed fsync the previous process never healed: nothing after the last durable point
    // can be trusted (the kernel may have dropped those pages and still return them).
    let mut cut_after_failure = 0;
    if let Some(at) = state.and_then(|s| s.failed_at) {
        cut_after_failure = state::cut_back(fs, dir, &mut bases, at)?;
        rec.truncated_bytes += cut_after_failure;
    }

    // A last segment whose header never completed (crash while creating it) holds nothing.
    while let Some(&last) = bases.last() {
        let p = dir.join(SegmentFile::Segment.name(last));
        let f = fs.open(&p, OpenMode::Read).map_err(io(IoOp::Open, &p))?;
        let len = f.len().map_err(io(IoOp::Read, &p))?;
        if len <= format::SEGMENT_HEADER_LEN && !header_ok(f.as_ref(), last, len) {
            drop(f);
            fs.remove_file(&p).map_err(io(IoOp::Remove, &p))?;
            let _ = fs.remove_file(&dir.join(SegmentFile::OffsetIndex.name(last)));
            rec.truncated_bytes += len;
            bases.pop();
        } else {
            break;
        }
    }

    let ii = cfg.index_interval;
    let mut segments = Vec::with_capacity(bases.len().max(1));
    let mut quarantined = None;
    let mut power_loss = false;
    for (i, &base) in bases.iter().enumerate() {
        let p = dir.join(SegmentFile::Segment.name(base));
        let f = fs.open(&p, OpenMode::Read).map_err(io(IoOp::Open, &p))?;
        let len = f.len().map_err(io(IoOp::Read, &p))?;
        let path: Arc<str> = Arc::from(p.display().to_string());
        if !header_ok(f.as_ref(), base, len) && quarantined.is_none() {
            rec.damage = Some(Damage::Corrupt {
                path: path.clone(),
                position: 0,
                offset: base,
            });
            quarantined = Some(StorageError::Quarantined {
                offset: base,
                path: path.clone(),
            });
        }
        if let Some(&next_base) = bases.get(i + 1) {
            // Sealed: fsynced at seal; frames are checked when read.
            let index = segment::load_index(fs, dir, base, len);
            let ts = (first_ts_of(f.as_ref(), len), 0);
            drop(f);
            segments.push(Segment::open(
                fs, dir, base, len, next_base, ts, index, ii, false,
            )?);
            continue;
        }
        // The last segment: scan it all (the checkpoint that would shorten this is track A's).
        let s = scan(f.as_ref(), base, len, ii).map_err(io(IoOp::Read, &p))?;
        rec.scanned_bytes += s.end.max(format::SEGMENT_HEADER_LEN) - format::SEGMENT_HEADER_LEN;
        let mut end = s.end;
        if let Some((pos, expected)) = s.bad {
            let hints = later_frames(f.as_ref(), pos, len, expected).map_err(io(IoOp::Read, &p))?;
            if hints.is_empty() || hints.iter().all(|&h| h <= expected) {
                if !hints.is_empty() {
                    power_loss = true;
                    rec.damage = Some(Damage::PowerLossTear {
                        path: path.clone(),
                        position: pos,
                    });
                } else {
                    rec.damage = Some(Damage::Torn {
                        path: path.clone(),
                        position: pos,
                    });
                }
                drop(f);
                let w = fs
                    .open(&p, OpenMode::ReadWrite)
                    .map_err(io(IoOp::Open, &p))?;
                w.set_len(pos).map_err(io(IoOp::Truncate, &p))?;
                w.sync_data().map_err(io(IoOp::Sync, &p))?;
                rec.truncated_bytes += len - pos;
                tracing::warn!(file = %path, position = pos, bytes = len - pos, next_offset = expected,
                    "storage: truncated a damaged tail");
            } else {
                end = pos; // served up to here, never written again
                tracing::error!(file = %path, position = pos, offset = expected,
                    "storage: corrupt frame in durable data; log quarantined, run felix-broker check --repair");
                rec.damage = Some(Damage::Corrupt {
                    path: path.clone(),
                    position: pos,
                    offset: expected,
                });
                quarantined.get_or_insert(StorageError::Quarantined {
                    offset: expected,
                    path: path.clone(),
                });
            }
        } else {
            drop(f);
        }
        let writable = quarantined.is_none();
        let seg = Segment::open(
            fs,
            dir,
            base,
            end,
            s.next_offset,
            (s.first_ts, s.last_ts),
            s.index,
            ii,
            writable,
        )?;
        if writable {
            // Whatever the crash left in the page cache is made durable before it is served:
            // from here on, "recovered" means "on disk".
            seg.sync()?;
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        let base = 0;
        let h = SegmentHeader {
            kind: cfg.kind,
            compacted: false,
            base_offset: base,
            epoch,
            created_unix_ms: cfg.now_unix_ms,
        };
        segments.push(Segment::create(fs, dir, &h, ii)?);
        fs.sync_dir(dir).map_err(io(IoOp::Sync, dir))?;
    }

    // 5.2: records that may have been visible are gone (or may be, after a reboot).
    let visible_at_write = cfg.policy != FsyncPolicy::Always;
    let lost_visible = visible_at_write
        && (power_loss || cut_after_failure > 0 || (cfg.machine_restarted && !was_clean));
    if state.is_some() && lost_visible {
        epoch = new_epoch(old_epoch);
        rec.epoch_changed = true;
        tracing::warn!(dir = %dir.display(), epoch, "storage: records that were visible may be lost; new epoch");
    }
    rec.epoch = epoch;
    // Unclean until close() says otherwise.
    write_state(fs, dir, &LogState::open(epoch))?;
    let first = segments.first().map_or(0, Segment::base);
    let next = segments.last().map_or(0, Segment::next_offset);
    rec.records = next - first;
    Ok(Recovered {
        segments,
        quarantined,
        recovery: rec,
    })
}

#[path = "recover_state.rs"]
mod state;
pub(crate) use state::{new_epoch, read_state, write_state, LogState};

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;
