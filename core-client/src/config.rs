//! Client configuration. Defaults favour latency on a nearby broker; every bound is a knob.

use std::path::PathBuf;
use std::time::Duration;

use felix_transport::TransportConfig;

pub use felix_transport::ClientCertFiles as ClientCert;

use crate::token::{TokenRefresh, TokenSource};

/// How the client verifies the broker's certificate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Tls {
    /// Verify against the CA in this PEM file (the dev broker writes `$TMPDIR/felix-dev-<uid>/ca.pem`).
    CaFile(PathBuf),
    /// Verify against this CA PEM.
    CaPem(Vec<u8>),
    /// Accept any certificate. Development only: this gives up server authentication.
    InsecureDev,
}

/// Everything [`crate::Client::connect`] needs. Its `Debug` output never shows the token.
#[derive(Clone)]
pub struct ClientConfig {
    /// Broker addresses (`host:port`); tried in order on connect and reconnect.
    pub addresses: Vec<String>,
    /// TLS server name to verify (the dev certificate is for `localhost`).
    pub server_name: String,
    /// Certificate verification.
    pub tls: Tls,
    /// Tenant every request acts for.
    pub tenant: String,
    /// Bearer token, if the broker requires one (a static token; see `token_source` for one
    /// that changes).
    pub token: Option<String>,
    /// Where tokens come from when they change (a callback, or an exchange at the control
    /// plane); overrides `token` when set. See `docs/security-client.md`.
    pub token_source: Option<TokenSource>,
    /// When a changing token is refreshed (before it expires) and how failures are retried.
    pub token_refresh: TokenRefresh,
    /// Client certificate and key (PEM files) offered to a broker that requires mTLS; read at
    /// every connection attempt, so a rotated certificate is used on the next reconnect.
    pub client_cert: Option<ClientCert>,
    /// QUIC connections in the pool.
    pub connections: usize,
    /// Request streams per connection (requests are multiplexed on each).
    pub streams_per_connection: usize,
    /// Deadline of a connection attempt.
    pub connect_timeout: Duration,
    /// Deadline of every request (a long-poll pull adds its wait).
    pub request_timeout: Duration,
    /// First reconnect delay; doubles up to `reconnect_max`, with jitter.
    pub reconnect_initial: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Events buffered per subscription before the client stops reading (backpressure).
    pub subscription_buffer: usize,
    /// QUIC transport knobs.
    pub transport: TransportConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            addresses: vec!["127.0.0.1:5000".into()],
            server_name: "localhost".into(),
            tls: Tls::CaFile(felix_transport::default_dev_ca_path()),
            tenant: "default".into(),
            token: None,
            token_source: None,
            token_refresh: TokenRefresh::default(),
            client_cert: None,
            connections: 1,
            streams_per_connection: 4,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            subscription_buffer: 1024,
            transport: TransportConfig::default(),
        }
    }
}

/// Batching and acknowledgement settings of a [`crate::Publisher`].
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Most messages per batch.
    pub max_batch_messages: usize,
    /// Most payload bytes per batch.
    pub max_batch_bytes: usize,
    /// How long the first message of a batch may wait for company. Zero sends whatever has
    /// queued up as soon as the previous write is done (lowest latency).
    pub max_delay: Duration,
    /// Acknowledgement mode.
    pub ack: crate::AckMode,
    /// Messages queued in the publisher before `publish` waits (backpressure).
    pub queue_capacity: usize,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            max_batch_messages: 256,
            max_batch_bytes: 256 * 1024,
            max_delay: Duration::ZERO,
            ack: crate::AckMode::PerBatch,
            queue_capacity: 4096,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A configuration may be logged; a bearer token must not be.
        f.debug_struct("ClientConfig")
            .field("addresses", &self.addresses)
            .field("server_name", &self.server_name)
            .field("tls", &self.tls)
            .field("tenant", &self.tenant)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_source", &self.token_source)
            .field("token_refresh", &self.token_refresh)
            .field("client_cert", &self.client_cert)
            .field("connections", &self.connections)
            .field("streams_per_connection", &self.streams_per_connection)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("reconnect_initial", &self.reconnect_initial)
            .field("reconnect_max", &self.reconnect_max)
            .field("subscription_buffer", &self.subscription_buffer)
            .field("transport", &self.transport)
            .finish()
    }
}

#[cfg(test)]
mod debug_tests {
    #[test]
    fn debug_output_never_shows_the_token() {
        let cfg = super::ClientConfig {
            token: Some("s3cret-token".into()),
            token_source: Some(crate::TokenSource::Exchange(crate::TokenExchange::new(
                "https://cp.example",
                crate::SubjectToken::Value("s3cret-oidc".into()),
            ))),
            ..Default::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("tenant"),
            "{shown}"
        );
    }
}
