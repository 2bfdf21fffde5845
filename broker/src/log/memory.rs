//! [`MemoryLog`]: the ephemeral log, in memory, bounded by [`Retention`], never touching disk.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::{AppendError, Appended, Log, MemoryFull, ReadResult, Retention};
use crate::budget::MemoryBudget;

/// Bytes a [`MemoryLog`] charges its budget per record on top of the payload: the `Bytes`
/// handle in the ring buffer (32 bytes) and its share of the allocation's header.
pub const RECORD_OVERHEAD: usize = 48;

/// Ephemeral in-memory log bounded by [`Retention`]. Payloads are `Bytes`, so a record held
/// here and in any number of subscriber queues exists once in memory.
#[derive(Debug)]
pub struct MemoryLog {
    epoch: u64,
    retention: Retention,
    records: VecDeque<Bytes>,
    first: u64,
    bytes: usize,
    /// Holds `charge()` bytes of this log at all times; released as records are evicted and
    /// when the log is dropped.
    budget: Option<Arc<MemoryBudget>>,
}

impl Drop for MemoryLog {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.release(self.charge());
        }
    }
}

impl MemoryLog {
    /// An empty log with the given bounds.
    pub fn new(retention: Retention) -> Self {
        Self {
            // Random, so that two incarnations of the same stream never share an epoch.
            epoch: rand::random(),
            retention,
            records: VecDeque::new(),
            first: 0,
            bytes: 0,
            budget: None,
        }
    }

    /// An empty log whose records (payload plus [`RECORD_OVERHEAD`] each) are reserved from
    /// `budget`: an append that does not fit is refused whole, eviction gives bytes back.
    pub fn with_budget(retention: Retention, budget: Arc<MemoryBudget>) -> Self {
        let mut log = Self::new(retention);
        log.budget = Some(budget);
        log
    }

    /// What this log holds from its budget.
    fn charge(&self) -> usize {
        self.bytes + self.records.len() * RECORD_OVERHEAD
    }

    /// (records, bytes) held after appending `payloads` and evicting per retention, computed
    /// without changing anything (a refused append must leave the log as it was).
    fn after_append(&self, payloads: &[Bytes]) -> (usize, usize) {
        let mut len = self.records.len() + payloads.len();
        let mut bytes = self.bytes + payloads.iter().map(Bytes::len).sum::<usize>();
        let mut oldest = self.records.iter().chain(payloads);
        while len > 0 && (len > self.retention.max_records || bytes > self.retention.max_bytes) {
            match oldest.next() {
                Some(p) => {
                    len -= 1;
                    bytes -= p.len();
                }
                None => break,
            }
        }
        (len, bytes)
    }

    /// The bounds this log enforces.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    fn evict(&mut self) {
        while !self.records.is_empty()
            && (self.records.len() > self.retention.max_records
                || self.bytes > self.retention.max_bytes)
        {
            if let Some(old) = self.records.pop_front() {
                self.bytes -= old.len();
                self.first += 1;
            }
        }
    }
}

impl Log for MemoryLog {
    fn append(&mut self, payloads: &[Bytes], _now_unix_ms: u64) -> Result<Appended, AppendError> {
        let before = self.charge();
        if let Some(budget) = &self.budget {
            let (len, bytes) = self.after_append(payloads);
            let after = bytes + len * RECORD_OVERHEAD;
            if after > before && !budget.try_reserve(after - before) {
                return Err(AppendError::MemoryFull(MemoryFull {
                    needed: after - before,
                    limit: budget.limit(),
                }));
            }
        }
        let start = self.next_offset();
        for p in payloads {
            self.bytes += p.len();
            self.records.push_back(p.clone());
        }
        self.evict();
        if let Some(budget) = &self.budget {
            let after = self.charge();
            if after < before {
                budget.release(before - after);
            }
        }
        Ok(Appended {
            offsets: start..start + payloads.len() as u64,
            ticket: None,
        })
    }

    fn read(&self, from: u64, max_records: usize) -> ReadResult {
        let from = from.max(self.first);
        let skip = (from - self.first) as usize;
        let records = self
            .records
            .iter()
            .skip(skip)
            .take(max_records)
            .enumerate()
            .map(|(i, p)| (from + i as u64, p.clone()))
            .collect();
        ReadResult {
            records,
            first_available: self.first,
            next_offset: self.next_offset(),
        }
    }

    fn next_offset(&self) -> u64 {
        self.first + self.records.len() as u64
    }

    fn first_offset(&self) -> u64 {
        self.first
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Appends and returns the offsets (a memory log never returns a ticket).
    fn put(log: &mut MemoryLog, payloads: &[Bytes]) -> Result<std::ops::Range<u64>, MemoryFull> {
        match log.append(payloads, 0) {
            Ok(a) => {
                assert!(a.ticket.is_none(), "an ephemeral append has no ticket");
                Ok(a.offsets)
            }
            Err(AppendError::MemoryFull(e)) => Err(e),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn append_assigns_consecutive_offsets() {
        let mut log = MemoryLog::new(Retention::default());
        assert_eq!(put(&mut log, &[b("a"), b("b")]), Ok(0..2));
        assert_eq!(put(&mut log, &[b("c")]), Ok(2..3));
        let r = log.read(1, 10);
        assert_eq!(r.records, vec![(1, b("b")), (2, b("c"))]);
        assert_eq!(r.next_offset, 3);
    }

    #[test]
    fn count_bound_evicts_oldest_first() {
        let mut log = MemoryLog::new(Retention {
            max_records: 2,
            max_bytes: 1 << 20,
        });
        put(&mut log, &[b("a"), b("b"), b("c")]).unwrap();
        assert_eq!(log.first_offset(), 1);
        let r = log.read(0, 10);
        assert_eq!(r.first_available, 1);
        assert_eq!(r.records, vec![(1, b("b")), (2, b("c"))]);
    }

    #[test]
    fn byte_bound_evicts_until_under_budget() {
        let mut log = MemoryLog::new(Retention {
            max_records: 100,
            max_bytes: 5,
        });
        put(&mut log, &[b("abc"), b("de"), b("f")]).unwrap();
        assert_eq!(log.bytes(), 3);
        assert_eq!(log.first_offset(), 1);
        assert_eq!(log.next_offset(), 3);
    }

    #[test]
    fn budget_is_reserved_on_append_refused_whole_and_released_on_eviction_and_drop() {
        let budget = MemoryBudget::new(3 * (RECORD_OVERHEAD + 10));
        let retention = Retention {
            max_records: 2,
            max_bytes: 1 << 20,
        };
        let mut log = MemoryLog::with_budget(retention, budget.clone());
        let ten = Bytes::from(vec![0u8; 10]);
        put(&mut log, &[ten.clone(), ten.clone()]).unwrap();
        assert_eq!(budget.used(), 2 * (RECORD_OVERHEAD + 10));
        // Retention evicts the oldest: the net charge stays at two records.
        put(&mut log, std::slice::from_ref(&ten)).unwrap();
        assert_eq!(budget.used(), 2 * (RECORD_OVERHEAD + 10));
        assert_eq!(log.first_offset(), 1);
        // A second log sharing the budget gets the one record left, then is refused whole.
        let mut other = MemoryLog::with_budget(Retention::default(), budget.clone());
        put(&mut other, std::slice::from_ref(&ten)).unwrap();
        let err = put(&mut other, std::slice::from_ref(&ten)).unwrap_err();
        assert_eq!(err.limit, budget.limit());
        assert_eq!(other.len(), 1, "a refused append appends nothing");
        assert_eq!(other.next_offset(), 1);
        drop(log);
        assert_eq!(
            budget.used(),
            RECORD_OVERHEAD + 10,
            "dropping a log releases it"
        );
        put(&mut other, std::slice::from_ref(&ten)).unwrap();
        drop(other);
        assert_eq!(budget.used(), 0);
    }
}
