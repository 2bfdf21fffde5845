//! Where the control plane keeps its state: a small key/value store of JSON documents behind
//! the [`Store`] trait.
//!
//! The trait has the shape of etcd's API on purpose, so that a later etcd backend (high
//! availability) slots in without touching the API layer: one global `revision` that every
//! committed change increments, per-key `create_revision` / `mod_revision`, a single mutation
//! primitive ([`Store::txn`]: compare, then apply all operations or none), prefix listing, and a
//! watch channel that carries the latest revision. The default backend is [`FileStore`]
//! (embedded, durable on local disk, or in memory for dev).

mod file;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use file::FileStore;

/// One stored value with its revisions. `Debug` redacts documents holding private keys.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned {
    /// The document.
    pub value: Value,
    /// Revision of the transaction that created the key.
    pub create_revision: u64,
    /// Revision of the transaction that last changed the key.
    pub mod_revision: u64,
}

/// A condition of a transaction, checked atomically with its operations.
#[derive(Debug, Clone, PartialEq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists.
    Present(String),
    /// The key exists and was last changed at exactly this revision (compare-and-set).
    ModRevision(String, u64),
    /// No key starts with the prefix (etcd: a range compare), e.g. "no children left".
    PrefixEmpty(String),
}

/// One change of a transaction. `Debug` redacts documents holding private keys.
#[derive(Clone, PartialEq)]
pub enum Op {
    /// Create or replace a key.
    Put(String, Value),
    /// Remove a key (no-op if absent).
    Delete(String),
    /// Remove every key that starts with the prefix.
    DeletePrefix(String),
}

/// Compare, then apply every operation or none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Txn {
    /// All must hold for the operations to apply.
    pub compare: Vec<Compare>,
    /// Applied in order, atomically, as one revision.
    pub ops: Vec<Op>,
}

impl Txn {
    /// A transaction without conditions.
    pub fn ops(ops: Vec<Op>) -> Self {
        Txn {
            compare: Vec::new(),
            ops,
        }
    }
}

/// What a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied; the store is now at this revision.
    Committed(u64),
    /// A condition did not hold; nothing changed (the store's current revision).
    Failed(u64),
}

impl TxnOutcome {
    /// Whether the operations were applied.
    pub fn committed(self) -> bool {
        matches!(self, TxnOutcome::Committed(_))
    }
}

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing the backing files failed.
    #[error("store I/O on {path}: {source}")]
    Io {
        /// File or directory concerned.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The backing state could not be decoded.
    #[error("store state {path} is unreadable: {reason}")]
    Corrupt {
        /// File concerned.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The data directory is unsafe to keep secrets in.
    #[error("{0}")]
    Unsafe(String),
    /// A commit's outcome is unknown (it may have taken effect): the store refuses further
    /// writes until the process restarts and reloads it.
    #[error("store unusable: {0}")]
    Poisoned(String),
}

/// What the store's calls return: boxed so that `dyn Store` works and a networked backend
/// (etcd) can await its round trips.
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The control plane's state store. Implementations are linearizable: a read after a
/// committed transaction sees it.
pub trait Store: Send + Sync + 'static {
    /// One key.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>>;
    /// Every key starting with `prefix`, in key order, with the revision they were read at.
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (u64, Vec<(String, Versioned)>)>;
    /// Compare, then apply all operations or none. Resolves once the change is durable.
    fn txn(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome>;
    /// The latest revision this process knows (0 for an empty, never-written store).
    fn revision(&self) -> u64;
    /// A channel whose value is the latest committed revision: watchers wake on every change.
    fn watch(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Prints a document, or `<redacted>` if it holds private key material (signing keys).
struct Redacted<'a>(&'a Value);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = self
            .0
            .as_object()
            .is_some_and(|o| o.keys().any(|k| k.contains("private")));
        if secret {
            f.write_str("<redacted>")
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

impl std::fmt::Debug for Versioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Versioned")
            .field("value", &Redacted(&self.value))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Put(k, v) => f.debug_tuple("Put").field(k).field(&Redacted(v)).finish(),
            Op::Delete(k) => f.debug_tuple("Delete").field(k).finish(),
            Op::DeletePrefix(p) => f.debug_tuple("DeletePrefix").field(p).finish(),
        }
    }
}

/// The whole keyspace at one revision (what [`FileStore`] persists). `Debug` goes through
/// [`Versioned`]'s, so private keys are redacted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    pub format: u32,
    pub revision: u64,
    pub entries: BTreeMap<String, Versioned>,
}

impl State {
    pub(crate) fn list(&self, prefix: &str) -> Vec<(String, Versioned)> {
        self.entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn holds(&self, c: &Compare) -> bool {
        match c {
            Compare::Absent(k) => !self.entries.contains_key(k),
            Compare::Present(k) => self.entries.contains_key(k),
            Compare::ModRevision(k, r) => self.entries.get(k).is_some_and(|v| v.mod_revision == *r),
            Compare::PrefixEmpty(p) => self
                .entries
                .range(p.clone()..)
                .next()
                .is_none_or(|(k, _)| !k.starts_with(p.as_str())),
        }
    }

    /// The state after `txn`, or None when a condition fails. Pure: the caller persists the
    /// result before making it visible.
    pub(crate) fn apply(&self, txn: &Txn) -> Option<State> {
        if !txn.compare.iter().all(|c| self.holds(c)) {
            return None;
        }
        let mut next = self.clone();
        let rev = self.revision + 1;
        next.revision = rev;
        for op in &txn.ops {
            match op {
                Op::Put(k, v) => {
                    let create_revision = next.entries.get(k).map_or(rev, |e| e.create_revision);
                    next.entries.insert(
                        k.clone(),
                        Versioned {
                            value: v.clone(),
                            create_revision,
                            mod_revision: rev,
                        },
                    );
                }
                Op::Delete(k) => {
                    next.entries.remove(k);
                }
                Op::DeletePrefix(p) => {
                    next.entries.retain(|k, _| !k.starts_with(p.as_str()));
                }
            }
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_compare_changes_nothing_and_a_commit_bumps_the_revision_once() {
        let s = State::default();
        let put = Txn {
            compare: vec![Compare::Absent("a".into())],
            ops: vec![Op::Put("a".into(), json!(1)), Op::Put("b".into(), json!(2))],
        };
        let s1 = s.apply(&put).unwrap();
        assert_eq!(s1.revision, 1);
        assert_eq!(s1.entries["a"].mod_revision, 1);
        assert!(s1.apply(&put).is_none(), "a is present now");
        let cas = Txn {
            compare: vec![Compare::ModRevision("a".into(), 1)],
            ops: vec![Op::Put("a".into(), json!(3))],
        };
        let s2 = s1.apply(&cas).unwrap();
        assert_eq!(s2.entries["a"].create_revision, 1);
        assert_eq!(s2.entries["a"].mod_revision, 2);
        assert!(s2.apply(&cas).is_none(), "stale revision");
        let del = Txn::ops(vec![Op::DeletePrefix("a".into())]);
        let s3 = s2.apply(&del).unwrap();
        assert_eq!(
            s3.list(""),
            vec![("b".to_string(), s2.entries["b"].clone())]
        );
    }

    #[test]
    fn debug_never_prints_private_keys() {
        let doc = json!({"private_pkcs8_pem": "-----BEGIN PRIVATE KEY-----", "created_s": 1});
        let op = Op::Put("keys/k".into(), doc.clone());
        let s = State::default().apply(&Txn::ops(vec![op.clone()])).unwrap();
        for text in [format!("{op:?}"), format!("{s:?}")] {
            assert!(!text.contains("BEGIN"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        assert!(format!("{:?}", Op::Put("t".into(), json!({"a": 1}))).contains("\"a\""));
    }

    #[test]
    fn list_returns_exactly_the_prefix() {
        let s = State::default()
            .apply(&Txn::ops(vec![
                Op::Put("t/a".into(), json!(1)),
                Op::Put("t/b".into(), json!(2)),
                Op::Put("t0".into(), json!(3)),
                Op::Put("s".into(), json!(4)),
            ]))
            .unwrap();
        let keys: Vec<_> = s.list("t/").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["t/a", "t/b"]);
        let holds = |c: Compare| {
            s.apply(&Txn {
                compare: vec![c],
                ops: vec![],
            })
            .is_some()
        };
        assert!(!holds(Compare::PrefixEmpty("t/".into())));
        assert!(holds(Compare::PrefixEmpty("u/".into())), "nothing under u/");
        assert!(
            holds(Compare::PrefixEmpty("t0/".into())),
            "t0 itself is not under t0/"
        );
        assert!(holds(Compare::Present("s".into())));
        assert!(!holds(Compare::Present("x".into())));
    }
}
