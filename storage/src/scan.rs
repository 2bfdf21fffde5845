//! Scanning the frames of a segment and telling what kind of damage ends them (docs/storage.md
//! 8.2 steps 3 and 5). Pure over a [`ByteSource`], so the same code serves recovery (a file),
//! `check`, the fuzz target and the tests (a slice).
//!
//! Memory is bounded whatever the bytes say: frames are checked in fixed-size chunks (a
//! damaged length cannot make the scan allocate), and the resync probe keeps at most
//! [`MAX_LATER_KEPT`] later frames (with a count and the greatest hint of all of them, which is
//! all the classification needs).

use std::io;

use crate::format::{
    u32_at, validate, FrameChecker, FrameError, FrameHeader, FRAME_HEADER_LEN, MAX_FRAME,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::fs::FsFile;

/// Bytes read from the source at a time.
const CHUNK: usize = 64 * 1024;
/// The smallest `L` of a frame (one empty record).
const MIN_LEN_ONE: u64 = (FRAME_HEADER_LEN - 4 + RECORD_HEADER_LEN) as u64;
/// Later frames the resync probe lists (for `check --repair`'s lost+found); more are counted.
pub const MAX_LATER_KEPT: usize = 1024;

/// Something frames can be read from: a file, or bytes in memory.
pub trait ByteSource {
    fn len(&self) -> u64;
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ByteSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let start = (pos as usize).min(<[u8]>::len(self));
        let n = buf.len().min(<[u8]>::len(self) - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// An open file as a [`ByteSource`], with its length taken once (a scan reads a file nobody
/// is writing).
pub struct FileSource<'a> {
    file: &'a dyn FsFile,
    len: u64,
}

impl<'a> FileSource<'a> {
    pub fn new(file: &'a dyn FsFile) -> io::Result<Self> {
        Ok(FileSource {
            len: file.len()?,
            file,
        })
    }
}

impl ByteSource for FileSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.file.read_at(buf, pos)
    }
}

/// Where a scan starts and what the next frame must continue; also where it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanStart {
    /// A frame boundary (64 for the first frame of a segment).
    pub position: u64,
    pub next_offset: u64,
    /// Timestamp of the previous frame (0 at a segment's start).
    pub last_ts: u64,
    pub compacted: bool,
}

impl ScanStart {
    /// The start of a segment's frames.
    pub fn segment(base_offset: u64, compacted: bool) -> Self {
        ScanStart {
            position: SEGMENT_HEADER_LEN,
            next_offset: base_offset,
            last_ts: 0,
            compacted,
        }
    }
}

/// A valid frame the resync probe found after the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaterFrame {
    pub position: u64,
    pub base_offset: u64,
    pub synced_hint: u64,
    pub total_len: u64,
}

/// The first invalid frame of a scan, and what the resync probe found after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// Position of the first invalid frame (`P` of storage.md 8.2).
    pub at: u64,
    /// The offset it should have started with (`E`).
    pub expected: u64,
    pub error: FrameError,
    /// The first [`MAX_LATER_KEPT`] valid frames after `at`, in file order.
    pub later: Vec<LaterFrame>,
    /// How many valid frames the probe found after `at` in all.
    pub later_count: u64,
    /// The greatest synced hint of all of them (0 if none).
    pub max_later_hint: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// Every byte from the start to the end of the source is valid frames.
    End,
    Damaged(Damaged),
}

/// What to do about damage (storage.md 8.2 step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// A write cut short (or nothing after it was ever written): truncate at `at`.
    Torn,
    /// Unsynced pages lost out of order by a power loss: truncate at `at`.
    PowerLossTear,
    /// Damage to data that was already durable: quarantine, never truncate silently.
    Corrupt,
}

/// Classifies a scan's outcome; `None` for a clean end. `checkpoint_pos` is the position in
/// the scanned segment that the checkpoint vouches for as durable: 0 if the checkpoint is in
/// an earlier segment or there is none, `u64::MAX` if it is in a later one (this segment was
/// sealed, so all of it was durable).
pub fn classify(outcome: &ScanOutcome, checkpoint_pos: u64) -> Option<Damage> {
    let d = match outcome {
        ScanOutcome::End => return None,
        ScanOutcome::Damaged(d) => d,
    };
    Some(if checkpoint_pos > d.at {
        // The checkpoint never covers a byte that was not on stable storage.
        Damage::Corrupt
    } else if d.later_count == 0 {
        Damage::Torn
    } else if d.max_later_hint <= d.expected {
        // Every later frame was encoded while `expected` was not yet known durable: the lost
        // frame was unsynced when the power went.
        Damage::PowerLossTear
    } else {
        // Some later frame was written after the damaged one was durable.
        Damage::Corrupt
    })
}

/// Reads a source through a fixed window.
struct Window<'a, S: ByteSource + ?Sized> {
    src: &'a S,
    buf: Vec<u8>,
    start: u64,
    filled: usize,
}

impl<'a, S: ByteSource + ?Sized> Window<'a, S> {
    fn new(src: &'a S) -> Self {
        Window {
            src,
            buf: vec![0; CHUNK.min(src.len() as usize).max(FRAME_HEADER_LEN)],
            start: 0,
            filled: 0,
        }
    }

    /// `n ≤ CHUNK` bytes at `pos`, all inside the source (the caller checked).
    fn bytes(&mut self, pos: u64, n: usize) -> io::Result<&[u8]> {
        debug_assert!(n <= self.buf.len());
        let inside = pos >= self.start && pos + n as u64 <= self.start + self.filled as u64;
        if !inside {
            let want = (self.buf.len() as u64).min(self.src.len().saturating_sub(pos)) as usize;
            let mut got = 0;
            while got < want {
                match self.src.read_at(&mut self.buf[got..want], pos + got as u64) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.start = pos;
            self.filled = got;
            if got < n {
                // The source shrank under the scan.
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let off = (pos - self.start) as usize;
        Ok(&self.buf[off..off + n])
    }

    /// The bytes from `pos` to the end of the window (at least a frame header's worth; `pos`
    /// is at least that far from the end of the source), refilling only when needed so that a
    /// caller walking forward does not copy the same bytes again.
    fn from(&mut self, pos: u64) -> io::Result<&[u8]> {
        let end = self.start + self.filled as u64;
        if pos < self.start || pos + FRAME_HEADER_LEN as u64 > end {
            let n = (self.buf.len() as u64).min(self.src.len().saturating_sub(pos)) as usize;
            self.bytes(pos, n.max(FRAME_HEADER_LEN))?;
        }
        let off = (pos - self.start) as usize;
        Ok(&self.buf[off..self.filled])
    }

    /// Checks the frame at `pos` (CRC, length, records), without continuity.
    fn frame_at(&mut self, pos: u64) -> io::Result<Result<FrameHeader, FrameError>> {
        let len = self.src.len();
        let have = len.saturating_sub(pos);
        if have < FRAME_HEADER_LEN as u64 {
            return Ok(Err(FrameError::Truncated {
                need: FRAME_HEADER_LEN as u64,
                have,
            }));
        }
        let first = self.bytes(pos, FRAME_HEADER_LEN)?;
        let h = match FrameHeader::decode(first) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        if h.total_len() > have {
            return Ok(Err(FrameError::Truncated {
                need: h.total_len(),
                have,
            }));
        }
        let mut check = FrameChecker::new(&h, first);
        let mut at = pos + FRAME_HEADER_LEN as u64;
        let end = pos + h.total_len();
        while at < end {
            let n = ((end - at) as usize).min(CHUNK);
            check.feed(self.bytes(at, n)?);
            if check.failed() {
                return Ok(Err(FrameError::BadRecords));
            }
            at += n as u64;
        }
        Ok(check.finish().map(|()| h))
    }
}

/// Scans frames from `start` to the end of `src`, calling `on_frame(header, position)` for each
/// valid one in order (to rebuild indexes). Returns how it ended and the state after the last
/// valid frame (its `position` is where a torn tail is cut). `start.position` must be within
/// the source.
pub fn scan<S: ByteSource + ?Sized>(
    src: &S,
    start: ScanStart,
    on_frame: &mut dyn FnMut(&FrameHeader, u64),
) -> io::Result<(ScanOutcome, ScanStart)> {
    let len = src.len();
    if start.position > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("scan from {} past the end ({len})", start.position),
        ));
    }
    let mut w = Window::new(src);
    let mut st = start;
    while st.position < len {
        let checked = w
            .frame_at(st.position)?
            .and_then(|h| validate(&h, st.next_offset, st.last_ts, st.compacted).map(|()| h));
        match checked {
            Ok(h) => {
                on_frame(&h, st.position);
                st.position += h.total_len();
                st.next_offset = h.next_offset();
                st.last_ts = h.timestamp_ms;
            }
            Err(error) => {
                let mut d = probe(&mut w, st.position + 1, st.next_offset)?;
                d.at = st.position;
                d.error = error;
                return Ok((ScanOutcome::Damaged(d), st));
            }
        }
    }
    Ok((ScanOutcome::End, st))
}

/// The resync probe on its own: valid frames after `from` whose base offset is past
/// `expected` (what `check` uses to list the frames a repair would move to lost+found).
pub fn resync<S: ByteSource + ?Sized>(src: &S, from: u64, expected: u64) -> io::Result<Damaged> {
    let mut d = probe(&mut Window::new(src), from, expected)?;
    d.at = from.saturating_sub(1);
    Ok(d)
}

/// Tests every position from `from` for a valid frame with a base offset above `expected`
/// (a frame after the damaged one holds later offsets) and a plausible hint. After a hit the
/// probe goes on from the end of that frame: the inside of a valid frame is not searched.
fn probe<S: ByteSource + ?Sized>(
    w: &mut Window<'_, S>,
    from: u64,
    expected: u64,
) -> io::Result<Damaged> {
    let len = w.src.len();
    let mut d = Damaged {
        at: 0,
        expected,
        error: FrameError::BadRecords,
        later: Vec::new(),
        later_count: 0,
        max_later_hint: 0,
    };
    let mut q = from;
    while q + FRAME_HEADER_LEN as u64 <= len {
        // Candidates are searched inside the window's slice, positions rejected by the length
        // field alone (most of them: a random u32 is rarely a length that fits the file) cost
        // one load and two compares; the probe runs over whole damaged segments.
        let chunk = w.from(q)?;
        let last = chunk.len() - FRAME_HEADER_LEN;
        let found = (0..=last).find(|&i| {
            let l = u32_at(chunk, i) as u64;
            if l < MIN_LEN_ONE || l >= MAX_FRAME as u64 || l + 4 > len - (q + i as u64) {
                return false;
            }
            // A frame we wrote has `synced_hint <= base_offset` (its own records were not
            // durable when it was encoded); requiring it keeps a frame forged inside a payload
            // from claiming that everything before it was durable, which would turn a torn
            // tail into a quarantine.
            FrameHeader::decode(&chunk[i..])
                .is_ok_and(|h| h.base_offset > expected && h.synced_hint <= h.base_offset)
        });
        let Some(i) = found else {
            q += last as u64 + 1;
            continue;
        };
        let at = q + i as u64;
        match w.frame_at(at)? {
            Ok(h) => {
                d.later_count += 1;
                d.max_later_hint = d.max_later_hint.max(h.synced_hint);
                if d.later.len() < MAX_LATER_KEPT {
                    d.later.push(LaterFrame {
                        position: at,
                        base_offset: h.base_offset,
                        synced_hint: h.synced_hint,
                        total_len: h.total_len(),
                    });
                }
                q = at + h.total_len();
            }
            Err(_) => q = at + 1,
        }
    }
    Ok(d)
}

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;
