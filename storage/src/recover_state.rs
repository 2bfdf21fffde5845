//! The log's own small state file `log.state` (64 bytes, written whole: `.tmp`, fdatasync,
//! rename, directory fsync): its epoch, whether it was closed cleanly, and the last durable
//! point of a failed fsync that was not healed yet.
//!
//! | offset | size | field |
//! | ---: | ---: | --- |
//! | 0 | 8 | magic `FLXLOGS1` |
//! | 8 | 8 | epoch |
//! | 16 | 1 | flags: bit 0 clean close, bit 1 failed (the next three fields are set) |
//! | 24 | 8 | failed: base offset of the segment holding the last durable point |
//! | 32 | 8 | failed: byte position of that point in the segment |
//! | 40 | 8 | failed: next offset at that point |
//! | 60 | 4 | CRC32C of bytes 0..60 |

use std::hash::{BuildHasher, Hasher};
use std::path::Path;

use crate::error::IoOp;
use crate::format::{self, SegmentFile};
use crate::fs::{read_exact_at, write_all_at, Fs, OpenMode};
use crate::StorageError;

const STATE_FILE: &str = "log.state";
const STATE_MAGIC: &[u8; 8] = b"FLXLOGS1";

/// What `log.state` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogState {
    pub epoch: u64,
    pub clean: bool,
    /// `(segment base, position, next offset)` of the last point a successful fsync covered,
    /// when a later one failed and the log has not healed.
    pub failed_at: Option<(u64, u64, u64)>,
}

impl LogState {
    /// The state of a log in use: not clean, not failed.
    pub fn open(epoch: u64) -> Self {
        LogState {
            epoch,
            clean: false,
            failed_at: None,
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn write_state(fs: &dyn Fs, dir: &Path, s: &LogState) -> Result<(), StorageError> {
    let mut b = [0u8; 64];
    b[..8].copy_from_slice(STATE_MAGIC);
    b[8..16].copy_from_slice(&s.epoch.to_le_bytes());
    b[16] = s.clean as u8 | (s.failed_at.is_some() as u8) << 1;
    if let Some((base, pos, next)) = s.failed_at {
        b[24..32].copy_from_slice(&base.to_le_bytes());
        b[32..40].copy_from_slice(&pos.to_le_bytes());
        b[40..48].copy_from_slice(&next.to_le_bytes());
    }
    let crc = format::crc32c(&b[..60]);
    b[60..].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("log.state.tmp");
    let dst = dir.join(STATE_FILE);
    let _ = fs.remove_file(&tmp);
    let f = fs
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| StorageError::io(IoOp::Open, &tmp, &e))?;
    write_all_at(f.as_ref(), &b, 0)
        .and_then(|()| f.sync_data())
        .map_err(|e| StorageError::io(IoOp::Write, &tmp, &e))?;
    drop(f);
    fs.rename(&tmp, &dst)
        .map_err(|e| StorageError::io(IoOp::Rename, &dst, &e))?;
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io(IoOp::Sync, dir, &e))
}

pub(crate) fn read_state(fs: &dyn Fs, dir: &Path) -> Option<LogState> {
    let f = fs.open(&dir.join(STATE_FILE), OpenMode::Read).ok()?;
    let mut b = [0u8; 64];
    read_exact_at(f.as_ref(), &mut b, 0).ok()?;
    let crc = u32::from_le_bytes(b[60..].try_into().ok()?);
    if &b[..8] != STATE_MAGIC || crc != format::crc32c(&b[..60]) {
        return None;
    }
    Some(LogState {
        epoch: u64_at(&b, 8),
        clean: b[16] & 1 != 0,
        failed_at: (b[16] & 2 != 0).then(|| (u64_at(&b, 24), u64_at(&b, 32), u64_at(&b, 40))),
    })
}

/// Cuts the log back to the durable point `at` of an unhealed failed fsync: segments after
/// its segment are removed, its segment truncated to the position. Returns the bytes cut.
pub(crate) fn cut_back(
    fs: &dyn Fs,
    dir: &Path,
    bases: &mut Vec<u64>,
    (base, pos, _next): (u64, u64, u64),
) -> Result<u64, StorageError> {
    let mut cut = 0;
    while bases.last().is_some_and(|&b| b > base) {
        let b = bases.pop().expect("last checked");
        for kind in [SegmentFile::Segment, SegmentFile::OffsetIndex] {
            let p = dir.join(kind.name(b));
            if let Ok(f) = fs.open(&p, OpenMode::Read) {
                cut += f.len().unwrap_or(0);
            }
            // A segment that stays would come back at the next open with frames at offsets
            // newer acked records own: the open fails instead (review r1, 8).
            if let Err(e) = fs.remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(StorageError::io(IoOp::Remove, &p, &e));
                }
            }
        }
    }
    if bases.last() == Some(&base) {
        let p = dir.join(SegmentFile::Segment.name(base));
        let f = fs
            .open(&p, OpenMode::ReadWrite)
            .map_err(|e| StorageError::io(IoOp::Open, &p, &e))?;
        let len = f.len().map_err(|e| StorageError::io(IoOp::Read, &p, &e))?;
        if len > pos {
            f.set_len(pos)
                .and_then(|()| f.sync_data())
                .map_err(|e| StorageError::io(IoOp::Truncate, &p, &e))?;
            cut += len - pos;
        }
    }
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io(IoOp::Sync, dir, &e))?;
    if cut > 0 {
        tracing::warn!(dir = %dir.display(), bytes = cut,
            "storage: cut back to the last durable point of a failed fsync");
    }
    Ok(cut)
}

/// A random epoch different from `old` (std's per-process random hash keys plus the clock).
pub(crate) fn new_epoch(old: u64) -> u64 {
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        let e = h.finish() >> 1; // fits the wire's signed readers too
        if e != old && e != 0 {
            return e;
        }
    }
}
