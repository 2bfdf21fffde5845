//! A simulated file system for tests: files in memory with what a process sees (the page cache)
//! apart from what survives power loss (synced), directory entries durable only after
//! `sync_dir`, crashes of several kinds, a disk quota (ENOSPC) and injected faults.
//!
//! Why not a tmpfs: a real file system cannot be made to lose exactly the unsynced pages, tear
//! a write at a chosen byte, or fail the third fsync with the pages dropped (fsyncgate), and
//! those are the cases recovery and the flusher exist for.
//!
//! Model: every file is an inode with `data` (what reads return) and `durable` (what is on the
//! platter) plus the list of writes and truncations since its last successful `sync_data`.
//! Directories are inodes too (so a renamed directory keeps its contents after a crash); each has
//! a durable copy of its entries, taken by `sync_dir`. Everything is behind one mutex: tests are
//! about semantics, not speed. Unlinked files stop counting against the quota at once (a real
//! file system frees them at the last close).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::fs::{Fs, FsFile, FsLock, OpenMode};

/// How the process (or the machine) went down; [`SimFs::crash`] returns what a restarted
/// process finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Crash {
    /// `kill -9`: every byte written to the kernel stays (the page cache outlives the process),
    /// every directory change stays; unsynced data is still unsynced (a later power loss of the
    /// returned file system can still lose it).
    ProcessKill,
    /// The machine loses power: per file, the synced bytes plus a seeded random prefix of the
    /// unsynced writes (in order, the last one possibly cut at any byte); directory entries as
    /// of each directory's last `sync_dir`.
    PowerLoss { seed: u64 },
    /// `kill -9` during a write: as `ProcessKill`, but the last write of one file (chosen by the
    /// seed among files whose last change is an unsynced write) is cut to a random prefix.
    /// Tests must count the records of that write as never acknowledged.
    TornWrite { seed: u64 },
    /// Power loss with pages written back out of order: each unsynced write survives or not
    /// independently, and a lost write past the end of the file may leave zeros (xfs). What
    /// recovery's `PowerLossTear` classification exists for.
    PowerLossReordered { seed: u64 },
}

/// The operation a [`FaultRule`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultOp {
    Open,
    Read,
    Write,
    SetLen,
    Sync,
    SyncDir,
    Rename,
}

/// An injected failure: the `nth` matching operation from now (1-based) fails with `errno`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub op: FaultOp,
    pub nth: u64,
    pub errno: i32,
    /// Only operations on paths containing this string count.
    pub path_contains: Option<String>,
    /// For `Sync`: the file's unsynced writes are dropped from writeback as Linux does after a
    /// failed fsync (reads still return them, a power loss loses them, and a later fsync
    /// succeeds without saving them: [`SimFs::fsyncgate_violations`] counts such fsyncs).
    pub drop_unsynced: bool,
    /// Every matching operation from the `nth` on fails (a disk that stays broken), until
    /// [`SimFs::clear_faults`].
    pub sticky: bool,
}

impl FaultRule {
    pub fn new(op: FaultOp, nth: u64, errno: i32) -> Self {
        FaultRule {
            op,
            nth: nth.max(1),
            errno,
            path_contains: None,
            drop_unsynced: false,
            sticky: false,
        }
    }

    /// The `nth` `sync_data` fails with `errno` and drops the unsynced pages (fsyncgate).
    pub fn sync(nth: u64, errno: i32) -> Self {
        FaultRule {
            drop_unsynced: true,
            ..FaultRule::new(FaultOp::Sync, nth, errno)
        }
    }

    pub fn write(nth: u64, errno: i32) -> Self {
        FaultRule::new(FaultOp::Write, nth, errno)
    }

    pub fn on_path(mut self, contains: &str) -> Self {
        self.path_contains = Some(contains.to_string());
        self
    }

    pub fn keep_unsynced(mut self) -> Self {
        self.drop_unsynced = false;
        self
    }

    pub fn sticky(mut self) -> Self {
        self.sticky = true;
        self
    }
}

/// Free bytes reported without a quota.
const UNLIMITED_FREE: u64 = 1 << 40;
const ROOT: u64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Op {
    fn apply(&self, v: &mut Vec<u8>) {
        match self {
            Op::Write { pos, bytes } => write_into(v, *pos, bytes),
            Op::SetLen(len) => v.resize(*len as usize, 0),
        }
    }
}

fn write_into(v: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let (pos, end) = (pos as usize, pos as usize + bytes.len());
    if v.len() < end {
        v.resize(end, 0);
    }
    v[pos..end].copy_from_slice(bytes);
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Changes since the last successful sync, in order.
    ops: Vec<Op>,
    /// Ranges dropped by a failed sync and not rewritten since.
    lost: Vec<(u64, u64)>,
    syncs: u64,
}

impl Inode {
    fn forget_lost(&mut self, from: u64, to: u64) {
        let mut kept = Vec::new();
        for &(a, b) in &self.lost {
            if a < from {
                kept.push((a, b.min(from)));
            }
            if b > to {
                kept.push((a.max(to), b));
            }
        }
        kept.retain(|(a, b)| a < b);
        self.lost = kept;
    }
}

#[derive(Debug, Default)]
struct State {
    dead: bool,
    next_id: u64,
    /// The namespace a process sees.
    live: BTreeMap<PathBuf, Node>,
    /// Per directory inode, its entries as of its last sync_dir.
    durable_dirs: HashMap<u64, BTreeMap<String, Node>>,
    files: HashMap<u64, Inode>,
    used: u64,
    quota: Option<u64>,
    faults: Vec<(FaultRule, u64)>,
    locks: HashSet<PathBuf>,
    violations: u64,
}

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

fn is_root(p: &Path) -> bool {
    p.parent().is_none() || p.as_os_str().is_empty()
}

impl State {
    fn check(&self) -> io::Result<()> {
        if self.dead {
            // The process that used this file system is gone; its threads must not touch the
            // state the restarted one sees.
            return Err(err(libc::EIO));
        }
        Ok(())
    }

    /// Counts `op` against the fault rules; the rule that fires, if any.
    fn fault(&mut self, op: FaultOp, path: &Path) -> Option<FaultRule> {
        let p = path.to_string_lossy();
        let mut fired = None;
        self.faults.retain_mut(|(rule, seen)| {
            let matches = rule.op == op
                && match rule.path_contains.as_deref() {
                    Some(c) => p.contains(c),
                    None => true,
                };
            if !matches || fired.is_some() {
                return true;
            }
            *seen += 1;
            if *seen >= rule.nth {
                fired = Some(rule.clone());
                return rule.sticky;
            }
            true
        });
        fired
    }

    fn node(&self, p: &Path) -> Option<Node> {
        if is_root(p) {
            return Some(Node::Dir(ROOT));
        }
        self.live.get(p).copied()
    }

    fn dir_exists(&self, p: &Path) -> bool {
        matches!(self.node(p), Some(Node::Dir(_)))
    }

    fn file(&self, p: &Path) -> io::Result<u64> {
        match self.node(p) {
            Some(Node::File(ino)) => Ok(ino),
            Some(Node::Dir(_)) => Err(err(libc::EISDIR)),
            None => Err(err(libc::ENOENT)),
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn children(&self, dir: &Path) -> BTreeMap<String, Node> {
        let start = self.live.range(dir.to_path_buf()..);
        let mut out = BTreeMap::new();
        for (p, n) in start {
            if p.as_path() == dir {
                continue;
            }
            if !p.starts_with(dir) && !is_root(dir) {
                break;
            }
            if p.parent() == Some(dir) {
                if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                    out.insert(name.to_string(), *n);
                }
            }
        }
        out
    }

    fn unlink(&mut self, p: &Path) {
        if let Some(Node::File(ino)) = self.live.remove(p) {
            if let Some(f) = self.files.get(&ino) {
                self.used -= f.data.len() as u64;
            }
        }
    }

    /// Growth of a file by `grow` bytes: how much of it the quota allows.
    fn room(&self, grow: u64) -> u64 {
        match self.quota {
            Some(q) => grow.min(q.saturating_sub(self.used)),
            None => grow,
        }
    }

    fn is_linked(&self, ino: u64) -> bool {
        self.live.values().any(|n| *n == Node::File(ino))
    }
}

/// The simulated file system. Cheap to share: clones see the same files.
#[derive(Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        write!(f, "SimFs({} entries, {} bytes)", s.live.len(), s.used)
    }
}

impl SimFs {
    pub fn new() -> Arc<Self> {
        Arc::new(SimFs::default())
    }

    /// Creates `path` and its parents with durable entries: the setup a test starts from ("the
    /// data directory exists").
    pub fn mkdir_durable(&self, path: &Path) -> io::Result<()> {
        self.create_dir_all(path)?;
        let mut dirs: Vec<&Path> = path.ancestors().collect();
        dirs.reverse();
        for d in dirs {
            self.sync_dir(d)?;
        }
        Ok(())
    }

    /// Bytes past which writes fail with ENOSPC (short first, then the error); `None`: none.
    pub fn set_quota(&self, bytes: Option<u64>) {
        self.state.lock().quota = bytes;
    }

    /// Bytes held by linked files (what the quota counts).
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used
    }

    pub fn fail(&self, rule: FaultRule) {
        self.state.lock().faults.push((rule, 0));
    }

    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Flips one bit of a file, in what reads return and on the platter (a disk fault). No-op
    /// past the end of the file.
    pub fn flip_bit(&self, path: &Path, bit: u64) {
        let mut s = self.state.lock();
        let Ok(ino) = s.file(path) else { return };
        let f = s.files.get_mut(&ino).expect("linked inode");
        let (i, m) = ((bit / 8) as usize, 1u8 << (bit % 8));
        for v in [&mut f.data, &mut f.durable] {
            if let Some(b) = v.get_mut(i) {
                *b ^= m;
            }
        }
    }

    /// What a read of the whole file returns now.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        let ino = s.file(path).ok()?;
        Some(s.files[&ino].data.clone())
    }

    /// Successful `sync_data` calls on the file now at `path`.
    pub fn sync_count(&self, path: &Path) -> u64 {
        let s = self.state.lock();
        s.file(path).map_or(0, |ino| s.files[&ino].syncs)
    }

    /// Successful fsyncs issued over data a failed fsync had dropped (never written again since):
    /// each is a "retried fsync" that Linux would report as success while the data is gone.
    pub fn fsyncgate_violations(&self) -> u64 {
        self.state.lock().violations
    }

    /// Whether every file's content is synced (nothing a power loss could take).
    pub fn all_synced(&self) -> bool {
        self.state.lock().files.values().all(|f| f.ops.is_empty())
    }

    /// The file system a restarted process finds after `how`. This one is dead from now on:
    /// every operation on it or its open files fails with EIO, so threads of the "killed"
    /// process cannot change what the new one sees.
    pub fn crash(&self, how: Crash) -> Arc<SimFs> {
        let mut s = self.state.lock();
        s.dead = true;
        let mut rng = Rng(match how {
            Crash::ProcessKill => 0,
            Crash::PowerLoss { seed }
            | Crash::TornWrite { seed }
            | Crash::PowerLossReordered { seed } => seed,
        });
        let mut n = State {
            next_id: s.next_id,
            quota: s.quota,
            violations: s.violations,
            ..State::default()
        };
        match how {
            Crash::ProcessKill | Crash::TornWrite { .. } => {
                n.live = s.live.clone();
                n.durable_dirs = s.durable_dirs.clone();
                // Unlinked inodes too: a later power loss may bring back an entry whose
                // removal was never synced.
                n.files = s.files.clone();
                if matches!(how, Crash::TornWrite { .. }) {
                    tear_one(&mut n, &mut rng);
                }
            }
            Crash::PowerLoss { .. } | Crash::PowerLossReordered { .. } => {
                let reorder = matches!(how, Crash::PowerLossReordered { .. });
                n.durable_dirs = s.durable_dirs.clone();
                let mut stack = vec![(PathBuf::from("/"), ROOT)];
                while let Some((dir, id)) = stack.pop() {
                    let Some(entries) = s.durable_dirs.get(&id) else {
                        continue;
                    };
                    for (name, node) in entries {
                        let p = dir.join(name);
                        match node {
                            Node::Dir(d) => stack.push((p.clone(), *d)),
                            Node::File(ino) => {
                                let data = match s.files.get(ino) {
                                    Some(f) if reorder => reordered(f, &mut rng),
                                    Some(f) => prefix(f, &mut rng),
                                    // Inodes are never forgotten; an empty file is the
                                    // safe answer should that change.
                                    None => Vec::new(),
                                };
                                n.files.insert(
                                    *ino,
                                    Inode {
                                        durable: data.clone(),
                                        data,
                                        ..Inode::default()
                                    },
                                );
                            }
                        }
                        n.live.insert(p, *node);
                    }
                }
            }
        }
        n.used = n
            .live
            .values()
            .filter_map(|node| match node {
                Node::File(ino) => Some(n.files[ino].data.len() as u64),
                Node::Dir(_) => None,
            })
            .sum();
        Arc::new(SimFs {
            state: Arc::new(Mutex::new(n)),
        })
    }
}

/// Power loss, in order: the durable content, then `k` of the unsynced changes, then maybe a
/// byte prefix of change `k`.
fn prefix(f: &Inode, rng: &mut Rng) -> Vec<u8> {
    let mut v = f.durable.clone();
    let k = rng.below(f.ops.len() as u64 + 1) as usize;
    for op in &f.ops[..k] {
        op.apply(&mut v);
    }
    if let Some(Op::Write { pos, bytes }) = f.ops.get(k) {
        if rng.below(2) == 1 {
            let cut = rng.below(bytes.len() as u64) as usize;
            write_into(&mut v, *pos, &bytes[..cut]);
        }
    }
    v
}

/// Power loss with pages written back in any order: each unsynced write kept or not.
fn reordered(f: &Inode, rng: &mut Rng) -> Vec<u8> {
    let mut v = f.durable.clone();
    for op in &f.ops {
        match op {
            Op::SetLen(_) => op.apply(&mut v),
            Op::Write { pos, bytes } => match rng.below(3) {
                0 => op.apply(&mut v),
                // The size reached the disk, the data did not: zeros (xfs).
                1 if pos + bytes.len() as u64 > v.len() as u64 => {
                    v.resize(*pos as usize + bytes.len(), 0)
                }
                _ => {}
            },
        }
    }
    v
}

/// Cuts the last (unsynced) write of one file to a random prefix.
fn tear_one(n: &mut State, rng: &mut Rng) {
    let mut candidates: Vec<u64> = n
        .files
        .iter()
        .filter(|(_, f)| matches!(f.ops.last(), Some(Op::Write { bytes, .. }) if !bytes.is_empty()))
        .map(|(ino, _)| *ino)
        .collect();
    candidates.sort_unstable();
    if candidates.is_empty() {
        return;
    }
    let ino = candidates[rng.below(candidates.len() as u64) as usize];
    let f = n.files.get_mut(&ino).expect("candidate");
    if let Some(Op::Write { bytes, .. }) = f.ops.last_mut() {
        let keep = rng.below(bytes.len() as u64) as usize;
        bytes.truncate(keep);
    }
    // What the process would have left: durable plus the changes, the last one cut. (Pages a
    // failed sync dropped are not in `ops`: a torn write after such a failure reads them back
    // as their durable content, a simplification no test relies on.)
    let mut v = f.durable.clone();
    for op in &f.ops {
        op.apply(&mut v);
    }
    f.data = v;
}

/// splitmix64: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

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
        self.fault(&mut s, FaultOp::Write)?;
        if !self.writable {
            return Err(err(libc::EBADF));
        }
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

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
