//! Keys of trusted OIDC issuers: discovery document → `jwks_uri` → JWKS, cached per issuer
//! and looked up by `kid`.
//!
//! * A cached set is used for `jwks_ttl_s`; past that it is refreshed (and still used if the
//!   issuer is unreachable, so a short issuer outage does not stop logins), but never longer
//!   than `max_stale_s` after the last successful fetch.
//! * An unknown `kid` (the issuer rotated) triggers a refetch, but at most once per
//!   `min_refetch_interval_s` per issuer: tokens with made-up `kid`s cannot make us hammer it.
//! * A failed fetch backs off: `failure_backoff_ms`, doubling per further failure up to
//!   `min_refetch_interval_s`. Meanwhile exchanges that need a fetch answer
//!   `temporarily_unavailable` without asking the issuer (a burst of logins against a down
//!   issuer makes one request, not one each).
//! * One fetch at a time per issuer (single flight): concurrent exchanges wait for it. No
//!   lock is held across the fetch itself; exchanges whose keys are cached never wait.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::fetch::{FetchError, Fetcher};
use super::jwt::{key_fits, parse_jwks, Alg, IssuerKey};
use crate::config::OidcClientConfig;
use crate::model::check_issuer_url;

#[derive(Default)]
struct Entry {
    keys: Arc<Vec<IssuerKey>>,
    fetched: Option<Instant>,
    /// Last fetch attempt (success or not), for the unknown-kid refetch rate limit.
    attempted: Option<Instant>,
    /// Consecutive failed fetches, and until when no fetch is tried.
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    /// The fetch in flight: waiters get `true` sent when it ends.
    inflight: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Why no key could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLookupError {
    /// The issuer could not be asked (network, timeout, bad documents, backing off).
    #[error("issuer unavailable: {0}")]
    Unavailable(String),
    /// The issuer has no fitting key with that kid (after a refetch, or rate limited).
    #[error("the issuer has no key for this token (kid and algorithm)")]
    UnknownKey,
}

/// The per-issuer key cache.
pub struct IssuerKeys {
    fetcher: Fetcher,
    ttl: Duration,
    max_stale: Duration,
    min_refetch: Duration,
    backoff: Duration,
    dev: bool,
    entries: Mutex<HashMap<String, Entry>>,
    fetch_ok: AtomicU64,
    fetch_failed: AtomicU64,
    refetch_limited: AtomicU64,
}

fn pick(keys: &[IssuerKey], kid: Option<&str>, alg: Alg) -> Option<IssuerKey> {
    let mut fitting = keys.iter().filter(|k| key_fits(k, alg));
    match kid {
        Some(kid) => fitting.find(|k| k.kid.as_deref() == Some(kid)).cloned(),
        // No kid: only unambiguous if exactly one key fits.
        None => {
            let first = fitting.next()?;
            fitting.next().is_none().then(|| first.clone())
        }
    }
}

/// What a lookup does next, decided under the map's lock.
enum Step {
    Done(Result<IssuerKey, KeyLookupError>),
    Wait(tokio::sync::watch::Receiver<bool>),
    Fetch(tokio::sync::watch::Sender<bool>),
}

impl IssuerKeys {
    /// A cache using `fetcher`; `dev` allows http on loopback for issuers and `jwks_uri`.
    pub fn new(fetcher: Fetcher, cfg: &OidcClientConfig, dev: bool) -> Self {
        IssuerKeys {
            fetcher,
            ttl: Duration::from_secs(cfg.jwks_ttl_s),
            max_stale: Duration::from_secs(cfg.max_stale_s.max(cfg.jwks_ttl_s)),
            min_refetch: Duration::from_secs(cfg.min_refetch_interval_s),
            backoff: Duration::from_millis(cfg.failure_backoff_ms),
            dev,
            entries: Mutex::new(HashMap::new()),
            fetch_ok: AtomicU64::new(0),
            fetch_failed: AtomicU64::new(0),
            refetch_limited: AtomicU64::new(0),
        }
    }

    /// (successful fetches, failed fetches, unknown-kid refetches refused by the rate limit).
    pub fn stats(&self) -> (u64, u64, u64) {
        (
            self.fetch_ok.load(Ordering::Relaxed),
            self.fetch_failed.load(Ordering::Relaxed),
            self.refetch_limited.load(Ordering::Relaxed),
        )
    }

    async fn fetch(&self, issuer: &str) -> Result<Vec<IssuerKey>, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let bad = |reason: &str| FetchError::BadResponse {
            url: url.clone(),
            reason: reason.to_string(),
        };
        // The same rule as when the issuer was stored: e.g. a plain-http issuer stored by a
        // dev-mode control plane is never fetched by a production one.
        check_issuer_url(issuer, self.dev).map_err(|e| bad(&format!("issuer: {e}")))?;
        let doc = self.fetcher.get_json(&url).await?;
        if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err(bad("the discovery document names another issuer"));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("no jwks_uri"))?;
        check_issuer_url(jwks_uri, self.dev).map_err(|e| bad(&format!("jwks_uri: {e}")))?;
        let jwks = self.fetcher.get_json(jwks_uri).await?;
        let keys = parse_jwks(&jwks);
        if keys.is_empty() {
            return Err(FetchError::BadResponse {
                url: jwks_uri.to_string(),
                reason: "no usable signature key".into(),
            });
        }
        Ok(keys)
    }

    /// Decides, under the lock, whether to answer, wait for a fetch in flight, or fetch.
    /// `waited`: this lookup already waited for (or made) a fetch; it never starts another.
    fn step(&self, issuer: &str, kid: Option<&str>, alg: Alg, waited: bool) -> Step {
        let mut map = self.entries.lock();
        let e = map.entry(issuer.to_string()).or_default();
        let now = Instant::now();
        let usable = e
            .fetched
            .is_some_and(|t| now.duration_since(t) < self.max_stale);
        let fresh = e.fetched.is_some_and(|t| now.duration_since(t) < self.ttl);
        let found = if usable {
            pick(&e.keys, kid, alg)
        } else {
            None
        };
        if let Some(rx) = &e.inflight {
            // Someone is fetching: cached keys answer at once, the others wait for it.
            return match found {
                Some(k) => Step::Done(Ok(k)),
                None => Step::Wait(rx.clone()),
            };
        }
        let backing_off = e.retry_at.is_some_and(|t| now < t);
        let want_fetch = if found.is_some() {
            // Stale but usable keys: refresh (not while backing off), still answer with them.
            !fresh && !backing_off && !waited
        } else if !usable {
            !backing_off && !waited
        } else {
            // Unknown kid: maybe the issuer rotated; rate limited.
            let may = e
                .attempted
                .is_none_or(|t| now.duration_since(t) >= self.min_refetch);
            if !may && !waited {
                self.refetch_limited.fetch_add(1, Ordering::Relaxed);
            }
            may && !backing_off && !waited
        };
        if want_fetch {
            let (tx, rx) = tokio::sync::watch::channel(false);
            e.inflight = Some(rx);
            e.attempted = Some(now);
            return Step::Fetch(tx);
        }
        Step::Done(match found {
            Some(k) => Ok(k),
            None if !usable => Err(KeyLookupError::Unavailable(
                e.last_error
                    .clone()
                    .map(|m| format!("{m} (backing off)"))
                    .unwrap_or_else(|| "the issuer's keys could not be fetched".into()),
            )),
            None => Err(KeyLookupError::UnknownKey),
        })
    }

    /// Records a fetch's outcome and wakes its waiters.
    fn finish(&self, issuer: &str, r: Result<Vec<IssuerKey>, FetchError>) {
        let mut map = self.entries.lock();
        let e = map.entry(issuer.to_string()).or_default();
        let now = Instant::now();
        match r {
            Ok(keys) => {
                self.fetch_ok.fetch_add(1, Ordering::Relaxed);
                e.keys = Arc::new(keys);
                e.fetched = Some(now);
                e.failures = 0;
                e.retry_at = None;
                e.last_error = None;
            }
            Err(err) => {
                self.fetch_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%issuer, error = %err, failures = e.failures + 1, "fetching the issuer's keys failed; backing off");
                let shift = e.failures.min(16);
                let wait = self
                    .backoff
                    .saturating_mul(1u32 << shift)
                    .min(self.min_refetch.max(self.backoff));
                e.failures += 1;
                e.retry_at = Some(now + wait);
                e.last_error = Some(err.to_string());
            }
        }
        e.inflight = None;
    }

    /// The issuer's key for a token with this `kid` and `alg`.
    pub async fn key(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<IssuerKey, KeyLookupError> {
        let mut waited = false;
        loop {
            match self.step(issuer, kid, alg, waited) {
                Step::Done(r) => return r,
                Step::Wait(mut rx) => {
                    // Ends when the fetcher sends, or drops its sender (cancelled).
                    let _ = rx.wait_for(|done| *done).await;
                }
                Step::Fetch(tx) => {
                    // If this lookup is cancelled mid-fetch, the guard still clears the
                    // in-flight mark so that later lookups are not stuck waiting.
                    let guard = InflightGuard {
                        keys: self,
                        issuer,
                        armed: true,
                    };
                    let r = self.fetch(issuer).await;
                    let mut guard = guard;
                    guard.armed = false;
                    self.finish(issuer, r);
                    let _ = tx.send(true);
                }
            }
            waited = true;
        }
    }
}

struct InflightGuard<'a> {
    keys: &'a IssuerKeys,
    issuer: &'a str,
    armed: bool,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Some(e) = self.keys.entries.lock().get_mut(self.issuer) {
                e.inflight = None;
            }
        }
    }
}
