//! Polls `GET {auth.controlplane_url}/v1/broker/definitions?since=REV` every
//! `auth.feed_interval_ms`, with the same read token, CA, deadline and size bound as the key
//! feed (`auth/feed.rs`), on a blocking thread. `304 Not Modified` (nothing changed since REV)
//! counts as a good poll; anything else that is not a 2xx snapshot counts as a failure and
//! leaves the last good copy in force.

use std::sync::Arc;
use std::time::Duration;

use super::Snapshot;
use crate::server::Shared;

/// Where and how to poll.
#[derive(Clone)]
pub struct Poll {
    url: String,
    interval: Duration,
    timeout: Duration,
    max_bytes: u64,
    /// `Bearer <broker read token>`, never printed.
    auth: Option<Arc<str>>,
    ca: Option<Arc<Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for Poll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poll")
            .field("url", &self.url)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Poll {
    /// The poll a configuration asks for: `None` without `auth.controlplane_url`. The URL,
    /// token file and CA file were already checked by JWT mode (`auth::from_config`), which
    /// the control plane URL turns on.
    pub fn from_config(cfg: &crate::BrokerConfig) -> Result<Option<Self>, String> {
        let a = &cfg.auth;
        let Some(url) = &a.controlplane_url else {
            return Ok(None);
        };
        let auth = match &a.controlplane_token_file {
            Some(p) => Some(Arc::from(format!(
                "Bearer {}",
                crate::auth::read_feed_token(p, !cfg.dev)?.0
            ))),
            None => None,
        };
        let ca = match &a.controlplane_ca_file {
            Some(p) => Some(Arc::new(crate::auth::read_ca(p)?)),
            None => None,
        };
        Ok(Some(Self {
            url: format!("{}/v1/broker/definitions", url.trim_end_matches('/')),
            interval: Duration::from_millis(a.feed_interval_ms.max(1)),
            timeout: Duration::from_millis(a.feed_timeout_ms.max(1)),
            max_bytes: a.feed_max_response_bytes,
            auth,
            ca,
        }))
    }
}

enum Polled {
    Unchanged,
    Snapshot(Snapshot),
}

fn agent(p: &Poll) -> ureq::Agent {
    // A 304 is an answer, not an error.
    crate::auth::control_plane_agent(p.timeout, p.ca.as_deref().map(|c| &c[..]), false)
}

fn fetch(agent: &ureq::Agent, p: &Poll, since: Option<u64>) -> Result<Polled, String> {
    let url = match since {
        Some(rev) => format!("{}?since={rev}", p.url),
        None => p.url.clone(),
    };
    let mut req = agent.get(&url);
    if let Some(a) = &p.auth {
        req = req.header("authorization", &**a);
    }
    let mut resp = req.call().map_err(|e| format!("GET {}: {e}", p.url))?;
    let status = resp.status().as_u16();
    if status == 304 {
        return Ok(Polled::Unchanged);
    }
    if !(200..300).contains(&status) {
        return Err(format!("GET {}: status {status}", p.url));
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(p.max_bytes)
        .read_to_vec()
        .map_err(|e| format!("GET {}: body: {e} (limit {} bytes)", p.url, p.max_bytes))?;
    serde_json::from_slice(&body)
        .map(Polled::Snapshot)
        .map_err(|e| format!("definitions are not valid JSON of a snapshot: {e}"))
}

/// Polls for the broker's life.
pub async fn run(shared: Arc<Shared>, poll: Poll) {
    let agent = agent(&poll);
    let mut tick = tokio::time::interval(poll.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let defs = &shared.definitions;
        let since = defs.loaded().then(|| defs.revision());
        let (a, p) = (agent.clone(), poll.clone());
        match tokio::task::spawn_blocking(move || fetch(&a, &p, since)).await {
            Ok(Ok(Polled::Snapshot(s))) => super::apply(&shared, s),
            Ok(Ok(Polled::Unchanged)) => defs.fresh(),
            Ok(Err(e)) => defs.failed(&e),
            Err(e) => defs.failed(&format!("poll task: {e}")),
        }
    }
}
