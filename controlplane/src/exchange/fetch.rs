//! The control plane's only outbound HTTP: GET of an issuer's discovery document and JWKS.
//! hyper + rustls (ring provider), HTTP/1.1, system roots plus an optional CA file, no
//! redirects followed (an issuer that redirects is misconfigured, and following would let a
//! discovery document steer us anywhere), a whole-request timeout and a bounded body.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::OidcClientConfig;

/// Why a fetch failed (never includes response bodies: they are the issuer's, not ours).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Could not connect, TLS failed, or the request timed out.
    #[error("{url}: {reason}")]
    Unreachable {
        /// What was fetched.
        url: String,
        /// Why.
        reason: String,
    },
    /// The issuer answered, but not with what we need.
    #[error("{url}: {reason}")]
    BadResponse {
        /// What was fetched.
        url: String,
        /// Why.
        reason: String,
    },
}

/// A small JSON GET client.
#[derive(Clone)]
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
}

impl Fetcher {
    /// Builds the client: system roots (and `cfg.ca_file`), ring provider.
    pub fn new(cfg: &OidcClientConfig) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!("{}: no certificate", path.display()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            // Plain http reaches only loopback issuers in dev: the URLs are checked before
            // any fetch (model::check_issuer_url).
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Fetcher {
            client,
            timeout: Duration::from_millis(cfg.timeout_ms),
            max_bytes: cfg.max_response_bytes,
        })
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value, FetchError> {
        let unreachable = |reason: String| FetchError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let bad = |reason: String| FetchError::BadResponse {
            url: url.to_string(),
            reason,
        };
        let uri: hyper::Uri = url.parse().map_err(|e| bad(format!("bad URL: {e}")))?;
        let req = hyper::Request::get(uri)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "felix-controlplane")
            .body(Empty::new())
            .map_err(|e| bad(e.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(bad(format!("answered HTTP {}", resp.status())));
            }
            let body = Limited::new(resp.into_body(), self.max_bytes)
                .collect()
                .await
                .map_err(|e| bad(format!("body: {e} (limit {} bytes)", self.max_bytes)))?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| bad(format!("not JSON: {e}")))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(unreachable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}
