//! A test-only durable log: a [`MemoryLog`] whose appends return tickets that the test
//! resolves (`sync_to`) or fails (`fail_pending`), so the broker's durable path (ack after the
//! ticket, visibility after the ticket, `storage` answers) is testable without files.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{
    AppendError, Appended, Durability, FsyncPolicy, Log, MemoryLog, ReadResult, Retention,
    StorageError, Ticket,
};

type Resolve = oneshot::Sender<Result<(), StorageError>>;

/// Tickets not yet resolved, by the offset after their last record.
#[derive(Default)]
pub struct FakeSync {
    waiting: Mutex<Vec<(u64, Resolve)>>,
    refuse: Mutex<Option<StorageError>>,
}

impl FakeSync {
    /// Resolves every ticket whose records end at or before `end`.
    pub fn sync_to(&self, end: u64) {
        let mut w = self.waiting.lock();
        let (done, rest): (Vec<_>, Vec<_>) = w.drain(..).partition(|(e, _)| *e <= end);
        *w = rest;
        for (_, tx) in done {
            let _ = tx.send(Ok(()));
        }
    }

    /// Fails every waiting ticket with `err`.
    pub fn fail_pending(&self, err: StorageError) {
        for (_, tx) in self.waiting.lock().drain(..) {
            let _ = tx.send(Err(err.clone()));
        }
    }

    /// Refuses later appends with `err` (None: accept again).
    pub fn refuse(&self, err: Option<StorageError>) {
        *self.refuse.lock() = err;
    }
}

/// The fake durable log.
pub struct FakeDurableLog {
    inner: MemoryLog,
    sync: Arc<FakeSync>,
}

impl FakeDurableLog {
    /// An empty log and the handle that resolves its tickets.
    pub fn new(retention: Retention) -> (Self, Arc<FakeSync>) {
        let sync = Arc::new(FakeSync::default());
        let log = Self {
            inner: MemoryLog::new(retention),
            sync: sync.clone(),
        };
        (log, sync)
    }
}

impl Log for FakeDurableLog {
    fn append(&mut self, payloads: &[Bytes], now_unix_ms: u64) -> Result<Appended, AppendError> {
        if let Some(e) = self.sync.refuse.lock().clone() {
            return Err(AppendError::Storage(e));
        }
        let a = self.inner.append(payloads, now_unix_ms)?;
        let (tx, rx) = oneshot::channel();
        self.sync.waiting.lock().push((a.offsets.end, tx));
        let ticket = Ticket::new(a.offsets.end, async move {
            rx.await.unwrap_or(Err(StorageError::Closed))
        });
        Ok(Appended {
            offsets: a.offsets,
            ticket: Some(ticket),
        })
    }
    fn read(&self, from: u64, max_records: usize) -> ReadResult {
        self.inner.read(from, max_records)
    }
    fn next_offset(&self) -> u64 {
        self.inner.next_offset()
    }
    fn first_offset(&self) -> u64 {
        self.inner.first_offset()
    }
    fn bytes(&self) -> usize {
        self.inner.bytes()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }
    fn durability(&self) -> Durability {
        Durability::Durable(FsyncPolicy::Always)
    }
}
