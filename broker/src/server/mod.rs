//! The QUIC front of the broker: accepts connections, authenticates each client-opened
//! stream, and routes it to the request loop ([`request`]) or a subscription ([`subscribe`]).
//!
//! Isolation rules: a malformed frame fails its stream only; a limit reached fails the one
//! request (`overloaded`); a slow subscriber affects only itself (see `stream.rs`).

mod cache_ops;
mod conn;
mod first_use;
mod guard;
mod queue_ops;
mod reauth;
mod request;
mod session;
mod subscribe;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::config::BrokerConfig;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// QUIC application close / stream error codes (the stable error code numbers, plus 0).
pub mod close_code {
    /// Normal close.
    pub const OK: u32 = 0;
}

/// State shared by every connection.
pub struct Shared {
    /// Effective configuration.
    pub cfg: Arc<BrokerConfig>,
    /// Named resources.
    pub registry: Registry,
    /// Counters and histograms.
    pub metrics: Metrics,
    /// Token checks.
    pub auth: Arc<dyn Authenticator>,
    /// Broker-wide memory budget (`limits.max_memory_bytes`).
    pub memory: Arc<crate::budget::MemoryBudget>,
    /// Flips to true when shutdown starts.
    pub shutdown: watch::Receiver<bool>,
    /// False once shutdown starts (for `/ready`).
    pub ready: AtomicBool,
    /// Notified whenever a connection ends (shutdown waits on it).
    pub connection_closed: tokio::sync::Notify,
    /// Tenant quotas (limits replaceable at runtime, usage per tenant).
    pub quotas: crate::quota::Quotas,
    /// The audit log (off unless `audit.output` is set).
    pub audit: crate::audit::AuditLog,
    /// Stream / cache / group definitions from the control plane (`crate::defs`).
    pub definitions: crate::defs::Definitions,
    next_subscription: AtomicU64,
}

impl Shared {
    /// A broker-unique subscription id.
    pub fn next_subscription_id(&self) -> u64 {
        self.next_subscription.fetch_add(1, Ordering::Relaxed)
    }
}

/// A running broker.
pub struct Broker {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    shutdown_tx: watch::Sender<bool>,
    tasks: JoinSet<()>,
    metrics_addr: Option<SocketAddr>,
}

impl Broker {
    /// Binds the QUIC endpoint (and the HTTP endpoint) and starts serving on the current
    /// tokio runtime.
    /// Authentication follows the configuration ([`crate::auth::from_config`]: the token
    /// file when set, else dev mode's accept-anyone, which production refuses).
    pub async fn start(cfg: BrokerConfig) -> Result<Self, StartError> {
        let auth = crate::auth::from_config(&cfg, None).map_err(|e| StartError(e.to_string()))?;
        Self::start_with_auth(cfg, auth).await
    }

    /// Like [`Broker::start`] with a given authenticator.
    pub async fn start_with_auth(
        cfg: BrokerConfig,
        auth: Box<dyn Authenticator>,
    ) -> Result<Self, StartError> {
        cfg.validate().map_err(|e| StartError(e.to_string()))?;
        cfg.mtls
            .validate(cfg.tls_client_auth)
            .map_err(|e| StartError(format!("invalid configuration: {e}")))?;
        if !cfg.dev && auth.accepts_anyone() {
            return Err(StartError(
                "production mode refuses an authenticator that accepts anyone: configure tokens"
                    .into(),
            ));
        }
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => felix_transport::ServerTls::from_pem_files(cert, key),
            _ => felix_transport::ServerTls::generate_dev(&cfg.dev_ca_path),
        }
        .and_then(|t| t.with_client_auth(cfg.tls_client_auth, cfg.tls_client_ca.as_deref()))
        .map_err(|e| StartError(format!("tls: {e}")))?;
        let audit = crate::audit::AuditLog::from_config(&cfg.audit)
            .map_err(|e| StartError(e.to_string()))?;
        let reset_key = match cfg.reset_key_file() {
            Some(path) => Some(load_or_create_reset_key(&path)?),
            None => None,
        };
        let endpoint = felix_transport::server_endpoint_with_reset_key(
            cfg.listen,
            tls,
            &cfg.transport,
            reset_key.as_deref(),
        )
        .map_err(|e| StartError(format!("listen on {}: {e}", cfg.listen)))?;
        let defs_poll = crate::defs::feed::Poll::from_config(&cfg).map_err(StartError)?;
        let cfg = Arc::new(cfg);
        let auth: Arc<dyn Authenticator> = Arc::from(auth);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let memory = crate::budget::MemoryBudget::new(cfg.limits.max_memory_bytes);
        let mut registry = Registry::new(cfg.clone(), memory.clone());
        // Durable streams come back before anything is served (same epoch, same offsets).
        let loaded = registry.open_storage().map_err(StartError)?;
        let shared = Arc::new(Shared {
            registry,
            cfg: cfg.clone(),
            metrics: Metrics::default(),
            auth,
            memory: memory.clone(),
            shutdown: shutdown_rx,
            ready: AtomicBool::new(true),
            connection_closed: tokio::sync::Notify::new(),
            quotas: crate::quota::Quotas::new(crate::quota::QuotaTable::from_config(&cfg.quotas)),
            audit,
            definitions: crate::defs::Definitions::new(defs_poll.is_some()),
            next_subscription: AtomicU64::new(1),
        });
        let mut tasks = JoinSet::new();
        let metrics_addr = match cfg.metrics_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| StartError(format!("metrics listen on {addr}: {e}")))?;
                let local = listener.local_addr().ok();
                tasks.spawn(crate::http::serve(listener, shared.clone()));
                local
            }
            None => None,
        };
        if let Some(l) = loaded {
            shared
                .metrics
                .storage_recovery_ms
                .set(l.elapsed.as_millis() as u64);
            tasks.spawn(durable_retention(shared.clone()));
        }
        tasks.spawn(sweep_caches(shared.clone()));
        if let Some(feed) = shared.auth.background() {
            tasks.spawn(feed);
        }
        if let Some(poll) = defs_poll {
            tasks.spawn(crate::defs::feed::run(shared.clone(), poll));
        }
        tasks.spawn(accept_loop(endpoint.clone(), shared.clone()));
        info!(
            quic = %endpoint.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            metrics = ?metrics_addr,
            "felix broker serving"
        );
        Ok(Self {
            shared,
            endpoint,
            shutdown_tx,
            tasks,
            metrics_addr,
        })
    }

    /// The bound QUIC address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("bound endpoint has an address")
    }

    /// The bound HTTP address, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Shared state (metrics, registry) for embedding and tests.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Graceful shutdown: stop accepting, end subscriptions with a reason, let in-flight
    /// requests finish for up to `shutdown_grace_ms`, then close every connection.
    pub async fn shutdown(mut self) {
        info!("shutdown: no longer accepting connections");
        self.shared.ready.store(false, Ordering::SeqCst);
        let _ = self.shutdown_tx.send(true);
        let grace = Duration::from_millis(self.shared.cfg.shutdown_grace_ms);
        let open = || self.shared.metrics.connections.get();
        let deadline = tokio::time::Instant::now() + grace;
        // Connections close themselves once their streams drain (they watch the shutdown
        // flag); wait for that, bounded by the grace period.
        loop {
            let closed = self.shared.connection_closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if open() == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = closed => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
        if open() > 0 {
            warn!(
                connections = open(),
                "shutdown: grace period over, closing connections"
            );
        }
        self.endpoint
            .close(quinn::VarInt::from_u32(close_code::OK), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        self.tasks.abort_all();
        // Final fsync and clean mark of every durable log.
        self.shared.registry.close_durable();
        info!("shutdown complete");
    }
}

/// The broker could not start.
#[derive(Debug, thiserror::Error)]
#[error("broker failed to start: {0}")]
pub struct StartError(pub String);

/// Reads the 32-byte reset key, creating it (mode 0600) when missing.
fn load_or_create_reset_key(path: &std::path::Path) -> Result<Vec<u8>, StartError> {
    let err = |e: std::io::Error| StartError(format!("reset key {}: {e}", path.display()));
    match std::fs::read(path) {
        Ok(k) if k.len() == 32 => return Ok(k),
        Ok(_) => {
            return Err(StartError(format!(
                "reset key {} is not 32 bytes",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    use rand::RngCore;
    let mut key = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(&key).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(key)
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => return },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        tokio::spawn(conn::serve(incoming, shared.clone()));
    }
}

/// Deletes the whole sealed segments retention condemns, every second, off the runtime
/// threads (file deletions).
async fn durable_retention(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = shared.clone();
        let now = crate::stream::unix_now_ms();
        let _ = tokio::task::spawn_blocking(move || s.registry.durable_retention(now)).await;
    }
}

async fn sweep_caches(shared: Arc<Shared>) {
    let period = Duration::from_millis(shared.cfg.cache_defaults.sweep_interval_ms.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.registry.sweep_caches(std::time::Instant::now());
    }
}
