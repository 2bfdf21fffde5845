//! QUIC transport setup for the Felix broker and its clients.
//!
//! Felix speaks QUIC via quinn. Getting a quinn endpoint that is both correct
//! and fast for a broker takes a handful of decisions that every binary
//! (broker, client library, CLI, benchmarks) would otherwise repeat, and get
//! subtly different. This crate makes them once:
//!
//! - **Crypto provider.** rustls is pinned to *ring* explicitly. If both ring
//!   and aws-lc-rs end up enabled in one binary, rustls cannot pick a process
//!   default and panics at runtime; passing the provider explicitly side-steps
//!   that whatever the rest of the dependency graph enables.
//! - **ALPN compatibility.** New clients offer `felix/1`; v1 clients offer no
//!   ALPN at all. rustls in QUIC mode rejects one or the other with any single
//!   config, so the server picks between two configs per connection by
//!   sniffing the ClientHello (see the private `alpn` module). Clients offering
//!   an unrelated protocol (e.g. `h3`) are still rejected.
//! - **Certificates.** [`ServerTls::generate_dev`] mints a throw-away CA plus
//!   a `localhost` leaf and writes the CA PEM where clients can find it, so
//!   development never needs "skip verification". Production loads PEM files.
//! - **Knobs.** [`TransportConfig`] is a serde/TOML table whose defaults suit
//!   low-latency loopback/LAN operation (quinn's defaults target the Internet
//!   and allow only 100 streams, below what a broker needs).
//! - **Sockets.** UDP sockets are created with socket2 so buffer sizes are set
//!   before quinn takes over, and clamped sizes are logged.
//!
//! Nothing here frames messages or owns connections: the result is a plain
//! [`quinn::Endpoint`], re-exported as [`quinn`] so callers use the same
//! version.
//!
//! ```no_run
//! # async fn demo() -> Result<(), felix_transport::TransportError> {
//! use felix_transport::*;
//! let ca = felix_transport::default_dev_ca_path();
//! let server = server_endpoint(
//!     "127.0.0.1:5000".parse().unwrap(),
//!     ServerTls::generate_dev(&ca)?,
//!     &TransportConfig::default(),
//! )?;
//! let opts = ClientOptions::new(ClientTls::CaFile(ca));
//! let remote = server.local_addr()?;
//! let client = client_endpoint_for(remote, &opts)?;
//! let conn = client.connect(remote, &opts.server_name).unwrap().await.unwrap();
//! # let _ = conn; Ok(()) }
//! ```

mod alpn;
mod config;
pub mod devdir;
mod endpoint;
mod error;
pub mod framed;
mod peer;
mod tls;

pub use config::TransportConfig;
pub use devdir::{default_dev_ca_path, default_dev_dir};
pub use endpoint::{
    client_bind_addr, client_config, client_endpoint, client_endpoint_for, server_config,
    server_endpoint, server_endpoint_with_reset_key, ClientOptions, V1_CLIENT_CONNECT_STREAMS,
};
pub use error::TransportError;
pub use peer::{identity_from_cert, peer_identity};
pub use tls::{ClientAuth, ClientCertFiles, ClientTls, ServerTls};

pub use quinn;

/// ALPN protocol id of the Felix protocol, version 1.
pub const ALPN_FELIX_V1: &[u8] = b"felix/1";

/// The ALPN a connection negotiated: `Some(b"felix/1")` for clients that
/// offered it, `None` for v1 clients that offered no ALPN. Works on either
/// side once the handshake has completed.
pub fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}
