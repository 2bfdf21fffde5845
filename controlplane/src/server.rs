//! Serving the API: plain HTTP (dev) or HTTPS with rustls and the ring provider.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;

/// Loads the HTTPS server configuration (TLS 1.2 and 1.3, ring).
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<_> = rustls_pemfile::certs(
        &mut std::fs::read(cert)
            .map_err(|e| format!("{}: {e}", cert.display()))?
            .as_slice(),
    )
    .collect::<Result<_, _>>()
    .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = rustls_pemfile::private_key(
        &mut std::fs::read(key)
            .map_err(|e| format!("{}: {e}", key.display()))?
            .as_slice(),
    )
    .map_err(|e| format!("{}: {e}", key.display()))?
    .ok_or_else(|| format!("{}: no private key", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("TLS certificate/key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Bounds of the server side.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Concurrent connections; more are closed at once (counted).
    pub max_connections: usize,
    /// Concurrent connections from one peer IP; more are closed at once (counted).
    pub max_connections_per_ip: usize,
    /// Time for a TLS handshake, and for each request's headers to arrive.
    pub header_timeout: Duration,
}

impl ServeLimits {
    /// From the configuration.
    pub fn from_config(cfg: &crate::config::CpConfig) -> Self {
        ServeLimits {
            max_connections: cfg.max_connections,
            max_connections_per_ip: cfg.max_connections_per_ip,
            header_timeout: Duration::from_millis(cfg.header_timeout_ms),
        }
    }
}

/// Open connections per peer IP; a [`PeerSlot`] gives its count back when dropped.
#[derive(Default)]
struct PerIp(parking_lot::Mutex<HashMap<IpAddr, usize>>);

struct PeerSlot {
    map: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut m = self.0.lock();
        let n = m.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            map: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self.map.0.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` until `shutdown` resolves. With `tls`, every connection is HTTPS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<rustls::ServerConfig>,
    limits: ServeLimits,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(|t| TlsAcceptor::from(Arc::new(t)));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.connection_refused();
            drop(tcp);
            continue;
        };
        let Some(peer_slot) = per_ip.take(peer.ip(), limits.max_connections_per_ip) else {
            metrics.connection_refused_per_ip();
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _peer_slot = peer_slot;
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let builder = builder.http1_only();
            let svc = TowerToHyperService::new(app);
            let result = match acceptor {
                None => builder.serve_connection(TokioIo::new(tcp), svc).await,
                Some(acceptor) => {
                    // A client that never finishes its handshake must not hold a slot.
                    let tls =
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    builder.serve_connection(TokioIo::new(tls), svc).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
