//! Broker configuration: defaults that run with no file, overridden by a TOML file, then by
//! `FELIX_*` environment variables, then by command-line flags (see `main.rs`).
//!
//! Every bound in the broker is a field here, so that memory and latency trade-offs are
//! explicit knobs rather than constants buried in code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod storage;

pub use storage::{DurabilityClass, FsyncName, StorageConfig};

use crate::cache::CacheConfig;
use crate::log::Retention;
use crate::queue::GroupConfig;
use crate::stream::{FullPolicy, StreamConfig};

/// Everything the broker reads at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// HTTP address for `/live`, `/ready` and `/metrics`; `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// Dev mode: generated certificate, any token accepted, resources created on first use.
    pub dev: bool,
    /// Where dev mode writes the CA PEM clients verify against.
    pub dev_ca_path: PathBuf,
    /// PEM certificate chain (production).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (production).
    pub tls_key: Option<PathBuf>,
    /// File holding the QUIC stateless-reset key (32 bytes, created if missing). With a
    /// stable key, clients notice a broker restart at once. Dev mode defaults to a file
    /// beside the dev CA; production without it uses a random key per process.
    pub reset_key_path: Option<PathBuf>,
    /// Create streams and caches on first use (defaults to `dev`).
    pub auto_create: Option<bool>,
    /// Token file: one `TENANT TOKEN [SUBJECT]` per line (`TOKEN` may be `sha256:HEX`); each
    /// token opens only its tenant. Must not be readable by other users in production. Tokens
    /// may also come from the `FELIX_AUTH_TOKENS` environment variable (`TENANT:TOKEN,...`),
    /// never from the command line. Production needs one or the other.
    pub auth_tokens_file: Option<PathBuf>,
    /// JWT mode: Felix JWTs verified against keys from a file or the control plane.
    pub auth: crate::auth::AuthConfig,
    /// `current_thread` (lowest latency on few cores) or `multi_thread`.
    pub runtime: RuntimeKind,
    /// Worker threads for `multi_thread` (0 = one per core).
    pub worker_threads: usize,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Resource limits.
    pub limits: Limits,
    /// Settings of streams created on first use.
    pub stream_defaults: StreamDefaults,
    /// Settings of caches created on first use.
    pub cache_defaults: CacheDefaults,
    /// Settings of consumer groups created on first use.
    pub group_defaults: GroupDefaults,
    /// QUIC transport knobs.
    pub transport: felix_transport::TransportConfig,
    /// How long shutdown waits for in-flight work before closing connections.
    pub shutdown_grace_ms: u64,
    /// mTLS: PEM file of the CA(s) client certificates must chain to.
    pub tls_client_ca: Option<PathBuf>,
    /// mTLS: `off` (default), `optional` (verify a certificate if presented) or `required`
    /// (refuse clients without one at the handshake). Needs `tls_client_ca`.
    pub tls_client_auth: felix_transport::ClientAuth,
    /// mTLS identities bound to tenants (`[[mtls.identities]]`; see `crate::auth::mtls`).
    pub mtls: crate::auth::mtls::MtlsConfig,
    /// Tenant quotas (`[quotas]`, `[quotas.tenants.NAME]`; see `crate::quota`).
    pub quotas: crate::quota::QuotaConfig,
    /// Audit log (`[audit]`; see `crate::audit`).
    pub audit: crate::audit::AuditConfig,
    /// Durable storage (`[storage]`; see `docs/storage.md`).
    pub storage: StorageConfig,
}

/// Runtime flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// One thread runs everything: fewest wake-ups, best p50 on small machines.
    CurrentThread,
    /// Work-stealing pool: more throughput on many cores.
    MultiThread,
}

/// Per-broker and per-connection limits; past each the caller gets `overloaded` (or
/// `frame_too_large`) and other clients are unaffected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest frame payload accepted.
    pub max_frame_bytes: u32,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Open subscriptions per connection.
    pub max_subscriptions_per_connection: usize,
    /// Request bytes being processed per connection (blocked publishes, long polls).
    pub max_inflight_bytes_per_connection: usize,
    /// Streams + caches per broker.
    pub max_resources: usize,
    /// Longest long-poll wait a `queue_pull` may ask for.
    pub max_pull_wait_ms: u64,
    /// Most messages one `queue_pull` may ask for.
    pub max_pull_batch: u32,
    /// Events per frame written to a subscriber.
    pub max_event_batch: usize,
    /// Bytes per frame written to a subscriber.
    pub max_event_batch_bytes: usize,
    /// Largest frame a stream may send before it has authenticated (an `auth` frame is small;
    /// an unauthenticated peer must not make the broker buffer `max_frame_bytes`).
    pub max_auth_frame_bytes: u32,
    /// A stream must complete `auth` within this time, or it is closed.
    pub auth_timeout_ms: u64,
    /// Failed `auth` attempts on one connection before the connection is closed.
    pub max_auth_failures_per_connection: u32,
    /// `reauth`s accepted per connection per minute (a token bucket holding this many,
    /// refilled over a minute; 0 = unlimited). Each one verifies a signature and re-checks
    /// every subscription and parked pull of the principal, so a client must not make the
    /// broker do that in a loop; a client refreshes once per token lifetime (minutes). Past
    /// it the `reauth` gets `overloaded` (retryable), the token in force stays and the
    /// connection is kept. Default 10.
    pub max_reauths_per_minute: u32,
    /// Bytes of unfinished frames buffered per connection, all streams together (QUIC flow
    /// control holds the rest back in the client). Must be at least `max_frame_bytes`.
    pub max_partial_frame_bytes_per_connection: usize,
    /// How long a stream waits for room under `max_partial_frame_bytes_per_connection` (or
    /// the memory budget) before it is failed with `overloaded` and stopped. While it waits
    /// the broker does not read it, so QUIC flow control holds the client back; the bound
    /// keeps that from lasting forever (waiting streams' unread bytes also use the
    /// connection's QUIC window, which a frame already admitted may need). Default 5000.
    pub partial_frame_wait_ms: u64,
    /// Long-poll `queue_pull` requests parked at once per connection.
    pub max_parked_pulls_per_connection: usize,
    /// Streams + caches per tenant (the broker-wide bound is `max_resources`).
    pub max_resources_per_tenant: usize,
    /// Broker-wide memory budget in bytes: retained stream records, cache entries, subscriber
    /// buffers, requests in flight and unfinished frames together. Past it, writes get
    /// `overloaded`.
    pub max_memory_bytes: usize,
    /// Upper bound for a client-set `max_records` of a stream.
    pub max_stream_records: usize,
    /// Upper bound for a client-set `max_bytes` of a stream or cache.
    pub max_stream_bytes: usize,
    /// Upper bound for a client-set `subscriber_buffer` (messages).
    pub max_subscriber_buffer: usize,
    /// Bytes one subscriber may have queued and not yet written (its full policy applies past
    /// it, as past `subscriber_buffer` messages).
    pub max_subscriber_buffer_bytes: usize,
    /// Offsets in one `queue_ack` / `queue_nack` / `queue_extend` / dead-letter request.
    pub max_offsets_per_request: usize,
    /// Keys in one `cache_get_many`.
    pub max_keys_per_request: usize,
}

/// Defaults for streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamDefaults {
    /// Records kept per stream (ephemeral log bound).
    pub max_records: usize,
    /// Bytes kept per stream (ephemeral log bound).
    pub max_bytes: usize,
    /// Per-subscriber queue bound, in messages.
    pub subscriber_buffer: usize,
    /// Policy when a subscriber's queue is full.
    pub full_policy: FullPolicy,
    /// How long a `block` publisher waits before the stalled subscriber is disconnected.
    pub block_timeout_ms: u64,
    /// `ephemeral` (default: in memory, gone on restart) or `durable` (files under
    /// `storage.data_dir`, kept across restarts with the same epoch and offsets).
    pub durability: DurabilityClass,
    /// Fsync policy of durable streams; unset = `storage.default_fsync`.
    pub fsync: Option<FsyncName>,
    /// Interval of `interval` streams; unset = `storage.default_fsync_interval_ms`.
    pub fsync_interval_ms: Option<u64>,
}

/// Defaults for caches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheDefaults {
    /// Byte budget per cache (LRU eviction beyond it).
    pub max_bytes: usize,
    /// TTL for puts that give none; `None` keeps entries until evicted.
    pub default_ttl_ms: Option<u64>,
    /// Largest value accepted.
    pub max_value_bytes: usize,
    /// How often expired entries are swept in the background.
    pub sweep_interval_ms: u64,
}

/// Defaults for consumer groups.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupDefaults {
    /// Lease length before redelivery.
    pub ack_timeout_ms: u64,
    /// Deliveries before a message is dead-lettered.
    pub max_deliveries: u32,
    /// Dead letters kept per group (oldest dropped beyond).
    pub dead_letter_max: usize,
    /// Unacknowledged deliveries per group.
    pub max_in_flight: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5000".parse().expect("literal"),
            metrics_listen: Some("127.0.0.1:8080".parse().expect("literal")),
            dev: true,
            dev_ca_path: default_ca_path(),
            tls_cert: None,
            tls_key: None,
            reset_key_path: None,
            auto_create: None,
            auth_tokens_file: None,
            auth: Default::default(),
            runtime: RuntimeKind::CurrentThread,
            worker_threads: 0,
            log_format: "text".into(),
            limits: Limits::default(),
            stream_defaults: StreamDefaults::default(),
            cache_defaults: CacheDefaults::default(),
            group_defaults: GroupDefaults::default(),
            transport: Default::default(),
            shutdown_grace_ms: 5_000,
            tls_client_ca: None,
            tls_client_auth: Default::default(),
            mtls: Default::default(),
            quotas: Default::default(),
            audit: Default::default(),
            storage: Default::default(),
        }
    }
}

/// `$TMPDIR/felix-dev-<uid>/ca.pem` (`/tmp/felix-dev-0/ca.pem` for root on Linux): a per-user
/// directory, created 0700 and refused if another user owns it or can write to it.
pub fn default_ca_path() -> PathBuf {
    felix_transport::default_dev_ca_path()
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: felix_wire::frame::DEFAULT_MAX_FRAME,
            max_connections: 10_000,
            // At most the client's uni-stream limit (one event stream per subscription; 4096
            // by default): beyond it the broker could not open the event stream, and the
            // subscribe would hang instead of failing with `overloaded`.
            max_subscriptions_per_connection: 4_096,
            max_inflight_bytes_per_connection: 64 * 1024 * 1024,
            max_resources: 100_000,
            max_pull_wait_ms: 60_000,
            max_pull_batch: 1_000,
            max_event_batch: 256,
            max_event_batch_bytes: 256 * 1024,
            max_auth_frame_bytes: 64 * 1024,
            auth_timeout_ms: 10_000,
            max_auth_failures_per_connection: 5,
            max_reauths_per_minute: 10,
            max_partial_frame_bytes_per_connection: 32 * 1024 * 1024,
            partial_frame_wait_ms: 5_000,
            max_parked_pulls_per_connection: 1_024,
            max_resources_per_tenant: 10_000,
            max_memory_bytes: 2 * 1024 * 1024 * 1024,
            max_stream_records: 10_000_000,
            max_stream_bytes: 1024 * 1024 * 1024,
            max_subscriber_buffer: 65_536,
            max_subscriber_buffer_bytes: 16 * 1024 * 1024,
            max_offsets_per_request: 10_000,
            max_keys_per_request: 1_000,
        }
    }
}

impl Default for StreamDefaults {
    fn default() -> Self {
        let r = Retention::default();
        Self {
            max_records: r.max_records,
            max_bytes: r.max_bytes,
            subscriber_buffer: 4_096,
            full_policy: FullPolicy::DropOldest,
            block_timeout_ms: 5_000,
            durability: DurabilityClass::Ephemeral,
            fsync: None,
            fsync_interval_ms: None,
        }
    }
}

impl Default for CacheDefaults {
    fn default() -> Self {
        let c = CacheConfig::default();
        Self {
            max_bytes: c.max_bytes,
            default_ttl_ms: c.default_ttl.map(|d| d.as_millis() as u64),
            max_value_bytes: c.max_value_bytes,
            sweep_interval_ms: 100,
        }
    }
}

impl Default for GroupDefaults {
    fn default() -> Self {
        let g = GroupConfig::default();
        Self {
            ack_timeout_ms: g.ack_timeout.as_millis() as u64,
            max_deliveries: g.max_deliveries,
            dead_letter_max: g.dead_letter_max,
            max_in_flight: g.max_in_flight,
        }
    }
}

impl BrokerConfig {
    /// Whether resources are created on first use.
    pub fn auto_create(&self) -> bool {
        self.auto_create.unwrap_or(self.dev)
    }

    /// Where the stateless-reset key lives, if anywhere.
    pub fn reset_key_file(&self) -> Option<PathBuf> {
        match (&self.reset_key_path, self.dev) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => Some(self.dev_ca_path.with_file_name("reset.key")),
            (None, false) => None,
        }
    }

    /// Reads a TOML file over the defaults.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Self::from_toml_str(&text)
    }

    /// Parses TOML over the defaults.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.dev && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err(ConfigError(
                "production mode (dev = false) needs tls_cert and tls_key".into(),
            ));
        }
        if self.limits.max_frame_bytes < 1024 {
            return Err(ConfigError(
                "limits.max_frame_bytes must be at least 1024".into(),
            ));
        }
        if self.limits.max_partial_frame_bytes_per_connection < self.limits.max_frame_bytes as usize
        {
            return Err(ConfigError(
                "limits.max_partial_frame_bytes_per_connection must be at least limits.max_frame_bytes"
                    .into(),
            ));
        }
        if self.tls_client_auth != felix_transport::ClientAuth::Off && self.tls_client_ca.is_none()
        {
            return Err(ConfigError(
                "tls_client_auth needs tls_client_ca (the CA client certificates chain to)".into(),
            ));
        }
        let durable_default = self.stream_defaults.durability == DurabilityClass::Durable;
        if !self.dev && durable_default && self.storage.data_dir.is_none() {
            return Err(ConfigError(
                "stream_defaults.durability = \"durable\" needs storage.data_dir (--data-dir)"
                    .into(),
            ));
        }
        if self.storage.default_fsync_interval_ms == 0
            || self.stream_defaults.fsync_interval_ms == Some(0)
        {
            return Err(ConfigError("fsync_interval_ms must be > 0".into()));
        }
        if self.stream_defaults.subscriber_buffer == 0 {
            return Err(ConfigError(
                "stream_defaults.subscriber_buffer must be > 0".into(),
            ));
        }
        Ok(())
    }

    /// Stream settings for a stream created on first use.
    pub fn stream_config(&self) -> StreamConfig {
        let d = &self.stream_defaults;
        StreamConfig {
            retention: Retention {
                max_records: d.max_records,
                max_bytes: d.max_bytes,
            },
            subscriber_buffer: d.subscriber_buffer,
            full_policy: d.full_policy,
            block_timeout: Duration::from_millis(d.block_timeout_ms),
            durability: self
                .storage
                .durability(d.durability, d.fsync, d.fsync_interval_ms),
        }
    }

    /// Cache settings for a cache created on first use.
    pub fn cache_config(&self) -> CacheConfig {
        let d = &self.cache_defaults;
        CacheConfig {
            max_bytes: d.max_bytes,
            default_ttl: d.default_ttl_ms.map(Duration::from_millis),
            max_value_bytes: d.max_value_bytes,
            ..CacheConfig::default()
        }
    }

    /// Group settings for a group created on first use.
    pub fn group_config(&self) -> GroupConfig {
        let d = &self.group_defaults;
        GroupConfig {
            ack_timeout: Duration::from_millis(d.ack_timeout_ms),
            max_deliveries: d.max_deliveries,
            dead_letter_max: d.dead_letter_max,
            max_in_flight: d.max_in_flight,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_gives_the_documented_defaults() {
        let cfg = BrokerConfig::from_toml_str("").unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(cfg.metrics_listen.unwrap().to_string(), "127.0.0.1:8080");
        assert!(cfg.dev && cfg.auto_create());
        cfg.validate().unwrap();
    }

    #[test]
    fn toml_overrides_nested_settings_and_printed_config_reads_back() {
        let cfg = BrokerConfig::from_toml_str(
            r#"
            listen = "127.0.0.1:7000"
            runtime = "multi_thread"
            [limits]
            max_connections = 3
            [stream_defaults]
            full_policy = "block"
            subscriber_buffer = 8
            [transport]
            idle_timeout_ms = 10000
            "#,
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 7000);
        assert_eq!(cfg.runtime, RuntimeKind::MultiThread);
        assert_eq!(cfg.limits.max_connections, 3);
        assert_eq!(cfg.stream_config().full_policy, FullPolicy::Block);
        assert_eq!(cfg.stream_config().subscriber_buffer, 8);
        assert_eq!(cfg.transport.idle_timeout_ms, 10_000);
        // What --print-config writes must load back to the same settings.
        let printed = toml::to_string_pretty(&cfg).unwrap();
        let again = BrokerConfig::from_toml_str(&printed).unwrap();
        assert_eq!(toml::to_string_pretty(&again).unwrap(), printed);
    }

    #[test]
    fn durable_streams_need_a_data_dir_in_production_and_stay_ephemeral_without_one() {
        use crate::log::{Durability, FsyncPolicy};
        let cfg = BrokerConfig::default();
        assert_eq!(cfg.stream_config().durability, Durability::Ephemeral);
        let dev =
            BrokerConfig::from_toml_str("[stream_defaults]\ndurability = \"durable\"").unwrap();
        dev.validate().unwrap();
        assert_eq!(
            dev.stream_config().durability,
            Durability::Ephemeral,
            "no data_dir: no durable streams"
        );
        let prod = BrokerConfig::from_toml_str(
            "dev = false\ntls_cert = \"c\"\ntls_key = \"k\"\n[stream_defaults]\ndurability = \"durable\"",
        )
        .unwrap();
        let err = prod.validate().unwrap_err().to_string();
        assert!(err.contains("storage.data_dir"), "{err}");
        let durable = BrokerConfig::from_toml_str(
            r#"
            [storage]
            data_dir = "/tmp/x"
            default_fsync = "interval"
            default_fsync_interval_ms = 50
            [stream_defaults]
            durability = "durable"
            "#,
        )
        .unwrap();
        durable.validate().unwrap();
        assert_eq!(
            durable.stream_config().durability,
            Durability::Durable(FsyncPolicy::Interval(Duration::from_millis(50)))
        );
        let always = BrokerConfig::from_toml_str(
            "[storage]\ndata_dir = \"/d\"\n[stream_defaults]\ndurability = \"durable\"\nfsync = \"always\"",
        )
        .unwrap();
        assert_eq!(
            always.stream_config().durability,
            Durability::Durable(FsyncPolicy::Always)
        );
    }

    #[test]
    fn unknown_keys_and_unsafe_production_settings_are_rejected() {
        assert!(BrokerConfig::from_toml_str("listne = \"127.0.0.1:1\"").is_err());
        let cfg = BrokerConfig::from_toml_str("dev = false").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("tls_cert"), "{err}");
        assert!(
            !cfg.auto_create(),
            "production mode must not create resources on first use"
        );
    }
}
