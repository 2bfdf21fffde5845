//! The data directory of durable streams (`docs/storage.md` section 2): the lock that keeps a
//! second broker out, the boot id that tells recovery whether the machine restarted, and one
//! directory per durable stream holding its definition (`stream.meta`) beside the segment
//! files `felix-storage` writes.
//!
//! ```text
//! <data_dir>/LOCK                                  flock, held for the process's life
//! <data_dir>/run.json                              {"boot_id": "...", "pid": N, "started_unix_ms": N}
//! <data_dir>/streams/<tenant>/<namespace>/<stream>/stream.meta
//! <data_dir>/streams/<tenant>/<namespace>/<stream>/*.seg, *.idx, log.state, ...
//! ```
//!
//! Names are safe path components by construction (`names.rs`: no `/`, never `.` or `..`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use felix_storage::fs::{Fs, FsLock, RealFs};
use serde::{Deserialize, Serialize};

use crate::log::{Durability, FsyncPolicy, Retention};
use crate::stream::{FullPolicy, StreamConfig};

/// Why the data directory cannot be used; the broker does not start.
#[derive(Debug, thiserror::Error)]
#[error("storage.data_dir {path}: {msg}")]
pub struct DataDirError {
    /// The directory or file concerned.
    pub path: String,
    /// What went wrong.
    pub msg: String,
}

fn err(path: &Path, msg: impl std::fmt::Display) -> DataDirError {
    DataDirError {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// The definition of a durable stream, kept beside its segments. Unknown fields are refused
/// so a newer broker's file is never misread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamMeta {
    /// File format; 1.
    pub format: u32,
    pub tenant: String,
    pub namespace: String,
    pub name: String,
    pub created_unix_ms: u64,
    /// `always`, `interval` or `os`.
    pub fsync: String,
    pub fsync_interval_ms: u64,
    /// 0 = unbounded.
    pub max_records: u64,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub subscriber_buffer: usize,
    pub full_policy: FullPolicy,
    pub block_timeout_ms: u64,
}

impl StreamMeta {
    /// The definition of a new durable stream.
    pub fn new(
        tenant: &str,
        namespace: &str,
        name: &str,
        config: &StreamConfig,
        segment_bytes: u64,
        now_unix_ms: u64,
    ) -> Self {
        let (fsync, interval) = match config.durability {
            Durability::Durable(FsyncPolicy::Interval(d)) => ("interval", d.as_millis() as u64),
            Durability::Durable(FsyncPolicy::Os) => ("os", 0),
            _ => ("always", 0),
        };
        Self {
            format: 1,
            tenant: tenant.into(),
            namespace: namespace.into(),
            name: name.into(),
            created_unix_ms: now_unix_ms,
            fsync: fsync.into(),
            fsync_interval_ms: interval,
            max_records: config.retention.max_records as u64,
            max_bytes: config.retention.max_bytes as u64,
            segment_bytes,
            subscriber_buffer: config.subscriber_buffer,
            full_policy: config.full_policy,
            block_timeout_ms: config.block_timeout.as_millis() as u64,
        }
    }

    /// The stream settings this definition stands for.
    pub fn stream_config(&self) -> Result<StreamConfig, String> {
        let policy = match self.fsync.as_str() {
            "always" => FsyncPolicy::Always,
            "interval" if self.fsync_interval_ms > 0 => {
                FsyncPolicy::Interval(Duration::from_millis(self.fsync_interval_ms))
            }
            "os" => FsyncPolicy::Os,
            other => {
                return Err(format!(
                    "fsync {other:?} (interval {} ms)",
                    self.fsync_interval_ms
                ))
            }
        };
        Ok(StreamConfig {
            retention: Retention {
                max_records: self.max_records as usize,
                max_bytes: self.max_bytes as usize,
            },
            subscriber_buffer: self.subscriber_buffer,
            full_policy: self.full_policy,
            block_timeout: Duration::from_millis(self.block_timeout_ms),
            durability: Durability::Durable(policy),
        })
    }
}

/// An open data directory (locked for this process).
pub struct DataDir {
    root: PathBuf,
    fs: Arc<dyn Fs>,
    machine_restarted: bool,
    _lock: Box<dyn FsLock>,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir").field("root", &self.root).finish()
    }
}

#[derive(Serialize, Deserialize)]
struct RunInfo {
    boot_id: String,
    pid: u32,
    started_unix_ms: u64,
}

impl DataDir {
    /// Creates (if needed) and locks `root`; a second process gets an error naming the
    /// holder. Records this boot's id, remembering whether the previous run was on another
    /// boot (an `interval`/`os` log that was not closed cleanly then gets a new epoch).
    pub fn open(root: &Path) -> Result<Self, DataDirError> {
        let fs: Arc<dyn Fs> = RealFs::new();
        std::fs::create_dir_all(root.join("streams")).map_err(|e| err(root, e))?;
        let lock_path = root.join("LOCK");
        let lock = fs.lock_exclusive(&lock_path).map_err(|e| {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            err(
                root,
                format!(
                    "in use by another process (pid {} per LOCK): {e}",
                    holder.trim()
                ),
            )
        })?;
        let _ = std::fs::write(&lock_path, std::process::id().to_string());
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let run_path = root.join("run.json");
        let machine_restarted = std::fs::read(&run_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<RunInfo>(&b).ok())
            .is_some_and(|r| !boot_id.is_empty() && r.boot_id != boot_id);
        let run = RunInfo {
            boot_id,
            pid: std::process::id(),
            started_unix_ms: crate::stream::unix_now_ms(),
        };
        write_atomic(&run_path, &serde_json::to_vec(&run).unwrap_or_default())
            .map_err(|e| err(&run_path, e))?;
        Ok(Self {
            root: root.to_path_buf(),
            fs,
            machine_restarted,
            _lock: lock,
        })
    }

    /// The file system the logs use.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// Whether the machine rebooted since the previous broker used this directory.
    pub fn machine_restarted(&self) -> bool {
        self.machine_restarted
    }

    /// The directory of one durable stream.
    pub fn stream_dir(&self, tenant: &str, namespace: &str, name: &str) -> PathBuf {
        self.root
            .join("streams")
            .join(tenant)
            .join(namespace)
            .join(name)
    }

    /// Writes a new stream's definition (atomically, synced with its directory entries).
    pub fn write_meta(&self, meta: &StreamMeta) -> Result<PathBuf, DataDirError> {
        let dir = self.stream_dir(&meta.tenant, &meta.namespace, &meta.name);
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        let text = serde_json::to_vec_pretty(meta).unwrap_or_default();
        write_atomic(&dir.join("stream.meta"), &text).map_err(|e| err(&dir, e))?;
        // The stream's own entry in its namespace directory (and up) must survive too.
        let mut d = dir.as_path();
        while let Some(parent) = d.parent() {
            let _ = self.fs.sync_dir(parent);
            if parent == self.root {
                break;
            }
            d = parent;
        }
        Ok(dir)
    }

    /// Every durable stream defined in the directory, with its directory.
    pub fn list_streams(&self) -> Result<Vec<(StreamMeta, PathBuf)>, DataDirError> {
        let mut out = Vec::new();
        let streams = self.root.join("streams");
        for tenant in sorted_dirs(&streams)? {
            for ns in sorted_dirs(&tenant)? {
                for dir in sorted_dirs(&ns)? {
                    let path = dir.join("stream.meta");
                    let bytes = match std::fs::read(&path) {
                        Ok(b) => b,
                        // A directory without a definition was never created completely.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(err(&path, e)),
                    };
                    let meta: StreamMeta =
                        serde_json::from_slice(&bytes).map_err(|e| err(&path, e))?;
                    out.push((meta, dir));
                }
            }
        }
        Ok(out)
    }
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, DataDirError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(err(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| err(dir, e))?;
        if entry.file_type().map_err(|e| err(dir, e))?.is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// `NAME.tmp`, fsync, rename over `NAME`, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_is_refused_and_definitions_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::open(tmp.path()).unwrap();
        assert!(
            !dd.machine_restarted(),
            "a new directory has no previous boot"
        );
        let again = DataDir::open(tmp.path()).unwrap_err().to_string();
        assert!(again.contains("in use by another process"), "{again}");
        let cfg = StreamConfig {
            durability: Durability::Durable(FsyncPolicy::Interval(Duration::from_millis(20))),
            ..StreamConfig::default()
        };
        let meta = StreamMeta::new("t", "ns", "a.b", &cfg, 1 << 20, 7);
        let dir = dd.write_meta(&meta).unwrap();
        assert_eq!(dir, tmp.path().join("streams/t/ns/a.b"));
        std::fs::create_dir_all(tmp.path().join("streams/t/ns/half")).unwrap();
        let listed = dd.list_streams().unwrap();
        assert_eq!(
            listed.len(),
            1,
            "a directory without stream.meta is skipped"
        );
        assert_eq!(listed[0].0, meta);
        assert_eq!(listed[0].0.stream_config().unwrap(), cfg);
        drop(dd);
        DataDir::open(tmp.path()).expect("the lock goes with the process's handle");
    }
}
