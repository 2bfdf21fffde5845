//! The segment file format, byte for byte (docs/storage.md 3.1): the segment header, frames and
//! records, their encoding and their validation. Pure: no I/O, no allocation when decoding.
//!
//! Every decoder here is bounded by its input: a length read from the data is checked against
//! what is left of the input before anything is read or skipped, so a flipped bit can make a
//! frame invalid but never make a decoder read outside its slice, allocate, or panic.

/// `FELIXSEG`, the first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FELIXSEG";
/// The only segment format this code reads or writes.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_LEN: u64 = 64;
/// Size of a frame's fixed part, its length field included (`4 + 36`).
pub const FRAME_HEADER_LEN: usize = 40;
/// Fixed bytes per record inside a frame (payload length + headers length).
pub const RECORD_HEADER_LEN: usize = 6;
/// A frame's `L` (its length after the length field) is below this. A format constant, not a
/// setting: a configurable bound could turn valid old frames into "damage" after a config change.
pub const MAX_FRAME: u32 = 1 << 30;
/// Segment header flag: offsets may have gaps between frames (a compacted cache log).
pub const SEGMENT_FLAG_COMPACTED: u8 = 1;
/// Frame attribute: records carry headers.
pub const ATTR_HEADERS: u16 = 1;

/// Minimum `L` of a frame of `n` records (`36 + 6·n`).
const fn min_len(n: u64) -> u64 {
    (FRAME_HEADER_LEN as u64 - 4) + RECORD_HEADER_LEN as u64 * n
}

/// CRC32C (Castagnoli), hardware-accelerated where the CPU has it.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// What a log holds; written in each segment header so `check` can pick the right decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LogKind {
    Stream = 1,
    GroupJournal = 2,
    Cache = 3,
}

impl LogKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(LogKind::Stream),
            2 => Some(LogKind::GroupJournal),
            3 => Some(LogKind::Cache),
            _ => None,
        }
    }
}

/// Why a segment header (or any other fixed 64-byte header) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("header too short ({have} of 64 bytes)")]
    Short { have: usize },
    #[error("bad magic")]
    BadMagic,
    #[error("header CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc { stored: u32, computed: u32 },
    #[error("unknown format version {0}")]
    UnknownVersion(u16),
    #[error("unknown log kind {0}")]
    UnknownKind(u8),
}

/// The 64-byte header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub kind: LogKind,
    /// Offsets may have gaps between frames (flag bit 0).
    pub compacted: bool,
    /// Offset of the segment's first record; equals the number in the file name.
    pub base_offset: u64,
    /// The log's epoch when the segment was created.
    pub epoch: u64,
    pub created_unix_ms: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10] = self.kind as u8;
        b[11] = if self.compacted {
            SEGMENT_FLAG_COMPACTED
        } else {
            0
        };
        b[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.epoch.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        let crc = crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes the first 64 bytes of `buf` (more is ignored). The CRC is checked before the
    /// fields are interpreted, so a damaged header reports `BadCrc`, not a misleading field.
    pub fn decode(buf: &[u8]) -> Result<Self, HeaderError> {
        let b = fixed_header(buf, &SEGMENT_MAGIC)?;
        let version = u16_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnknownVersion(version));
        }
        let kind = LogKind::from_u8(b[10]).ok_or(HeaderError::UnknownKind(b[10]))?;
        Ok(SegmentHeader {
            kind,
            compacted: b[11] & SEGMENT_FLAG_COMPACTED != 0,
            base_offset: u64_at(b, 16),
            epoch: u64_at(b, 24),
            created_unix_ms: u64_at(b, 32),
        })
    }
}

/// Checks length, magic and the CRC32C of bytes 0..60 stored at 60..64 of a 64-byte header
/// (segment, checkpoint slot and snapshot headers share that layout).
pub(crate) fn fixed_header<'a>(buf: &'a [u8], magic: &[u8; 8]) -> Result<&'a [u8], HeaderError> {
    let b = buf
        .get(..64)
        .ok_or(HeaderError::Short { have: buf.len() })?;
    if &b[0..8] != magic {
        return Err(HeaderError::BadMagic);
    }
    let stored = u32_at(b, 60);
    let computed = crc32c(&b[0..60]);
    if stored != computed {
        return Err(HeaderError::BadCrc { stored, computed });
    }
    Ok(b)
}

/// Why a frame is not valid (docs/storage.md 3.1), or cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The input ends before the frame does (a torn tail, or a damaged length).
    #[error("frame needs {need} bytes, {have} available")]
    Truncated { need: u64, have: u64 },
    /// `L` or `N` out of range (`36 + 6·N ≤ L < MAX_FRAME`, `N ≥ 1`, offsets fit in u64).
    #[error("frame length {len} impossible for {count} records")]
    BadLength { len: u32, count: u32 },
    #[error("frame CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc { stored: u32, computed: u32 },
    /// The records do not exactly fill the frame, or carry headers without the attribute.
    #[error("records do not match the frame")]
    BadRecords,
    #[error("frame base offset {found}, expected {expected}")]
    UnexpectedOffset { expected: u64, found: u64 },
    #[error("frame timestamp {found} below the previous frame's {previous}")]
    TimeWentBack { previous: u64, found: u64 },
    /// Encoding: a frame holds at least one record.
    #[error("a frame needs at least one record")]
    Empty,
    /// Encoding: the batch does not fit one frame (or a field does not fit its width).
    #[error("batch of {bytes} bytes does not fit one frame (max {MAX_FRAME})")]
    TooLarge { bytes: u64 },
}

/// The fixed part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// `L`: the frame is `4 + L` bytes.
    pub len: u32,
    pub crc: u32,
    pub base_offset: u64,
    pub timestamp_ms: u64,
    pub record_count: u32,
    pub attributes: u16,
    /// The log's durable watermark when the frame was encoded (recovery tells a power-loss
    /// tear from corruption with it, storage.md 8.2).
    pub synced_hint: u64,
}

impl FrameHeader {
    /// Bytes the whole frame takes in the file.
    pub fn total_len(&self) -> u64 {
        4 + self.len as u64
    }

    /// The offset after the frame's last record.
    pub fn next_offset(&self) -> u64 {
        // Cannot overflow for a decoded header: decode refuses base + count > u64::MAX.
        self.base_offset.saturating_add(self.record_count as u64)
    }

    pub fn last_offset(&self) -> u64 {
        self.next_offset() - 1
    }

    /// Parses and range-checks the first 40 bytes of a frame, without its CRC (which needs the
    /// whole frame): enough to know how many bytes to read next, bounded by `MAX_FRAME`.
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        let b = buf.get(..FRAME_HEADER_LEN).ok_or(FrameError::Truncated {
            need: FRAME_HEADER_LEN as u64,
            have: buf.len() as u64,
        })?;
        let h = FrameHeader {
            len: u32_at(b, 0),
            crc: u32_at(b, 4),
            base_offset: u64_at(b, 8),
            timestamp_ms: u64_at(b, 16),
            record_count: u32_at(b, 24),
            attributes: u16_at(b, 28),
            synced_hint: u64_at(b, 32),
        };
        let n = h.record_count as u64;
        if n == 0
            || (h.len as u64) < min_len(n)
            || h.len >= MAX_FRAME
            || h.base_offset.checked_add(n).is_none()
        {
            return Err(FrameError::BadLength {
                len: h.len,
                count: h.record_count,
            });
        }
        Ok(h)
    }
}

/// The continuity rule of 3.1: `h` must start at `expected_offset` (or after it, in a compacted
/// segment) and not go back in time.
pub fn validate(
    h: &FrameHeader,
    expected_offset: u64,
    prev_ts: u64,
    compacted: bool,
) -> Result<(), FrameError> {
    let offset_ok = if compacted {
        h.base_offset >= expected_offset
    } else {
        h.base_offset == expected_offset
    };
    if !offset_ok {
        return Err(FrameError::UnexpectedOffset {
            expected: expected_offset,
            found: h.base_offset,
        });
    }
    if h.timestamp_ms < prev_ts {
        return Err(FrameError::TimeWentBack {
            previous: prev_ts,
            found: h.timestamp_ms,
        });
    }
    Ok(())
}

/// Checks a frame fed in pieces: the CRC and that exactly `N` records fill `L`. Streaming, so a
/// scan over a file needs a fixed buffer whatever the frame's size (a flipped length cannot make
/// it allocate).
#[derive(Debug)]
pub(crate) struct FrameChecker {
    crc: u32,
    left: u32,
    skip: u64,
    rec: [u8; RECORD_HEADER_LEN],
    have: usize,
    headers_allowed: bool,
    bad: bool,
    stored_crc: u32,
    /// Bytes of the record area not fed yet.
    unfed: u64,
}

impl FrameChecker {
    /// Starts with the first 40 bytes of a frame whose header decoded.
    pub(crate) fn new(h: &FrameHeader, first40: &[u8]) -> Self {
        let crc = crc32c::crc32c_append(crc32c(&first40[0..4]), &first40[8..FRAME_HEADER_LEN]);
        FrameChecker {
            crc,
            left: h.record_count,
            skip: 0,
            rec: [0; RECORD_HEADER_LEN],
            have: 0,
            headers_allowed: h.attributes & ATTR_HEADERS != 0,
            bad: false,
            stored_crc: h.crc,
            unfed: h.len as u64 - (FRAME_HEADER_LEN as u64 - 4),
        }
    }

    /// Feeds the next bytes of the record area (after byte 40).
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, chunk);
        self.unfed = self.unfed.saturating_sub(chunk.len() as u64);
        let mut c = chunk;
        while !c.is_empty() && !self.bad {
            if self.skip > 0 {
                let n = self.skip.min(c.len() as u64) as usize;
                self.skip -= n as u64;
                c = &c[n..];
                continue;
            }
            if self.left == 0 {
                // Bytes after the last record.
                self.bad = true;
                break;
            }
            let n = (RECORD_HEADER_LEN - self.have).min(c.len());
            self.rec[self.have..self.have + n].copy_from_slice(&c[..n]);
            self.have += n;
            c = &c[n..];
            if self.have == RECORD_HEADER_LEN {
                let p = u32_at(&self.rec, 0) as u64;
                let hl = u16_at(&self.rec, 4) as u64;
                self.skip = p + hl;
                self.have = 0;
                self.left -= 1;
                // This record and the 6-byte minimum of each one after it must fit in what is
                // left of the frame: known now, so a scan can stop without reading the rest.
                let room = self.unfed + c.len() as u64;
                let need = self.skip + RECORD_HEADER_LEN as u64 * self.left as u64;
                if (hl != 0 && !self.headers_allowed) || need > room {
                    self.bad = true;
                }
            }
        }
    }

    /// The records already cannot fit: the frame is invalid whatever its remaining bytes (a
    /// scan stops reading it; it then reports `BadRecords` where a full check could have
    /// reported `BadCrc`).
    pub(crate) fn failed(&self) -> bool {
        self.bad
    }

    /// After the whole frame was fed: the CRC first (the likelier and more telling failure).
    pub(crate) fn finish(&self) -> Result<(), FrameError> {
        if self.crc != self.stored_crc {
            return Err(FrameError::BadCrc {
                stored: self.stored_crc,
                computed: self.crc,
            });
        }
        if self.bad || self.left != 0 || self.skip != 0 || self.have != 0 {
            return Err(FrameError::BadRecords);
        }
        Ok(())
    }
}

/// A frame decoded from a slice; borrows it.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The whole frame, length field included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn records(&self) -> RecordIter<'a> {
        RecordIter {
            rest: &self.bytes[FRAME_HEADER_LEN..],
            offset: self.header.base_offset,
            left: self.header.record_count,
        }
    }
}

/// Decodes and checks (CRC, length, records) the frame at the start of `buf`; bytes after it
/// are ignored. Continuity with the previous frame is [`validate`]'s job.
pub fn decode_frame(buf: &[u8]) -> Result<Frame<'_>, FrameError> {
    let header = FrameHeader::decode(buf)?;
    let total = header.total_len();
    if (buf.len() as u64) < total {
        return Err(FrameError::Truncated {
            need: total,
            have: buf.len() as u64,
        });
    }
    let bytes = &buf[..total as usize];
    let mut check = FrameChecker::new(&header, bytes);
    check.feed(&bytes[FRAME_HEADER_LEN..]);
    check.finish()?;
    Ok(Frame { header, bytes })
}

/// One record of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: u64,
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

/// The records of a decoded [`Frame`]. Ends early (never panics) if the bytes are not what
/// [`decode_frame`] checked, so it stays safe even if that invariant were broken.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    offset: u64,
    left: u32,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        if self.left == 0 {
            return None;
        }
        let head = self.rest.get(..RECORD_HEADER_LEN)?;
        let p = u32_at(head, 0) as usize;
        let h = u16_at(head, 4) as usize;
        let body = &self.rest[RECORD_HEADER_LEN..];
        let headers = body.get(..h)?;
        let payload = body.get(h..h.checked_add(p)?)?;
        self.rest = &body[h + p..];
        let rec = Record {
            offset: self.offset,
            headers,
            payload,
        };
        self.offset += 1;
        self.left -= 1;
        Some(rec)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// Consecutive frames of a slice (a range read from a segment). Yields each valid frame; on the
/// first invalid one yields its error (with the position) and then stops. Only frame validity is
/// checked; continuity is the caller's (it knows the expected offset).
#[derive(Debug, Clone)]
pub struct FrameIter<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

/// Iterates the frames of `buf`, which starts at a frame boundary.
pub fn frames(buf: &[u8]) -> FrameIter<'_> {
    FrameIter {
        buf,
        pos: 0,
        done: false,
    }
}

impl FrameIter<'_> {
    /// Bytes consumed by the frames yielded so far (the position of the next one).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for FrameIter<'a> {
    /// `Err((position in buf, why))`.
    type Item = Result<Frame<'a>, (usize, FrameError)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        match decode_frame(&self.buf[self.pos..]) {
            Ok(f) => {
                self.pos += f.bytes.len();
                Some(Ok(f))
            }
            Err(e) => {
                self.done = true;
                Some(Err((self.pos, e)))
            }
        }
    }
}

/// Where a frame starts, what it is stamped with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    pub base_offset: u64,
    pub timestamp_ms: u64,
    pub synced_hint: u64,
}

/// Bytes a frame of these payloads (no headers) takes: `40 + Σ(6 + len)`.
pub fn frame_len<P: AsRef<[u8]>>(payloads: &[P]) -> u64 {
    FRAME_HEADER_LEN as u64
        + payloads
            .iter()
            .map(|p| (RECORD_HEADER_LEN + p.as_ref().len()) as u64)
            .sum::<u64>()
}

/// Appends one frame holding `payloads` (records without headers) to `out`; returns its header.
/// On error `out` is unchanged.
pub fn encode_frame<P: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    meta: FrameMeta,
    payloads: &[P],
) -> Result<FrameHeader, FrameError> {
    encode_records(
        out,
        meta,
        payloads.len(),
        payloads.iter().map(|p| (&[][..], p.as_ref())),
    )
}

/// As [`encode_frame`], for records with headers: `(headers, payload)` pairs.
pub fn encode_frame_with_headers(
    out: &mut Vec<u8>,
    meta: FrameMeta,
    records: &[(&[u8], &[u8])],
) -> Result<FrameHeader, FrameError> {
    encode_records(out, meta, records.len(), records.iter().copied())
}

fn encode_records<'r>(
    out: &mut Vec<u8>,
    meta: FrameMeta,
    count: usize,
    records: impl Iterator<Item = (&'r [u8], &'r [u8])> + Clone,
) -> Result<FrameHeader, FrameError> {
    if count == 0 {
        return Err(FrameError::Empty);
    }
    let mut body = 0u64;
    let mut any_headers = false;
    for (h, p) in records.clone() {
        if h.len() > u16::MAX as usize || p.len() > u32::MAX as usize {
            return Err(FrameError::TooLarge {
                bytes: (h.len() + p.len()) as u64,
            });
        }
        any_headers |= !h.is_empty();
        body += (RECORD_HEADER_LEN + h.len() + p.len()) as u64;
    }
    let len = FRAME_HEADER_LEN as u64 - 4 + body;
    if len >= MAX_FRAME as u64 || count > u32::MAX as usize {
        return Err(FrameError::TooLarge { bytes: 4 + len });
    }
    if meta.base_offset.checked_add(count as u64).is_none() {
        return Err(FrameError::BadLength {
            len: len as u32,
            count: count as u32,
        });
    }
    let attributes = if any_headers { ATTR_HEADERS } else { 0 };
    let start = out.len();
    out.reserve(4 + len as usize);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled below
    out.extend_from_slice(&meta.base_offset.to_le_bytes());
    out.extend_from_slice(&meta.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&attributes.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&meta.synced_hint.to_le_bytes());
    for (h, p) in records {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h);
        out.extend_from_slice(p);
    }
    let f = &mut out[start..];
    let crc = crc32c::crc32c_append(crc32c(&f[0..4]), &f[8..]);
    f[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(FrameHeader {
        len: len as u32,
        crc,
        base_offset: meta.base_offset,
        timestamp_ms: meta.timestamp_ms,
        record_count: count as u32,
        attributes,
        synced_hint: meta.synced_hint,
    })
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

mod names;
pub use names::SegmentFile;

#[cfg(test)]
mod tests;
