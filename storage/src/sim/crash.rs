//! What a restarted process finds after each kind of crash.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use super::state::{write_into, Inode, Node, Op, State, ROOT};
use super::{Crash, SimFs};

impl SimFs {
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
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}
