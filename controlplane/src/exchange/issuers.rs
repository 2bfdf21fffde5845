//! Keys of trusted OIDC issuers: discovery document → `jwks_uri` → JWKS, cached per issuer
//! and looked up by `kid`.
//!
//! * A cached set is used for `jwks_ttl_s`; past that it is refreshed (and still used if the
//!   issuer is unreachable, so a short issuer outage does not stop logins).
//! * An unknown `kid` (the issuer rotated) triggers a refetch, but at most once per
//!   `min_refetch_interval_s` per issuer: tokens with made-up `kid`s cannot make us hammer it.
//! * One fetch at a time per issuer; concurrent exchanges wait for it.

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
    keys: Vec<IssuerKey>,
    fetched: Option<Instant>,
    /// Last fetch attempt (success or not), for the refetch rate limit.
    attempted: Option<Instant>,
}

/// Why no key could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLookupError {
    /// The issuer could not be asked (network, timeout, bad documents).
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
    min_refetch: Duration,
    dev: bool,
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
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

impl IssuerKeys {
    /// A cache using `fetcher`; `dev` allows http on loopback for `jwks_uri`.
    pub fn new(fetcher: Fetcher, cfg: &OidcClientConfig, dev: bool) -> Self {
        IssuerKeys {
            fetcher,
            ttl: Duration::from_secs(cfg.jwks_ttl_s),
            min_refetch: Duration::from_secs(cfg.min_refetch_interval_s),
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

    async fn fetch_counted(&self, issuer: &str) -> Result<Vec<IssuerKey>, FetchError> {
        let r = self.fetch(issuer).await;
        match &r {
            Ok(_) => self.fetch_ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.fetch_failed.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    async fn fetch(&self, issuer: &str) -> Result<Vec<IssuerKey>, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self.fetcher.get_json(&url).await?;
        let bad = |reason: &str| FetchError::BadResponse {
            url: url.clone(),
            reason: reason.to_string(),
        };
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

    /// The issuer's key for a token with this `kid` and `alg`.
    pub async fn key(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<IssuerKey, KeyLookupError> {
        let slot = self
            .entries
            .lock()
            .entry(issuer.to_string())
            .or_default()
            .clone();
        let mut e = slot.lock().await;
        let now = Instant::now();
        let stale = e.fetched.is_none_or(|t| now.duration_since(t) >= self.ttl);
        let may_fetch = e
            .attempted
            .is_none_or(|t| now.duration_since(t) >= self.min_refetch);
        if stale && (e.fetched.is_none() || may_fetch) {
            e.attempted = Some(now);
            match self.fetch_counted(issuer).await {
                Ok(keys) => {
                    e.keys = keys;
                    e.fetched = Some(Instant::now());
                }
                Err(err) if e.fetched.is_none() => {
                    return Err(KeyLookupError::Unavailable(err.to_string()));
                }
                Err(err) => {
                    tracing::warn!(%issuer, error = %err, "refreshing the issuer's keys failed; using the cached ones");
                }
            }
        }
        if let Some(k) = pick(&e.keys, kid, alg) {
            return Ok(k);
        }
        // Unknown kid: maybe the issuer rotated. Refetch, rate limited.
        let may_fetch = e
            .attempted
            .is_none_or(|t| Instant::now().duration_since(t) >= self.min_refetch);
        if !may_fetch {
            self.refetch_limited.fetch_add(1, Ordering::Relaxed);
            return Err(KeyLookupError::UnknownKey);
        }
        e.attempted = Some(Instant::now());
        match self.fetch_counted(issuer).await {
            Ok(keys) => {
                e.keys = keys;
                e.fetched = Some(Instant::now());
            }
            Err(err) => return Err(KeyLookupError::Unavailable(err.to_string())),
        }
        pick(&e.keys, kid, alg).ok_or(KeyLookupError::UnknownKey)
    }
}
