//! The broker-wide memory budget (`limits.max_memory_bytes`).
//!
//! Every place that holds bytes a client made the broker keep (retained stream records,
//! cache entries, subscriber buffers, requests in flight) reserves them here first and
//! releases them when it lets go. A reservation that does not fit fails at once: the caller
//! answers `overloaded` and nothing is half-done. Unfinished frames are only counted
//! ([`MemoryBudget::charge`]): they are bounded per connection, and bytes already read off the
//! network are held whether they fit or not. Per-connection and
//! per-resource bounds sit below this one; this one keeps their sum under the process's
//! configured size.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A byte budget shared by the whole broker.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Takes `n` bytes if they fit; `false` (and nothing taken) if they do not.
    pub fn try_reserve(&self, n: usize) -> bool {
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

    /// Counts `n` bytes as used even past the limit: for memory the broker holds whether or
    /// not it fits (bytes already read off the network), so that writes are refused while it
    /// is held.
    pub fn charge(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    /// Gives back `n` bytes taken by [`MemoryBudget::try_reserve`] or
    /// [`MemoryBudget::charge`].
    pub fn release(&self, n: usize) {
        let prev = self.used.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(prev >= n, "released {n} bytes of {prev} reserved");
    }

    /// Takes `n` bytes as a guard that gives them back when dropped.
    pub fn reserve(self: &Arc<Self>, n: usize) -> Option<Reservation> {
        self.try_reserve(n).then(|| Reservation {
            budget: self.clone(),
            bytes: n,
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The configured limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Bytes held from a [`MemoryBudget`] until dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_past_the_limit_fail_whole_and_dropping_gives_bytes_back() {
        let b = MemoryBudget::new(100);
        let r1 = b.reserve(60).expect("fits");
        assert!(b.reserve(41).is_none(), "60 + 41 > 100");
        assert_eq!(b.used(), 60, "a failed reservation takes nothing");
        let r2 = b.reserve(40).expect("60 + 40 = 100 fits exactly");
        assert_eq!(b.used(), 100);
        drop(r1);
        assert_eq!(b.used(), 40);
        assert_eq!(r2.bytes(), 40);
        drop(r2);
        assert_eq!(b.used(), 0);
        assert!(!b.try_reserve(usize::MAX), "no overflow on huge requests");
    }
}
