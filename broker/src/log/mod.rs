//! The one core log: an append-only sequence of records per stream, addressed by offset.
//!
//! Streams (fanout cursors), queues (shared group cursors with acks) and the cache
//! (key -> latest value) are all projections over a [`Log`]. Two implementations:
//! [`MemoryLog`] (ephemeral: bounded by record count and bytes, evicting the oldest records
//! first, never touching disk) and, for streams with a data directory, `DurableLog`
//! (`durable.rs`: the on-disk engine of `felix-storage` behind the same trait).
//!
//! An append returns its offsets at once; a durable log also returns a [`Ticket`] that
//! resolves when the records reached the watermark their fsync policy acks at
//! (`docs/storage.md` section 4). The caller awaits it outside any lock before it acks, and
//! only then makes the records visible to subscribers and groups (section 4.5). An ephemeral
//! append returns no ticket and costs nothing extra.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use bytes::Bytes;

mod durable;
mod memory;

pub use durable::DurableStreamLog;
pub use felix_storage::flusher::FsyncPolicy;
pub use felix_storage::StorageError;
pub use memory::{MemoryLog, RECORD_OVERHEAD};

/// The broker-wide memory budget cannot take an append; nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker memory budget full: {needed} more bytes needed, limit {limit} (limits.max_memory_bytes)")]
#[non_exhaustive]
pub struct MemoryFull {
    /// Bytes the operation needed beyond what is held.
    pub needed: usize,
    /// The configured budget.
    pub limit: usize,
}

/// Why an append was refused; nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The broker-wide memory budget cannot take the batch (`overloaded` on the wire).
    #[error(transparent)]
    MemoryFull(#[from] MemoryFull),
    /// The durable log cannot take writes now (`storage` on the wire).
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// The name of a policy (`always`, `interval`, `os`).
pub fn fsync_name(p: FsyncPolicy) -> &'static str {
    match p {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Interval(_) => "interval",
        FsyncPolicy::Os => "os",
    }
}

/// The durability class of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// In memory only; gone on restart (a new epoch then).
    #[default]
    Ephemeral,
    /// In files under `storage.data_dir`, kept across restarts with the same epoch.
    Durable(FsyncPolicy),
}

impl Durability {
    /// Whether the log keeps its records on disk.
    pub fn is_durable(self) -> bool {
        matches!(self, Durability::Durable(_))
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Ephemeral => f.write_str("ephemeral"),
            Durability::Durable(p) => write!(f, "durable/{}", fsync_name(*p)),
        }
    }
}

/// Resolves when appended records reached the watermark their class acks at (`synced` for
/// `always`, `written` for `interval` / `os`). Dropping it does not cancel the write.
#[must_use = "a durable append is acknowledged only after its ticket resolves"]
pub struct Ticket {
    /// Offset after the last record the ticket covers.
    end: u64,
    wait: Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send>>,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").field("end", &self.end).finish()
    }
}

impl Ticket {
    /// A ticket for records ending before `end`, resolved by `wait`.
    pub fn new(
        end: u64,
        wait: impl Future<Output = Result<(), StorageError>> + Send + 'static,
    ) -> Self {
        Self {
            end,
            wait: Box::pin(wait),
        }
    }

    /// Offset after the last record this ticket covers.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Waits until the records are durable per their class, or storage failed them (then
    /// they were never visible and are not in the log).
    pub async fn wait(self) -> Result<(), StorageError> {
        self.wait.await
    }
}

/// What an append did.
#[derive(Debug)]
pub struct Appended {
    /// Offsets given to the records.
    pub offsets: Range<u64>,
    /// `None` for an ephemeral log (acknowledge at once); for a durable log, await it before
    /// acknowledging or making the records visible.
    pub ticket: Option<Ticket>,
}

/// Retention bounds of a log; whichever is reached first evicts the oldest records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Maximum number of records kept.
    pub max_records: usize,
    /// Maximum payload bytes kept.
    pub max_bytes: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_records: 100_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What a read returned, and what retention had already removed before it.
#[derive(Debug, Default, Clone)]
pub struct ReadResult {
    /// Records in offset order: (offset, payload).
    pub records: Vec<(u64, Bytes)>,
    /// First offset still held when the read ran; a `from` below this was a gap.
    pub first_available: u64,
    /// Offset the next append will get.
    pub next_offset: u64,
}

/// An append-only log with offsets. Implementations must be cheap to call under a lock:
/// callers (the stream) serialise appends so that fanout order equals log order. A durable
/// implementation never blocks on a file system call here: appends hand frames to its own
/// writer and return a [`Ticket`].
pub trait Log: Send + Sync + 'static {
    /// Appends payloads atomically at `now_unix_ms` and returns the offsets they were given
    /// (and, for a durable log, a ticket); a refused append appends nothing and says why.
    fn append(&mut self, payloads: &[Bytes], now_unix_ms: u64) -> Result<Appended, AppendError>;
    /// Reads up to `max_records` records starting at `from` (or the first held one).
    fn read(&self, from: u64, max_records: usize) -> ReadResult;
    /// Offset the next append will get.
    fn next_offset(&self) -> u64;
    /// Oldest offset still held (equals `next_offset` when empty).
    fn first_offset(&self) -> u64;
    /// Payload bytes currently held.
    fn bytes(&self) -> usize;
    /// Records currently held.
    fn len(&self) -> usize;
    /// Identity of this log's offset space. Offsets are only comparable within one epoch: an
    /// ephemeral log that is recreated (broker restart) starts again at 0 with a new epoch, so
    /// a resuming client can tell "offset 5 of the old log" from "offset 5 of the new one".
    /// A durable log keeps its epoch across restarts.
    fn epoch(&self) -> u64;
    /// The log's class.
    fn durability(&self) -> Durability {
        Durability::Ephemeral
    }
    /// True when no record is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
pub(crate) mod fake;
