//! One segment on disk (docs/storage.md 3.1, 3.2): its `.seg` file (header, then frames back to
//! back) and its sparse offset index, in memory and in the `.idx` file.
//!
//! A segment only appends whole frames at its known end (`pwrite`, no `O_APPEND`, so a failed
//! write is cut back exactly), is sealed (fsynced, data and index) before the next one is
//! created, and is read by [`read_frames`] from a position its index gave, checking every frame
//! (CRC, offset continuity) before any record of it is served: the index is a hint, never
//! trusted blindly.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use bytes::Bytes;

use crate::error::IoOp;
use crate::format::{self, FrameError, FrameHeader, SegmentFile, SegmentHeader, FRAME_HEADER_LEN};
use crate::fs::{read_exact_at, write_all_at, Fs, FsFile, OpenMode};
use crate::StorageError;

/// Where a frame starts: `(offset of its first record, byte position in the .seg file)`.
pub type IndexEntry = (u64, u64);

/// One segment of a log.
pub struct Segment {
    base: u64,
    path: Arc<str>,
    seg_path: PathBuf,
    idx_path: PathBuf,
    /// Open while active; a sealed segment's file is opened at its first cold read (so a log
    /// of many segments holds descriptors only for those being read).
    file: Mutex<Option<Arc<dyn FsFile>>>,
    /// `None` for sealed segments opened for reading, or after an index write failed (the
    /// in-memory index goes on; the file is rebuilt at the next recovery).
    idx: Option<Box<dyn FsFile>>,
    idx_len: u64,
    /// Bytes of the file that hold the header and valid frames.
    len: u64,
    next_offset: u64,
    first_ts: u64,
    last_ts: u64,
    /// Sparse, strictly increasing; the first frame (at 64) is implicit. Loaded from the
    /// `.idx` file at the first cold read of a sealed segment (storage.md 8.2 step 6), so an
    /// open reads no index and a log's memory holds only the indexes that reads use.
    index: OnceLock<Vec<IndexEntry>>,
    since_index: u64,
    index_interval: u64,
}

fn seg_paths(dir: &Path, base: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(SegmentFile::Segment.name(base)),
        dir.join(SegmentFile::OffsetIndex.name(base)),
    )
}

impl Segment {
    /// Creates the files of a new segment at `header.base_offset`, writes and fsyncs the header.
    /// The caller fsyncs the directory before relying on it (storage.md 2).
    pub fn create(
        fs: &dyn Fs,
        dir: &Path,
        header: &SegmentHeader,
        index_interval: u64,
    ) -> Result<Segment, StorageError> {
        let base = header.base_offset;
        let (seg_path, idx_path) = seg_paths(dir, base);
        // Leftovers of a creation a crash interrupted (recovery removed the .seg, maybe not these).
        let _ = fs.remove_file(&idx_path);
        let file: Arc<dyn FsFile> = Arc::from(
            fs.open(&seg_path, OpenMode::CreateNew)
                .map_err(|e| StorageError::io(IoOp::Open, &seg_path, &e))?,
        );
        let hdr = header.encode();
        let written = write_all_at(file.as_ref(), &hdr, 0).and_then(|()| file.sync_data());
        if let Err(e) = written {
            let _ = fs.remove_file(&seg_path);
            return Err(StorageError::io(IoOp::Write, &seg_path, &e));
        }
        let idx = fs.open(&idx_path, OpenMode::CreateNew).ok();
        Ok(Segment {
            base,
            path: Arc::from(seg_path.display().to_string()),
            seg_path,
            idx_path,
            file: Mutex::new(Some(file)),
            idx,
            idx_len: 0,
            len: format::SEGMENT_HEADER_LEN,
            next_offset: base,
            first_ts: 0,
            last_ts: 0,
            index: OnceLock::from(Vec::new()),
            since_index: 0,
            index_interval: index_interval.max(1),
        })
    }

    /// Opens an existing segment whose valid extent recovery established: `len` bytes holding
    /// records `[base, next_offset)`, with `index` entries (`None`: loaded from the `.idx` file
    /// when first needed). `writable` for the active segment, whose index must be given: its
    /// `.idx` file is rewritten from it (the old one may be ahead of a truncation).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        fs: &dyn Fs,
        dir: &Path,
        base: u64,
        len: u64,
        next_offset: u64,
        (first_ts, last_ts): (u64, u64),
        index: Option<Vec<IndexEntry>>,
        index_interval: u64,
        writable: bool,
    ) -> Result<Segment, StorageError> {
        let (seg_path, idx_path) = seg_paths(dir, base);
        let file: Option<Arc<dyn FsFile>> = if writable {
            let f = fs
                .open(&seg_path, OpenMode::ReadWrite)
                .map_err(|e| StorageError::io(IoOp::Open, &seg_path, &e))?;
            Some(Arc::from(f))
        } else {
            None
        };
        let mut idx = None;
        let mut idx_len = 0;
        debug_assert!(
            !writable || index.is_some(),
            "the active segment's index is given"
        );
        if let (true, Some(index)) = (writable, &index) {
            let _ = fs.remove_file(&idx_path);
            if let Ok(f) = fs.open(&idx_path, OpenMode::CreateNew) {
                let mut buf = Vec::with_capacity(index.len() * 8);
                for &(o, p) in index {
                    buf.extend_from_slice(&((o - base) as u32).to_le_bytes());
                    buf.extend_from_slice(&(p as u32).to_le_bytes());
                }
                if write_all_at(f.as_ref(), &buf, 0).is_ok() {
                    idx_len = buf.len() as u64;
                    idx = Some(f);
                }
            }
        }
        let last = index.as_ref().and_then(|i| i.last());
        let since_index = len - last.map_or(format::SEGMENT_HEADER_LEN, |e| e.1);
        let index = index.map_or_else(OnceLock::new, OnceLock::from);
        Ok(Segment {
            base,
            path: Arc::from(seg_path.display().to_string()),
            seg_path,
            idx_path,
            file: Mutex::new(file),
            idx,
            idx_len,
            len,
            next_offset,
            first_ts,
            last_ts,
            index,
            since_index,
            index_interval: index_interval.max(1),
        })
    }

    pub fn base(&self) -> u64 {
        self.base
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether it holds no frame.
    pub fn is_empty(&self) -> bool {
        self.next_offset == self.base
    }
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }
    /// Timestamp of the first frame (0 when empty).
    pub fn first_ts(&self) -> u64 {
        self.first_ts
    }
    pub fn last_ts(&self) -> u64 {
        self.last_ts
    }
    pub fn path(&self) -> &Arc<str> {
        &self.path
    }
    /// The open file of the active segment (or of a sealed one being read).
    pub fn file(&self) -> Arc<dyn FsFile> {
        self.file
            .lock()
            .clone()
            .expect("the active segment's file is open")
    }

    /// The file, opened for reading if it is not open.
    fn open_file(&self, fs: &dyn Fs) -> Result<Arc<dyn FsFile>, StorageError> {
        let mut f = self.file.lock();
        if let Some(f) = &*f {
            return Ok(f.clone());
        }
        let opened: Arc<dyn FsFile> = Arc::from(
            fs.open(&self.seg_path, OpenMode::Read)
                .map_err(|e| StorageError::io(IoOp::Open, &self.seg_path, &e))?,
        );
        *f = Some(opened.clone());
        Ok(opened)
    }
    pub fn paths(&self) -> [&Path; 2] {
        [&self.seg_path, &self.idx_path]
    }

    /// Writes one encoded frame at the end. On error the file is cut back to where the frame
    /// started (a short write may have left part of it: storage.md 11.2) and nothing changed.
    pub fn append(&mut self, frame: &[u8], h: &FrameHeader) -> Result<(), StorageError> {
        let file = self.file();
        if let Err(e) = write_all_at(file.as_ref(), frame, self.len) {
            let _ = file.set_len(self.len);
            return Err(StorageError::io(IoOp::Write, &self.seg_path, &e));
        }
        let pos = self.len;
        if self.next_offset == self.base {
            self.first_ts = h.timestamp_ms;
        } else if self.since_index >= self.index_interval {
            self.add_index_entry(h.base_offset, pos);
        }
        self.since_index += frame.len() as u64;
        self.len += frame.len() as u64;
        self.next_offset = h.next_offset();
        self.last_ts = h.timestamp_ms;
        Ok(())
    }

    fn add_index_entry(&mut self, offset: u64, pos: u64) {
        self.index
            .get_mut()
            .expect("a written segment has its index")
            .push((offset, pos));
        self.since_index = 0;
        if let Some(idx) = &self.idx {
            let mut e = [0u8; 8];
            e[..4].copy_from_slice(&((offset - self.base) as u32).to_le_bytes());
            e[4..].copy_from_slice(&(pos as u32).to_le_bytes());
            // Buffered write, synced at seal; a failure only costs the file (rebuilt on recovery).
            if write_all_at(idx.as_ref(), &e, self.idx_len).is_ok() {
                self.idx_len += 8;
            } else {
                self.idx = None;
            }
        }
    }

    /// fdatasync of the data (the flusher and seal).
    pub fn sync(&self) -> Result<(), StorageError> {
        self.file()
            .sync_data()
            .map_err(|e| StorageError::io(IoOp::Sync, &self.seg_path, &e))
    }

    /// Makes data and index durable; after this the segment is never written again.
    pub fn seal(&mut self) -> Result<(), StorageError> {
        self.sync()?;
        if let Some(idx) = self.idx.take() {
            // The index is a hint: failing to persist it is not a reason to fail the log.
            let _ = idx.sync_data();
        }
        Ok(())
    }

    /// Closes the descriptor of a sealed segment (reopened by the next cold read): a log
    /// holds descriptors only for its active segment and the segments being read.
    pub fn release_file(&self) {
        *self.file.lock() = None;
    }

    /// The index entries of frames starting before `pos` (for a segment cut back to `pos`).
    pub fn index_below(&self, pos: u64) -> Vec<IndexEntry> {
        let all = self.index.get().map_or(&[][..], Vec::as_slice);
        all.iter().copied().filter(|e| e.1 < pos).collect()
    }

    /// Where to start reading for `offset`: the last indexed frame at or before it.
    pub fn lookup(&self, fs: &dyn Fs, offset: u64) -> IndexEntry {
        let index = self
            .index
            .get_or_init(|| load_index(fs, &self.idx_path, self.base, self.len));
        let i = index.partition_point(|e| e.0 <= offset);
        if i == 0 {
            (self.base, format::SEGMENT_HEADER_LEN)
        } else {
            index[i - 1]
        }
    }

    /// The first frame of this segment below `upto` whose timestamp is ≥ `unix_ms`: its base
    /// offset, or `None` if there is none. Timestamps never decrease in a log, so the offset
    /// index doubles as a time index: a binary search reads the 40-byte header of the frame
    /// each entry points to, then a walk of frame headers covers at most one index interval.
    /// Headers only: the CRC is checked by the read that follows. An entry that does not land
    /// on the frame it names sends the walk back to the first frame.
    pub fn seek_time(
        &self,
        fs: &dyn Fs,
        unix_ms: u64,
        upto: u64,
    ) -> Result<Option<u64>, StorageError> {
        let file = self.open_file(fs)?;
        let header_at = |pos: u64| -> Result<Option<FrameHeader>, StorageError> {
            if pos + FRAME_HEADER_LEN as u64 > self.len {
                return Ok(None);
            }
            let mut b = [0u8; FRAME_HEADER_LEN];
            read_exact_at(file.as_ref(), &mut b, pos)
                .map_err(|e| StorageError::io(IoOp::Read, &self.seg_path, &e))?;
            Ok(FrameHeader::decode(&b).ok())
        };
        let index = self
            .index
            .get_or_init(|| load_index(fs, &self.idx_path, self.base, self.len));
        // Last entry whose frame is older than `unix_ms` (binary search on frame headers).
        let (mut lo, mut hi) = (0usize, index.len());
        let mut start = (self.base, format::SEGMENT_HEADER_LEN);
        let mut trusted = true;
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (off, pos) = index[mid];
            match header_at(pos)? {
                Some(h) if h.base_offset == off => {
                    if h.timestamp_ms < unix_ms {
                        start = (off, pos);
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                _ => {
                    trusted = false;
                    break;
                }
            }
        }
        if !trusted {
            start = (self.base, format::SEGMENT_HEADER_LEN);
        }
        let (mut expected, mut pos) = start;
        while expected < upto.min(self.next_offset) {
            let Some(h) = header_at(pos)?.filter(|h| h.base_offset == expected) else {
                return Err(StorageError::Quarantined {
                    offset: expected,
                    path: self.path.clone(),
                });
            };
            if h.timestamp_ms >= unix_ms {
                return Ok(Some(expected));
            }
            expected = h.next_offset();
            pos += h.total_len();
        }
        Ok(None)
    }

    /// What a read outside the log's lock needs.
    pub fn reader(&self, fs: &dyn Fs, from: u64) -> Result<SegmentReader, StorageError> {
        let (frame_base, pos) = self.lookup(fs, from);
        Ok(SegmentReader {
            base: self.base,
            file: self.open_file(fs)?,
            path: self.path.clone(),
            pos,
            end: self.len,
            frame_base,
            next_offset: self.next_offset,
        })
    }
}

/// Loads the entries of an `.idx` file written for segment `base`, keeping the longest prefix
/// that is strictly increasing and inside `len` (a torn or stale tail is dropped). Entries are
/// still checked against the frame they point to at every read.
pub fn load_index(fs: &dyn Fs, idx_path: &Path, base: u64, len: u64) -> Vec<IndexEntry> {
    let Ok(f) = fs.open(idx_path, OpenMode::Read) else {
        return Vec::new();
    };
    // At most one entry per frame after the first: a damaged or foreign `.idx` of any size
    // costs no more memory than a sound one (review r1).
    let most = len.saturating_sub(format::SEGMENT_HEADER_LEN) / MIN_FRAME_LEN;
    let n = (f.len().unwrap_or(0) / 8).min(most);
    let mut buf = vec![0u8; (n * 8) as usize];
    if read_exact_at(f.as_ref(), &mut buf, 0).is_err() {
        return Vec::new();
    }
    let mut out: Vec<IndexEntry> = Vec::new();
    for e in buf.chunks_exact(8) {
        let rel = u32::from_le_bytes(e[..4].try_into().expect("4")) as u64;
        let pos = u32::from_le_bytes(e[4..].try_into().expect("4")) as u64;
        let ok = pos > format::SEGMENT_HEADER_LEN
            && pos < len
            && rel > 0
            && match out.last() {
                Some(l) => l.0 < base + rel && l.1 < pos,
                None => true,
            };
        if !ok {
            break;
        }
        out.push((base + rel, pos));
    }
    out
}

/// The smallest valid frame: its header and one record header.
const MIN_FRAME_LEN: u64 = FRAME_HEADER_LEN as u64 + 6;

/// A consistent view of a segment for one read: file, position and the extent valid then.
pub struct SegmentReader {
    base: u64,
    file: Arc<dyn FsFile>,
    path: Arc<str>,
    /// Start of the frame whose first record is `frame_base`.
    pos: u64,
    end: u64,
    frame_base: u64,
    next_offset: u64,
}

/// The result of reading one segment.
#[derive(Debug, Default)]
pub struct SegmentRead {
    pub records: Vec<(u64, Bytes)>,
    pub payload_bytes: usize,
    /// The offset after the last record returned (or `from` if none).
    pub next: u64,
    /// The file ended before the records it must hold, at this offset (a short or missing
    /// segment, or a hole `check --repair` left): the caller goes on at the next segment, and
    /// its reader sees a gap.
    pub short_at: Option<u64>,
}

impl SegmentReader {
    /// Records `[from, upto)` of this segment, at most `max_records` and `max_bytes` of payload
    /// (at least one record whatever its size). Reads `chunk` bytes per `pread`. Records are
    /// slices of the read buffer (no copy per record). A frame that fails its CRC or continuity
    /// check ends the read: the records before it are returned, or, if there are none, the
    /// error `Quarantined` naming the frame's offset.
    pub fn read(
        &self,
        from: u64,
        upto: u64,
        max_records: usize,
        max_bytes: usize,
        chunk: usize,
    ) -> Result<SegmentRead, StorageError> {
        let r = self.read_at(
            self.pos,
            self.frame_base,
            from,
            upto,
            max_records,
            max_bytes,
            chunk,
        );
        match r {
            // The index is a hint: an entry that does not land on the frame it names sends the
            // read back to the first frame (a slower scan, never a wrong record).
            Err(StorageError::Quarantined { .. }) if self.pos != format::SEGMENT_HEADER_LEN => {
                tracing::warn!(file = %self.path, position = self.pos,
                    "storage: offset index entry did not match its frame; scanning");
                let start = format::SEGMENT_HEADER_LEN;
                self.read_at(start, self.base, from, upto, max_records, max_bytes, chunk)
            }
            r => r,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read_at(
        &self,
        pos: u64,
        frame_base: u64,
        from: u64,
        upto: u64,
        max_records: usize,
        max_bytes: usize,
        chunk: usize,
    ) -> Result<SegmentRead, StorageError> {
        let upto = upto.min(self.next_offset);
        let mut out = SegmentRead {
            next: from,
            ..Default::default()
        };
        let mut pos = pos;
        let mut expected = frame_base;
        let chunk = chunk.max(FRAME_HEADER_LEN) as u64;
        let corrupt = |offset: u64| StorageError::Quarantined {
            offset,
            path: self.path.clone(),
        };
        while pos < self.end && expected < upto && out.records.len() < max_records {
            let want = chunk.min(self.end - pos);
            let mut buf = vec![0u8; want as usize];
            // The file may have been cut back since this reader was made (a heal cuts the
            // active segment to its last synced point, which is at or past every visible
            // record): a short read is fine, what it holds is checked frame by frame.
            let got = read_up_to(self.file.as_ref(), &mut buf, pos)
                .map_err(|e| StorageError::io(IoOp::Read, Path::new(&*self.path), &e))?;
            if got == 0 {
                break;
            }
            buf.truncate(got);
            // A frame longer than the chunk: read exactly it.
            if let Ok(h) = FrameHeader::decode(&buf) {
                if h.total_len() > want && pos + h.total_len() <= self.end {
                    buf = vec![0u8; h.total_len() as usize];
                    read_exact_at(self.file.as_ref(), &mut buf, pos)
                        .map_err(|e| StorageError::io(IoOp::Read, Path::new(&*self.path), &e))?;
                }
            }
            let buf = Bytes::from(buf);
            let mut it = format::frames(&buf);
            let mut progressed = false;
            for f in it.by_ref() {
                let f = match f {
                    Ok(f) => f,
                    // The chunk cut a frame in two: read again from its start.
                    Err((_, FrameError::Truncated { .. })) if progressed => break,
                    Err(_) => return done_or(out, corrupt(expected)),
                };
                if f.header.base_offset != expected {
                    return done_or(out, corrupt(expected));
                }
                progressed = true;
                expected = f.header.next_offset();
                for r in f.records() {
                    if r.offset < from {
                        continue;
                    }
                    if r.offset >= upto || out.records.len() >= max_records {
                        break;
                    }
                    let n = r.payload.len();
                    if !out.records.is_empty() && out.payload_bytes + n > max_bytes {
                        return Ok(out);
                    }
                    out.payload_bytes += n;
                    out.records.push((r.offset, buf.slice_ref(r.payload)));
                    out.next = r.offset + 1;
                }
                if expected >= upto || out.records.len() >= max_records {
                    return Ok(out);
                }
            }
            pos += it.position() as u64;
        }
        if expected < upto && out.records.len() < max_records {
            // The file ends before the records it must hold (a short or missing segment): said,
            // never an empty success a catch-up reader would wait on forever (review r1, 7).
            out.short_at = Some(expected);
        }
        Ok(out)
    }
}

/// Reads into `buf` at `pos` until it is full or the file ends; the bytes read.
fn read_up_to(file: &dyn FsFile, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn done_or(out: SegmentRead, err: StorageError) -> Result<SegmentRead, StorageError> {
    if out.records.is_empty() {
        Err(err)
    } else {
        Ok(out)
    }
}
