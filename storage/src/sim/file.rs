//! Open files, locks and the [`Fs`] implementation of [`SimFs`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::crash::Rng;
use super::state::{err, is_root, write_into, Inode, Node, Op, State, UNLIMITED_FREE};
use super::{FaultOp, FaultRule, SimFs};
use crate::fs::{Fs, FsFile, FsLock, OpenMode};

struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    path: PathBuf,
    writable: bool,
}

impl SimFile {
    fn fault(&self, s: &mut State, op: FaultOp) -> io::Result<Option<FaultRule>> {
        s.check()?;
        match s.fault(op, &self.path) {
            Some(rule) if op != FaultOp::Sync => Err(err(rule.errno)),
            other => Ok(other),
        }
    }
}

impl SimFile {
    /// A write with the state locked: quota (short write, then ENOSPC), page cache, writeback
    /// list.
    fn write_locked(&self, s: &mut State, buf: &[u8], pos: u64) -> io::Result<usize> {
        let len = s.files[&self.ino].data.len() as u64;
        let grow = (pos + buf.len() as u64).saturating_sub(len);
        let linked = s.is_linked(self.ino);
        let room = if linked { s.room(grow) } else { grow };
        // Like a real file system: a short write up to the quota, ENOSPC once nothing fits.
        let n = if room < grow {
            (len + room).saturating_sub(pos).min(buf.len() as u64) as usize
        } else {
            buf.len()
        };
        if n == 0 && !buf.is_empty() {
            return Err(err(libc::ENOSPC));
        }
        let f = s.files.get_mut(&self.ino).expect("open inode");
        write_into(&mut f.data, pos, &buf[..n]);
        f.ops.push(Op::Write {
            pos,
            bytes: buf[..n].to_vec(),
        });
        f.forget_lost(pos, pos + n as u64);
        let grown = f.data.len() as u64 - len;
        if linked {
            s.used += grown;
        }
        Ok(n)
    }
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let mut s = self.state.lock();
        self.fault(&mut s, FaultOp::Read)?;
        let data = &s.files[&self.ino].data;
        let start = (pos as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        let mut s = self.state.lock();
        s.check()?;
        if let Some(rule) = s.fault(FaultOp::Write, &self.path) {
            if let (Some(seed), true) = (rule.kill, self.writable) {
                // Killed inside the write: some prefix reached the page cache.
                let keep = Rng(seed).below(buf.len() as u64 + 1) as usize;
                let _ = self.write_locked(&mut s, &buf[..keep], pos);
                s.dead = true;
            }
            return Err(err(rule.errno));
        }
        if !self.writable {
            return Err(err(libc::EBADF));
        }
        self.write_locked(&mut s, buf, pos)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        let fired = self.fault(&mut s, FaultOp::Sync)?;
        let f = s.files.get_mut(&self.ino).expect("open inode");
        if let Some(rule) = fired {
            if rule.drop_unsynced {
                for op in f.ops.drain(..) {
                    if let Op::Write { pos, bytes } = op {
                        f.lost.push((pos, pos + bytes.len() as u64));
                    }
                }
            }
            return Err(err(rule.errno));
        }
        let violation = !f.lost.is_empty();
        for op in std::mem::take(&mut f.ops) {
            op.apply(&mut f.durable);
        }
        f.syncs += 1;
        if violation {
            s.violations += 1;
        }
        Ok(())
    }

    fn drop_cache(&self) -> io::Result<()> {
        // Pages a failed fsync dropped from writeback are evicted: reads return what is on
        // the platter (zeros past its end), as after POSIX_FADV_DONTNEED on clean pages.
        let mut s = self.state.lock();
        s.check()?;
        let f = s.files.get_mut(&self.ino).expect("open inode");
        for (a, b) in std::mem::take(&mut f.lost) {
            for i in a..b.min(f.data.len() as u64) {
                f.data[i as usize] = f.durable.get(i as usize).copied().unwrap_or(0);
            }
        }
        Ok(())
    }

    fn set_len(&self, new_len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        self.fault(&mut s, FaultOp::SetLen)?;
        if !self.writable {
            return Err(err(libc::EINVAL));
        }
        let len = s.files[&self.ino].data.len() as u64;
        let linked = s.is_linked(self.ino);
        if linked && new_len > len && s.room(new_len - len) < new_len - len {
            return Err(err(libc::ENOSPC));
        }
        let f = s.files.get_mut(&self.ino).expect("open inode");
        Op::SetLen(new_len).apply(&mut f.data);
        f.ops.push(Op::SetLen(new_len));
        f.forget_lost(new_len, u64::MAX);
        if linked {
            s.used = s.used + new_len - len;
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.state.lock();
        s.check()?;
        Ok(s.files[&self.ino].data.len() as u64)
    }
}

struct SimLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

impl FsLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.path);
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>> {
        let mut s = self.state.lock();
        s.check()?;
        if let Some(rule) = s.fault(FaultOp::Open, path) {
            return Err(err(rule.errno));
        }
        let ino = match mode {
            OpenMode::Read | OpenMode::ReadWrite => s.file(path)?,
            OpenMode::CreateNew => {
                if s.node(path).is_some() {
                    return Err(err(libc::EEXIST));
                }
                if !path.parent().is_some_and(|p| s.dir_exists(p)) {
                    return Err(err(libc::ENOENT));
                }
                let ino = s.new_id();
                s.files.insert(ino, Inode::default());
                s.live.insert(path.to_path_buf(), Node::File(ino));
                ino
            }
        };
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            ino,
            path: path.to_path_buf(),
            writable: mode != OpenMode::Read,
        }))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.state.lock();
        s.check()?;
        match s.node(path) {
            Some(Node::Dir(_)) => Ok(s.children(path).into_keys().collect()),
            Some(Node::File(_)) => Err(err(libc::ENOTDIR)),
            None => Err(err(libc::ENOENT)),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check()?;
        let mut dirs: Vec<&Path> = path.ancestors().filter(|p| !is_root(p)).collect();
        dirs.reverse();
        for d in dirs {
            match s.node(d) {
                Some(Node::Dir(_)) => {}
                Some(Node::File(_)) => return Err(err(libc::ENOTDIR)),
                None => {
                    let id = s.new_id();
                    s.live.insert(d.to_path_buf(), Node::Dir(id));
                }
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check()?;
        if let Some(rule) = s.fault(FaultOp::Rename, from) {
            return Err(err(rule.errno));
        }
        let node = s.node(from).ok_or_else(|| err(libc::ENOENT))?;
        if !to.parent().is_some_and(|p| s.dir_exists(p)) {
            return Err(err(libc::ENOENT));
        }
        match (node, s.node(to)) {
            (Node::File(_), Some(Node::Dir(_))) => return Err(err(libc::EISDIR)),
            (Node::Dir(_), Some(Node::File(_))) => return Err(err(libc::ENOTDIR)),
            (Node::Dir(_), Some(Node::Dir(_))) if !s.children(to).is_empty() => {
                return Err(err(libc::ENOTEMPTY))
            }
            (_, Some(Node::File(_))) => s.unlink(to),
            _ => {}
        }
        let moved: Vec<(PathBuf, Node)> = s
            .live
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        for (p, n) in moved {
            s.live.remove(&p);
            let rel = p.strip_prefix(from).expect("prefix");
            let dest = if rel.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rel)
            };
            s.live.insert(dest, n);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check()?;
        if let Some(rule) = s.fault(FaultOp::Remove, path) {
            return Err(err(rule.errno));
        }
        s.file(path)?;
        s.unlink(path);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check()?;
        if !s.dir_exists(path) || is_root(path) {
            return Err(err(libc::ENOENT));
        }
        let doomed: Vec<PathBuf> = s
            .live
            .keys()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect();
        for p in doomed {
            s.unlink(&p);
            s.live.remove(&p);
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check()?;
        if let Some(rule) = s.fault(FaultOp::SyncDir, path) {
            return Err(err(rule.errno));
        }
        let Some(Node::Dir(id)) = s.node(path) else {
            return Err(err(libc::ENOENT));
        };
        let entries = s.children(path);
        s.durable_dirs.insert(id, entries);
        Ok(())
    }

    fn free_bytes(&self, _path: &Path) -> io::Result<u64> {
        let s = self.state.lock();
        s.check()?;
        Ok(s.quota.map_or(UNLIMITED_FREE, |q| q.saturating_sub(s.used)))
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn FsLock>> {
        if self.state.lock().node(path).is_none() {
            self.open(path, OpenMode::CreateNew)?;
        }
        let mut s = self.state.lock();
        s.check()?;
        s.file(path)?;
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(SimLock {
            state: self.state.clone(),
            path: path.to_path_buf(),
        }))
    }
}
