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

use crate::checkpoint::{self, Checkpoint};
use crate::error::IoOp;
use crate::flusher::FsyncPolicy;
use crate::format::{self, FrameHeader, LogKind, SegmentFile, SegmentHeader, FRAME_HEADER_LEN};
use crate::fs::{read_exact_at, Fs, FsFile, OpenMode};
use crate::log::CHECKPOINT_FILE;
use crate::retention;
use crate::scan;
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
    /// The checkpoint found (the log's next checkpoint takes the other slot).
    pub checkpoint: Option<Checkpoint>,
}

/// Result of scanning one segment's frames.
pub(crate) struct Scan {
    pub end: u64,
    pub next_offset: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    pub index: Vec<IndexEntry>,
    /// First invalid frame: what kind of damage, its position, the offset expected there.
    pub bad: Option<(scan::Damage, u64, u64)>,
}

/// Validates every frame of the segment (track A's [`scan::scan`]: CRC, continuity, time
/// order, bounded memory), building the sparse index as a writer would have, and classifies
/// what ends it. `checkpoint_pos`: how far of this segment the checkpoint vouches for as
/// durable; damage before it is corruption, never a torn tail. The whole segment is scanned
/// (its index is rebuilt on the way; the checkpoint only shortens a clean reopen).
pub(crate) fn scan_segment(
    file: &dyn FsFile,
    base: u64,
    index_interval: u64,
    checkpoint_pos: u64,
) -> std::io::Result<Scan> {
    let src = scan::FileSource::new(file)?;
    let mut index = Vec::new();
    let mut first_ts = None;
    let mut since_index = 0u64;
    let (outcome, end) = scan::scan(
        &src,
        scan::ScanStart::segment(base, false),
        &mut |h, pos| {
            if first_ts.is_none() {
                first_ts = Some(h.timestamp_ms);
            } else if since_index >= index_interval {
                index.push((h.base_offset, pos));
                since_index = 0;
            }
            since_index += h.total_len();
        },
    )?;
    let bad = match (&outcome, scan::classify(&outcome, checkpoint_pos)) {
        (scan::ScanOutcome::Damaged(d), Some(kind)) => Some((kind, d.at, d.expected)),
        _ => None,
    };
    Ok(Scan {
        end: end.position,
        next_offset: end.next_offset,
        first_ts: first_ts.unwrap_or(0),
        last_ts: end.last_ts,
        index,
        bad,
    })
}

fn io(op: IoOp, path: &Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::io(op, path, &e)
}

/// Timestamp of a sealed segment's first frame, CRC-checked (a flipped bit must not move a
/// segment in time); 0 when it cannot be read or checked, which only makes `seek_time` look
/// at that segment too. Frames above 1 MiB are not read whole here: 0 as well.
fn first_ts_of(file: &dyn FsFile, len: u64) -> u64 {
    let mut head = [0u8; FRAME_HEADER_LEN];
    if len < format::SEGMENT_HEADER_LEN + FRAME_HEADER_LEN as u64
        || read_exact_at(file, &mut head, format::SEGMENT_HEADER_LEN).is_err()
    {
        return 0;
    }
    let Ok(h) = FrameHeader::decode(&head) else {
        return 0;
    };
    if h.total_len() > 1 << 20 || format::SEGMENT_HEADER_LEN + h.total_len() > len {
        return 0;
    }
    let mut buf = vec![0u8; h.total_len() as usize];
    if read_exact_at(file, &mut buf, format::SEGMENT_HEADER_LEN).is_err() {
        return 0;
    }
    format::decode_frame(&buf).map_or(0, |f| f.header.timestamp_ms)
}

/// The segment's header, if it is whole, checks (CRC) and names `base`.
fn header_of(file: &dyn FsFile, base: u64, len: u64) -> Option<SegmentHeader> {
    let mut b = [0u8; format::SEGMENT_HEADER_LEN as usize];
    if len < format::SEGMENT_HEADER_LEN || read_exact_at(file, &mut b, 0).is_err() {
        return None;
    }
    SegmentHeader::decode(&b)
        .ok()
        .filter(|h| h.base_offset == base)
}

fn header_ok(file: &dyn FsFile, base: u64, len: u64) -> bool {
    header_of(file, base, len).is_some()
}

/// Opens (creating if needed) the log in `dir`.
pub(crate) fn recover(
    fs: &dyn Fs,
    dir: &Path,
    cfg: &RecoverConfig,
) -> Result<Recovered, StorageError> {
    // The directory's own entry, and those of any parents created with it (tenant,
    // namespace), must survive a power cut before anything in it is acked.
    let existing = dir
        .ancestors()
        .find(|a| fs.list_dir(a).is_ok())
        .map(Path::to_path_buf);
    fs.create_dir_all(dir).map_err(io(IoOp::Open, dir))?;
    for a in dir.ancestors().skip(1) {
        fs.sync_dir(a).map_err(io(IoOp::Sync, a))?;
        if existing.as_deref().is_none_or(|e| a == e) {
            break;
        }
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
    // The newest segment found: if recovery drops it (or a failure cut does), the segment left
    // last had a successor, so it was sealed (fsynced whole) or cut back to a synced point.
    let listed_last = bases.last().copied();
    let state = read_state(fs, dir);
    let cp = fs
        .open(&dir.join(CHECKPOINT_FILE), OpenMode::Read)
        .ok()
        .and_then(|f| checkpoint::load(f.as_ref()).ok().flatten());
    let old_epoch = state.map_or(0, |s| s.epoch);
    let was_clean = state.is_some_and(|s| s.clean);
    let mut epoch = state.map_or_else(|| new_epoch(0), |s| s.epoch);
    // Segments without a readable log.state: the epoch readers knew is gone with it (and a
    // failure mark it held); the new random one is a change they must be told about.
    let state_lost = state.is_none() && !bases.is_empty();
    let mut rec = Recovery {
        records: 0,
        truncated_bytes: 0,
        scanned_bytes: 0,
        damage: None,
        epoch,
        epoch_changed: state_lost,
        was_clean,
    };
    if state_lost {
        tracing::warn!(dir = %dir.display(), "storage: log.state missing or damaged; new epoch");
    }

    // A failed fsync the previous process never healed: nothing after the last durable point
    // can be trusted (the kernel may have dropped those pages and still return them).
    let mut cut_after_failure = 0;
    // An unhealed failure under interval/os: whatever the cut, records past the durable point
    // may have been read (the cut may be 0 bytes if the file was already shorter).
    let failed_mark = state.is_some_and(|s| s.failed_at.is_some());
    if let Some(at) = state.and_then(|s| s.failed_at) {
        cut_after_failure = state::cut_back(fs, dir, &mut bases, at)?;
        rec.truncated_bytes += cut_after_failure;
    }

    // A last segment whose header never completed (crash while creating it) holds nothing.
    // Its name still says where the log goes on: if no segment is left (retention had
    // deleted the older ones), the new one starts there, never back at 0 (offsets below it
    // were handed out in this epoch).
    let mut dropped_base = None;
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
            dropped_base = Some(last);
        } else {
            break;
        }
    }

    // Each segment's header time (CRC-checked): a roll stamps the new segment with a time never
    // below the last record of the one it sealed, so it bounds that segment's newest record
    // for retention's age rule (review r1, findings 1 and 3).
    let mut created = Vec::with_capacity(bases.len());
    for &base in &bases {
        let p = dir.join(SegmentFile::Segment.name(base));
        let f = fs.open(&p, OpenMode::Read).map_err(io(IoOp::Open, &p))?;
        let len = f.len().map_err(io(IoOp::Read, &p))?;
        created.push(header_of(f.as_ref(), base, len).map(|h| h.created_unix_ms));
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
            let last_ts = created[i + 1].unwrap_or(retention::UNKNOWN_TS);
            let ts = (first_ts_of(f.as_ref(), len), last_ts);
            drop(f);
            segments.push(Segment::open(
                fs, dir, base, len, next_base, ts, None, ii, false,
            )?);
            continue;
        }
        // The last segment. After an fsync failed, the kernel may still hold pages it will
        // never write, marked clean, and a reader (this scan) would see them: evict them first
        // so what is scanned, served and checkpointed is what the disk has (review r1, 4).
        if let Err(e) = f.drop_cache() {
            tracing::warn!(file = %path, error = %e, "storage: could not drop cached pages before the scan");
        }
        let cp_here = cp.filter(|c| c.segment_base == base);
        let s = match cp_here {
            // Closed cleanly and untouched since: nothing to scan (storage.md 8.2 step 2).
            Some(c) if c.clean && c.position == len && cut_after_failure == 0 => Scan {
                end: len,
                next_offset: c.next_offset,
                first_ts: first_ts_of(f.as_ref(), len),
                last_ts: c.last_ts,
                index: segment::load_index(
                    fs,
                    &dir.join(SegmentFile::OffsetIndex.name(base)),
                    base,
                    len,
                ),
                bad: None,
            },
            _ => {
                // A checkpoint past the end vouches for bytes the file no longer has (a disk
                // that lied about a flush): it cannot tell anything about what is left.
                let cp_pos = cp_here.map_or(0, |c| if c.position <= len { c.position } else { 0 });
                // A segment that had a successor is durable whole: any invalid frame in it is
                // corruption, never a tear to cut (review r1, 2).
                let sealed = listed_last.is_some_and(|l| l > base)
                    || cp.is_some_and(|c| c.segment_base > base);
                let cp_pos = if sealed { u64::MAX } else { cp_pos };
                rec.scanned_bytes += len.saturating_sub(format::SEGMENT_HEADER_LEN);
                scan_segment(f.as_ref(), base, ii, cp_pos).map_err(io(IoOp::Read, &p))?
            }
        };
        let mut s = s;
        if s.next_offset == base && i > 0 {
            // An empty active segment after a roll: its header time bounds the last record
            // before it, so timestamps never go back across a restart.
            s.last_ts = s.last_ts.max(created[i].unwrap_or(0));
        }
        let mut end = s.end;
        if let Some((kind, pos, expected)) = s.bad {
            if kind != scan::Damage::Corrupt {
                let position = pos;
                let tear = if kind == scan::Damage::PowerLossTear {
                    power_loss = true;
                    Damage::PowerLossTear {
                        path: path.clone(),
                        position,
                    }
                } else {
                    Damage::Torn {
                        path: path.clone(),
                        position,
                    }
                };
                // Corruption found earlier (a damaged header) stays what is reported.
                if !matches!(rec.damage, Some(Damage::Corrupt { .. })) {
                    rec.damage = Some(tear);
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
                           // Made durable before it is served, like a writable tail (what a killed
                           // process left may still be only in the page cache).
                f.sync_data().map_err(io(IoOp::Sync, &p))?;
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
            Some(s.index),
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
        let base = dropped_base.unwrap_or(0);
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
    let lost_visible =
        visible_at_write && (power_loss || failed_mark || (cfg.machine_restarted && !was_clean));
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
        checkpoint: cp,
    })
}

#[path = "recover_state.rs"]
mod state;
pub(crate) use state::{new_epoch, read_state, write_state, LogState};

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;
