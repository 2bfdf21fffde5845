//! Where named resources live: streams (each with its consumer groups), caches and wildcard
//! subscriptions, per tenant and namespace.
//!
//! Lookups on the hot path take a read lock and build no owned key: the key is written into
//! a caller-provided buffer (`tenant/namespace/name`; `/` cannot occur in names). Creation on
//! first use (dev mode) validates names, the broker-wide resource bound and the tenant's
//! (`limits.max_resources_per_tenant`, so one tenant cannot take every slot of the broker).
//!
//! Streams' logs and caches reserve their bytes from the broker-wide [`MemoryBudget`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::budget::MemoryBudget;

use crate::cache::{Cache, CacheConfig};
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::log::{Durability, Log, MemoryLog};
use crate::metrics::Snapshot;
use crate::names::{self, Pattern};
use crate::queue::{ConsumerGroup, GroupConfig};
use crate::stream::{Start, Stream, StreamConfig, SubscribeInfo, Subscriber};
use felix_wire::ErrorCode;

mod durable;

pub use durable::Loaded;

/// A stream and the consumer groups reading it.
#[derive(Debug)]
pub struct StreamEntry {
    /// The stream.
    pub stream: Arc<Stream>,
    groups: RwLock<HashMap<Box<str>, Arc<ConsumerGroup>>>,
    label: String,
}

impl StreamEntry {
    /// The most messages pending (unread, or waiting for redelivery) in any one consumer
    /// group of this stream; 0 without groups. For the queue-depth quota.
    pub fn max_group_pending(&self) -> u64 {
        let next = self.stream.next_offset();
        self.groups
            .read()
            .values()
            .map(|g| {
                let s = g.stats();
                s.pending_redelivery as u64 + next.saturating_sub(s.cursor)
            })
            .max()
            .unwrap_or(0)
    }
}

/// A registered cache.
#[derive(Debug)]
pub struct CacheEntry {
    /// The cache.
    pub cache: Cache,
    config: CacheConfig,
    label: String,
}

struct WildcardSub {
    tenant: Box<str>,
    namespace: Box<str>,
    pattern: Pattern,
    sub: Arc<Subscriber>,
    filter: Option<StreamFilter>,
}

/// Which streams (by name, inside the subscription's tenant and namespace) a wildcard
/// subscriber may be attached to: its principal's `subscribe` permission, asked for each
/// stream the pattern matches, existing or created later.
pub type StreamFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl WildcardSub {
    fn admits(&self, name: &str) -> bool {
        self.pattern.matches(name) && self.filter.as_ref().is_none_or(|f| f(name))
    }
}

/// All named resources of one broker.
pub struct Registry {
    cfg: Arc<BrokerConfig>,
    memory: Arc<MemoryBudget>,
    streams: RwLock<HashMap<Box<str>, Arc<StreamEntry>>>,
    caches: RwLock<HashMap<Box<str>, Arc<CacheEntry>>>,
    wildcards: RwLock<Vec<WildcardSub>>,
    /// Streams + caches per tenant (resources are never deleted, so counts only grow).
    per_tenant: Mutex<HashMap<Box<str>, usize>>,
    /// Creates refused by `max_resources_per_tenant`.
    tenant_refusals: AtomicU64,
    /// The data directory of durable streams (`storage.data_dir`), once opened.
    storage: Option<durable::Storage>,
}

/// Writes the lookup key into `buf`.
fn key<'a>(buf: &'a mut String, tenant: &str, namespace: &str, name: &str) -> &'a str {
    buf.clear();
    buf.push_str(tenant);
    buf.push('/');
    buf.push_str(namespace);
    buf.push('/');
    buf.push_str(name);
    buf.as_str()
}

impl Registry {
    /// An empty registry using `cfg` for defaults and limits, whose streams and caches
    /// reserve their bytes from `memory`.
    pub fn new(cfg: Arc<BrokerConfig>, memory: Arc<MemoryBudget>) -> Self {
        Self {
            cfg,
            memory,
            streams: RwLock::new(HashMap::new()),
            caches: RwLock::new(HashMap::new()),
            wildcards: RwLock::new(Vec::new()),
            per_tenant: Mutex::new(HashMap::new()),
            tenant_refusals: AtomicU64::new(0),
            storage: None,
        }
    }

    /// The broker-wide memory budget.
    pub fn memory(&self) -> &Arc<MemoryBudget> {
        &self.memory
    }

    /// Takes one of `tenant`'s resource slots, or refuses with `overloaded` naming the limit.
    fn take_tenant_slot(&self, tenant: &str) -> Result<(), BrokerError> {
        let limit = self.cfg.limits.max_resources_per_tenant;
        let mut counts = self.per_tenant.lock();
        let n = match counts.get_mut(tenant) {
            Some(n) => n,
            None => counts.entry(tenant.into()).or_insert(0),
        };
        if *n >= limit {
            self.tenant_refusals.fetch_add(1, Ordering::Relaxed);
            return Err(BrokerError::overloaded(format!(
                "tenant {tenant} holds its maximum of {limit} streams and caches \
                 (limits.max_resources_per_tenant)"
            )));
        }
        *n += 1;
        Ok(())
    }

    /// Gives back a slot taken for a create that found the resource already there.
    fn give_back_tenant_slot(&self, tenant: &str) {
        if let Some(n) = self.per_tenant.lock().get_mut(tenant) {
            *n = n.saturating_sub(1);
        }
    }

    /// Streams + caches `tenant` holds.
    pub fn tenant_resources(&self, tenant: &str) -> usize {
        self.per_tenant.lock().get(tenant).copied().unwrap_or(0)
    }

    fn check_room(&self) -> Result<(), BrokerError> {
        let n = self.streams.read().len() + self.caches.read().len();
        if n >= self.cfg.limits.max_resources {
            return Err(BrokerError::overloaded(format!(
                "broker holds its maximum of {} streams and caches",
                self.cfg.limits.max_resources
            )));
        }
        Ok(())
    }

    fn validate(tenant: &str, namespace: &str, name: &str) -> Result<(), BrokerError> {
        names::validate_tenant(tenant)?;
        names::validate_namespace(namespace)?;
        names::validate_resource(name)?;
        Ok(())
    }

    /// Looks a stream up, creating it with defaults when `create` (dev mode).
    pub fn stream(
        &self,
        buf: &mut String,
        tenant: &str,
        namespace: &str,
        name: &str,
        create: bool,
    ) -> Result<Arc<StreamEntry>, BrokerError> {
        if let Some(e) = self.streams.read().get(key(buf, tenant, namespace, name)) {
            return Ok(e.clone());
        }
        Self::validate(tenant, namespace, name)?;
        if !create {
            return Err(BrokerError::not_found(format!(
                "stream {tenant}/{namespace}/{name}"
            )));
        }
        self.insert_stream(tenant, namespace, name, self.cfg.stream_config())
            .map(|(e, _)| e)
    }

    /// Creates a stream with explicit settings; creating an existing stream with the same
    /// settings succeeds, with other settings is `already_exists`.
    pub fn create_stream(
        &self,
        tenant: &str,
        namespace: &str,
        name: &str,
        config: StreamConfig,
    ) -> Result<Arc<StreamEntry>, BrokerError> {
        Self::validate(tenant, namespace, name)?;
        let (entry, created) = self.insert_stream(tenant, namespace, name, config.clone())?;
        if !created && *entry.stream.config() != config {
            return Err(BrokerError::new(
                ErrorCode::AlreadyExists,
                format!("stream {tenant}/{namespace}/{name} exists with other settings"),
            ));
        }
        Ok(entry)
    }

    fn insert_stream(
        &self,
        tenant: &str,
        namespace: &str,
        name: &str,
        config: StreamConfig,
    ) -> Result<(Arc<StreamEntry>, bool), BrokerError> {
        self.insert_stream_with(tenant, namespace, name, config, None)
    }

    /// Inserts a stream with `log` (a durable log loaded from disk), or with a log made for
    /// `config` (a `MemoryLog`, or a new durable log with its files) when `None`.
    fn insert_stream_with(
        &self,
        tenant: &str,
        namespace: &str,
        name: &str,
        config: StreamConfig,
        log: Option<Box<dyn Log>>,
    ) -> Result<(Arc<StreamEntry>, bool), BrokerError> {
        let mut buf = String::new();
        let k: Box<str> = key(&mut buf, tenant, namespace, name).into();
        if let Some(e) = self.streams.read().get(&k) {
            return Ok((e.clone(), false));
        }
        self.check_room()?;
        self.take_tenant_slot(tenant)?;
        // A new durable stream's files are made before any registry lock is taken (file
        // system calls must not stall every lookup); durable creations are serialised.
        let mut create_guard = None;
        let (log, made_durable): (Box<dyn Log>, bool) = match (log, config.durability) {
            (Some(log), _) => (log, false),
            (None, Durability::Durable(policy)) => {
                if let Some(e) = self.streams.read().get(&k) {
                    self.give_back_tenant_slot(tenant);
                    return Ok((e.clone(), false));
                }
                match self.create_durable_log(tenant, namespace, name, &config, policy) {
                    Ok((log, guard)) => {
                        create_guard = Some(guard);
                        (log, true)
                    }
                    Err(e) => {
                        self.give_back_tenant_slot(tenant);
                        return Err(e);
                    }
                }
            }
            (None, Durability::Ephemeral) => (
                Box::new(MemoryLog::with_budget(
                    config.retention,
                    self.memory.clone(),
                )),
                false,
            ),
        };
        // Lock order everywhere: wildcards, then streams.
        let wildcards = self.wildcards.read();
        let mut streams = self.streams.write();
        if let Some(e) = streams.get(&k) {
            self.give_back_tenant_slot(tenant);
            let e = e.clone();
            drop((streams, wildcards));
            if made_durable {
                // Created meanwhile by an ephemeral creator: these files were never used.
                drop(log);
                self.forget_durable(tenant, namespace, name);
            }
            drop(create_guard);
            return Ok((e, false));
        }
        let stream = Stream::new(Arc::from(name), config, log);
        // Attach matching wildcard subscribers before the stream is visible, so they cannot
        // miss its first record.
        for w in wildcards.iter() {
            if &*w.tenant == tenant
                && &*w.namespace == namespace
                && w.sub.is_closed().is_none()
                && w.admits(name)
            {
                stream.subscribe(&w.sub, Start::Earliest);
            }
        }
        let entry = Arc::new(StreamEntry {
            stream,
            groups: RwLock::new(HashMap::new()),
            label: k.to_string(),
        });
        streams.insert(k, entry.clone());
        drop(create_guard);
        Ok((entry, true))
    }

    /// Attaches a subscriber to a stream, or to every matching stream (now and later) for a
    /// wildcard pattern, each only if `filter` (when given) admits its name. Returns the start
    /// info (for a pattern: offsets are per stream, so `start_offset` is 0 and no gap is
    /// reported).
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        &self,
        tenant: &str,
        namespace: &str,
        stream_or_pattern: &str,
        sub: &Arc<Subscriber>,
        start: Start,
        create: bool,
        filter: Option<StreamFilter>,
    ) -> Result<SubscribeInfo, BrokerError> {
        if names::is_pattern(stream_or_pattern) {
            names::validate_tenant(tenant)?;
            names::validate_namespace(namespace)?;
            let pattern = Pattern::parse(stream_or_pattern)?;
            // Holding the wildcard lock while attaching makes registration atomic with respect
            // to stream creation (which takes it first): every matching stream is attached
            // exactly once, either here or in insert_stream.
            let mut wild = self.wildcards.write();
            let streams = self.streams.read();
            let w = WildcardSub {
                tenant: tenant.into(),
                namespace: namespace.into(),
                pattern,
                sub: sub.clone(),
                filter,
            };
            let prefix = format!("{tenant}/{namespace}/");
            for (k, e) in streams.iter() {
                if let Some(name) = k.strip_prefix(&prefix) {
                    if w.admits(name) {
                        e.stream.subscribe(sub, start);
                    }
                }
            }
            wild.push(w);
            return Ok(SubscribeInfo {
                start_offset: 0,
                gap: None,
            });
        }
        let mut buf = String::new();
        let entry = self.stream(&mut buf, tenant, namespace, stream_or_pattern, create)?;
        Ok(entry.stream.subscribe(sub, start))
    }

    /// Whether `keep` holds for the name of every stream of `tenant/namespace` that the
    /// (wildcard) subscriber `id` is attached to: a refresh that narrows its principal's
    /// permissions asks this.
    pub fn attached_all(
        &self,
        tenant: &str,
        namespace: &str,
        id: u64,
        keep: impl Fn(&str) -> bool,
    ) -> bool {
        let prefix = format!("{tenant}/{namespace}/");
        self.streams
            .read()
            .iter()
            .all(|(k, e)| match k.strip_prefix(&prefix) {
                Some(name) => keep(name) || !e.stream.is_attached(id),
                None => true,
            })
    }

    /// Detaches a subscriber from everything it was attached to.
    pub fn unsubscribe(&self, tenant: &str, namespace: &str, stream_or_pattern: &str, id: u64) {
        if names::is_pattern(stream_or_pattern) {
            self.wildcards.write().retain(|w| w.sub.id() != id);
            let prefix = format!("{tenant}/{namespace}/");
            if let Ok(pattern) = Pattern::parse(stream_or_pattern) {
                for (k, e) in self.streams.read().iter() {
                    if k.strip_prefix(&prefix).is_some_and(|n| pattern.matches(n)) {
                        e.stream.unsubscribe(id);
                    }
                }
            }
            return;
        }
        let mut buf = String::new();
        if let Some(e) =
            self.streams
                .read()
                .get(key(&mut buf, tenant, namespace, stream_or_pattern))
        {
            e.stream.unsubscribe(id);
        }
    }

    /// Looks a cache up, creating it with defaults when `create`.
    pub fn cache(
        &self,
        buf: &mut String,
        tenant: &str,
        namespace: &str,
        name: &str,
        create: bool,
    ) -> Result<Arc<CacheEntry>, BrokerError> {
        if let Some(e) = self.caches.read().get(key(buf, tenant, namespace, name)) {
            return Ok(e.clone());
        }
        Self::validate(tenant, namespace, name)?;
        if !create {
            return Err(BrokerError::not_found(format!(
                "cache {tenant}/{namespace}/{name}"
            )));
        }
        self.insert_cache(tenant, namespace, name, self.cfg.cache_config())
            .map(|(e, _)| e)
    }

    /// Creates a cache with explicit settings (idempotent for equal settings).
    pub fn create_cache(
        &self,
        tenant: &str,
        namespace: &str,
        name: &str,
        config: CacheConfig,
    ) -> Result<Arc<CacheEntry>, BrokerError> {
        Self::validate(tenant, namespace, name)?;
        let (entry, created) = self.insert_cache(tenant, namespace, name, config.clone())?;
        if !created && entry.config != config {
            return Err(BrokerError::new(
                ErrorCode::AlreadyExists,
                format!("cache {tenant}/{namespace}/{name} exists with other settings"),
            ));
        }
        Ok(entry)
    }

    fn insert_cache(
        &self,
        tenant: &str,
        namespace: &str,
        name: &str,
        config: CacheConfig,
    ) -> Result<(Arc<CacheEntry>, bool), BrokerError> {
        let mut buf = String::new();
        let k: Box<str> = key(&mut buf, tenant, namespace, name).into();
        if let Some(e) = self.caches.read().get(&k) {
            return Ok((e.clone(), false));
        }
        self.check_room()?;
        self.take_tenant_slot(tenant)?;
        let mut caches = self.caches.write();
        if let Some(e) = caches.get(&k) {
            self.give_back_tenant_slot(tenant);
            return Ok((e.clone(), false));
        }
        let entry = Arc::new(CacheEntry {
            cache: Cache::with_budget(config.clone(), self.memory.clone()),
            config,
            label: k.to_string(),
        });
        caches.insert(k, entry.clone());
        Ok((entry, true))
    }

    /// Looks a group up on a stream, creating it (from the earliest record) when `create`.
    pub fn group(
        &self,
        entry: &StreamEntry,
        group: &str,
        create: bool,
    ) -> Result<Arc<ConsumerGroup>, BrokerError> {
        if let Some(g) = entry.groups.read().get(group) {
            return Ok(g.clone());
        }
        names::validate_resource(group)?;
        if !create {
            return Err(BrokerError::not_found(format!(
                "group {group} on {}",
                entry.label
            )));
        }
        let start = entry.stream.first_offset();
        Ok(self
            .insert_group(entry, group, self.cfg.group_config(), start)
            .0)
    }

    /// Creates a group with explicit settings; an existing group is returned unchanged.
    pub fn create_group(
        &self,
        entry: &StreamEntry,
        group: &str,
        config: GroupConfig,
        start: Start,
    ) -> Result<Arc<ConsumerGroup>, BrokerError> {
        names::validate_resource(group)?;
        let start = match start {
            Start::Earliest => entry.stream.first_offset(),
            Start::Latest => entry.stream.next_offset(),
            Start::Offset(o) => o.max(entry.stream.first_offset()),
        };
        Ok(self.insert_group(entry, group, config, start).0)
    }

    fn insert_group(
        &self,
        entry: &StreamEntry,
        group: &str,
        config: GroupConfig,
        start: u64,
    ) -> (Arc<ConsumerGroup>, bool) {
        let mut groups = entry.groups.write();
        if let Some(g) = groups.get(group) {
            return (g.clone(), false);
        }
        let g = Arc::new(ConsumerGroup::new(config, start));
        groups.insert(group.into(), g.clone());
        (g, true)
    }

    /// Removes expired cache entries, bounded work per cache; returns how many.
    pub fn sweep_caches(&self, now: Instant) -> usize {
        let caches: Vec<_> = self.caches.read().values().cloned().collect();
        caches
            .iter()
            .map(|c| c.cache.sweep_expired(now, 1024))
            .sum()
    }

    /// Per-resource figures for `/metrics`.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            memory_used: self.memory.used() as u64,
            memory_limit: self.memory.limit() as u64,
            tenant_refusals: self.tenant_refusals.load(Ordering::Relaxed),
            ..Snapshot::default()
        };
        for e in self.streams.read().values() {
            let s = e.stream.stats();
            snap.streams.push((
                e.label.clone(),
                s.records as u64,
                s.bytes as u64,
                s.subscribers as u64,
                s.dropped,
            ));
            for (name, g) in e.groups.read().iter() {
                let gs = g.stats();
                snap.groups.push((
                    format!("{}/{name}", e.label),
                    gs.in_flight as u64,
                    gs.pending_redelivery as u64 + e.stream.next_offset().saturating_sub(gs.cursor),
                    gs.dead_letters as u64,
                ));
            }
        }
        for e in self.caches.read().values() {
            let s = e.cache.stats();
            snap.caches.push((
                e.label.clone(),
                s.entries as u64,
                s.bytes as u64,
                s.evictions,
                s.expirations,
            ));
        }
        snap
    }
}

#[cfg(test)]
mod tests;
