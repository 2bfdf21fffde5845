//! The client's current token and the task that keeps it fresh.
//!
//! [`Tokens`] holds the newest token (every new stream authenticates with it) and a generation
//! number; each connection remembers the generation it acts under. After a refresh, a
//! connection whose broker granted `token_refresh` gets a `reauth` (its streams and
//! subscriptions continue under the new token); any other connection is retired gracefully
//! (no new work; closed after the request timeout, its subscriptions resuming on a new
//! connection) when its token has an expiry, since the broker will end it then. A refresh
//! that fails is retried with backoff while the current token lasts; only once it has
//! expired do calls fail, with `unauthorized`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::sync::{Mutex, RwLock};
use crate::token::{self, Fetched, TokenRefresh, TokenSource};

/// The token in use.
#[derive(Clone)]
pub(crate) struct Current {
    /// `None`: the client sends no token (a dev broker).
    pub token: Option<Arc<str>>,
    /// Bumped by every refresh.
    pub gen: u64,
    /// When to fetch the next one (`None`: never). Drawn once per token, at a random point of
    /// the policy's window, so clients started together spread their refreshes.
    pub refresh_at: Option<Instant>,
    /// When the broker will stop accepting it, if known: the token's own lifetime counted on
    /// the monotonic clock from its receipt (see `token::Lifetime`).
    pub expires_at: Option<Instant>,
}

/// Counters of the token machinery (see [`crate::Client::token_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenStats {
    /// Tokens fetched from the source, the first one included.
    pub fetched: u64,
    /// Fetches that failed (each is retried while the current token lasts).
    pub fetch_failures: u64,
    /// `reauth` requests the broker accepted.
    pub reauths: u64,
    /// `reauth` requests that failed (the connection is then replaced).
    pub reauth_failures: u64,
    /// Connections replaced to move to a new token (no `reauth` on them).
    pub retired_connections: u64,
}

pub(crate) struct Tokens {
    source: Option<TokenSource>,
    policy: TokenRefresh,
    tenant: String,
    current: RwLock<Current>,
    expired: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Wakes the refresh task to stop (close, drop).
    pub stop: tokio::sync::Notify,
    fetched: AtomicU64,
    fetch_failures: AtomicU64,
    pub reauths: AtomicU64,
    pub reauth_failures: AtomicU64,
    pub retired: AtomicU64,
}

impl Tokens {
    /// The token state of `cfg`, with its first token fetched (on a blocking thread, within
    /// the connect timeout) when the source is not static.
    pub async fn start(cfg: &ClientConfig) -> Result<Arc<Self>> {
        let source = cfg
            .token_source
            .clone()
            .or_else(|| cfg.token.clone().map(TokenSource::Static));
        let tokens = Arc::new(Self {
            policy: cfg.token_refresh.clone(),
            tenant: cfg.tenant.clone(),
            current: RwLock::new(Current {
                token: None,
                gen: 0,
                refresh_at: None,
                expires_at: None,
            }),
            expired: AtomicBool::new(false),
            last_error: Mutex::new(None),
            stop: tokio::sync::Notify::new(),
            fetched: AtomicU64::new(0),
            fetch_failures: AtomicU64::new(0),
            reauths: AtomicU64::new(0),
            reauth_failures: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            source,
        });
        match &tokens.source {
            None => {}
            Some(TokenSource::Static(t)) => {
                crate::token::check_len(t)?;
                tokens.current.write().token = Some(t.as_str().into());
            }
            Some(_) => {
                let fetched = tokio::time::timeout(cfg.connect_timeout, tokens.fetch())
                    .await
                    .map_err(|_| Error::Timeout(cfg.connect_timeout))??;
                tokens.install(fetched);
            }
        }
        Ok(tokens)
    }

    pub fn is_dynamic(&self) -> bool {
        self.source.as_ref().is_some_and(TokenSource::is_dynamic)
    }

    pub fn current(&self) -> Current {
        self.current.read().clone()
    }

    /// Whether the token expired and no fresh one could be had: calls fail fast.
    pub fn is_expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// What a call sees while [`Tokens::is_expired`].
    pub fn expired_error(&self) -> Error {
        let why = self.last_error.lock().clone().unwrap_or_default();
        Error::Unauthorized(format!(
            "the token expired and could not be refreshed: {why}"
        ))
    }

    pub fn stats(&self) -> TokenStats {
        TokenStats {
            fetched: self.fetched.load(Ordering::Relaxed),
            fetch_failures: self.fetch_failures.load(Ordering::Relaxed),
            reauths: self.reauths.load(Ordering::Relaxed),
            reauth_failures: self.reauth_failures.load(Ordering::Relaxed),
            retired_connections: self.retired.load(Ordering::Relaxed),
        }
    }

    /// Fetches a token from the source on a blocking thread (a callback may be slow; it
    /// never runs on a thread that reads replies).
    async fn fetch(&self) -> Result<Fetched> {
        let source = self.source.clone().expect("fetch only with a source");
        let tenant = self.tenant.clone();
        let r = tokio::task::spawn_blocking(move || token::fetch(&source, &tenant))
            .await
            .unwrap_or_else(|_| Err(Error::Unauthorized("the token source panicked".into())));
        match &r {
            Ok(_) => self.fetched.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                *self.last_error.lock() = Some(e.to_string());
                self.fetch_failures.fetch_add(1, Ordering::Relaxed)
            }
        };
        r
    }

    fn install(&self, f: Fetched) {
        let received = Instant::now();
        let delay = self.policy.refresh_delay(
            f.lifetime.map(|l| l.refresh_within),
            rand::thread_rng().gen::<f64>(),
        );
        let mut cur = self.current.write();
        cur.token = Some(f.token);
        cur.gen += 1;
        cur.refresh_at = delay.map(|d| received + d);
        cur.expires_at = f.lifetime.map(|l| received + l.valid_for);
        drop(cur);
        self.expired.store(false, Ordering::Relaxed);
    }
}

/// Keeps the token fresh until the pool closes or is dropped.
pub(crate) async fn run(tokens: Arc<Tokens>, pool: Weak<Pool>) {
    let mut failures = 0u32;
    loop {
        let cur = tokens.current();
        let now = Instant::now();
        let refresh_at = if failures == 0 {
            match cur.refresh_at {
                Some(t) => t,
                None => return, // an opaque token with no interval: nothing to schedule
            }
        } else {
            let d = tokens
                .policy
                .retry_delay(failures)
                .max(Duration::from_millis(1));
            now + d.mul_f64(rand::thread_rng().gen_range(0.75..=1.0))
        };
        let mut wake = refresh_at;
        if let Some(exp) = cur.expires_at {
            if exp > now && !tokens.is_expired() {
                wake = wake.min(exp);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = tokens.stop.notified() => return,
        }
        let Some(p) = pool.upgrade() else { return };
        if p.is_closed() {
            return;
        }
        drop(p);
        let now = Instant::now();
        let expired_unrefreshed =
            cur.expires_at.is_some_and(|exp| now >= exp) && tokens.current().gen == cur.gen;
        if expired_unrefreshed && !tokens.expired.swap(true, Ordering::Relaxed) {
            warn!("the client's token expired before a fresh one could be fetched; calls fail with unauthorized until one is");
        }
        if now < refresh_at {
            continue;
        }
        match tokens.fetch().await {
            Ok(fresh) => {
                failures = 0;
                tokens.install(fresh);
                debug!("token refreshed");
                if let Some(p) = pool.upgrade() {
                    p.move_to_current_token(cur.expires_at.is_some());
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                warn!(error = %e, failures, "token refresh failed; retrying");
            }
        }
    }
}
