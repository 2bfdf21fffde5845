//! Where JWT mode's keys and revocations come from: a JWKS file read at start, and/or the
//! control plane polled every `auth.feed_interval_ms`.
//!
//! Feed protocol (the control plane serves both as JSON):
//! * `GET {controlplane_url}/.well-known/jwks.json` → [`felix_auth::Jwks`]
//! * `GET {controlplane_url}/v1/revocations` → [`felix_auth::RevocationList`]
//!
//! Each poll fetches both on a blocking thread (`ureq`, rustls with ring), each bounded by
//! `auth.feed_timeout_ms` and `auth.feed_max_response_bytes`. A failed poll (unreachable,
//! non-2xx, too large, not JSON, a key set without one usable Ed25519 key) changes nothing:
//! the last good copy stays in force, the failure is counted and `/ready` says the feed is
//! stale. A new key set replaces the verifier as a whole (one pointer swap), so during a
//! rotation tokens of both keys verify as long as the control plane publishes both.
//!
//! A poll whose revocation list is older (lower `revision`) than the applied one of the same
//! control plane store is refused (`revocations.rs`); its key set is still applied: the
//! rollback rule guards revocations only, and refusing keys would freeze a broker on
//! withdrawn keys (a key rotated out stays trusted). A list from another store (the control
//! plane's store was recreated or restored: a new `store_id`, its revision restarted) re-arms
//! the guard at its revision, logged as an error. While the latest poll's list is refused,
//! `/ready` details show `rollback` and `felix_auth_feed_rollback_active` is 1. A key left
//! out of a new key set ends the live principals whose token it verified (`cell.rs`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use felix_auth::{Jwks, RevocationList, Verifier, VerifierConfig};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::revocations::{FeedList, Retention, Revocations, Rollback};
use super::AuthStatus;

/// The keys and revocations in force.
#[derive(Debug)]
pub struct KeySet {
    /// Verifies tokens against the current keys.
    pub verifier: Verifier,
    /// The key set it was made from (to tell a changed one).
    pub jwks: Jwks,
    /// The ids of the usable keys (a live principal whose `kid` is not here any more ends).
    pub kids: HashSet<String>,
    /// The revocations in force.
    pub revocations: Revocations,
}

impl KeySet {
    fn new(cfg: &VerifierConfig, jwks: Jwks, revocations: Revocations) -> Self {
        let (verifier, errors) = Verifier::with_keys(cfg.clone(), jwks.clone());
        let bad: HashSet<&str> = errors
            .iter()
            .filter_map(|e| match e {
                felix_auth::KeyError::BadPublicKey { kid, .. } => Some(kid.as_str()),
                _ => None,
            })
            .collect();
        let kids = jwks
            .keys
            .iter()
            .map(|k| k.kid.as_str())
            .filter(|k| !bad.contains(k))
            .map(str::to_owned)
            .collect();
        Self {
            verifier,
            jwks,
            kids,
            revocations,
        }
    }
}

#[derive(Debug, Default)]
struct Status {
    /// Last poll that brought a good copy of both documents.
    last_ok: Option<Instant>,
    /// The latest poll failed (the feed is stale).
    failing: bool,
    last_error: Option<String>,
    /// The latest poll's revocation list was refused as a rollback (why).
    rollback: Option<String>,
}

/// Keys and revocations, swapped whole by the feed, read once per `auth`.
#[derive(Debug)]
pub struct Feed {
    cfg: VerifierConfig,
    current: RwLock<Arc<KeySet>>,
    changes: watch::Sender<u64>,
    status: Mutex<Status>,
    failures: AtomicU64,
    /// Polls refused because their revocation list was older than the applied one.
    rollbacks: AtomicU64,
    /// How long revoked token ids are kept after a list drops them.
    retention: Retention,
    /// Whether a control plane is polled (else the keys come from the file only).
    polled: bool,
}

/// Why a poll or a key file was not used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FeedError(pub String);

impl Feed {
    /// A feed starting with `keys` (possibly none: nothing verifies until the first poll).
    pub fn new(cfg: VerifierConfig, keys: Jwks, polled: bool) -> Self {
        let current = KeySet::new(&cfg, keys, Revocations::default());
        let retention = Retention {
            leeway_s: cfg.leeway_s,
            max_token_lifetime_s: super::config::DEFAULT_MAX_TOKEN_LIFETIME_S,
        };
        Self {
            cfg,
            current: RwLock::new(Arc::new(current)),
            changes: watch::Sender::new(0),
            status: Mutex::default(),
            failures: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            retention,
            polled,
        }
    }

    /// Sets `auth.max_token_lifetime_s` (how long a revoked token id without an `exp` is
    /// kept).
    pub fn with_max_token_lifetime(mut self, s: u64) -> Self {
        self.retention.max_token_lifetime_s = s;
        self
    }

    /// Parses a JWKS document and checks it holds at least one usable key.
    pub fn parse_jwks(cfg: &VerifierConfig, bytes: &[u8]) -> Result<Jwks, FeedError> {
        let jwks: Jwks = serde_json::from_slice(bytes)
            .map_err(|e| FeedError(format!("JWKS is not valid JSON of a key set: {e}")))?;
        let (v, errors) = Verifier::with_keys(cfg.clone(), jwks.clone());
        for e in &errors {
            tracing::warn!(error = %crate::audit::loggable(&e.to_string()), "JWKS key left out");
        }
        if v.key_count() == 0 {
            return Err(FeedError("JWKS holds no usable Ed25519 key".into()));
        }
        Ok(jwks)
    }

    /// The keys and revocations in force now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().clone()
    }

    /// Ticks whenever keys or revocations change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Puts a good copy in force (only what changed) and marks the feed fresh.
    pub fn apply(&self, jwks: Jwks, revocations: RevocationList) {
        let _ = self.apply_at(jwks, revocations.into(), super::now_s());
    }

    /// [`Feed::apply`] at `now_s` (Unix seconds), for a list as the broker reads it. A list
    /// older than the applied one of the same store is refused (counted as a failed poll and
    /// a rollback); the key set is applied either way.
    pub fn apply_at(&self, jwks: Jwks, list: FeedList, now_s: u64) -> Result<(), Rollback> {
        let (changed, refused) = {
            let mut cur = self.current.write();
            if cur.revocations.other_store(&list) {
                tracing::error!(
                    from_store = ?cur.revocations.store_id().map(crate::audit::loggable),
                    from_revision = cur.revocations.revision(),
                    to_store = ?list.store_id.as_deref().map(crate::audit::loggable),
                    to_revision = list.revision,
                    "auth feed: the control plane's store changed (recreated or restored \
                     from a backup); the revocation rollback guard is re-armed at the new \
                     store's revision"
                );
            }
            let (revocations, refused) = match cur.revocations.next(&list, now_s, self.retention) {
                Ok(r) => (r, None),
                Err(e) => (cur.revocations.clone(), Some(e)),
            };
            let keys_changed = cur.jwks != jwks;
            let revs_changed = cur.revocations != revocations;
            if keys_changed || revs_changed {
                let next = if keys_changed {
                    let next = KeySet::new(&self.cfg, jwks, revocations);
                    let gone: Vec<_> = cur
                        .kids
                        .difference(&next.kids)
                        .map(|k| crate::audit::loggable(k))
                        .collect();
                    tracing::info!(
                        keys = next.verifier.key_count(),
                        withdrawn = ?gone,
                        "auth feed: new key set"
                    );
                    next
                } else {
                    KeySet {
                        verifier: cur.verifier.clone(),
                        jwks,
                        kids: cur.kids.clone(),
                        revocations,
                    }
                };
                *cur = Arc::new(next);
            }
            (keys_changed || revs_changed, refused)
        };
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
        if let Some(e) = refused {
            self.rollbacks.fetch_add(1, Ordering::Relaxed);
            self.failed(&FeedError(e.to_string()));
            self.status.lock().rollback = Some(e.to_string());
            return Err(e);
        }
        {
            let mut st = self.status.lock();
            if st.failing {
                tracing::info!("auth feed: control plane answers again");
            }
            st.last_ok = Some(Instant::now());
            st.failing = false;
            st.last_error = None;
            st.rollback = None;
        }
        Ok(())
    }

    /// Counts a failed poll; the last good copy stays in force.
    pub fn failed(&self, e: &FeedError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut st = self.status.lock();
        if !st.failing {
            tracing::warn!(error = %crate::audit::loggable(&e.0), "auth feed: poll failed; serving with the last good keys and revocations");
        }
        st.failing = true;
        st.last_error = Some(crate::audit::loggable(&e.0).into_owned());
    }

    /// Polls the control plane every `poll.interval` for the broker's life.
    pub(super) async fn run(self: Arc<Self>, poll: super::jwt::Poll) {
        let agent =
            super::jwt::control_plane_agent(poll.timeout, poll.ca.as_deref().map(|c| &c[..]), true);
        let base = poll.url.trim_end_matches('/').to_owned();
        let auth = poll.token.map(|t| format!("Bearer {}", t.0));
        let (interval, max) = (poll.interval, poll.max_bytes);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (agent2, base2, cfg) = (agent.clone(), base.clone(), self.cfg.clone());
            let auth2 = auth.clone();
            let polled = tokio::task::spawn_blocking(move || {
                let auth = auth2.as_deref();
                let keys = fetch(
                    &agent2,
                    &format!("{base2}/.well-known/jwks.json"),
                    auth,
                    max,
                )?;
                let keys = Feed::parse_jwks(&cfg, &keys)?;
                let revs = fetch(&agent2, &format!("{base2}/v1/revocations"), auth, max)?;
                let revs: FeedList = serde_json::from_slice(&revs).map_err(|e| {
                    FeedError(format!("revocations are not valid JSON of the list: {e}"))
                })?;
                Ok::<_, FeedError>((keys, revs))
            })
            .await;
            match polled {
                Ok(Ok((keys, revs))) => {
                    let _ = self.apply_at(keys, revs, super::now_s());
                }
                Ok(Err(e)) => self.failed(&e),
                Err(e) => self.failed(&FeedError(format!("poll task: {e}"))),
            }
        }
    }

    /// Readiness: can tokens be verified, and how fresh the copy is.
    pub fn status(&self) -> AuthStatus {
        let cur = self.current();
        let st = self.status.lock();
        let keys = cur.verifier.key_count();
        let state = if !self.polled {
            "file"
        } else if st.failing || st.last_ok.is_none() {
            "stale"
        } else {
            "ok"
        };
        let age = st.last_ok.map(|t| t.elapsed().as_secs_f64());
        AuthStatus {
            can_verify: keys > 0,
            details: serde_json::json!({
                "mode": "jwt",
                "feed": state,
                "age_s": age,
                "keys": keys,
                "revocation_revision": cur.revocations.revision(),
                "store_id": cur.revocations.store_id().map(crate::audit::loggable),
                "rollback": st.rollback,
                "revoked_jtis": cur.revocations.jti_count(),
                "rollbacks": self.rollbacks.load(Ordering::Relaxed),
                "failures": self.failures.load(Ordering::Relaxed),
                "last_error": st.last_error,
            }),
        }
    }

    /// `felix_auth_feed_failures_total`, `felix_auth_feed_age_seconds`, `felix_auth_keys`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let keys = self.current().verifier.key_count();
        let (age, rollback) = {
            let st = self.status.lock();
            let age = st.last_ok.map_or(-1.0, |t| t.elapsed().as_secs_f64());
            (age, u8::from(st.rollback.is_some()))
        };
        let _ = writeln!(
            out,
            "# HELP felix_auth_feed_failures_total Failed polls of the control-plane key and revocation feed.\n\
             # TYPE felix_auth_feed_failures_total counter\nfelix_auth_feed_failures_total {}\n\
             # HELP felix_auth_feed_age_seconds Seconds since the feed last brought a good copy (-1: never).\n\
             # TYPE felix_auth_feed_age_seconds gauge\nfelix_auth_feed_age_seconds {age:.3}\n\
             # HELP felix_auth_keys Usable token signing keys in force.\n\
             # TYPE felix_auth_keys gauge\nfelix_auth_keys {keys}\n\
             # HELP felix_auth_feed_rollbacks_total Feed polls refused because their revocation list was older than the applied one.\n\
             # TYPE felix_auth_feed_rollbacks_total counter\nfelix_auth_feed_rollbacks_total {}\n\
             # HELP felix_auth_feed_rollback_active 1 while the latest poll's revocation list is refused as older than the applied one of the same store.\n\
             # TYPE felix_auth_feed_rollback_active gauge\nfelix_auth_feed_rollback_active {rollback}",
            self.failures.load(Ordering::Relaxed),
            self.rollbacks.load(Ordering::Relaxed)
        );
    }
}

/// One bounded GET, with the broker read token when there is one.
fn fetch(
    agent: &ureq::Agent,
    url: &str,
    auth: Option<&str>,
    max: u64,
) -> Result<Vec<u8>, FeedError> {
    let mut req = agent.get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let mut resp = req
        .call()
        .map_err(|e| FeedError(format!("GET {url}: {e}")))?;
    resp.body_mut()
        .with_config()
        .limit(max)
        .read_to_vec()
        .map_err(|e| FeedError(format!("GET {url}: body: {e} (limit {max} bytes)")))
}
