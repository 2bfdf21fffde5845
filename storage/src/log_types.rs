//! The plain types of [`super::DurableLog`]'s API: its configuration and what its calls return.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

use crate::flusher::{FsyncPolicy, Ticket};
use crate::format::LogKind;
use crate::retention::Retention;

/// How a log behaves. Every bound has a default; `docs/limits-storage.md` lists them.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub fsync: FsyncPolicy,
    /// A segment rolls when the next frame would take it past this (a larger frame gets a
    /// segment of its own). Bounds retention's overshoot and recovery's scan. Default 64 MiB,
    /// capped at 1 GiB (positions are 32-bit in the index).
    pub segment_bytes: u64,
    /// A non-empty active segment whose first frame is older than this rolls (at the next append
    /// or retention pass), so a quiet log still ages out. Default 1 h.
    pub segment_age: Option<Duration>,
    pub retention: Retention,
    /// Bytes of recent visible records kept in memory for reads without a syscall: each
    /// record counts its payload plus 64 bytes (its slot), so empty payloads are bounded too.
    /// Default 4 MiB. Records not yet visible are held too (bounded by `max_pending_bytes`).
    pub hot_tail_bytes: usize,
    /// `always` only: bytes written but not yet covered by an fsync. Past it, `append` fails with
    /// `PendingFull` (retryable) instead of queueing more unsynced work. Default 16 MiB.
    pub max_pending_bytes: usize,
    /// Bytes of frames between offset-index entries: bounds the scan of a cold lookup.
    /// Default 4096.
    pub index_interval_bytes: u64,
    /// Bytes per `pread` of a cold read (a larger frame is read whole). Default 1 MiB.
    pub read_chunk_bytes: usize,
    /// `always` logs: at most one checkpoint (a 64-byte write and an fdatasync of the
    /// checkpoint file) per this interval, after a segment sync. Bounds how much of the active
    /// segment recovery cannot tell from a torn tail if damaged. `interval` logs checkpoint
    /// after each interval sync, `os` logs at each seal. Default 1 s.
    pub checkpoint_interval: Duration,
    /// For the flusher thread a log opened with [`super::DurableLog::open`] starts (shared
    /// [`crate::flusher::Flushers`] carry their own): an fdatasync that has not returned after
    /// this fails its tickets with `SyncTimeout` and the log refuses appends until healed.
    /// Default 30 s.
    pub sync_timeout: Option<Duration>,
    pub kind: LogKind,
    /// Set by the caller when the machine rebooted since the log was last open (boot id
    /// changed): an `interval`/`os` log that was not closed cleanly then gets a new epoch.
    pub machine_restarted: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 << 20,
            segment_age: Some(Duration::from_secs(3600)),
            retention: Retention {
                max_records: 0,
                max_bytes: 1 << 30,
                max_age: None,
            },
            hot_tail_bytes: 4 << 20,
            max_pending_bytes: 16 << 20,
            index_interval_bytes: 4096,
            read_chunk_bytes: 1 << 20,
            checkpoint_interval: Duration::from_secs(1),
            sync_timeout: Some(Duration::from_secs(30)),
            kind: LogKind::Stream,
            machine_restarted: false,
        }
    }
}

/// The outcome of an append: offsets given, and the ticket of its durability.
#[derive(Debug)]
pub struct Appended {
    pub offsets: Range<u64>,
    pub ticket: Ticket,
}

/// The outcome of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Records in offset order, all below the visible offset.
    pub records: Vec<(u64, Bytes)>,
    /// First offset still held when the read ran; a `from` below this was a gap.
    pub first_available: u64,
    /// The visible offset when the read ran (the next record a reader will see).
    pub next_offset: u64,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retained {
    pub segments: usize,
    pub bytes: u64,
}
