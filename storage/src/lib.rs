//! Felix's durable log on disk (issue 15; design in `docs/storage.md`, plan in
//! `docs/storage-plan.md`).
//!
//! One job: keep an append-only sequence of records per log directory so that what an ack
//! promised survives `kill -9` (and, under the `always` fsync policy, power loss), and say
//! exactly what was damaged when it did not. The broker adapts [`log::DurableLog`] to its own
//! `Log` trait; nothing here knows about streams, queues, tenants or the wire.
//!
//! All file access goes through [`fs::Fs`], so that [`sim::SimFs`] can crash a log at any byte
//! (process kill, power loss, torn write) and inject `ENOSPC` / `EIO` in tests.

pub mod error;
pub mod fs;

// Format and verification (pure, over byte sources).
pub mod checkpoint;
pub mod format;
pub mod index;
pub mod scan;

// Offline verification and repair of a data directory (`felix-broker check`).
pub mod check;
pub mod repair;

// The engine: files, the log, recovery, retention, fsync.
pub mod flusher;
pub mod log;
pub mod recover;
pub mod retention;
pub mod segment;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use error::{IoOp, StorageError};

#[cfg(test)]
mod test_util;
