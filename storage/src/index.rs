//! The sparse offset index (`.idx`, storage.md 3.2) and time index (`.tix`, 3.3) of a segment:
//! in-memory vectors, the bytes to append to their files, and lookups.
//!
//! Indexes are hints, never trusted blindly: a lookup gives a position to *scan from*, and the
//! caller validates the frame it lands on (CRC, and the offset the entry promised). Entries
//! are added when frames are appended (`on_frame`), and the same calls rebuild an index from a
//! scan, so a rebuilt index equals the one written as the segment grew.

use crate::format::{FrameHeader, SEGMENT_HEADER_LEN};

/// Bytes of one `.idx` entry: relative offset (u32), position (u32).
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Bytes of one `.tix` entry: timestamp (u64), relative offset (u32).
pub const TIME_ENTRY_LEN: usize = 12;

/// Why an index file cannot be used (it is then rebuilt from its segment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// Entries must increase strictly in every field (and positions lie past the header).
    #[error("index entry {entry} does not increase")]
    NotIncreasing { entry: usize },
}

/// Where to start scanning for an offset or a time: a frame boundary and the frame's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanFrom {
    pub position: u64,
    /// The base offset of the frame at `position` (what the caller checks it against).
    pub offset: u64,
}

/// Sparse map from offsets to positions in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    base: u64,
    interval: u64,
    /// `(relative offset, position)`, strictly increasing in both.
    entries: Vec<(u32, u32)>,
    /// Position of the last entry (the implicit first frame's, 64, when none).
    last_position: u64,
}

impl OffsetIndex {
    /// An empty index for the segment at `base_offset`; `interval_bytes` is
    /// `storage.index_interval_bytes`.
    pub fn new(base_offset: u64, interval_bytes: u64) -> Self {
        OffsetIndex {
            base: base_offset,
            interval: interval_bytes.max(1),
            entries: Vec::new(),
            last_position: SEGMENT_HEADER_LEN,
        }
    }

    /// Parses a `.idx` file. A trailing partial entry is ignored (a torn append).
    pub fn decode(base_offset: u64, interval_bytes: u64, bytes: &[u8]) -> Result<Self, IndexError> {
        let mut ix = OffsetIndex::new(base_offset, interval_bytes);
        for (i, e) in bytes.chunks_exact(OFFSET_ENTRY_LEN).enumerate() {
            let rel = u32::from_le_bytes(e[0..4].try_into().expect("4"));
            let pos = u32::from_le_bytes(e[4..8].try_into().expect("4"));
            let increasing = match ix.entries.last() {
                Some(&(r, p)) => rel > r && pos > p,
                None => rel > 0 && pos as u64 > SEGMENT_HEADER_LEN,
            };
            if !increasing {
                return Err(IndexError::NotIncreasing { entry: i });
            }
            ix.entries.push((rel, pos));
            ix.last_position = pos as u64;
        }
        Ok(ix)
    }

    /// The whole file's bytes (for a rebuild written in one go).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for &(rel, pos) in &self.entries {
            out.extend_from_slice(&encode_offset_entry(rel, pos));
        }
        out
    }

    /// Called for every frame of the segment in order (appended, or found by a scan): returns
    /// the entry to append to the file when this frame gets one, i.e. when at least
    /// `interval_bytes` of frames lie between the previous entry and it.
    pub fn on_frame(&mut self, h: &FrameHeader, position: u64) -> Option<[u8; OFFSET_ENTRY_LEN]> {
        if position < self.last_position.saturating_add(self.interval) {
            return None;
        }
        // Offsets too far from the base (possible only with a compacted segment's gaps) or
        // positions past 4 GiB get no entry: lookups then scan a little further.
        let rel = u32::try_from(h.base_offset.checked_sub(self.base)?).ok()?;
        let pos = u32::try_from(position).ok()?;
        if self.entries.last().is_some_and(|&(r, _)| rel <= r) || rel == 0 {
            return None;
        }
        self.entries.push((rel, pos));
        self.last_position = position;
        Some(encode_offset_entry(rel, pos))
    }

    /// Where to scan from to find `offset`: the last entry at or before it, else the first
    /// frame.
    pub fn lookup(&self, offset: u64) -> ScanFrom {
        let rel = offset.saturating_sub(self.base);
        let i = self.entries.partition_point(|&(r, _)| (r as u64) <= rel);
        match i.checked_sub(1).map(|i| self.entries[i]) {
            Some((r, p)) => ScanFrom {
                position: p as u64,
                offset: self.base.saturating_add(r as u64),
            },
            None => ScanFrom {
                position: SEGMENT_HEADER_LEN,
                offset: self.base,
            },
        }
    }

    /// Drops entries at or past `position` (recovery cuts the active segment's index back to
    /// the checkpoint, 8.2 step 6); returns the file length to truncate the `.idx` to.
    pub fn truncate(&mut self, position: u64) -> u64 {
        self.entries.retain(|&(_, p)| (p as u64) < position);
        self.last_position = self
            .entries
            .last()
            .map_or(SEGMENT_HEADER_LEN, |&(_, p)| p as u64);
        (self.entries.len() * OFFSET_ENTRY_LEN) as u64
    }

    pub fn base_offset(&self) -> u64 {
        self.base
    }

    /// `(relative offset, position)` pairs.
    pub fn entries(&self) -> &[(u32, u32)] {
        &self.entries
    }
}

fn encode_offset_entry(rel: u32, pos: u32) -> [u8; OFFSET_ENTRY_LEN] {
    let mut e = [0u8; OFFSET_ENTRY_LEN];
    e[0..4].copy_from_slice(&rel.to_le_bytes());
    e[4..8].copy_from_slice(&pos.to_le_bytes());
    e
}

/// Sparse map from timestamps to offsets in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    base: u64,
    /// `(timestamp, relative offset)`, strictly increasing in both.
    entries: Vec<(u64, u32)>,
}

impl TimeIndex {
    pub fn new(base_offset: u64) -> Self {
        TimeIndex {
            base: base_offset,
            entries: Vec::new(),
        }
    }

    /// Parses a `.tix` file. A trailing partial entry is ignored.
    pub fn decode(base_offset: u64, bytes: &[u8]) -> Result<Self, IndexError> {
        let mut ix = TimeIndex::new(base_offset);
        for (i, e) in bytes.chunks_exact(TIME_ENTRY_LEN).enumerate() {
            let ts = u64::from_le_bytes(e[0..8].try_into().expect("8"));
            let rel = u32::from_le_bytes(e[8..12].try_into().expect("4"));
            let increasing = match ix.entries.last() {
                Some(&(t, r)) => ts > t && rel > r,
                None => rel > 0,
            };
            if !increasing {
                return Err(IndexError::NotIncreasing { entry: i });
            }
            ix.entries.push((ts, rel));
        }
        Ok(ix)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for &(ts, rel) in &self.entries {
            out.extend_from_slice(&encode_time_entry(ts, rel));
        }
        out
    }

    /// Called with every frame, with `indexed` = whether the offset index took an entry for it
    /// (time entries are added at the same moments, storage.md 3.3), when the frame's timestamp
    /// is above the last entry's. Returns the entry to append to the file.
    pub fn on_frame(&mut self, h: &FrameHeader, indexed: bool) -> Option<[u8; TIME_ENTRY_LEN]> {
        if !indexed {
            return None;
        }
        let rel = u32::try_from(h.base_offset.checked_sub(self.base)?).ok()?;
        // Compared with the last entry only (not the first frame's time), so the decision does
        // not depend on where a rebuilding scan started.
        if self
            .entries
            .last()
            .is_some_and(|&(t, r)| h.timestamp_ms <= t || rel <= r)
        {
            return None;
        }
        self.entries.push((h.timestamp_ms, rel));
        Some(encode_time_entry(h.timestamp_ms, rel))
    }

    /// The offset to scan forward from for the first record with timestamp ≥ `unix_ms`: the
    /// offset of the last entry below it, else the segment's base.
    pub fn lookup(&self, unix_ms: u64) -> u64 {
        let i = self.entries.partition_point(|&(t, _)| t < unix_ms);
        match i.checked_sub(1) {
            Some(i) => self.base.saturating_add(self.entries[i].1 as u64),
            None => self.base,
        }
    }

    /// Drops entries for offsets at or past `next_offset`; returns the `.tix` length to keep.
    pub fn truncate(&mut self, next_offset: u64) -> u64 {
        let base = self.base;
        self.entries
            .retain(|&(_, r)| base.saturating_add(r as u64) < next_offset);
        (self.entries.len() * TIME_ENTRY_LEN) as u64
    }

    /// `(timestamp, relative offset)` pairs.
    pub fn entries(&self) -> &[(u64, u32)] {
        &self.entries
    }
}

fn encode_time_entry(ts: u64, rel: u32) -> [u8; TIME_ENTRY_LEN] {
    let mut e = [0u8; TIME_ENTRY_LEN];
    e[0..8].copy_from_slice(&ts.to_le_bytes());
    e[8..12].copy_from_slice(&rel.to_le_bytes());
    e
}

/// Both indexes of a segment, fed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    pub offsets: OffsetIndex,
    pub times: TimeIndex,
}

/// Bytes to append to a segment's index files after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexAppend {
    pub idx: Option<[u8; OFFSET_ENTRY_LEN]>,
    pub tix: Option<[u8; TIME_ENTRY_LEN]>,
}

impl SegmentIndex {
    pub fn new(base_offset: u64, interval_bytes: u64) -> Self {
        SegmentIndex {
            offsets: OffsetIndex::new(base_offset, interval_bytes),
            times: TimeIndex::new(base_offset),
        }
    }

    /// Every frame of the segment, in order: appended ones and, after a crash, the tail scan's
    /// (pass this as the scan's `on_frame` and write what it returns).
    pub fn on_frame(&mut self, h: &FrameHeader, position: u64) -> IndexAppend {
        let idx = self.offsets.on_frame(h, position);
        let tix = self.times.on_frame(h, idx.is_some());
        IndexAppend { idx, tix }
    }
}

#[cfg(test)]
mod tests;
