//! One cache shard: a hash map into a slab of nodes threaded on an intrusive LRU list, plus
//! an expiry index ordered by `(expires_at, version)`.
//!
//! The slab keeps get/put/touch O(1) without per-touch allocation. The expiry index is kept
//! exact (entries are removed from it on overwrite, delete and eviction) instead of being a
//! lazily invalidated heap: with lazy invalidation, a key overwritten every millisecond with
//! a one-hour TTL would pile up millions of stale heap entries between sweeps, escaping the
//! byte budget. Versions are unique per cache, so `(expires_at, version)` is a unique key.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{charge, CacheError, CacheValue, Counters, PutCondition};
use crate::budget::MemoryBudget;

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Entry {
    key: Arc<str>,
    value: Bytes,
    version: u64,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    fn charge(&self) -> usize {
        charge(&self.key, self.value.len())
    }
}

#[derive(Debug)]
struct Node {
    /// `None` while the node sits on the free list.
    entry: Option<Entry>,
    prev: usize,
    next: usize,
}

#[derive(Debug)]
pub(super) struct Shard {
    map: HashMap<Arc<str>, usize>,
    nodes: Vec<Node>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next eviction victim.
    tail: usize,
    expiry: BTreeMap<(Instant, u64), usize>,
    bytes: usize,
    budget: usize,
}

impl Shard {
    pub(super) fn new(budget: usize) -> Self {
        Self {
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            expiry: BTreeMap::new(),
            bytes: 0,
            budget,
        }
    }

    pub(super) fn get(&mut self, key: &str, now: Instant, c: &Counters) -> Option<CacheValue> {
        match self.lookup_live(key, now, c) {
            Some(idx) => {
                c.hits.fetch_add(1, Ordering::Relaxed);
                self.unlink(idx);
                self.push_front(idx);
                let e = self.entry(idx);
                Some(CacheValue {
                    value: e.value.clone(),
                    version: e.version,
                    expires_at: e.expires_at,
                })
            }
            None => {
                c.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Caller has checked that the entry's charge fits `budget`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put(
        &mut self,
        key: &str,
        value: Bytes,
        expires_at: Option<Instant>,
        cond: PutCondition,
        now: Instant,
        last_version: &AtomicU64,
        c: &Counters,
    ) -> Result<u64, CacheError> {
        let existing = self.lookup_live(key, now, c);
        let current = existing.map(|idx| self.entry(idx).version);
        let holds = match cond {
            PutCondition::Always => true,
            PutCondition::IfAbsent => current.is_none(),
            PutCondition::IfVersion(v) => current == Some(v),
        };
        if !holds {
            return Err(CacheError::Conflict { current });
        }
        let size = charge(key, value.len());
        // Reserve what the put adds to the broker-wide budget before changing anything, so a
        // refused put leaves the shard as it was. An overwrite already holds the old size.
        let old_size = existing.map_or(0, |idx| self.entry(idx).charge());
        if let Some(budget) = &c.budget {
            if !self.reserve_global(budget, size.saturating_sub(old_size), existing, now, c) {
                return Err(CacheError::Overloaded {
                    limit: budget.limit(),
                });
            }
        }
        // Taken under the shard lock, so successive writes of one key get increasing versions.
        let version = last_version.fetch_add(1, Ordering::Relaxed) + 1;

        let idx = match existing {
            Some(idx) => {
                // Take the old incarnation out of both eviction paths and release its bytes,
                // so making room can neither evict it nor count it twice. Its global
                // reservation carries over to the new value (see above).
                self.unlink(idx);
                let old_expiry = {
                    let e = self.entry(idx);
                    e.expires_at.map(|t| (t, e.version))
                };
                if let Some(k) = old_expiry {
                    self.expiry.remove(&k);
                }
                self.release_local(old_size, c);
                if old_size > size {
                    if let Some(b) = &c.budget {
                        b.release(old_size - size);
                    }
                }
                self.make_room(size, now, c);
                let e = self.entry_mut(idx);
                e.value = value;
                e.version = version;
                e.expires_at = expires_at;
                idx
            }
            None => {
                self.make_room(size, now, c);
                let key: Arc<str> = Arc::from(key);
                let idx = self.alloc(Entry {
                    key: key.clone(),
                    value,
                    version,
                    expires_at,
                });
                self.map.insert(key, idx);
                c.entries.fetch_add(1, Ordering::Relaxed);
                idx
            }
        };
        self.push_front(idx);
        if let Some(t) = expires_at {
            self.expiry.insert((t, version), idx);
        }
        self.bytes += size;
        c.bytes.fetch_add(size, Ordering::Relaxed);
        Ok(version)
    }

    pub(super) fn delete(&mut self, key: &str, now: Instant, c: &Counters) -> bool {
        match self.lookup_live(key, now, c) {
            Some(idx) => {
                self.remove(idx, c);
                true
            }
            None => false,
        }
    }

    pub(super) fn sweep(&mut self, now: Instant, max: usize, c: &Counters) -> usize {
        let mut removed = 0;
        while removed < max && self.expire_first(now, c) {
            removed += 1;
        }
        removed
    }

    /// Index of the live entry for `key`; an expired one is reclaimed and reported absent.
    fn lookup_live(&mut self, key: &str, now: Instant, c: &Counters) -> Option<usize> {
        let idx = *self.map.get(key)?;
        if self.entry(idx).is_expired(now) {
            self.remove(idx, c);
            c.expirations.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(idx)
    }

    /// Reserves `n` bytes from the broker-wide budget, evicting this shard's expired and then
    /// least recently used entries (never `keep`, the entry being overwritten) while it does
    /// not fit. `false` if it still does not fit.
    fn reserve_global(
        &mut self,
        budget: &MemoryBudget,
        n: usize,
        keep: Option<usize>,
        now: Instant,
        c: &Counters,
    ) -> bool {
        if budget.try_reserve(n) {
            return true;
        }
        // Evict only when evicting can make it fit: with the budget full of other caches' and
        // streams' data, emptying this shard and then refusing anyway would lose its entries
        // for nothing.
        let kept = keep.map_or(0, |k| self.entry(k).charge());
        let free = budget.limit().saturating_sub(budget.used());
        if free + self.bytes.saturating_sub(kept) < n {
            return false;
        }
        while !budget.try_reserve(n) {
            if self.expire_first(now, c) {
                continue;
            }
            let victim = match (self.tail, keep) {
                (NIL, _) => return false,
                (t, Some(k)) if t == k => match self.nodes[t].prev {
                    NIL => return false,
                    p => p,
                },
                (t, _) => t,
            };
            self.remove(victim, c);
            c.evictions.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Frees space until `size` more bytes fit: already expired entries go first (they are
    /// garbage), then the least recently used.
    fn make_room(&mut self, size: usize, now: Instant, c: &Counters) {
        while self.bytes + size > self.budget {
            if self.expire_first(now, c) {
                continue;
            }
            if self.tail == NIL {
                break;
            }
            self.remove(self.tail, c);
            c.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes the entry expiring first if it has expired by `now`.
    fn expire_first(&mut self, now: Instant, c: &Counters) -> bool {
        match self.expiry.first_key_value() {
            Some((&(t, _), &idx)) if t <= now => {
                self.remove(idx, c);
                c.expirations.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    fn remove(&mut self, idx: usize, c: &Counters) {
        self.unlink(idx);
        let e = self.nodes[idx].entry.take().expect("removing a free node");
        self.map.remove(&e.key);
        if let Some(t) = e.expires_at {
            self.expiry.remove(&(t, e.version));
        }
        self.free.push(idx);
        self.release(e.charge(), c);
        c.entries.fetch_sub(1, Ordering::Relaxed);
    }

    /// Gives back `size` bytes to the shard, the cache and the broker-wide budget.
    fn release(&mut self, size: usize, c: &Counters) {
        self.release_local(size, c);
        if let Some(b) = &c.budget {
            b.release(size);
        }
    }

    /// Gives back `size` bytes to the shard and the cache only.
    fn release_local(&mut self, size: usize, c: &Counters) {
        self.bytes -= size;
        c.bytes.fetch_sub(size, Ordering::Relaxed);
    }

    fn alloc(&mut self, entry: Entry) -> usize {
        let node = Node {
            entry: Some(entry),
            prev: NIL,
            next: NIL,
        };
        match self.free.pop() {
            Some(idx) => {
                self.nodes[idx] = node;
                idx
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    fn entry(&self, idx: usize) -> &Entry {
        self.nodes[idx].entry.as_ref().expect("live node")
    }

    fn entry_mut(&mut self, idx: usize) -> &mut Entry {
        self.nodes[idx].entry.as_mut().expect("live node")
    }

    fn unlink(&mut self, idx: usize) {
        let (prev, next) = (self.nodes[idx].prev, self.nodes[idx].next);
        match prev {
            NIL => {
                if self.head == idx {
                    self.head = next;
                }
            }
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => {
                if self.tail == idx {
                    self.tail = prev;
                }
            }
            n => self.nodes[n].prev = prev,
        }
        self.nodes[idx].prev = NIL;
        self.nodes[idx].next = NIL;
    }

    fn push_front(&mut self, idx: usize) {
        self.nodes[idx].prev = NIL;
        self.nodes[idx].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = idx;
        }
        self.head = idx;
        if self.tail == NIL {
            self.tail = idx;
        }
    }

    /// Keys from least to most recently used.
    #[cfg(test)]
    pub(super) fn lru_order(&self) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        let mut i = self.tail;
        while i != NIL {
            out.push(self.entry(i).key.clone());
            i = self.nodes[i].prev;
        }
        out
    }

    /// Panics unless the map, list, expiry index and byte count agree.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let order = self.lru_order();
        assert_eq!(order.len(), self.map.len(), "list and map disagree");
        let mut bytes = 0;
        let mut with_ttl = 0;
        for (key, &idx) in &self.map {
            let e = self.entry(idx);
            assert_eq!(&e.key, key);
            bytes += e.charge();
            if let Some(t) = e.expires_at {
                with_ttl += 1;
                assert_eq!(self.expiry.get(&(t, e.version)), Some(&idx));
            }
        }
        assert_eq!(with_ttl, self.expiry.len(), "stale expiry index entries");
        assert_eq!(bytes, self.bytes);
        assert!(self.bytes <= self.budget, "shard over budget");
        assert_eq!(self.map.len() + self.free.len(), self.nodes.len());
    }
}
