//! The per-frame side of checking a segment: its frames against its index files and the
//! checkpoint, fed one frame at a time by the scan (so memory stays bounded by the index
//! files, never by the segment).

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::format::{FrameHeader, SEGMENT_HEADER_LEN};
use crate::fs::{Fs, OpenMode};

/// What the frames of one segment are checked against, fed frame by frame.
pub(super) struct Walk {
    pub(super) records: u64,
    /// `.idx` entries as absolute `(offset, position)`; cursor; first problem.
    pub(super) idx: Vec<(u64, u64)>,
    pub(super) ii: usize,
    pub(super) idx_bad: Option<String>,
    /// `.tix` entries as `(timestamp, absolute offset)`.
    pub(super) tix: Vec<(u64, u64)>,
    pub(super) ti: usize,
    pub(super) tix_bad: Option<String>,
    pub(super) next_base: Option<u64>,
    pub(super) overlap_at: Option<(u64, u64)>,
    pub(super) cp: Option<Checkpoint>,
    pub(super) cp_seen: bool,
}

impl Walk {
    pub(super) fn frame(&mut self, h: &FrameHeader, pos: u64) {
        self.records += h.record_count as u64;
        while self.ii < self.idx.len() && self.idx[self.ii].1 < pos {
            let (o, p) = self.idx[self.ii];
            self.idx_bad.get_or_insert(format!(
                "entry (offset {o}, position {p}) is not at a frame start"
            ));
            self.ii += 1;
        }
        if self.ii < self.idx.len() && self.idx[self.ii].1 == pos {
            let (o, p) = self.idx[self.ii];
            if o != h.base_offset {
                self.idx_bad.get_or_insert(format!(
                    "entry at position {p} says offset {o}, the frame starts at {}",
                    h.base_offset
                ));
            }
            self.ii += 1;
        }
        while self.ti < self.tix.len() && self.tix[self.ti].1 < h.base_offset {
            let (t, o) = self.tix[self.ti];
            self.tix_bad.get_or_insert(format!(
                "entry (time {t}, offset {o}) is not a frame's first offset"
            ));
            self.ti += 1;
        }
        if self.ti < self.tix.len() && self.tix[self.ti].1 == h.base_offset {
            let (t, o) = self.tix[self.ti];
            if t != h.timestamp_ms {
                self.tix_bad.get_or_insert(format!(
                    "entry for offset {o} says time {t}, the frame says {}",
                    h.timestamp_ms
                ));
            }
            self.ti += 1;
        }
        if let Some(nb) = self.next_base {
            if h.next_offset() > nb && self.overlap_at.is_none() {
                self.overlap_at = Some((pos, h.base_offset));
            }
        }
        if let Some(c) = self.cp {
            if c.position == pos + h.total_len() && c.next_offset == h.next_offset() {
                self.cp_seen = true;
            }
        }
    }
}

/// Reads an index file whole; refuses one larger than its segment (entries are far smaller
/// than the frames they point at), so a damaged file cannot make check allocate much.
pub(super) fn read_small(fs: &dyn Fs, path: &Path, seg_len: u64) -> Result<Vec<u8>, String> {
    let f = fs.open(path, OpenMode::Read).map_err(|e| e.to_string())?;
    let len = f.len().map_err(|e| e.to_string())?;
    if len > seg_len {
        return Err(format!("{len} bytes, larger than its segment"));
    }
    let mut b = vec![0u8; len as usize];
    crate::fs::read_exact_at(&*f, &mut b, 0).map_err(|e| e.to_string())?;
    Ok(b)
}

/// Entries of an `.idx` file as `(offset, position)`, the increasing prefix; the first problem.
pub(super) fn parse_idx(base: u64, b: &[u8], out: &mut Vec<(u64, u64)>) -> Option<String> {
    for (i, e) in b.chunks_exact(8).enumerate() {
        let rel = u32::from_le_bytes(e[..4].try_into().expect("4")) as u64;
        let pos = u32::from_le_bytes(e[4..].try_into().expect("4")) as u64;
        let ok = match out.last() {
            Some(&(o, p)) => base + rel > o && pos > p,
            None => rel > 0 && pos > SEGMENT_HEADER_LEN,
        };
        if !ok {
            return Some(format!(
                "entry {i} (relative offset {rel}, position {pos}) does not increase"
            ));
        }
        out.push((base + rel, pos));
    }
    None
}

/// Entries of a `.tix` file as `(timestamp, offset)`, the increasing prefix; the first problem.
pub(super) fn parse_tix(base: u64, b: &[u8], out: &mut Vec<(u64, u64)>) -> Option<String> {
    for (i, e) in b.chunks_exact(12).enumerate() {
        let ts = u64::from_le_bytes(e[..8].try_into().expect("8"));
        let rel = u32::from_le_bytes(e[8..].try_into().expect("4")) as u64;
        let ok = match out.last() {
            Some(&(t, o)) => ts > t && base + rel > o,
            None => rel > 0,
        };
        if !ok {
            return Some(format!(
                "entry {i} (time {ts}, relative offset {rel}) does not increase"
            ));
        }
        out.push((ts, base + rel));
    }
    None
}
