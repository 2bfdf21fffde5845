//! `felix-broker check --repair` (docs/storage.md 12): applies the fixes [`crate::check`]
//! planned for a log, never deleting user data.
//!
//! - Bytes cut from a segment (a torn tail, everything from a corrupt frame on, frames that
//!   overlap the next segment) are **copied to `lost+found/<log>/<segment>.<position>` and
//!   synced before** the segment is truncated; whole segments (after an unhealed fsync failure)
//!   are moved there. A person can inspect or re-publish them.
//! - A damaged segment header is saved to `lost+found/<log>/<segment>.header` and rewritten from
//!   the file name and the log's kind; the frames after it are then checked like any others.
//! - Indexes of segments that were cut or whose index was bad are rebuilt from the frames
//!   (written as `.tmp`, synced, renamed).
//! - Temporary files and orphan indexes are deleted (they hold no records); a bad checkpoint,
//!   or any checkpoint when bytes were cut (it may vouch for them), is removed (no checkpoint
//!   means "scan more", always safe; the broker writes a new one at open).
//! - When records that may have been visible were removed (anything but a torn partial frame),
//!   the log takes a **new epoch** (`log.state`), so readers that resume treat it as a new log
//!   (storage.md 5.2). The clean-shutdown flag is kept: the broker's reboot rule still applies.
//!
//! Afterwards `DurableLog::open` opens the log without quarantine, and a second check is clean.

use std::path::{Path, PathBuf};

use crate::check::{Fix, LogReport, RepairAction};
use crate::format::{SegmentFile, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::fs::{read_exact_at, write_all_at, Fs, OpenMode};
use crate::index::SegmentIndex;
use crate::recover::{new_epoch, read_state, write_state, LogState};
use crate::scan::{self, FileSource, ScanStart};

/// Bytes copied at a time to lost+found.
const COPY_CHUNK: usize = 1 << 20;

/// Applies `log.fixes` to the log in `dir`, saving removed bytes under `lost` (the log's
/// directory in lost+found). Returns what was done and the new epoch if one was taken. A step
/// that fails is listed as failed and the others go on; the check that follows says what is
/// left.
pub(crate) fn repair_log(
    fs: &dyn Fs,
    dir: &Path,
    lost: &Path,
    log: &LogReport,
    index_interval: u64,
) -> (Vec<RepairAction>, Option<u64>) {
    let mut r = Repair {
        fs,
        dir,
        lost,
        done: Vec::new(),
    };
    let mut bump = false;
    let mut reset_state = false;
    let mut remove_checkpoint = false;
    let mut rebuild: Vec<(u64, bool)> = Vec::new();
    let mut cuts: Vec<(u64, u64, bool)> = Vec::new();
    let ii = index_interval;
    for fix in &log.fixes {
        match fix {
            Fix::Remove(name) => {
                let res = fs.remove_file(&dir.join(name));
                r.note(name, "deleted (holds no records)", None, res.err());
            }
            Fix::MoveSegment { base } => {
                r.move_segment(*base);
                remove_checkpoint = true;
            }
            Fix::RewriteHeader { base, header } => r.rewrite_header(*base, header),
            Fix::Cut {
                base,
                position,
                bump: b,
            } => cuts.push((*base, *position, *b)),
            Fix::RebuildIndex { base, tix } => rebuild.push((*base, *tix)),
            Fix::RemoveCheckpoint => remove_checkpoint = true,
            Fix::ResetState { bump: b } => {
                reset_state = true;
                bump |= *b;
            }
        }
    }
    cuts.sort_unstable();
    for (base, position, b) in cuts {
        if r.cut(base, position) {
            bump |= b;
            remove_checkpoint = true;
            if !rebuild.iter().any(|x| x.0 == base) {
                let tix = fs
                    .open(&dir.join(SegmentFile::TimeIndex.name(base)), OpenMode::Read)
                    .is_ok();
                rebuild.push((base, tix));
            }
        }
    }
    for (base, tix) in rebuild {
        r.rebuild_index(base, tix, ii);
    }
    // A checkpoint may vouch for bytes a cut or a move took away; none is always safe (the
    // broker writes a fresh one when it opens the log).
    let cp = dir.join("checkpoint");
    if remove_checkpoint && fs.open(&cp, OpenMode::Read).is_ok() {
        let res = fs.remove_file(&cp).and_then(|()| fs.sync_dir(dir));
        r.note(
            "checkpoint",
            "deleted (recovery scans instead)",
            None,
            res.err(),
        );
    }
    let mut epoch_out = None;
    if bump || reset_state {
        let old = read_state(fs, dir);
        let epoch = match old {
            Some(s) if !bump => s.epoch,
            _ => new_epoch(old.map_or(0, |s| s.epoch)),
        };
        let st = LogState {
            epoch,
            clean: old.is_some_and(|s| s.clean),
            failed_at: None,
        };
        let res = write_state(fs, dir, &st).err();
        let what = if bump {
            format!("new epoch {epoch} (records that may have been read were removed)")
        } else {
            "rewritten".to_string()
        };
        if res.is_none() && bump {
            epoch_out = Some(epoch);
        }
        let err = res.map(|e| std::io::Error::other(e.to_string()));
        r.note("log.state", &what, None, err);
    }
    (r.done, epoch_out)
}

struct Repair<'a> {
    fs: &'a dyn Fs,
    dir: &'a Path,
    lost: &'a Path,
    done: Vec<RepairAction>,
}

impl Repair<'_> {
    fn note(
        &mut self,
        file: &str,
        action: &str,
        saved: Option<&Path>,
        err: Option<std::io::Error>,
    ) {
        let (action, saved_to) = match err {
            None => (action.to_string(), saved.map(|p| p.display().to_string())),
            Some(e) => (format!("FAILED to do \"{action}\": {e}"), None),
        };
        self.done.push(RepairAction {
            file: file.to_string(),
            action,
            saved_to,
        });
    }

    /// A fresh name in lost+found for `name` (suffix `.1`, `.2`... if taken), the directory
    /// created.
    fn lost_path(&self, name: &str) -> std::io::Result<PathBuf> {
        self.fs.create_dir_all(self.lost)?;
        let mut p = self.lost.join(name);
        let mut i = 0;
        while self.fs.open(&p, OpenMode::Read).is_ok() {
            i += 1;
            p = self.lost.join(format!("{name}.{i}"));
        }
        Ok(p)
    }

    /// Copies `[from, len)` of `src` into a new lost+found file and makes it durable.
    fn save(&self, src: &Path, from: u64, name: &str) -> std::io::Result<PathBuf> {
        let f = self.fs.open(src, OpenMode::Read)?;
        let len = f.len()?;
        let dst = self.lost_path(name)?;
        let out = self.fs.open(&dst, OpenMode::CreateNew)?;
        let mut buf = vec![0u8; COPY_CHUNK.min(len.saturating_sub(from) as usize)];
        let mut at = from;
        while at < len {
            let n = ((len - at) as usize).min(buf.len());
            read_exact_at(&*f, &mut buf[..n], at)?;
            write_all_at(&*out, &buf[..n], at - from)?;
            at += n as u64;
        }
        out.sync_data()?;
        self.sync_lost()?;
        Ok(dst)
    }

    fn sync_lost(&self) -> std::io::Result<()> {
        self.fs.sync_dir(self.lost)?;
        match self.lost.parent() {
            Some(p) => self.fs.sync_dir(p),
            None => Ok(()),
        }
    }

    fn move_segment(&mut self, base: u64) {
        for kind in [
            SegmentFile::Segment,
            SegmentFile::OffsetIndex,
            SegmentFile::TimeIndex,
        ] {
            let name = kind.name(base);
            let src = self.dir.join(&name);
            if self.fs.open(&src, OpenMode::Read).is_err() {
                continue;
            }
            let moved = self.lost_path(&name).and_then(|dst| {
                self.fs.rename(&src, &dst)?;
                self.sync_lost()?;
                self.fs.sync_dir(self.dir)?;
                Ok(dst)
            });
            match moved {
                Ok(dst) => self.note(&name, "moved out of the log", Some(&dst), None),
                Err(e) => self.note(&name, "move out of the log", None, Some(e)),
            }
        }
    }

    fn rewrite_header(&mut self, base: u64, header: &[u8; 64]) {
        let name = SegmentFile::Segment.name(base);
        let path = self.dir.join(&name);
        let res = self.save_header(&path, &name).and_then(|saved| {
            let f = self.fs.open(&path, OpenMode::ReadWrite)?;
            write_all_at(&*f, header, 0)?;
            f.sync_data()?;
            Ok(saved)
        });
        match res {
            Ok(saved) => self.note(
                &name,
                "header rewritten from the file name",
                Some(&saved),
                None,
            ),
            Err(e) => self.note(&name, "rewrite the header", None, Some(e)),
        }
    }

    fn save_header(&self, path: &Path, name: &str) -> std::io::Result<PathBuf> {
        let f = self.fs.open(path, OpenMode::Read)?;
        let n = f.len()?.min(SEGMENT_HEADER_LEN) as usize;
        let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
        read_exact_at(&*f, &mut b[..n], 0)?;
        let dst = self.lost_path(&format!("{name}.header"))?;
        let out = self.fs.open(&dst, OpenMode::CreateNew)?;
        write_all_at(&*out, &b[..n], 0)?;
        out.sync_data()?;
        self.sync_lost()?;
        Ok(dst)
    }

    /// Saves `[position, end)` of the segment to lost+found, then truncates it there. Returns
    /// whether anything was cut.
    fn cut(&mut self, base: u64, position: u64) -> bool {
        let name = SegmentFile::Segment.name(base);
        let path = self.dir.join(&name);
        let len = match self.fs.open(&path, OpenMode::Read).and_then(|f| f.len()) {
            Ok(l) => l,
            Err(_) => return false, // moved by an earlier step
        };
        if position >= len {
            return false;
        }
        let res = self
            .save(&path, position, &format!("{name}.{position}"))
            .and_then(|saved| {
                let f = self.fs.open(&path, OpenMode::ReadWrite)?;
                f.set_len(position)?;
                f.sync_data()?;
                Ok(saved)
            });
        let what = format!(
            "truncated at byte {position} ({} bytes moved)",
            len - position
        );
        match res {
            Ok(saved) => {
                self.note(&name, &what, Some(&saved), None);
                true
            }
            Err(e) => {
                self.note(&name, &what, None, Some(e));
                false
            }
        }
    }

    /// Rebuilds `.idx` (and `.tix` when `tix`) from the segment's valid frames.
    fn rebuild_index(&mut self, base: u64, tix: bool, interval: u64) {
        let seg = self.dir.join(SegmentFile::Segment.name(base));
        let Ok(f) = self.fs.open(&seg, OpenMode::Read) else {
            return; // moved by an earlier step
        };
        let mut hb = [0u8; SEGMENT_HEADER_LEN as usize];
        let compacted = read_exact_at(&*f, &mut hb, 0)
            .ok()
            .and_then(|()| SegmentHeader::decode(&hb).ok())
            .is_some_and(|h| h.compacted);
        let mut ix = SegmentIndex::new(base, interval);
        let scanned = FileSource::new(&*f).and_then(|src| {
            scan::scan(&src, ScanStart::segment(base, compacted), &mut |h, pos| {
                ix.on_frame(h, pos);
            })
        });
        if let Err(e) = scanned {
            self.note(
                &SegmentFile::OffsetIndex.name(base),
                "rebuild",
                None,
                Some(e),
            );
            return;
        }
        let mut files = vec![(SegmentFile::OffsetIndex, ix.offsets.encode())];
        if tix {
            files.push((SegmentFile::TimeIndex, ix.times.encode()));
        }
        for (kind, bytes) in files {
            let name = kind.name(base);
            let res = self.write_replace(&name, &bytes);
            self.note(&name, "rebuilt from the frames", None, res.err());
        }
    }

    /// Writes `name` whole: `.tmp`, fdatasync, rename, directory fsync.
    fn write_replace(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let _ = self.fs.remove_file(&tmp);
        let f = self.fs.open(&tmp, OpenMode::CreateNew)?;
        write_all_at(&*f, bytes, 0)?;
        f.sync_data()?;
        drop(f);
        self.fs.rename(&tmp, &self.dir.join(name))?;
        self.fs.sync_dir(self.dir)
    }
}
