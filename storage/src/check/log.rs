//! Checking one log directory: every file, every frame. Plans the fixes `repair` would apply.

use std::collections::BTreeSet;
use std::path::Path;

use super::{CheckOptions, Finding, Fix, LogReport, Problem, Severity};
use crate::checkpoint::{self, Checkpoint};
use crate::format::{HeaderError, LogKind, SegmentFile, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::fs::{Fs, OpenMode};
use crate::recover::read_state;
use crate::scan::{self, classify, FileSource, ScanOutcome, ScanStart};

use super::walk::{parse_idx, parse_tix, read_small, Walk};

/// The log's state file (`recover_state.rs`).
pub(crate) const STATE_FILE: &str = "log.state";
/// The log's checkpoint file (storage.md 3.4).
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";

/// A file that makes its directory a log.
pub(crate) fn is_log_file(n: &str) -> bool {
    SegmentFile::parse(n).is_some() || n == STATE_FILE || n == CHECKPOINT_FILE
}

/// A file check knows (everything else in a log directory is listed as stray).
pub(crate) fn is_known_file(n: &str) -> bool {
    is_log_file(n)
        || [".meta", ".snap", ".tmp", ".cleaned", ".swap"]
            .iter()
            .any(|s| n.ends_with(s))
        || [super::LOCK_FILE, "felix-data.json", "run.json"].contains(&n)
}

/// Checks the log in `dir` (its `path` is left for the caller to set). Never writes. Usable on
/// a lone log directory; [`super::run`] is the entry point for a data directory (lock, walk,
/// repair).
pub fn check_log_dir(fs: &dyn Fs, dir: &Path, _opts: &CheckOptions) -> LogReport {
    let mut r = LogReport::default();
    let names = match fs.list_dir(dir) {
        Ok(mut n) => {
            n.sort();
            n
        }
        Err(e) => {
            r.finding(
                Problem::Unreadable,
                Severity::Unrepairable,
                ".",
                format!("cannot list: {e}"),
            );
            return r;
        }
    };
    let (mut bases, mut idx, mut tix) = (Vec::new(), BTreeSet::new(), BTreeSet::new());
    let (mut has_state, mut has_cp) = (false, false);
    for n in &names {
        match SegmentFile::parse(n) {
            Some((b, SegmentFile::Segment)) => bases.push(b),
            Some((b, SegmentFile::OffsetIndex)) => {
                idx.insert(b);
            }
            Some((b, SegmentFile::TimeIndex)) => {
                tix.insert(b);
            }
            None if n == STATE_FILE => has_state = true,
            None if n == CHECKPOINT_FILE => has_cp = true,
            None if n.ends_with(".tmp") => {
                r.finding(
                    Problem::Leftover,
                    Severity::Repairable,
                    n,
                    "temporary file of an interrupted write".into(),
                );
                r.fixes.push(Fix::Remove(n.clone()));
            }
            None if n.ends_with(".cleaned") || n.ends_with(".swap") => {
                r.finding(
                    Problem::Leftover,
                    Severity::Info,
                    n,
                    "compaction output; the broker completes or removes it at start".into(),
                );
            }
            None if is_known_file(n) => {}
            None if fs.list_dir(&dir.join(n)).is_ok() => {} // a sub-log (a group's journal)
            None => r.finding(
                Problem::Stray,
                Severity::Info,
                n,
                "not a file of a log".into(),
            ),
        }
    }
    for (set, kind) in [
        (&idx, SegmentFile::OffsetIndex),
        (&tix, SegmentFile::TimeIndex),
    ] {
        for &b in set.iter().filter(|b| bases.binary_search(b).is_err()) {
            let n = kind.name(b);
            r.finding(
                Problem::OrphanIndex,
                Severity::Repairable,
                &n,
                "index without its segment".into(),
            );
            r.fixes.push(Fix::Remove(n));
        }
    }

    let state = read_state(fs, dir);
    match state {
        Some(s) => {
            r.epoch = Some(s.epoch);
            r.clean_shutdown = s.clean;
            if let Some((b, pos, next)) = s.failed_at {
                let f = Finding {
                    problem: Problem::UnhealedFsyncFailure,
                    severity: Severity::Repairable,
                    file: SegmentFile::Segment.name(b),
                    position: Some(pos),
                    offsets: Some(next..u64::MAX),
                    detail: "an fsync failed and the log did not heal: bytes after the last durable point are not trusted".into(),
                };
                r.findings.push(f);
                for &later in bases.iter().filter(|&&x| x > b) {
                    r.fixes.push(Fix::MoveSegment { base: later });
                }
                r.fixes.push(Fix::Cut {
                    base: b,
                    position: pos,
                    bump: true,
                });
                r.fixes.push(Fix::ResetState { bump: true });
            }
        }
        None if has_state || !bases.is_empty() => {
            r.finding(
                Problem::BadState,
                Severity::Repairable,
                STATE_FILE,
                "missing or damaged: the log's epoch is unknown (repair gives it a new one)".into(),
            );
            r.fixes.push(Fix::ResetState { bump: true });
        }
        None => {}
    }

    let cp = if has_cp {
        load_checkpoint(fs, dir, &mut r)
    } else {
        None
    };
    if let Some(c) = cp {
        // Below the oldest segment is fine: retention deleted the segment a seal's
        // checkpoint named.
        let above_first = bases.first().is_some_and(|&f| c.segment_base > f);
        if above_first && bases.binary_search(&c.segment_base).is_err() {
            r.bad_checkpoint(format!(
                "points into segment {} which does not exist",
                c.segment_base
            ));
        }
    }

    let mut prev_end: Option<u64> = None;
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let cp_pos = match cp {
            _ if next_base.is_some() => u64::MAX, // sealed: all of it was durable
            // Closed cleanly: the last segment was fsynced whole at close, so damage in it is
            // damage to durable data, whatever the hints of the frames after it say.
            _ if state.is_some_and(|s| s.clean && s.failed_at.is_none()) => u64::MAX,
            Some(c) if c.segment_base == base => c.position,
            Some(c) if c.segment_base > base => u64::MAX,
            _ => 0,
        };
        let seg = SegCtx {
            base,
            next_base,
            cp_pos,
            cp: cp.filter(|c| c.segment_base == base),
        };
        let end = check_segment(fs, dir, &seg, &idx, &tix, state.map(|s| s.epoch), &mut r);
        if i == 0 {
            r.first_offset = base;
        }
        if let (Some(pe), Some(_)) = (prev_end, end) {
            if base > pe {
                let f = Finding {
                    problem: Problem::Gap,
                    severity: Severity::Info,
                    file: SegmentFile::Segment.name(base),
                    position: None,
                    offsets: Some(pe..base),
                    detail: "offsets missing between segments (readers see a gap)".into(),
                };
                r.findings.push(f);
            }
        }
        // The offsets after damage are that damage's finding, not a gap of their own.
        let cut = |f: &Fix| matches!(f, Fix::Cut { base: b, .. } if *b == base);
        prev_end = end.filter(|_| !r.fixes.iter().any(cut));
        if let Some(e) = end {
            r.next_offset = e;
        }
    }
    r
}

struct SegCtx {
    base: u64,
    next_base: Option<u64>,
    /// What the checkpoint vouches for in this segment (see `scan::classify`).
    cp_pos: u64,
    cp: Option<Checkpoint>,
}

fn load_checkpoint(fs: &dyn Fs, dir: &Path, r: &mut LogReport) -> Option<Checkpoint> {
    let got = fs
        .open(&dir.join(CHECKPOINT_FILE), OpenMode::Read)
        .and_then(|f| checkpoint::load(&*f));
    match got {
        Ok(Some(c)) => Some(c),
        Ok(None) => {
            r.bad_checkpoint("no valid slot".into());
            None
        }
        Err(e) => {
            r.finding(
                Problem::Unreadable,
                Severity::Unrepairable,
                CHECKPOINT_FILE,
                e.to_string(),
            );
            None
        }
    }
}

/// Checks one segment; returns the offset after its last valid frame (`None` if it could not
/// be read or its format is unknown).
fn check_segment(
    fs: &dyn Fs,
    dir: &Path,
    s: &SegCtx,
    idx: &BTreeSet<u64>,
    tix: &BTreeSet<u64>,
    epoch: Option<u64>,
    r: &mut LogReport,
) -> Option<u64> {
    let base = s.base;
    let name = SegmentFile::Segment.name(base);
    let opened = fs
        .open(&dir.join(&name), OpenMode::Read)
        .and_then(|f| Ok((f.len()?, f)));
    let (len, f) = match opened {
        Ok(x) => x,
        Err(e) => {
            r.finding(
                Problem::Unreadable,
                Severity::Unrepairable,
                &name,
                e.to_string(),
            );
            return None;
        }
    };
    r.segments += 1;
    r.bytes += len;
    let mut hb = [0u8; SEGMENT_HEADER_LEN as usize];
    let have = len.min(SEGMENT_HEADER_LEN) as usize;
    if let Err(e) = crate::fs::read_exact_at(&*f, &mut hb[..have], 0) {
        r.finding(
            Problem::Unreadable,
            Severity::Unrepairable,
            &name,
            e.to_string(),
        );
        return None;
    }
    let compacted = match SegmentHeader::decode(&hb[..have]) {
        Ok(h) if h.base_offset != base => {
            r.finding(
                Problem::UnknownFormat,
                Severity::Unrepairable,
                &name,
                format!("header names base offset {}", h.base_offset),
            );
            return None;
        }
        Ok(h) => {
            match r.kind {
                None => r.kind = Some(h.kind),
                Some(k) if k != h.kind => {
                    r.finding(
                        Problem::UnknownFormat,
                        Severity::Unrepairable,
                        &name,
                        format!("segment of kind {:?} in a log of kind {k:?}", h.kind),
                    );
                    return None;
                }
                Some(_) => {}
            }
            h.compacted
        }
        Err(e @ (HeaderError::UnknownVersion(_) | HeaderError::UnknownKind(_))) => {
            r.finding(
                Problem::UnknownFormat,
                Severity::Unrepairable,
                &name,
                e.to_string(),
            );
            return None;
        }
        Err(e) if s.next_base.is_none() && len <= SEGMENT_HEADER_LEN => {
            // A segment whose creation a crash interrupted (the broker removes it at open).
            r.finding(
                Problem::BadHeader,
                Severity::Repairable,
                &name,
                format!("{e}; half-created last segment, holds no frame"),
            );
            r.fixes.push(Fix::MoveSegment { base });
            return Some(base);
        }
        Err(e) => {
            r.finding(
                Problem::BadHeader,
                Severity::Repairable,
                &name,
                format!("{e}; repair writes a header rebuilt from the file name"),
            );
            let h = SegmentHeader {
                kind: r.kind.unwrap_or(LogKind::Stream),
                compacted: false,
                base_offset: base,
                epoch: epoch.unwrap_or(0),
                created_unix_ms: 0,
            };
            r.fixes.push(Fix::RewriteHeader {
                base,
                header: h.encode(),
            });
            false
        }
    };
    if len < SEGMENT_HEADER_LEN {
        return Some(base);
    }
    let mut w = Walk {
        records: 0,
        idx: Vec::new(),
        ii: 0,
        idx_bad: None,
        tix: Vec::new(),
        ti: 0,
        tix_bad: None,
        next_base: s.next_base,
        overlap_at: None,
        cp: s.cp,
        cp_seen: false,
    };
    let idx_name = SegmentFile::OffsetIndex.name(base);
    let tix_name = SegmentFile::TimeIndex.name(base);
    if idx.contains(&base) {
        match read_small(fs, &dir.join(&idx_name), len) {
            Ok(b) => w.idx_bad = parse_idx(base, &b, &mut w.idx),
            Err(e) => w.idx_bad = Some(e),
        }
    }
    if tix.contains(&base) {
        match read_small(fs, &dir.join(&tix_name), len) {
            Ok(b) => w.tix_bad = parse_tix(base, &b, &mut w.tix),
            Err(e) => w.tix_bad = Some(e),
        }
    }
    let scanned = FileSource::new(&*f).and_then(|src| {
        let start = ScanStart::segment(base, compacted);
        scan::scan(&src, start, &mut |h, pos| w.frame(h, pos))
    });
    let (outcome, end) = match scanned {
        Ok(x) => x,
        Err(e) => {
            r.finding(
                Problem::Unreadable,
                Severity::Unrepairable,
                &name,
                e.to_string(),
            );
            return None;
        }
    };
    r.records += w.records;
    let mut rebuild = false;
    if let ScanOutcome::Damaged(d) = &outcome {
        let (problem, bump) = match classify(&outcome, s.cp_pos) {
            Some(scan::Damage::Torn) => (Problem::TornTail, false),
            Some(scan::Damage::PowerLossTear) => (Problem::PowerLossTear, true),
            _ => (Problem::CorruptFrame, true),
        };
        let later = match (d.later.first(), d.later.last()) {
            (Some(a), Some(b)) => format!(
                "; {} valid frame(s) after it (offsets {}..={} and on) go to lost+found",
                d.later_count, a.base_offset, b.base_offset
            ),
            _ => String::new(),
        };
        let cut = len - d.at;
        r.findings.push(Finding {
            problem,
            severity: Severity::Repairable,
            file: name.clone(),
            position: Some(d.at),
            offsets: Some(d.expected..s.next_base.unwrap_or(u64::MAX)),
            detail: format!("{} ({cut} bytes from here){later}", d.error),
        });
        r.fixes.push(Fix::Cut {
            base,
            position: d.at,
            bump,
        });
        rebuild = true;
    }
    if let Some((pos, off)) = w.overlap_at {
        let nb = s.next_base.unwrap_or(u64::MAX);
        r.findings.push(Finding {
            problem: Problem::Overlap,
            severity: Severity::Repairable,
            file: name.clone(),
            position: Some(pos),
            offsets: Some(off..end.next_offset),
            detail: format!("frames reach past the next segment's base {nb}"),
        });
        r.fixes.push(Fix::Cut {
            base,
            position: pos,
            bump: true,
        });
        rebuild = true;
    }
    if w.ii < w.idx.len() {
        let (o, p) = w.idx[w.ii];
        w.idx_bad.get_or_insert(format!(
            "entry (offset {o}, position {p}) is past the last valid frame"
        ));
    }
    if w.ti < w.tix.len() {
        let (t, o) = w.tix[w.ti];
        w.tix_bad.get_or_insert(format!(
            "entry (time {t}, offset {o}) is past the last valid frame"
        ));
    }
    if let Some(d) = w.idx_bad.take() {
        r.finding(Problem::BadIndex, Severity::Repairable, &idx_name, d);
        rebuild = true;
    }
    if let Some(d) = w.tix_bad.take() {
        r.finding(Problem::BadTimeIndex, Severity::Repairable, &tix_name, d);
        rebuild = true;
    }
    if !idx.contains(&base) {
        r.finding(
            Problem::MissingIndex,
            Severity::Repairable,
            &idx_name,
            "segment without its offset index".into(),
        );
        rebuild = true;
    }
    if rebuild {
        r.fixes.push(Fix::RebuildIndex {
            base,
            tix: tix.contains(&base),
        });
    }
    if let Some(c) = s.cp {
        let at_start = c.position == SEGMENT_HEADER_LEN && c.next_offset == base;
        if !(w.cp_seen || at_start) {
            r.bad_checkpoint(format!(
                "position {} (next offset {}) is not a frame boundary of {name}",
                c.position, c.next_offset
            ));
        }
    }
    Some(end.next_offset)
}

impl LogReport {
    fn finding(&mut self, problem: Problem, severity: Severity, file: &str, detail: String) {
        self.findings.push(Finding {
            problem,
            severity,
            file: file.to_string(),
            position: None,
            offsets: None,
            detail,
        });
    }

    fn bad_checkpoint(&mut self, detail: String) {
        if !self.fixes.contains(&Fix::RemoveCheckpoint) {
            self.finding(
                Problem::BadCheckpoint,
                Severity::Repairable,
                CHECKPOINT_FILE,
                detail,
            );
            self.fixes.push(Fix::RemoveCheckpoint);
        }
    }
}
