//! [`FileStore`]: the whole keyspace in one JSON file, replaced atomically on every commit.
//!
//! A commit serializes the next state, writes it to a fresh temporary file (mode 0600) in the
//! data directory, fsyncs it, renames it over `state.json` and fsyncs the directory. A crash at
//! any point leaves either the old or the new `state.json`, never a torn one; a temporary file
//! left behind by a crash is ignored and removed at the next open. The new state becomes
//! visible to readers only once it is durable. The control plane's data (tenants, definitions,
//! roles, a few keys) is small, so rewriting it whole keeps the guarantee simple.
//!
//! Cancel safety: a commit runs in a task of its own that owns the commit lock, so a caller
//! that stops waiting (a timeout, a dropped request) cannot leave the file and the memory
//! apart: the commit finishes either way. A failure after the rename (the directory fsync) is
//! fatal for the store: the new state is on disk, so memory takes it too, the caller is told
//! the outcome is unknown, and every later write is refused until a restart reloads the file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use parking_lot::Mutex;

use super::{State, Store, StoreError, StoreFuture, Txn, TxnOutcome, Versioned};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
const TMP_PREFIX: &str = "state.json.tmp.";
const FORMAT: u32 = 1;

/// The embedded store: durable in a directory, or in memory (dev mode without a data dir).
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: Option<PathBuf>,
    /// Holds an exclusive flock on `DIR/lock` for the store's life: a second process (or a
    /// second open) on the same directory is refused instead of overwriting its commits.
    _lock: Option<File>,
    /// The last durable state (what readers see).
    state: Mutex<State>,
    /// Serializes commits.
    commits: tokio::sync::Mutex<()>,
    watch: tokio::sync::watch::Sender<u64>,
    /// Set when a commit failed after its rename: writes are refused from then on.
    poisoned: Mutex<Option<String>>,
    /// Tests: make the next persist fail after its rename.
    #[cfg(test)]
    fail_after_rename: std::sync::atomic::AtomicBool,
}

/// How a persist failed: before the rename nothing changed on disk; after it, the new state
/// is there (its durability unknown).
enum PersistError {
    Before(StoreError),
    After(StoreError),
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl FileStore {
    /// A store that keeps nothing across restarts.
    pub fn in_memory() -> Self {
        let state = State {
            format: FORMAT,
            ..State::default()
        };
        FileStore {
            inner: Arc::new(Inner {
                dir: None,
                _lock: None,
                watch: tokio::sync::watch::channel(0).0,
                commits: tokio::sync::Mutex::new(()),
                state: Mutex::new(state),
                poisoned: Mutex::new(None),
                #[cfg(test)]
                fail_after_rename: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Opens (creating it with mode 0700 if missing) the data directory and loads its state.
    /// Refuses a directory that group or others can access: it holds private keys.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(dir, e))?;
        }
        let mode = fs::metadata(dir)
            .map_err(|e| io(dir, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(StoreError::Unsafe(format!(
                "data dir {} has mode {:o}: it holds signing keys, so only its owner may access it \
                 (chmod 700 it)",
                dir.display(),
                mode & 0o777
            )));
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        // SAFETY: flock on a descriptor we own; no memory is shared with the call.
        let rc = unsafe {
            libc::flock(
                std::os::unix::io::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc != 0 {
            return Err(StoreError::Unsafe(format!(
                "data dir {} is in use by another felix-controlplane (lock held on {})",
                dir.display(),
                lock_path.display()
            )));
        }
        // Temporary files are leftovers of a crash mid-commit: their commit never happened.
        for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let p = entry.path();
                tracing::warn!(file = %p.display(), "removing an unfinished store write left by a crash");
                fs::remove_file(&p).map_err(|e| io(&p, e))?;
            }
        }
        let path = dir.join(STATE_FILE);
        let state = match fs::read(&path) {
            Ok(bytes) => {
                let state: State =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if state.format != FORMAT {
                    return Err(StoreError::Corrupt {
                        path: path.display().to_string(),
                        reason: format!("format {} (this build reads {FORMAT})", state.format),
                    });
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                format: FORMAT,
                ..State::default()
            },
            Err(e) => return Err(io(&path, e)),
        };
        Ok(FileStore {
            inner: Arc::new(Inner {
                dir: Some(dir.to_path_buf()),
                _lock: Some(lock),
                watch: tokio::sync::watch::channel(state.revision).0,
                commits: tokio::sync::Mutex::new(()),
                state: Mutex::new(state),
                poisoned: Mutex::new(None),
                #[cfg(test)]
                fail_after_rename: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

impl Inner {
    /// `fail_after_rename`: tests inject a directory fsync failure (always false otherwise).
    fn persist(dir: &Path, state: &State, fail_after_rename: bool) -> Result<(), PersistError> {
        let bytes = serde_json::to_vec(state).expect("state serializes");
        let tmp = dir.join(format!("{TMP_PREFIX}{}", rand::random::<u64>()));
        let before = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io(&tmp, e))?;
            f.write_all(&bytes).map_err(|e| io(&tmp, e))?;
            f.sync_all().map_err(|e| io(&tmp, e))?;
            drop(f);
            let target = dir.join(STATE_FILE);
            fs::rename(&tmp, &target).map_err(|e| io(&target, e))
        })();
        if let Err(e) = before {
            let _ = fs::remove_file(&tmp);
            return Err(PersistError::Before(e));
        }
        if fail_after_rename {
            return Err(PersistError::After(io(
                dir,
                std::io::Error::other("injected directory fsync failure"),
            )));
        }
        // The rename is durable only once the directory entry is.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PersistError::After(io(dir, e)))
    }

    /// The whole commit; runs in its own task (see the module documentation).
    async fn commit(self: Arc<Self>, txn: Txn) -> Result<TxnOutcome, StoreError> {
        // One commit at a time; readers keep reading the last durable state meanwhile.
        let _turn = self.commits.lock().await;
        if let Some(why) = self.poisoned.lock().clone() {
            return Err(StoreError::Poisoned(why));
        }
        let current = self.state.lock().clone();
        let Some(next) = current.apply(&txn) else {
            return Ok(TxnOutcome::Failed(current.revision));
        };
        if let Some(dir) = &self.dir {
            // fsync can take a while: off the async workers. `next` is shared so that the
            // blocking task never outlives the decision about it.
            let next = Arc::new(next);
            let (dir, n) = (dir.clone(), next.clone());
            #[cfg(test)]
            let inject = self
                .fail_after_rename
                .swap(false, std::sync::atomic::Ordering::SeqCst);
            #[cfg(not(test))]
            let inject = false;
            let outcome =
                tokio::task::spawn_blocking(move || Self::persist(&dir, &n, inject)).await;
            let next = Arc::try_unwrap(next).unwrap_or_else(|a| (*a).clone());
            match outcome {
                Ok(Ok(())) => return Ok(self.publish(next)),
                Ok(Err(PersistError::Before(e))) => return Err(e),
                Ok(Err(PersistError::After(e))) => {
                    let why = format!(
                        "a commit reached the disk but its directory fsync failed ({e}); \
                         restart to reload the store"
                    );
                    return Err(self.poison(next, why));
                }
                Err(join) => {
                    // The blocking task panicked: we do not know whether it renamed.
                    let why = format!("a store write failed unexpectedly ({join}); restart");
                    *self.poisoned.lock() = Some(why.clone());
                    tracing::error!(%why, "store refuses further writes");
                    return Err(StoreError::Poisoned(why));
                }
            }
        }
        Ok(self.publish(next))
    }

    fn publish(&self, next: State) -> TxnOutcome {
        let rev = next.revision;
        *self.state.lock() = next;
        self.watch.send_replace(rev);
        TxnOutcome::Committed(rev)
    }

    /// The new state is on disk: memory follows it, and no further write is accepted.
    fn poison(&self, next: State, why: String) -> StoreError {
        self.publish(next);
        tracing::error!(%why, "store refuses further writes");
        *self.poisoned.lock() = Some(why.clone());
        StoreError::Poisoned(why)
    }
}

impl Store for FileStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        let v = self.inner.state.lock().entries.get(key).cloned();
        Box::pin(async move { Ok(v) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (u64, Vec<(String, Versioned)>)> {
        let s = self.inner.state.lock();
        let out = (s.revision, s.list(prefix));
        Box::pin(async move { Ok(out) })
    }

    fn txn(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome> {
        // A task of its own: dropping this future does not stop the commit half-way.
        let task = tokio::spawn(self.inner.clone().commit(txn));
        Box::pin(async move {
            task.await.map_err(|e| StoreError::Io {
                path: "store commit".into(),
                source: std::io::Error::other(e.to_string()),
            })?
        })
    }

    fn revision(&self) -> u64 {
        self.inner.state.lock().revision
    }

    fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.watch.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Compare, Op};
    use serde_json::json;

    #[tokio::test]
    async fn state_survives_reopen_files_are_private_and_a_torn_temp_file_is_ignored() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        {
            let s = FileStore::open(&dir).unwrap();
            let rx = s.watch();
            assert!(s
                .txn(Txn::ops(vec![Op::Put("k".into(), json!({"v": 1}))]))
                .await
                .unwrap()
                .committed());
            assert_eq!(*rx.borrow(), 1);
        }
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = dir.join(STATE_FILE);
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A crash mid-commit leaves a partial temporary file.
        let torn = dir.join(format!("{TMP_PREFIX}123"));
        fs::write(&torn, b"{\"format\":1,\"revision\":9,\"entr").unwrap();
        let s = FileStore::open(&dir).unwrap();
        assert_eq!(s.revision(), 1);
        assert_eq!(s.get("k").await.unwrap().unwrap().value, json!({"v": 1}));
        assert!(!torn.exists(), "leftover removed");
        let out = s
            .txn(Txn {
                compare: vec![Compare::ModRevision("k".into(), 1)],
                ops: vec![Op::Put("k".into(), json!(2))],
            })
            .await
            .unwrap();
        assert_eq!(out, TxnOutcome::Committed(2));
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![LOCK_FILE.to_string(), STATE_FILE.to_string()],
            "no temp file after a commit"
        );
        assert!(
            matches!(FileStore::open(&dir), Err(StoreError::Unsafe(m)) if m.contains("in use")),
            "a second open of the same directory is refused while the first lives"
        );
        drop(s);
        assert!(
            FileStore::open(&dir).is_ok(),
            "free again once the first is gone"
        );
    }

    #[tokio::test]
    async fn a_directory_others_can_read_is_refused_and_a_corrupt_state_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("open");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(FileStore::open(&dir), Err(StoreError::Unsafe(_))));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(dir.join(STATE_FILE), b"{not json").unwrap();
        assert!(matches!(
            FileStore::open(&dir),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// A caller that gives up mid-commit (1 µs timeout) must not leave the file and the
    /// memory apart: the commit completes in its own task, and the next one builds on it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_commit_still_completes_and_disk_equals_memory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let s = FileStore::open(&dir).unwrap();
        for round in 0..5 {
            // A large value: its write takes longer than B's small one would.
            let big = json!("x".repeat(2 << 20));
            let a = s.txn(Txn::ops(vec![Op::Put(format!("a{round}"), big)]));
            let _ = tokio::time::timeout(std::time::Duration::from_micros(1), a).await;
            s.txn(Txn::ops(vec![Op::Put(format!("b{round}"), json!(round))]))
                .await
                .unwrap();
            // A's task may have been scheduled after B's: it still commits, by a deadline.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !s
                .inner
                .state
                .lock()
                .entries
                .contains_key(&format!("a{round}"))
            {
                assert!(std::time::Instant::now() < deadline, "A never committed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let _turn = s.inner.commits.lock().await;
            let disk: State =
                serde_json::from_slice(&fs::read(dir.join(STATE_FILE)).unwrap()).unwrap();
            let memory = s.inner.state.lock().clone();
            assert_eq!(disk, memory, "round {round}");
            assert!(
                memory.entries.contains_key(&format!("a{round}")),
                "round {round}"
            );
            assert!(memory.entries.contains_key(&format!("b{round}")));
            drop(_turn);
        }
        let rev = s.revision();
        drop(s);
        // Give the finished tasks a moment to drop their handle on the store (and its lock).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let reopened = loop {
            match FileStore::open(&dir) {
                Ok(r) => break r,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "{e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        assert_eq!(reopened.revision(), rev);
        assert!(reopened.get("a4").await.unwrap().is_some());
    }

    /// A failure after the rename took effect on disk: memory follows the disk, the caller
    /// is not told "not written", and the store refuses every further write.
    #[tokio::test]
    async fn a_failure_after_the_rename_poisons_the_store_and_memory_follows_disk() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let s = FileStore::open(&dir).unwrap();
        s.txn(Txn::ops(vec![Op::Put("k".into(), json!(1))]))
            .await
            .unwrap();
        s.inner
            .fail_after_rename
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let r = s.txn(Txn::ops(vec![Op::Put("k".into(), json!(2))])).await;
        assert!(matches!(r, Err(StoreError::Poisoned(_))), "{r:?}");
        let disk: State = serde_json::from_slice(&fs::read(dir.join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(disk, *s.inner.state.lock(), "memory follows the disk");
        assert_eq!(s.get("k").await.unwrap().unwrap().value, json!(2));
        let r = s.txn(Txn::ops(vec![Op::Put("k".into(), json!(3))])).await;
        assert!(matches!(r, Err(StoreError::Poisoned(_))), "{r:?}");
        assert_eq!(s.get("k").await.unwrap().unwrap().value, json!(2));
        drop(s);
        assert_eq!(
            FileStore::open(&dir)
                .unwrap()
                .get("k")
                .await
                .unwrap()
                .unwrap()
                .value,
            json!(2),
            "a restart reloads what the disk holds"
        );
    }

    #[tokio::test]
    async fn a_failed_write_leaves_the_old_state_visible() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let s = FileStore::open(&dir).unwrap();
        s.txn(Txn::ops(vec![Op::Put("k".into(), json!(1))]))
            .await
            .unwrap();
        // Make the directory unwritable (root ignores modes, so remove it instead).
        fs::remove_dir_all(&dir).unwrap();
        assert!(s
            .txn(Txn::ops(vec![Op::Put("k".into(), json!(2))]))
            .await
            .is_err());
        assert_eq!(s.get("k").await.unwrap().unwrap().value, json!(1));
        assert_eq!(s.revision(), 1);
    }
}
