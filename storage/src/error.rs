//! Why storage cannot do something. The broker maps every variant to the wire code `storage`.

use std::sync::Arc;

/// The file operation that failed, for messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoOp {
    Open,
    Read,
    Write,
    Sync,
    Truncate,
    Rename,
    Remove,
    List,
    Lock,
}

impl std::fmt::Display for IoOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoOp::Open => "open",
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Sync => "fsync",
            IoOp::Truncate => "truncate",
            IoOp::Rename => "rename",
            IoOp::Remove => "remove",
            IoOp::List => "list",
            IoOp::Lock => "lock",
        })
    }
}

/// Why storage cannot do it; nothing the caller asked for happened unless the variant says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("disk full ({free} bytes free < storage.min_free_bytes {min})")]
    DiskFull { free: u64, min: u64 },
    #[error("disk quota reached (storage.max_disk_bytes = {limit})")]
    DiskQuota { limit: u64 },
    #[error("{op} failed (errno {errno}) on {path}")]
    Io {
        op: IoOp,
        errno: i32,
        path: Arc<str>,
    },
    #[error(
        "quarantined: corrupt frame at offset {offset} in {path}; run felix-broker check --repair"
    )]
    Quarantined { offset: u64, path: Arc<str> },
    #[error("pending writes of this log full (storage.max_pending_bytes = {limit})")]
    PendingFull { limit: usize },
    #[error("fsync did not complete within storage.sync_timeout_ms")]
    SyncTimeout,
    #[error("the log is closed")]
    Closed,
    /// An append whose records cannot fit one frame (`format::MAX_FRAME`); a caller's bound on
    /// message sizes normally refuses it first. Not retryable: the same batch fails again.
    #[error("batch of {bytes} bytes does not fit one frame")]
    TooLarge { bytes: u64 },
}

impl StorageError {
    /// An I/O error of `op` on `path`, keeping the errno (0 when the error carries none).
    pub fn io(op: IoOp, path: &std::path::Path, err: &std::io::Error) -> Self {
        StorageError::Io {
            op,
            errno: err.raw_os_error().unwrap_or(0),
            path: Arc::from(path.display().to_string()),
        }
    }

    /// Whether retrying the same request later can succeed (disk space freed, fault healed).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            StorageError::DiskFull { .. }
                | StorageError::DiskQuota { .. }
                | StorageError::PendingFull { .. }
                | StorageError::SyncTimeout
                | StorageError::Io { .. }
        )
    }
}
