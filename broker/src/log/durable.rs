//! [`DurableStreamLog`]: `felix_storage`'s [`DurableLog`] behind the broker's [`Log`] trait.
//!
//! The engine writes each append's frame to the kernel before `append` returns (so `kill -9`
//! never loses an appended record) and hands back a ticket that resolves at the watermark the
//! fsync policy acks at; its reads stop at that watermark. This adapter only translates: the
//! ticket becomes the broker's [`Ticket`], sizes become `usize`, a failed cold read an empty
//! result (logged; the stream's subscribers then see no more records from the damage on).

use std::sync::Arc;

use bytes::Bytes;
use felix_storage::log::DurableLog;

use super::{AppendError, Appended, Durability, FsyncPolicy, Log, ReadResult, Ticket};
use crate::budget::MemoryBudget;

/// Bytes of payload one read hands out at most (besides its record count): bounds the
/// memory a replay chunk or a group pull holds at once.
const READ_MAX_BYTES: usize = 8 << 20;

/// A durable log of one stream.
pub struct DurableStreamLog {
    log: Arc<DurableLog>,
    policy: FsyncPolicy,
    /// The broker-wide budget the log's memory (hot tail, frame buffer) is charged to, and
    /// what is charged now: the hot tail is a bounded cache (`storage.tail_cache_bytes`), so
    /// it is counted rather than refused, and writes elsewhere are refused while it is held.
    budget: Option<Arc<MemoryBudget>>,
    charged: usize,
}

impl DurableStreamLog {
    /// Wraps an open log (shared with the registry's maintenance: retention, close), its
    /// memory charged to `budget`.
    pub fn new(
        log: Arc<DurableLog>,
        policy: FsyncPolicy,
        budget: Option<Arc<MemoryBudget>>,
    ) -> Self {
        let mut l = Self {
            log,
            policy,
            budget,
            charged: 0,
        };
        l.recharge();
        l
    }

    /// Brings the budget's charge to what the log holds in memory now.
    fn recharge(&mut self) {
        let Some(budget) = &self.budget else { return };
        let now = self.log.memory_bytes();
        if now > self.charged {
            budget.charge(now - self.charged);
        } else {
            budget.release(self.charged - now);
        }
        self.charged = now;
    }
}

impl Drop for DurableStreamLog {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.release(self.charged);
        }
    }
}

impl Log for DurableStreamLog {
    fn append(&mut self, payloads: &[Bytes], now_unix_ms: u64) -> Result<Appended, AppendError> {
        let a = self.log.append(payloads, now_unix_ms)?;
        self.recharge();
        let end = a.offsets.end;
        let wait = a.ticket.wait();
        Ok(Appended {
            offsets: a.offsets,
            ticket: Some(Ticket::new(end, wait)),
        })
    }

    fn read(&self, from: u64, max_records: usize) -> ReadResult {
        match self.log.read(from, max_records, READ_MAX_BYTES) {
            Ok(r) => ReadResult {
                records: r.records,
                first_available: r.first_available,
                next_offset: r.next_offset,
            },
            Err(e) => {
                tracing::error!(from, error = %e, "durable read failed");
                ReadResult {
                    records: Vec::new(),
                    first_available: self.log.first_offset(),
                    next_offset: self.log.visible_offset(),
                }
            }
        }
    }

    fn next_offset(&self) -> u64 {
        self.log.next_offset()
    }

    fn first_offset(&self) -> u64 {
        self.log.first_offset()
    }

    fn bytes(&self) -> usize {
        self.log.bytes() as usize
    }

    fn len(&self) -> usize {
        self.log.len() as usize
    }

    fn epoch(&self) -> u64 {
        self.log.epoch()
    }

    fn durability(&self) -> Durability {
        Durability::Durable(self.policy)
    }
}
