//! Cache: key -> latest value, with TTL and a byte budget.
//!
//! The cache is read and written by many connections at once, so it is split into shards by
//! key hash, each behind its own short-held mutex; no operation ever takes two shard locks.
//! Memory is bounded without global coordination: every shard owns `max_bytes / shards` of
//! the budget and evicts its least recently used entries to stay inside it, so the sum can
//! never exceed `max_bytes`. Every hot-path operation is O(1) (hash lookup plus an intrusive
//! LRU list over a slab) or O(log n) in the shard's expiry index; nothing scans a shard.
//!
//! TTL is honoured exactly on read (an entry is dead from the instant `expires_at <= now`),
//! while [`Cache::sweep_expired`] reclaims the memory of expired entries nobody reads, doing a
//! bounded amount of work per call so a background sweeper never stalls readers.
//!
//! Entries also reserve their charged bytes from the broker-wide [`MemoryBudget`] (when the
//! cache has one): a put that does not fit first evicts expired, then least recently used
//! entries of its own shard, and is refused with [`CacheError::Overloaded`] only if that is
//! not enough. Every removal (eviction, expiry, delete, overwrite) gives the bytes back.
//!
//! Versions come from one counter per cache rather than per key, so a version is never
//! reused, not even after a delete and re-put: a compare-and-set holding a stale version can
//! never succeed against a different incarnation of the key.

mod shard;
#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::budget::MemoryBudget;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer};

use shard::Shard;

/// Bytes charged per entry on top of `key.len() + value.len()`: an estimate of the slab
/// node, hash-map slot, shared key header, `Bytes` handle and expiry-index entry. Charging it
/// keeps the budget honest for many tiny entries, whose bookkeeping outweighs their data.
pub const ENTRY_OVERHEAD: usize = 160;

/// Knobs of a [`Cache`].
///
/// Deserialises with every field optional; durations are integer milliseconds
/// (`default_ttl_ms`), and unknown fields are rejected so a typo cannot silently fall back to
/// a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Total byte budget across all shards (keys + values + [`ENTRY_OVERHEAD`] per entry).
    pub max_bytes: usize,
    /// TTL applied when a put passes `ttl: None`; `None` here means such entries never expire.
    #[serde(rename = "default_ttl_ms", deserialize_with = "de_opt_duration_ms")]
    pub default_ttl: Option<Duration>,
    /// Largest accepted value.
    pub max_value_bytes: usize,
    /// Number of independently locked shards (0 is treated as 1). Each holds
    /// `max_bytes / shards` bytes, so one entry can be at most that large.
    pub shards: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            default_ttl: None,
            max_value_bytes: 1024 * 1024,
            shards: 16,
        }
    }
}

fn de_opt_duration_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<u64>::deserialize(d)? {
        // A zero default TTL would make every defaulted put fail; refuse it at load time.
        Some(0) => Err(serde::de::Error::custom(
            "default_ttl_ms must be > 0 (omit it for no default TTL)",
        )),
        ms => Ok(ms.map(Duration::from_millis)),
    }
}

/// When a [`Cache::put`] is allowed to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    /// Write unconditionally.
    Always,
    /// Write only if no live entry exists for the key.
    IfAbsent,
    /// Write only if the live entry's version equals this one (compare-and-set).
    IfVersion(u64),
}

/// A live cache entry as returned to readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheValue {
    /// The stored value.
    pub value: Bytes,
    /// Version assigned by the put that wrote it.
    pub version: u64,
    /// Instant from which the entry is dead; `None` if it never expires.
    pub expires_at: Option<Instant>,
}

/// Why a [`Cache::put`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The put's condition did not hold; `current` is the live entry's version, if any.
    #[error("put condition failed (current version: {current:?})")]
    Conflict {
        /// Version of the live entry, `None` if the key had no live entry.
        current: Option<u64>,
    },
    /// The value is larger than `max_value_bytes`.
    #[error("value of {size} bytes exceeds max_value_bytes ({max})")]
    ValueTooLarge {
        /// Size of the rejected value.
        size: usize,
        /// Configured `max_value_bytes`.
        max: usize,
    },
    /// Key, value and per-entry overhead together exceed one shard's byte budget.
    #[error("entry of {size} bytes exceeds the per-shard budget ({budget})")]
    EntryTooLarge {
        /// Charged size of the entry (key + value + [`ENTRY_OVERHEAD`]).
        size: usize,
        /// Byte budget of one shard (`max_bytes / shards`).
        budget: usize,
    },
    /// The effective TTL was zero, or too large to represent as an instant.
    #[error("ttl must be greater than zero and representable")]
    InvalidTtl,
    /// The broker-wide memory budget cannot take the entry, even after evicting this
    /// cache shard's expired and least recently used entries.
    #[error("broker memory budget full (limits.max_memory_bytes = {limit})")]
    Overloaded {
        /// The configured budget.
        limit: usize,
    },
}

/// Point-in-time counters of a [`Cache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries currently held (live or expired but not yet reclaimed).
    pub entries: usize,
    /// Bytes currently charged against the budget.
    pub bytes: usize,
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found nothing live.
    pub misses: u64,
    /// Live entries removed to make room for a put.
    pub evictions: u64,
    /// Expired entries reclaimed (on read, on write, by sweeping or to make room).
    pub expirations: u64,
}

/// Counters shared by all shards. `bytes` is only changed under a shard lock, and a shard
/// subtracts what it frees before adding what it charges, so even a reading taken in the
/// middle of concurrent puts never exceeds `max_bytes`.
#[derive(Debug, Default)]
struct Counters {
    entries: AtomicUsize,
    bytes: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    /// Holds `bytes` at all times when present.
    budget: Option<Arc<MemoryBudget>>,
}

/// A sharded, byte-bounded LRU cache with TTLs and versioned conditional writes.
///
/// `Send + Sync`; share it through an `Arc`.
pub struct Cache {
    config: CacheConfig,
    shard_budget: usize,
    shards: Box<[Mutex<Shard>]>,
    // Separate from the shards' own map hasher: reusing one would make every key in a shard
    // share hash bits, clustering the shard's table.
    shard_hasher: RandomState,
    last_version: AtomicU64,
    counters: Counters,
}

impl Cache {
    /// An empty cache with the given knobs whose entries reserve their bytes from `budget`.
    pub fn with_budget(config: CacheConfig, budget: Arc<MemoryBudget>) -> Self {
        let mut c = Self::new(config);
        c.counters.budget = Some(budget);
        c
    }

    /// An empty cache with the given knobs.
    pub fn new(config: CacheConfig) -> Self {
        let n = config.shards.max(1);
        let shard_budget = config.max_bytes / n;
        let shards = (0..n)
            .map(|_| Mutex::new(Shard::new(shard_budget)))
            .collect();
        Self {
            config,
            shard_budget,
            shards,
            shard_hasher: RandomState::new(),
            last_version: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// The knobs this cache was built with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The live value of `key`, refreshing its recency. TTL is exact: an entry whose
    /// `expires_at <= now` is a miss, and is removed on the spot.
    pub fn get(&self, key: &str, now: Instant) -> Option<CacheValue> {
        self.shard(key).lock().get(key, now, &self.counters)
    }

    /// [`Cache::get`] for each key, in order. Each key takes its own shard lock briefly rather
    /// than holding several at once, so a large batch never blocks a shard for long.
    pub fn get_many<I>(&self, keys: I, now: Instant) -> Vec<Option<CacheValue>>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        keys.into_iter()
            .map(|k| self.get(k.as_ref(), now))
            .collect()
    }

    /// Writes `value` under `key` if `cond` holds and returns the new version.
    ///
    /// `ttl: None` applies `default_ttl`; a zero TTL is [`CacheError::InvalidTtl`]. Versions
    /// come from one cache-wide increasing counter, so they are never reused for a key, even
    /// across a delete. Evicts least recently used entries of the key's shard until the new
    /// entry fits. The value is kept as given: a `Bytes` sliced from a larger buffer keeps
    /// that whole buffer alive, so callers should pass compact values.
    pub fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        cond: PutCondition,
        now: Instant,
    ) -> Result<u64, CacheError> {
        if value.len() > self.config.max_value_bytes {
            return Err(CacheError::ValueTooLarge {
                size: value.len(),
                max: self.config.max_value_bytes,
            });
        }
        let size = charge(key, value.len());
        if size > self.shard_budget {
            return Err(CacheError::EntryTooLarge {
                size,
                budget: self.shard_budget,
            });
        }
        let expires_at = match ttl.or(self.config.default_ttl) {
            None => None,
            Some(ttl) if ttl.is_zero() => return Err(CacheError::InvalidTtl),
            Some(ttl) => Some(now.checked_add(ttl).ok_or(CacheError::InvalidTtl)?),
        };
        self.shard(key).lock().put(
            key,
            value,
            expires_at,
            cond,
            now,
            &self.last_version,
            &self.counters,
        )
    }

    /// Removes `key`; returns whether a live entry existed (an expired one is reclaimed but
    /// does not count).
    pub fn delete(&self, key: &str, now: Instant) -> bool {
        self.shard(key).lock().delete(key, now, &self.counters)
    }

    /// Reclaims up to `max_per_shard` expired entries in each shard, earliest expiry first;
    /// returns how many were removed. Each shard is locked separately, so readers wait at
    /// most for one shard's bounded batch.
    pub fn sweep_expired(&self, now: Instant, max_per_shard: usize) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().sweep(now, max_per_shard, &self.counters))
            .sum()
    }

    /// Current counters. Each is read atomically, but not all at the same instant.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            entries: c.entries.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            expirations: c.expirations.load(Ordering::Relaxed),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let h = self.shard_hasher.hash_one(key);
        &self.shards[(h % self.shards.len() as u64) as usize]
    }
}

// Not derived: that would lock every shard and print every entry.
impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if let Some(b) = &self.counters.budget {
            b.release(self.counters.bytes.load(Ordering::Relaxed));
        }
    }
}

/// Bytes an entry is charged against the budget.
fn charge(key: &str, value_len: usize) -> usize {
    key.len()
        .saturating_add(value_len)
        .saturating_add(ENTRY_OVERHEAD)
}
