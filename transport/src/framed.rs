//! Reads whole Felix frames from a QUIC receive stream (shared by the broker and the
//! client core, so both enforce the same limits the same way).
//!
//! # Bounding unfinished frames
//!
//! A reader copies bytes out of quinn into its assembler, and every byte read gives the peer
//! flow-control credit back. Without a bound, a peer that sends the headers of large frames
//! and never finishes them would make the receiver buffer `max_frame` per stream. A reader
//! given a [`FrameBudget`] (the broker gives one per connection) therefore holds a
//! reservation covering what it buffers:
//!
//! - When a header is read, the frame's whole payload length is reserved **before** any of
//!   its payload is read. A frame that got its reservation can always complete, so streams of
//!   one connection never wait on each other's half-read frames.
//! - When the reservation does not fit, the reader stops reading that stream: quinn's
//!   per-stream window then fills and QUIC flow control holds the peer back. It waits for
//!   bytes to be given back, for at most [`FrameBudget::wait`]; past that the read fails with
//!   [`ReadFrameError::Overloaded`] (the caller answers `overloaded` and stops the stream).
//!   The bound is what keeps waiting from lasting forever: unread data of waiting streams
//!   also uses the connection's QUIC window, which a frame already admitted may need.
//! - Bytes beyond the frame in progress (the next small frames of a burst, up to
//!   [`READ_AHEAD`] per read) are charged after the read; if they do not fit, they are owed
//!   and covered before the next read. A header alone (12 bytes) is never charged.
//! - The reservation shrinks back to what is still buffered as soon as a frame is handed out,
//!   and is given back when the reader is dropped. A frame handed out is no longer counted
//!   here (the broker counts it as a request in flight).
//! - A wider budget (the broker's memory budget) is charged only the bytes actually buffered,
//!   and is never waited on nor refused: declared lengths are not memory, and a peer that
//!   sends only headers must not be able to take the wider budget from everyone else. The
//!   per-connection limit is what bounds unfinished frames; the wider budget only sees them.
//!
//! Without a budget (the client core's readers) only the per-frame limit applies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use felix_wire::{Frame, FrameAssembler, WireError};
use tokio::sync::Notify;

/// Bytes a read may take beyond the frame in progress, so a burst of small frames costs one
/// read call.
pub const READ_AHEAD: usize = 16 * 1024;

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadFrameError {
    /// The bytes were not a valid frame; framing is lost for this stream.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The stream or connection failed.
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
    /// The peer finished the stream in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The budget for unfinished frames had no room for this stream's frame within the wait
    /// bound; the partial frame is abandoned (framing is lost).
    #[error("no room to buffer a frame of {needed} bytes after waiting {waited:?}")]
    Overloaded {
        /// Bytes the stream needed to hold.
        needed: usize,
        /// How long it waited.
        waited: Duration,
    },
}

/// A byte budget above a connection's own (the broker's process-wide memory budget). It is
/// told what is buffered, never asked: unfinished frames are bounded per connection.
pub trait ByteBudget: Send + Sync {
    /// Counts `n` bytes as used, even past the budget's limit.
    fn charge(&self, n: usize);
    /// Gives back `n` bytes counted by `charge`.
    fn release(&self, n: usize);
}

/// Bytes of unfinished frames all readers of one connection may hold together; a wider
/// budget, if given, is told the bytes actually buffered.
pub struct FrameBudget {
    limit: usize,
    used: AtomicUsize,
    wait: Duration,
    parent: Option<Arc<dyn ByteBudget>>,
    freed: Notify,
    waiters: AtomicUsize,
}

impl std::fmt::Debug for FrameBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBudget")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .field("wait", &self.wait)
            .finish()
    }
}

impl FrameBudget {
    /// `limit` bytes for the connection; a reader waits at most `wait` for room; `parent`
    /// is charged the bytes actually buffered.
    pub fn new(limit: usize, wait: Duration, parent: Option<Arc<dyn ByteBudget>>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            wait,
            parent,
            freed: Notify::new(),
            waiters: AtomicUsize::new(0),
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// How long a reader waits for room before failing with `Overloaded`.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    fn try_take(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|v| *v <= self.limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::Relaxed);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// Counts a reader as waiting while it lives (so givers know to notify).
struct Waiting<'a>(&'a FrameBudget);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Splits a QUIC receive stream into frames.
pub struct FrameReader {
    recv: quinn::RecvStream,
    asm: FrameAssembler,
    budget: Option<Arc<FrameBudget>>,
    /// Bytes held from `budget`.
    reserved: usize,
    /// Bytes counted in the budget's parent (what the assembler buffers).
    charged: usize,
}

impl FrameReader {
    /// A reader enforcing `max_frame` on payloads, with no budget for unfinished frames.
    pub fn new(recv: quinn::RecvStream, max_frame: u32) -> Self {
        Self {
            recv,
            asm: FrameAssembler::new(max_frame),
            budget: None,
            reserved: 0,
            charged: 0,
        }
    }

    /// A reader enforcing `max_frame` on payloads that holds what it buffers from `budget`
    /// (see the module documentation).
    pub fn with_budget(recv: quinn::RecvStream, max_frame: u32, budget: Arc<FrameBudget>) -> Self {
        Self {
            recv,
            asm: FrameAssembler::new(max_frame),
            budget: Some(budget),
            reserved: 0,
            charged: 0,
        }
    }

    /// Changes the payload limit for frames whose header has not been read yet.
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.asm.set_max_len(max_frame);
    }

    /// Bytes this reader holds from its budget (0 without one).
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// The next frame; `Ok(None)` when the peer finished the stream cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, ReadFrameError> {
        loop {
            if let Some(f) = self.asm.next_frame()? {
                // The frame leaves the reader's buffer: hold only what is still buffered, so a
                // request that takes long (a held publish) does not keep its frame's room.
                self.shrink_to_buffered();
                return Ok(Some(f));
            }
            // Nothing whole is buffered: what is buffered is the start of one frame. Hold
            // exactly what finishing it takes (its payload; a header alone is not counted).
            let must = self.asm.pending_len().unwrap_or(0);
            self.cover(must).await?;
            // Ask for what is missing but accept whatever quinn has buffered, so a burst of
            // small frames costs one call.
            let want = self.asm.needed().max(READ_AHEAD);
            match self.recv.read_chunk(want, true).await? {
                Some(chunk) => {
                    self.asm.push(&chunk.bytes);
                    self.charge_read_ahead();
                    self.sync_parent();
                }
                None if self.asm.buffered() == 0 => return Ok(None),
                None => return Err(ReadFrameError::Truncated),
            }
        }
    }

    /// Makes the reservation exactly `must` bytes (plus any read-ahead still owed), waiting
    /// for room for at most the budget's wait bound.
    async fn cover(&mut self, must: usize) -> Result<(), ReadFrameError> {
        let Some(budget) = self.budget.clone() else {
            return Ok(());
        };
        let must = must.max(self.asm.buffered());
        if self.reserved >= must {
            budget.give(self.reserved - must);
            self.reserved = must;
            return Ok(());
        }
        let n = must - self.reserved;
        if budget.try_take(n) {
            self.reserved = must;
            return Ok(());
        }
        // No room: stop reading this stream (flow control holds the peer back) until bytes
        // are given back, for a bounded time.
        budget.waiters.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&budget);
        let start = tokio::time::Instant::now();
        let deadline = start + budget.wait;
        loop {
            let freed = budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if budget.try_take(n) {
                self.reserved = must;
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ReadFrameError::Overloaded {
                    needed: must,
                    waited: now - start,
                });
            }
            // Bytes given back on this connection wake us.
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Charges bytes read beyond the reservation (read-ahead of following frames); when
    /// they do not fit they stay owed and `cover` takes them before the next read.
    fn charge_read_ahead(&mut self) {
        let Some(budget) = &self.budget else { return };
        let over = self.asm.buffered().saturating_sub(self.reserved);
        if over > 0 && budget.try_take(over) {
            self.reserved += over;
        }
    }

    /// Gives back what the reservation holds beyond the bytes still buffered.
    fn shrink_to_buffered(&mut self) {
        if let Some(budget) = &self.budget {
            let keep = self.asm.buffered();
            if self.reserved > keep {
                budget.give(self.reserved - keep);
                self.reserved = keep;
            }
        }
        self.sync_parent();
    }

    /// Tells the budget's parent what the assembler buffers now.
    fn sync_parent(&mut self) {
        let Some(parent) = self.budget.as_ref().and_then(|b| b.parent.as_ref()) else {
            return;
        };
        let now = self.asm.buffered();
        if now > self.charged {
            parent.charge(now - self.charged);
        } else if now < self.charged {
            parent.release(self.charged - now);
        }
        self.charged = now;
    }

    /// Tells the peer to stop sending (used after a framing error).
    pub fn stop(&mut self, code: u32) {
        let _ = self.recv.stop(quinn::VarInt::from_u32(code));
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give(self.reserved);
            if let Some(p) = &b.parent {
                p.release(self.charged);
            }
        }
    }
}
