//! Felix control plane (`felix-controlplane`): tenants, namespaces, stream/cache/group
//! definitions, roles, trusted OIDC issuers and quotas behind an HTTP JSON API; the token
//! exchange that turns an OIDC token into a short-lived Felix JWT; the Felix signing keys and
//! their rotation; the revocation feed brokers poll. See `docs/controlplane.md`.
//!
//! * [`store`]: the state store trait (etcd-shaped) and the embedded durable [`store::FileStore`].
//! * [`api`]: routes, admin authentication, bounded bodies.
//! * [`exchange`]: RFC 8693 token exchange, issuer discovery and JWKS, subject token checks.
//! * [`keys`], [`revocations`]: what brokers fetch.

pub mod api;
pub mod config;
pub mod error;
pub mod exchange;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod revocations;
pub mod server;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use api::{now_s, AppState};
use config::CpConfig;
use store::{FileStore, Store};

/// Builds the shared state: opens the store, makes sure a signing key exists.
pub async fn build_state(
    cfg: CpConfig,
    admin_tokens: &[String],
    broker_tokens: &[String],
) -> Result<AppState, String> {
    let store: Arc<dyn Store> = match &cfg.data_dir {
        Some(dir) => Arc::new(FileStore::open(dir).map_err(|e| e.to_string())?),
        None => Arc::new(FileStore::in_memory()),
    };
    let keys = Arc::new(keys::Keys::new(
        store.clone(),
        cfg.key_overlap_s(),
        cfg.key_propagation_s,
    ));
    keys.ensure(now_s()).await.map_err(|e| e.to_string())?;
    let store_id = revocations::ensure_store_id(&*store, cfg.renew_store_id)
        .await
        .map_err(|e| e.to_string())?;
    let revocations = Arc::new(
        revocations::Revocations::new(store.clone(), revocations::Retention::from_config(&cfg))
            .with_store_id(store_id),
    );
    let fetcher = exchange::fetch::Fetcher::new(&cfg.oidc)?;
    let issuer_keys = Arc::new(exchange::issuers::IssuerKeys::new(
        fetcher, &cfg.oidc, cfg.dev,
    ));
    Ok(AppState {
        metrics: Arc::new(metrics::Metrics::default()),
        admin_digests: Arc::new(admin_tokens.iter().map(|t| api::digest(t)).collect()),
        broker_digests: Arc::new(broker_tokens.iter().map(|t| api::digest(t)).collect()),
        long_polls: Arc::new(tokio::sync::Semaphore::new(cfg.long_poll_budget())),
        cfg: Arc::new(cfg),
        store,
        keys,
        revocations,
        issuer_keys,
    })
}

/// Drops keys past their overlap window and expired revocations, every `every`.
pub async fn housekeeping(st: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = now_s();
        if let Err(e) = st.keys.prune(now).await {
            tracing::warn!(error = %e, "pruning keys failed");
        }
        if let Err(e) = st.revocations.prune(now).await {
            tracing::warn!(error = %e, "pruning revocations failed");
        }
    }
}
