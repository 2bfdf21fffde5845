//! Definitions and quotas from the control plane: the settings a stream, cache or queue group
//! gets when it is created in a tenant, and every tenant's quotas.
//!
//! The control plane serves one snapshot (`GET /v1/broker/definitions`, see
//! `docs/controlplane.md`); [`feed`] polls it every `auth.feed_interval_ms` with the broker
//! read token, like the key feed, and [`apply`] puts a good copy in force:
//!
//! * **Definitions** ([`Definitions`]): looked up only when a resource is created (first use
//!   or an explicit create), never on the request path of an existing resource. A defined
//!   resource is created with its definition's settings; see `server/first_use.rs` for who may
//!   create what.
//! * **Quotas**: the control plane's per-tenant documents replace the local
//!   `[quotas.tenants.*]` overrides as a whole ([`quota_table`]); fields a document leaves out,
//!   and tenants without one, take the local `[quotas]` defaults. Usage is kept across the
//!   swap (`Quotas::replace`).
//!
//! A failed poll changes nothing: the last good copy stays in force (in memory: the key feed
//! does not persist its copy either, so a broker restarted while the control plane is down
//! starts with the local configuration), `/ready` says `stale` and metrics give the age.
//! Fields the broker does not support yet are ignored and logged once each.

pub mod feed;
mod map;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use serde_json::Value;

use crate::cache::CacheConfig;
use crate::config::BrokerConfig;
use crate::queue::GroupConfig;
use crate::quota::{QuotaConfig, QuotaTable};
use crate::stream::{Start, StreamConfig};

/// Distinct definition messages remembered as logged (see `Definitions::log_once`).
const MAX_LOGGED: usize = 1024;

pub use map::quota_table;

/// The control plane's answer (`GET /v1/broker/definitions`), as the broker reads it. Unknown
/// fields are tolerated here (a newer control plane may add some) and reported by [`map`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Snapshot {
    /// Store revision the snapshot was read at.
    pub revision: u64,
    /// Every tenant.
    #[serde(default)]
    pub tenants: HashMap<String, TenantDoc>,
}

/// One tenant's documents; map keys are `NAMESPACE/NAME`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TenantDoc {
    /// The quotas document, if the tenant has one.
    #[serde(default)]
    pub quotas: Option<Value>,
    /// Stream definitions.
    #[serde(default)]
    pub streams: HashMap<String, Value>,
    /// Cache definitions.
    #[serde(default)]
    pub caches: HashMap<String, Value>,
    /// Queue-group definitions.
    #[serde(default)]
    pub groups: HashMap<String, Value>,
}

/// A group definition, resolved.
#[derive(Debug, Clone)]
pub struct GroupDef {
    /// The stream it consumes (a group of that name on another stream is not defined).
    pub stream: String,
    /// Settings.
    pub config: GroupConfig,
    /// Where a new group starts.
    pub start: Start,
}

/// One tenant's definitions, resolved into broker settings (keys `NAMESPACE/NAME`).
#[derive(Debug, Clone, Default)]
struct TenantDefs {
    streams: HashMap<String, StreamConfig>,
    caches: HashMap<String, CacheConfig>,
    groups: HashMap<String, GroupDef>,
}

/// What is in force.
#[derive(Debug, Default)]
struct Compiled {
    /// Whether a snapshot from the control plane was ever applied.
    loaded: bool,
    tenants: HashMap<String, TenantDefs>,
    /// The tenants' documents it was made from (to tell a changed snapshot).
    source: HashMap<String, TenantDoc>,
}

#[derive(Debug, Default)]
struct Status {
    last_ok: Option<Instant>,
    failing: bool,
    last_error: Option<String>,
}

/// Definitions and feed status of one broker.
#[derive(Debug)]
pub struct Definitions {
    current: RwLock<Arc<Compiled>>,
    /// Revision of the latest good snapshot (also when its documents were unchanged: any
    /// store change moves it), sent back as `since`.
    revision: AtomicU64,
    status: Mutex<Status>,
    failures: AtomicU64,
    /// Whether a control plane is polled.
    polled: bool,
    /// Messages already logged (each ignored field is logged once).
    logged: Mutex<HashSet<String>>,
}

fn key(ns: &str, name: &str) -> String {
    let mut k = String::with_capacity(ns.len() + name.len() + 1);
    k.push_str(ns);
    k.push('/');
    k.push_str(name);
    k
}

impl Definitions {
    /// Nothing defined yet; `polled` when a control plane will be polled.
    pub fn new(polled: bool) -> Self {
        Self {
            current: RwLock::new(Arc::new(Compiled::default())),
            revision: AtomicU64::new(0),
            status: Mutex::default(),
            failures: AtomicU64::new(0),
            polled,
            logged: Mutex::default(),
        }
    }

    /// Whether definitions come from a control plane and a snapshot is in force: then a
    /// resource without a definition is "undefined" (created only by an admin with
    /// `auto_create`); before, the local configuration alone decides.
    pub fn loaded(&self) -> bool {
        self.current.read().loaded
    }

    /// The stream's definition, if it has one.
    pub fn stream(&self, tenant: &str, ns: &str, name: &str) -> Option<StreamConfig> {
        let cur = self.current.read();
        cur.tenants
            .get(tenant)?
            .streams
            .get(&key(ns, name))
            .cloned()
    }

    /// The cache's definition, if it has one.
    pub fn cache(&self, tenant: &str, ns: &str, name: &str) -> Option<CacheConfig> {
        let cur = self.current.read();
        cur.tenants.get(tenant)?.caches.get(&key(ns, name)).cloned()
    }

    /// The group's definition, if it has one for this stream.
    pub fn group(&self, tenant: &str, ns: &str, stream: &str, group: &str) -> Option<GroupDef> {
        let cur = self.current.read();
        cur.tenants
            .get(tenant)?
            .groups
            .get(&key(ns, group))
            .filter(|g| g.stream == stream)
            .cloned()
    }

    /// Logs `msg` once. The names in it come from the control plane's documents: escaped
    /// and cut like any untrusted string (`audit::loggable`), and the set of messages seen
    /// is bounded ([`MAX_LOGGED`]: past it, it starts over, so a message may be logged again
    /// rather than the set growing with every name a control plane ever sent).
    fn log_once(&self, msg: String) {
        let mut logged = self.logged.lock();
        if logged.contains(&msg) {
            return;
        }
        if logged.len() >= MAX_LOGGED {
            logged.clear();
        }
        tracing::warn!(
            "control-plane definitions: {}",
            crate::audit::loggable(&msg)
        );
        logged.insert(msg);
    }

    /// Resolves a snapshot and puts it in force if its documents changed; answers whether
    /// they did.
    fn put(&self, cfg: &BrokerConfig, snap: Snapshot) -> bool {
        self.revision.store(snap.revision, Ordering::Relaxed);
        {
            let cur = self.current.read();
            if cur.loaded && cur.source == snap.tenants {
                return false;
            }
        }
        let mut tenants = HashMap::new();
        for (t, doc) in &snap.tenants {
            let mut defs = TenantDefs::default();
            for (k, v) in &doc.streams {
                match map::stream(cfg, v, &mut |m| self.log_once(format!("{t}/{k}: {m}"))) {
                    Ok(c) => {
                        defs.streams.insert(k.clone(), c);
                    }
                    Err(e) => self.log_once(format!("stream {t}/{k} left out: {e}")),
                }
            }
            for (k, v) in &doc.caches {
                match map::cache(cfg, v, &mut |m| self.log_once(format!("{t}/{k}: {m}"))) {
                    Ok(c) => {
                        defs.caches.insert(k.clone(), c);
                    }
                    Err(e) => self.log_once(format!("cache {t}/{k} left out: {e}")),
                }
            }
            for (k, v) in &doc.groups {
                match map::group(cfg, v, &mut |m| self.log_once(format!("{t}/{k}: {m}"))) {
                    Ok(g) => {
                        defs.groups.insert(k.clone(), g);
                    }
                    Err(e) => self.log_once(format!("group {t}/{k} left out: {e}")),
                }
            }
            tenants.insert(t.clone(), defs);
        }
        let n = tenants.len();
        *self.current.write() = Arc::new(Compiled {
            loaded: true,
            tenants,
            source: snap.tenants,
        });
        tracing::info!(tenants = n, "control-plane definitions in force");
        true
    }

    /// Marks the feed fresh (a good copy, changed or not).
    fn fresh(&self) {
        let mut st = self.status.lock();
        if st.failing {
            tracing::info!("definitions feed: control plane answers again");
        }
        st.last_ok = Some(Instant::now());
        st.failing = false;
        st.last_error = None;
    }

    /// Counts a failed poll; the last good copy stays in force.
    pub fn failed(&self, e: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut st = self.status.lock();
        if !st.failing {
            tracing::warn!(error = %crate::audit::loggable(e), "definitions feed: poll failed; serving with the last good definitions and quotas");
        }
        st.failing = true;
        st.last_error = Some(crate::audit::loggable(e).chars().take(300).collect());
    }

    /// The revision in force (0 before any snapshot).
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Relaxed)
    }

    /// `/ready` details: `state` is `ok`, `stale` (the latest poll failed, or none succeeded
    /// yet) or `local` (no control plane: the local configuration only). Named `state`, not
    /// `feed`, so that probes matching the key feed's `"feed":"stale"` keep meaning keys.
    pub fn status(&self) -> Value {
        let cur = self.current.read().clone();
        let st = self.status.lock();
        let state = if !self.polled {
            "local"
        } else if st.failing || st.last_ok.is_none() {
            "stale"
        } else {
            "ok"
        };
        serde_json::json!({
            "state": state,
            "loaded": cur.loaded,
            "age_s": st.last_ok.map(|t| t.elapsed().as_secs_f64()),
            "revision": self.revision(),
            "tenants": cur.tenants.len(),
            "failures": self.failures.load(Ordering::Relaxed),
            "last_error": st.last_error,
        })
    }

    /// `felix_definitions_feed_failures_total`, `felix_definitions_feed_age_seconds`,
    /// `felix_definitions_revision`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        if !self.polled {
            return;
        }
        let age = self
            .status
            .lock()
            .last_ok
            .map_or(-1.0, |t| t.elapsed().as_secs_f64());
        let _ = writeln!(
            out,
            "# HELP felix_definitions_feed_failures_total Failed polls of the control plane's definitions and quotas.\n\
             # TYPE felix_definitions_feed_failures_total counter\nfelix_definitions_feed_failures_total {}\n\
             # HELP felix_definitions_feed_age_seconds Seconds since the definitions feed last brought a good copy (-1: never).\n\
             # TYPE felix_definitions_feed_age_seconds gauge\nfelix_definitions_feed_age_seconds {age:.3}\n\
             # HELP felix_definitions_revision Control-plane revision of the definitions in force (0: none).\n\
             # TYPE felix_definitions_revision gauge\nfelix_definitions_revision {}",
            self.failures.load(Ordering::Relaxed),
            self.revision()
        );
    }
}

/// Puts a good snapshot in force: definitions, and the quota table when it changed. Also
/// what tests and embedders call to apply a snapshot without a control plane.
pub fn apply(shared: &crate::server::Shared, snap: Snapshot) {
    let defs = &shared.definitions;
    let quotas = quota_table(&shared.cfg.quotas, &snap, &mut |m| defs.log_once(m));
    if defs.put(&shared.cfg, snap) {
        shared.quotas.replace(quotas);
    }
    defs.fresh();
}

/// The local quota configuration alone (no control plane, or before its first answer).
pub fn local_quota_table(q: &QuotaConfig) -> QuotaTable {
    QuotaTable::from_config(q)
}

#[cfg(test)]
mod log_tests {
    use super::*;

    /// The set of logged messages stays bounded whatever the control plane sends. On the old
    /// code it grew by one entry per distinct message, for the broker's life.
    #[test]
    fn logged_messages_are_bounded() {
        let d = Definitions::new(true);
        for i in 0..(3 * MAX_LOGGED) {
            d.log_once(format!("stream acme/s{i}: field x ignored"));
        }
        let n = d.logged.lock().len();
        assert!(n > 0 && n <= MAX_LOGGED, "{n}");
    }
}
