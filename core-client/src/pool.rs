//! The connection pool: a fixed number of slots, each holding one live connection or
//! reconnecting it with jittered exponential backoff. Requests and subscriptions pick a slot
//! and wait (bounded by their own deadline) for it to be live.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::RwLock;
use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::{ClientConfig, Tls};
use crate::conn::{self, Live};
use crate::error::{Error, ErrorCode, Result};
use crate::refresh::{self, Tokens};
use felix_wire::features;

struct Slot {
    live: RwLock<Option<Arc<Live>>>,
    /// Serialises reconnect attempts of this slot.
    connecting: tokio::sync::Mutex<()>,
    /// Which address this slot tries first.
    next_addr: AtomicUsize,
}

impl Slot {
    /// Its connection, if it has one that is not dead.
    fn live_now(&self) -> Option<Arc<Live>> {
        self.live.read().as_ref().filter(|l| !l.is_dead()).cloned()
    }
}

pub(crate) struct Pool {
    pub cfg: Arc<ClientConfig>,
    endpoint: quinn::Endpoint,
    /// TLS and transport options the endpoint was built with (to rebuild its client config).
    opts: felix_transport::ClientOptions,
    slots: Vec<Slot>,
    rr: AtomicUsize,
    closed: AtomicBool,
    pub closed_notify: tokio::sync::Notify,
    /// The newest token and its refresh state.
    pub tokens: Arc<Tokens>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The refresh task holds only a weak reference; wake it to end now.
        self.tokens.stop.notify_one();
    }
}

impl Pool {
    pub async fn connect(cfg: ClientConfig) -> Result<Arc<Self>> {
        if cfg.addresses.is_empty() {
            return Err(Error::InvalidArgument(
                "at least one broker address is required".into(),
            ));
        }
        if cfg.tenant.is_empty() {
            return Err(Error::InvalidArgument("tenant must not be empty".into()));
        }
        let first = resolve(&cfg.addresses[0]).await?;
        let tls = match &cfg.tls {
            Tls::CaFile(p) => felix_transport::ClientTls::CaFile(p.clone()),
            Tls::CaPem(p) => felix_transport::ClientTls::CaPem(p.clone()),
            Tls::InsecureDev => felix_transport::ClientTls::InsecureSkipVerify,
        };
        let mut opts = felix_transport::ClientOptions::new(tls);
        opts.server_name = cfg.server_name.clone();
        opts.transport = cfg.transport.clone();
        opts.client_cert = cfg.client_cert.clone();
        let endpoint = felix_transport::client_endpoint_for(first, &opts)
            .map_err(|e| Error::InvalidArgument(format!("client endpoint: {e}")))?;
        let n = cfg.connections.max(1);
        // The first token before the first connection: a source that fails fails connect.
        let tokens = Tokens::start(&cfg).await?;
        let pool = Arc::new(Self {
            slots: (0..n)
                .map(|i| Slot {
                    live: RwLock::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                    next_addr: AtomicUsize::new(i),
                })
                .collect(),
            cfg: Arc::new(cfg),
            endpoint,
            opts,
            rr: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            closed_notify: tokio::sync::Notify::new(),
            tokens,
        });
        // Connect every slot now so that configuration errors surface at connect time.
        let deadline = Instant::now() + pool.cfg.connect_timeout;
        for i in 0..n {
            pool.live_slot(i, deadline, false).await?;
        }
        if pool.tokens.is_dynamic() {
            tokio::spawn(refresh::run(pool.tokens.clone(), Arc::downgrade(&pool)));
        }
        Ok(pool)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A call's failure as its caller should see it: closing the client tears its connections
    /// down, and a call caught in that reports why it failed (`closed`), not the connection
    /// loss it saw.
    pub fn why(&self, e: Error) -> Error {
        match e {
            Error::ConnectionLost(_) if self.is_closed() => Error::Closed("client"),
            e => e,
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.tokens.stop.notify_one();
        for s in &self.slots {
            if let Some(l) = s.live.write().take() {
                l.conn.close(quinn::VarInt::from_u32(0), b"client closed");
            }
        }
        self.closed_notify.notify_waiters();
    }

    /// A live connection if one is at hand (no waiting, no reconnecting): the fast path of
    /// every call.
    pub fn try_live(&self) -> Option<Arc<Live>> {
        if self.is_closed() || self.tokens.is_expired() {
            return None;
        }
        let i = self.rr.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slots[i].live_now()
    }

    /// A live connection, reconnecting if needed, bounded by `deadline`.
    pub async fn live(&self, deadline: Instant) -> Result<Arc<Live>> {
        let i = self.rr.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.live_slot(i, deadline, true).await
    }

    /// The live connection of the slot `key` maps to: calls with one key share a connection,
    /// so what they write keeps its order.
    pub async fn live_keyed(&self, key: u64, deadline: Instant) -> Result<Arc<Live>> {
        let i = (key % self.slots.len() as u64) as usize;
        self.live_slot(i, deadline, true).await
    }

    async fn live_slot(&self, i: usize, deadline: Instant, backoff: bool) -> Result<Arc<Live>> {
        if self.is_closed() {
            return Err(Error::Closed("client"));
        }
        if self.tokens.is_expired() {
            return Err(self.tokens.expired_error());
        }
        let slot = &self.slots[i];
        if let Some(l) = slot.live_now() {
            return Ok(l);
        }
        let _connecting = tokio::time::timeout_at(deadline, slot.connecting.lock())
            .await
            .map_err(|_| Error::Timeout(self.cfg.connect_timeout))?;
        if let Some(l) = slot.live_now() {
            return Ok(l);
        }
        let mut delay = self.cfg.reconnect_initial;
        let mut last_err;
        loop {
            if self.is_closed() {
                return Err(Error::Closed("client"));
            }
            let addrs = &self.cfg.addresses;
            let k = slot.next_addr.load(Ordering::Relaxed) % addrs.len();
            let attempt = async {
                let addr = resolve(&addrs[k]).await?;
                let endpoint = self.endpoint_for_attempt()?;
                let token = self.tokens.current();
                conn::connect(&endpoint, &self.cfg, addr, &token).await
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let per_try = remaining.min(self.cfg.connect_timeout);
            match tokio::time::timeout(per_try, attempt).await {
                Ok(Ok(live)) => {
                    debug!(slot = i, addr = %addrs[k], "connected");
                    *slot.live.write() = Some(live.clone());
                    // A refresh that finished while this connection was authenticating.
                    if live.token_gen() < self.tokens.current().gen {
                        self.move_live_to_current_token(&live, true);
                    }
                    return Ok(live);
                }
                Ok(Err(e)) => last_err = e,
                // Over UDP an absent broker is silence, not a refusal: a connect attempt
                // that hears nothing means "unavailable" (retryable), not a request timeout.
                Err(_) => {
                    last_err = Error::Connect(format!("{}: no answer within {per_try:?}", addrs[k]))
                }
            }
            // Try the next address next time (failover across the configured list).
            slot.next_addr.fetch_add(1, Ordering::Relaxed);
            // Errors the broker chose (bad token, ...) are not cured by retrying.
            if !backoff || !last_err.retryable() {
                return Err(last_err);
            }
            let jittered = delay.mul_f64(rand::thread_rng().gen_range(0.5..1.0));
            if Instant::now() + jittered >= deadline {
                warn!(error = %last_err, "reconnect gave up at the deadline");
                return Err(last_err);
            }
            debug!(error = %last_err, delay = ?jittered, "reconnect failed; backing off");
            tokio::time::sleep(jittered).await;
            delay = (delay * 2).min(self.cfg.reconnect_max);
        }
    }

    /// The endpoint handle for one connection attempt. With `Tls::CaFile` the CA file is
    /// re-read each time: it used to be read only once, when the endpoint was built, so a
    /// broker that came back with a new CA (a dev broker that regenerated it, a rotated
    /// production CA) failed verification on every reconnect until the client was rebuilt.
    /// The client config is per handle, so a clone carries the fresh one.
    fn endpoint_for_attempt(&self) -> Result<quinn::Endpoint> {
        if !matches!(self.cfg.tls, Tls::CaFile(_)) && self.cfg.client_cert.is_none() {
            return Ok(self.endpoint.clone());
        }
        // A missing or half-replaced file is a retryable connect failure, like the broker
        // being down, not a configuration error.
        let client = felix_transport::client_config(&self.opts)
            .map_err(|e| Error::Connect(format!("client TLS config: {e}")))?;
        let mut endpoint = self.endpoint.clone();
        endpoint.set_default_client_config(client);
        Ok(endpoint)
    }

    /// Moves every live connection to the newest token (after a refresh): `reauth` where the
    /// broker granted it, else retire the connection when its old token would expire (`old_expires`).
    pub fn move_to_current_token(&self, old_expires: bool) {
        for s in &self.slots {
            if let Some(live) = s.live_now() {
                self.move_live_to_current_token(&live, old_expires);
            }
        }
    }

    fn move_live_to_current_token(&self, live: &Arc<Live>, old_expires: bool) {
        let cur = self.tokens.current();
        if live.token_gen() >= cur.gen {
            return;
        }
        // Requests in flight on a retired connection get this long to finish.
        let grace = self.cfg.request_timeout;
        if !live.negotiated.has(features::TOKEN_REFRESH) {
            if old_expires {
                self.tokens.retired.fetch_add(1, Ordering::Relaxed);
                live.retire(grace);
            }
            return;
        }
        let Some(token) = cur.token else { return };
        let (live, tokens) = (live.clone(), self.tokens.clone());
        tokio::spawn(async move {
            // A busy broker (`overloaded`: its per-connection reauth rate bound) or one that
            // cannot decide now (`unavailable`, a timeout) is asked again on the same
            // connection, backing off; only a refusal of the token (`unauthorized`,
            // `forbidden`) or a dead connection retires it. Retiring on a busy answer would
            // reconnect (a full handshake and `auth`) exactly when the broker asked for less.
            let mut backoff = REAUTH_RETRY_MIN;
            loop {
                let e = match live.reauth(&token, grace).await {
                    Ok(()) => {
                        live.set_token_gen(cur.gen);
                        tokens.reauths.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => e,
                };
                tokens.reauth_failures.fetch_add(1, Ordering::Relaxed);
                let busy = matches!(
                    e.code(),
                    ErrorCode::Overloaded | ErrorCode::Unavailable | ErrorCode::Timeout
                );
                if busy && !live.is_dead() {
                    // A newer token supersedes this one (its own task moves the connection).
                    if tokens.current().gen != cur.gen || live.token_gen() >= cur.gen {
                        return;
                    }
                    warn!(error = %e, retry_in = ?backoff, "reauth not taken now; retrying on the same connection");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(REAUTH_RETRY_MAX);
                    continue;
                }
                warn!(error = %e, "reauth failed; replacing the connection");
                tokens.retired.fetch_add(1, Ordering::Relaxed);
                live.retire(grace);
                return;
            }
        });
    }

    /// Deadline for a call starting now.
    pub fn deadline(&self, extra: Duration) -> Instant {
        Instant::now() + self.cfg.request_timeout + extra
    }
}

/// First wait before asking again after a `reauth` answered `overloaded`/`unavailable`; it
/// doubles up to [`REAUTH_RETRY_MAX`] (the broker's reauth bucket refills over a minute).
const REAUTH_RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest wait between `reauth` attempts on one connection.
const REAUTH_RETRY_MAX: Duration = Duration::from_secs(8);

async fn resolve(addr: &str) -> Result<SocketAddr> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::Connect(format!("resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| Error::Connect(format!("{addr} resolves to no address")))
}
