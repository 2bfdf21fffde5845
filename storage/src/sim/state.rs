//! The simulated file system's state: inodes, the live and the durable namespace, faults.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use super::{FaultOp, FaultRule};

/// Free bytes reported without a quota.
pub(super) const UNLIMITED_FREE: u64 = 1 << 40;
pub(super) const ROOT: u64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Node {
    File(u64),
    Dir(u64),
}

#[derive(Debug, Clone)]
pub(super) enum Op {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Op {
    pub(super) fn apply(&self, v: &mut Vec<u8>) {
        match self {
            Op::Write { pos, bytes } => write_into(v, *pos, bytes),
            Op::SetLen(len) => v.resize(*len as usize, 0),
        }
    }
}

pub(super) fn write_into(v: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let (pos, end) = (pos as usize, pos as usize + bytes.len());
    if v.len() < end {
        v.resize(end, 0);
    }
    v[pos..end].copy_from_slice(bytes);
}

#[derive(Debug, Clone, Default)]
pub(super) struct Inode {
    pub(super) data: Vec<u8>,
    pub(super) durable: Vec<u8>,
    /// Changes since the last successful sync, in order.
    pub(super) ops: Vec<Op>,
    /// Ranges dropped by a failed sync and not rewritten since.
    pub(super) lost: Vec<(u64, u64)>,
    pub(super) syncs: u64,
}

impl Inode {
    pub(super) fn forget_lost(&mut self, from: u64, to: u64) {
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
pub(super) struct State {
    pub(super) dead: bool,
    pub(super) next_id: u64,
    /// The namespace a process sees.
    pub(super) live: BTreeMap<PathBuf, Node>,
    /// Per directory inode, its entries as of its last sync_dir.
    pub(super) durable_dirs: HashMap<u64, BTreeMap<String, Node>>,
    pub(super) files: HashMap<u64, Inode>,
    pub(super) used: u64,
    pub(super) quota: Option<u64>,
    pub(super) faults: Vec<(FaultRule, u64)>,
    pub(super) locks: HashSet<PathBuf>,
    pub(super) violations: u64,
}

pub(super) fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

pub(super) fn is_root(p: &Path) -> bool {
    p.parent().is_none() || p.as_os_str().is_empty()
}

impl State {
    pub(super) fn check(&self) -> io::Result<()> {
        if self.dead {
            // The process that used this file system is gone; its threads must not touch the
            // state the restarted one sees.
            return Err(err(libc::EIO));
        }
        Ok(())
    }

    /// Counts `op` against the fault rules; the rule that fires, if any.
    pub(super) fn fault(&mut self, op: FaultOp, path: &Path) -> Option<FaultRule> {
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
        if let Some(rule) = &fired {
            // A write that kills applies its prefix first (the caller marks the death).
            if rule.kill.is_some() && op != FaultOp::Write {
                self.dead = true;
            }
        }
        fired
    }

    pub(super) fn node(&self, p: &Path) -> Option<Node> {
        if is_root(p) {
            return Some(Node::Dir(ROOT));
        }
        self.live.get(p).copied()
    }

    pub(super) fn dir_exists(&self, p: &Path) -> bool {
        matches!(self.node(p), Some(Node::Dir(_)))
    }

    pub(super) fn file(&self, p: &Path) -> io::Result<u64> {
        match self.node(p) {
            Some(Node::File(ino)) => Ok(ino),
            Some(Node::Dir(_)) => Err(err(libc::EISDIR)),
            None => Err(err(libc::ENOENT)),
        }
    }

    pub(super) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn children(&self, dir: &Path) -> BTreeMap<String, Node> {
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

    pub(super) fn unlink(&mut self, p: &Path) {
        if let Some(Node::File(ino)) = self.live.remove(p) {
            if let Some(f) = self.files.get(&ino) {
                self.used -= f.data.len() as u64;
            }
        }
    }

    /// Growth of a file by `grow` bytes: how much of it the quota allows.
    pub(super) fn room(&self, grow: u64) -> u64 {
        match self.quota {
            Some(q) => grow.min(q.saturating_sub(self.used)),
            None => grow,
        }
    }

    pub(super) fn is_linked(&self, ino: u64) -> bool {
        self.live.values().any(|n| *n == Node::File(ino))
    }
}
