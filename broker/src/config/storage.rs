//! `[storage]`: the data directory and the defaults of durable logs (`docs/storage.md`
//! section 13), and the durability class names used by `stream_defaults`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::log::{Durability, FsyncPolicy};

/// The durability class of a resource, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityClass {
    /// In memory; gone on restart (the default).
    #[default]
    Ephemeral,
    /// In files under `storage.data_dir`; kept across restarts.
    Durable,
}

/// An fsync policy name (`always`, `interval`, `os`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncName {
    /// Ack after the fsync (group commit); nothing acked is lost even on power loss.
    #[default]
    Always,
    /// Ack after the write to the kernel; fsync every `fsync_interval_ms`.
    Interval,
    /// Ack after the write to the kernel; fsync when a segment is sealed.
    Os,
}

impl FsyncName {
    /// The policy, with `interval_ms` for `interval`.
    pub fn policy(self, interval_ms: u64) -> FsyncPolicy {
        match self {
            FsyncName::Always => FsyncPolicy::Always,
            FsyncName::Interval => FsyncPolicy::Interval(Duration::from_millis(interval_ms)),
            FsyncName::Os => FsyncPolicy::Os,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Data directory of durable streams (`--data-dir`, `FELIX_DATA_DIR`). Without it no
    /// durable stream exists: production refuses `stream_defaults.durability = "durable"`,
    /// dev mode warns and keeps streams ephemeral.
    pub data_dir: Option<PathBuf>,
    /// Fsync policy of a durable stream that names none.
    pub default_fsync: FsyncName,
    /// Interval of `interval` streams that name none.
    pub default_fsync_interval_ms: u64,
    /// Bytes of one segment file before the log rolls to a new one; retention deletes whole
    /// segments. 0 = `clamp(max_bytes / 8, 1 MiB, 64 MiB)`.
    pub segment_bytes: u64,
    /// Durable streams loaded from `data_dir` at start, at most (a data directory holding
    /// more fails the start, naming this key); they also count against
    /// `limits.max_resources` and the tenant's bound like any other stream.
    pub max_durable_streams: usize,
    /// Recent payload bytes each durable log keeps in memory, so that live subscribers and
    /// groups that keep up read without a system call (older reads go to the files). Counted
    /// in `limits.max_memory_bytes` (never refused: a bounded cache).
    pub tail_cache_bytes: usize,
    /// `always` logs: bytes written and not yet covered by an fsync. Past it a publish gets
    /// `storage` (retryable) rather than queueing more unsynced work behind a slow disk.
    pub max_pending_bytes: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            default_fsync: FsyncName::Always,
            default_fsync_interval_ms: 100,
            segment_bytes: 0,
            max_durable_streams: 10_000,
            tail_cache_bytes: 4 << 20,
            max_pending_bytes: 16 << 20,
        }
    }
}

impl StorageConfig {
    /// Segment size for a log bounded by `max_bytes`.
    pub fn segment_bytes_for(&self, max_bytes: usize) -> u64 {
        if self.segment_bytes > 0 {
            return self.segment_bytes;
        }
        (max_bytes as u64 / 8).clamp(1 << 20, 64 << 20)
    }

    /// The durability of a stream of `class` with optional per-stream fsync settings.
    pub fn durability(
        &self,
        class: DurabilityClass,
        fsync: Option<FsyncName>,
        interval_ms: Option<u64>,
    ) -> Durability {
        match (class, &self.data_dir) {
            (DurabilityClass::Durable, Some(_)) => Durability::Durable(
                fsync
                    .unwrap_or(self.default_fsync)
                    .policy(interval_ms.unwrap_or(self.default_fsync_interval_ms)),
            ),
            _ => Durability::Ephemeral,
        }
    }
}

impl super::BrokerConfig {
    /// The durability a `stream_create` asks for: its fields over `stream_defaults`; an
    /// error (for `invalid_argument`) for unknown names or a durable stream without
    /// `storage.data_dir`.
    pub fn requested_durability(
        &self,
        durability: Option<&str>,
        fsync: Option<&str>,
        interval_ms: Option<u64>,
    ) -> Result<Durability, String> {
        let class = match durability {
            None => self.stream_defaults.durability,
            Some("ephemeral") => DurabilityClass::Ephemeral,
            Some("durable") => DurabilityClass::Durable,
            Some(other) => {
                return Err(format!(
                    "durability {other:?}: expected ephemeral or durable"
                ))
            }
        };
        let fsync = match fsync {
            None => self.stream_defaults.fsync,
            Some("always") => Some(FsyncName::Always),
            Some("interval") => Some(FsyncName::Interval),
            Some("os") => Some(FsyncName::Os),
            Some(other) => return Err(format!("fsync {other:?}: expected always, interval or os")),
        };
        if interval_ms == Some(0) {
            return Err("fsync_interval_ms must be > 0".into());
        }
        if class == DurabilityClass::Durable && self.storage.data_dir.is_none() {
            return Err("durable streams need storage.data_dir (--data-dir) on the broker".into());
        }
        Ok(self.storage.durability(
            class,
            fsync,
            interval_ms.or(self.stream_defaults.fsync_interval_ms),
        ))
    }
}
