//! Tenant quotas: what one tenant may hold or do at once, so that tenants sharing a broker
//! cannot starve each other.
//!
//! Six kinds ([`QuotaKind`]): connections (a connection counts once per tenant it
//! authenticated a stream for), subscriptions, publish bytes/s and messages/s (token buckets
//! holding one second of the rate), cache bytes (the charged bytes of all the tenant's
//! caches) and queue depth (messages pending in any one consumer group of a stream the tenant
//! publishes to). Past one, the call gets `quota_exceeded` (retryable), counted in
//! `felix_quota_exceeded_total{kind}`; other tenants are untouched because every count and
//! bucket is per tenant.
//!
//! Limits come from a [`QuotaTable`] (the `[quotas]` config: a default plus per-tenant
//! overrides) that can be replaced at runtime with [`Quotas::replace`] (the control plane will
//! push quotas); usage is kept apart from the table, so a swap keeps every count. The
//! decisions take time as an argument ([`TokenBucket`]), so they are testable without sleeps.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;
use crate::registry::{CacheEntry, StreamEntry};
use felix_wire::ErrorCode;

/// The `[quotas]` table: limits every tenant gets, and `[quotas.tenants.NAME]` overrides.
/// A limit of 0 means unlimited. Rates default to unlimited; counts default to the broker-wide
/// bounds they sit under (finite, and a single-tenant broker behaves as without quotas): set
/// them lower to share a broker between tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Connections per tenant (a connection counts once per tenant it authenticated a stream
    /// for). Default 10 000 (the default `limits.max_connections`).
    pub connections: u64,
    /// Open subscriptions per tenant, all connections together. Default 1 000 000.
    pub subscriptions: u64,
    /// Publish payload bytes per second per tenant (a token bucket holding one second of the
    /// rate). Default 0 = unlimited.
    pub publish_bytes_per_sec: u64,
    /// Published messages per second per tenant (token bucket, one second of burst).
    /// Default 0 = unlimited.
    pub publish_messages_per_sec: u64,
    /// Bytes of all the tenant's caches together, charged as the cache charges them (key +
    /// value + `cache::ENTRY_OVERHEAD` per entry). Default 2 GiB (the default
    /// `limits.max_memory_bytes`).
    pub cache_bytes: u64,
    /// Messages pending (not yet delivered, or waiting for redelivery) in any one consumer
    /// group: a publish that would push a group of its stream past it is refused.
    /// Default 0 = unlimited (stream retention bounds it).
    pub queue_depth: u64,
    /// Per-tenant overrides; fields left out take the values above.
    pub tenants: BTreeMap<String, QuotaOverride>,
}

/// One tenant's overrides of the default quotas (absent fields keep the default; 0 is
/// unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaOverride {
    /// See [`QuotaConfig::connections`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    /// See [`QuotaConfig::subscriptions`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<u64>,
    /// See [`QuotaConfig::publish_bytes_per_sec`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_bytes_per_sec: Option<u64>,
    /// See [`QuotaConfig::publish_messages_per_sec`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_messages_per_sec: Option<u64>,
    /// See [`QuotaConfig::cache_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// See [`QuotaConfig::queue_depth`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            connections: 10_000,
            subscriptions: 1_000_000,
            publish_bytes_per_sec: 0,
            publish_messages_per_sec: 0,
            cache_bytes: 2 * 1024 * 1024 * 1024,
            queue_depth: 0,
            tenants: BTreeMap::new(),
        }
    }
}

/// The limits of one tenant, resolved (0 = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantQuota {
    /// Connections.
    pub connections: u64,
    /// Open subscriptions.
    pub subscriptions: u64,
    /// Publish payload bytes per second.
    pub publish_bytes_per_sec: u64,
    /// Published messages per second.
    pub publish_messages_per_sec: u64,
    /// Bytes of all the tenant's caches.
    pub cache_bytes: u64,
    /// Pending messages per consumer group.
    pub queue_depth: u64,
}

/// Every tenant's limits: a default and overrides. Immutable; replaced whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaTable {
    default: TenantQuota,
    tenants: HashMap<String, TenantQuota>,
}

impl QuotaTable {
    /// The table a `[quotas]` configuration describes.
    pub fn from_config(c: &QuotaConfig) -> Self {
        let default = TenantQuota {
            connections: c.connections,
            subscriptions: c.subscriptions,
            publish_bytes_per_sec: c.publish_bytes_per_sec,
            publish_messages_per_sec: c.publish_messages_per_sec,
            cache_bytes: c.cache_bytes,
            queue_depth: c.queue_depth,
        };
        let tenants = c
            .tenants
            .iter()
            .map(|(name, o)| {
                let q = TenantQuota {
                    connections: o.connections.unwrap_or(default.connections),
                    subscriptions: o.subscriptions.unwrap_or(default.subscriptions),
                    publish_bytes_per_sec: o
                        .publish_bytes_per_sec
                        .unwrap_or(default.publish_bytes_per_sec),
                    publish_messages_per_sec: o
                        .publish_messages_per_sec
                        .unwrap_or(default.publish_messages_per_sec),
                    cache_bytes: o.cache_bytes.unwrap_or(default.cache_bytes),
                    queue_depth: o.queue_depth.unwrap_or(default.queue_depth),
                };
                (name.clone(), q)
            })
            .collect();
        Self { default, tenants }
    }

    /// Whether any tenant has a non-zero value of `field` (so the check can be skipped).
    fn any(&self, field: impl Fn(&TenantQuota) -> u64) -> bool {
        field(&self.default) != 0 || self.tenants.values().any(|q| field(q) != 0)
    }

    /// The limits of `tenant`.
    pub fn get(&self, tenant: &str) -> TenantQuota {
        if self.tenants.is_empty() {
            return self.default;
        }
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

/// What a quota bounds; the `kind` label of `felix_quota_exceeded_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    /// Connections per tenant.
    Connections = 0,
    /// Subscriptions per tenant.
    Subscriptions = 1,
    /// Publish bytes per second.
    PublishBytes = 2,
    /// Publish messages per second.
    PublishMessages = 3,
    /// Cache bytes per tenant.
    CacheBytes = 4,
    /// Pending messages per group.
    QueueDepth = 5,
}

impl QuotaKind {
    /// Every kind, in label order.
    pub const ALL: [QuotaKind; 6] = [
        QuotaKind::Connections,
        QuotaKind::Subscriptions,
        QuotaKind::PublishBytes,
        QuotaKind::PublishMessages,
        QuotaKind::CacheBytes,
        QuotaKind::QueueDepth,
    ];

    /// The metric label and config key stem.
    pub const fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Connections => "connections",
            QuotaKind::Subscriptions => "subscriptions",
            QuotaKind::PublishBytes => "publish_bytes",
            QuotaKind::PublishMessages => "publish_messages",
            QuotaKind::CacheBytes => "cache_bytes",
            QuotaKind::QueueDepth => "queue_depth",
        }
    }
}

/// A token bucket holding at most one second of `rate` tokens, starting full. Pure: the
/// caller passes the time.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens now, in millionths (integer arithmetic keeps the boundary exact).
    micros: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: u64, now: Instant) -> Self {
        Self {
            micros: u128::from(rate) * 1_000_000,
            last: now,
        }
    }

    fn refill(&mut self, rate: u64, now: Instant) {
        let cap = u128::from(rate) * 1_000_000;
        let elapsed_ns = now.saturating_duration_since(self.last).as_nanos();
        // rate tokens per second = rate micro-tokens per microsecond = rate/1000 per ns.
        self.micros = (self.micros + elapsed_ns * u128::from(rate) / 1_000).min(cap);
        self.last = self.last.max(now);
    }

    /// Whether `n` tokens are there at `now` (refilled at `rate`/s); does not take them.
    pub fn has(&mut self, n: u64, rate: u64, now: Instant) -> bool {
        self.refill(rate, now);
        u128::from(n) * 1_000_000 <= self.micros
    }

    /// Takes `n` tokens; call after [`TokenBucket::has`] said yes.
    pub fn take(&mut self, n: u64) {
        self.micros = self.micros.saturating_sub(u128::from(n) * 1_000_000);
    }
}

/// What one tenant uses now.
#[derive(Debug)]
struct TenantUsage {
    tenant: Box<str>,
    connections: AtomicU64,
    subscriptions: AtomicU64,
    /// (bytes, messages) buckets, created on first use of a rate quota.
    buckets: Mutex<Option<(TokenBucket, TokenBucket)>>,
    /// The tenant's caches seen by a put: their bytes are summed for the cache quota. Weak,
    /// so that the quota never keeps a cache alive.
    caches: Mutex<Vec<Weak<CacheEntry>>>,
}

/// One connection's or subscription's place in its tenant's count, given back on drop.
#[derive(Debug)]
pub struct QuotaSlot {
    usage: Arc<TenantUsage>,
    kind: QuotaKind,
}

impl QuotaSlot {
    /// The tenant this slot counts against.
    pub fn tenant(&self) -> &str {
        &self.usage.tenant
    }
}

impl Drop for QuotaSlot {
    fn drop(&mut self) {
        let c = match self.kind {
            QuotaKind::Connections => &self.usage.connections,
            _ => &self.usage.subscriptions,
        };
        c.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The tenants a connection counts against (one slot per tenant it authenticated for), with
/// the subject it first authenticated as for each (for the audit log).
#[derive(Debug, Default)]
pub struct ConnQuota(Mutex<Vec<ConnTenant>>);

/// One tenant a connection authenticated for.
#[derive(Debug)]
struct ConnTenant {
    tenant: String,
    sub: Option<String>,
    /// `None` once every principal of the tenant on the connection ended (expired, revoked,
    /// key withdrawn): the connection no longer counts against the tenant until a stream of
    /// it authenticates (or refreshes) again.
    slot: Option<QuotaSlot>,
}

impl ConnQuota {
    /// (tenant, subject) of every tenant the connection authenticated for, first one first.
    pub fn principals(&self) -> Vec<(String, Option<String>)> {
        self.0
            .lock()
            .iter()
            .map(|t| (t.tenant.clone(), t.sub.clone()))
            .collect()
    }

    /// Gives back the connection's slot of `tenant` (its principals there all ended); a
    /// later `auth` or `reauth` for the tenant takes one again.
    pub fn release(&self, tenant: &str) {
        if let Some(t) = self.0.lock().iter_mut().find(|t| t.tenant == tenant) {
            t.slot = None;
        }
    }

    /// Whether the connection counts against `tenant` now.
    pub fn counts_for(&self, tenant: &str) -> bool {
        self.0
            .lock()
            .iter()
            .any(|t| t.tenant == tenant && t.slot.is_some())
    }
}

/// Quota limits and usage of one broker.
#[derive(Debug)]
pub struct Quotas {
    table: RwLock<Arc<QuotaTable>>,
    /// Some tenant has a publish rate quota / a queue depth quota: without, the publish path
    /// pays one relaxed load for quotas.
    rates_on: AtomicBool,
    depth_on: AtomicBool,
    usage: RwLock<HashMap<Box<str>, Arc<TenantUsage>>>,
    exceeded: [AtomicU64; 6],
}

impl Quotas {
    /// Quotas with this table.
    pub fn new(table: QuotaTable) -> Self {
        let q = Self {
            table: RwLock::new(Arc::new(QuotaTable::default())),
            rates_on: AtomicBool::new(false),
            depth_on: AtomicBool::new(false),
            usage: RwLock::new(HashMap::new()),
            exceeded: Default::default(),
        };
        q.replace(table);
        q
    }

    /// Replaces every limit at once (the control plane's push). Usage is kept: a tenant over
    /// a lowered count keeps what it holds and is refused new slots until under it.
    pub fn replace(&self, table: QuotaTable) {
        let rates =
            table.any(|q| q.publish_bytes_per_sec) || table.any(|q| q.publish_messages_per_sec);
        let depth = table.any(|q| q.queue_depth);
        *self.table.write() = Arc::new(table);
        self.rates_on.store(rates, Ordering::Release);
        self.depth_on.store(depth, Ordering::Release);
    }

    /// The limits `tenant` has now.
    pub fn limits(&self, tenant: &str) -> TenantQuota {
        self.table.read().get(tenant)
    }

    /// Refusals so far of one kind.
    pub fn exceeded(&self, kind: QuotaKind) -> u64 {
        self.exceeded[kind as usize].load(Ordering::Relaxed)
    }

    fn usage(&self, tenant: &str) -> Arc<TenantUsage> {
        if let Some(u) = self.usage.read().get(tenant) {
            return u.clone();
        }
        self.usage
            .write()
            .entry(tenant.into())
            .or_insert_with(|| {
                Arc::new(TenantUsage {
                    tenant: tenant.into(),
                    connections: AtomicU64::new(0),
                    subscriptions: AtomicU64::new(0),
                    buckets: Mutex::new(None),
                    caches: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    fn refuse(&self, kind: QuotaKind, tenant: &str, detail: String) -> BrokerError {
        self.exceeded[kind as usize].fetch_add(1, Ordering::Relaxed);
        BrokerError::new(
            ErrorCode::QuotaExceeded,
            format!(
                "tenant {tenant} is past its {} quota: {detail}",
                kind.as_str()
            ),
        )
    }

    fn take_slot(
        &self,
        kind: QuotaKind,
        tenant: &str,
        limit: u64,
    ) -> Result<QuotaSlot, BrokerError> {
        let usage = self.usage(tenant);
        let count = match kind {
            QuotaKind::Connections => &usage.connections,
            _ => &usage.subscriptions,
        };
        let taken = count.fetch_add(1, Ordering::AcqRel);
        if limit != 0 && taken >= limit {
            count.fetch_sub(1, Ordering::AcqRel);
            let key = kind.as_str();
            return Err(self.refuse(
                kind,
                tenant,
                format!("{taken} held, quotas.{key} = {limit}"),
            ));
        }
        Ok(QuotaSlot { usage, kind })
    }

    /// Counts `conn` against `tenant` unless it already is; `quota_exceeded` when the tenant
    /// holds its maximum of connections. `sub` is remembered for the audit log.
    pub fn admit_connection(
        &self,
        conn: &ConnQuota,
        tenant: &str,
        sub: Option<&str>,
    ) -> Result<(), BrokerError> {
        let mut held = conn.0.lock();
        let known = held.iter().position(|t| t.tenant == tenant);
        if known.is_some_and(|i| held[i].slot.is_some()) {
            return Ok(());
        }
        let limit = self.limits(tenant).connections;
        let slot = self.take_slot(QuotaKind::Connections, tenant, limit)?;
        match known {
            Some(i) => held[i].slot = Some(slot),
            None => held.push(ConnTenant {
                tenant: tenant.to_owned(),
                sub: sub.map(str::to_owned),
                slot: Some(slot),
            }),
        }
        Ok(())
    }

    /// Takes a subscription slot of `tenant`, held until the returned slot is dropped.
    pub fn take_subscription(&self, tenant: &str) -> Result<QuotaSlot, BrokerError> {
        let limit = self.limits(tenant).subscriptions;
        self.take_slot(QuotaKind::Subscriptions, tenant, limit)
    }

    /// Connections and subscriptions `tenant` holds now.
    pub fn held(&self, tenant: &str) -> (u64, u64) {
        match self.usage.read().get(tenant) {
            Some(u) => (
                u.connections.load(Ordering::Acquire),
                u.subscriptions.load(Ordering::Acquire),
            ),
            None => (0, 0),
        }
    }

    /// Takes `messages` and `bytes` from the tenant's publish buckets at `now`, or neither
    /// (`quota_exceeded`) when either bucket lacks them. Free when both rates are unlimited.
    pub fn publish(
        &self,
        tenant: &str,
        messages: u64,
        bytes: u64,
        now: Instant,
    ) -> Result<(), BrokerError> {
        if !self.rates_on.load(Ordering::Acquire) {
            return Ok(());
        }
        let q = self.limits(tenant);
        let (byte_rate, msg_rate) = (q.publish_bytes_per_sec, q.publish_messages_per_sec);
        if byte_rate == 0 && msg_rate == 0 {
            return Ok(());
        }
        let usage = self.usage(tenant);
        let mut buckets = usage.buckets.lock();
        let (b, m) = buckets.get_or_insert_with(|| {
            (
                TokenBucket::new(byte_rate, now),
                TokenBucket::new(msg_rate, now),
            )
        });
        if byte_rate != 0 && !b.has(bytes, byte_rate, now) {
            return Err(self.refuse(
                QuotaKind::PublishBytes,
                tenant,
                format!("{bytes} bytes over quotas.publish_bytes_per_sec = {byte_rate}"),
            ));
        }
        if msg_rate != 0 && !m.has(messages, msg_rate, now) {
            return Err(self.refuse(
                QuotaKind::PublishMessages,
                tenant,
                format!("{messages} messages over quotas.publish_messages_per_sec = {msg_rate}"),
            ));
        }
        if byte_rate != 0 {
            b.take(bytes);
        }
        if msg_rate != 0 {
            m.take(messages);
        }
        Ok(())
    }

    /// Refuses a put of `charge` bytes (key + value + `cache::ENTRY_OVERHEAD`) into `cache`
    /// when the tenant's caches would hold more than its `cache_bytes`. An overwrite is
    /// counted at its full size (the old value is freed only by the put itself). Checked
    /// before the put: concurrent puts of one tenant may each pass it and overshoot by one
    /// entry each.
    pub fn cache_put(
        &self,
        tenant: &str,
        cache: &Arc<CacheEntry>,
        charge: usize,
    ) -> Result<(), BrokerError> {
        let limit = self.limits(tenant).cache_bytes;
        let usage = self.usage(tenant);
        let mut caches = usage.caches.lock();
        if !caches
            .iter()
            .any(|c| std::ptr::eq(c.as_ptr(), Arc::as_ptr(cache)))
        {
            caches.retain(|c| c.strong_count() > 0);
            caches.push(Arc::downgrade(cache));
        }
        if limit == 0 {
            return Ok(());
        }
        let held: u64 = caches
            .iter()
            .filter_map(Weak::upgrade)
            .map(|c| c.cache.stats().bytes as u64)
            .sum();
        if held.saturating_add(charge as u64) > limit {
            return Err(self.refuse(
                QuotaKind::CacheBytes,
                tenant,
                format!("{held} bytes held + {charge} > quotas.cache_bytes = {limit}"),
            ));
        }
        Ok(())
    }

    /// Refuses a publish of `messages` to `stream` when one of its consumer groups would hold
    /// more than the tenant's `queue_depth` pending messages. Checked before the append:
    /// concurrent publishes to one stream may overshoot by their own sizes.
    pub fn queue_depth(
        &self,
        tenant: &str,
        stream: &StreamEntry,
        messages: u64,
    ) -> Result<(), BrokerError> {
        if !self.depth_on.load(Ordering::Acquire) {
            return Ok(());
        }
        let limit = self.limits(tenant).queue_depth;
        if limit == 0 {
            return Ok(());
        }
        let pending = stream.max_group_pending();
        if pending.saturating_add(messages) > limit {
            return Err(self.refuse(
                QuotaKind::QueueDepth,
                tenant,
                format!(
                    "a group holds {pending} pending, + {messages} > quotas.queue_depth = {limit}"
                ),
            ));
        }
        Ok(())
    }

    /// Appends `felix_quota_exceeded_total{kind}` (the label set is the six kinds: tenants
    /// are not a label, their number is not bounded).
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP felix_quota_exceeded_total Calls refused with quota_exceeded, by quota kind.\n# TYPE felix_quota_exceeded_total counter"
        );
        for k in QuotaKind::ALL {
            let _ = writeln!(
                out,
                "felix_quota_exceeded_total{{kind=\"{}\"}} {}",
                k.as_str(),
                self.exceeded(k)
            );
        }
    }
}

#[cfg(test)]
mod tests;
