//! Building quinn endpoints: sockets, server and client configs.
//!
//! Sockets are created with socket2 rather than letting quinn bind them,
//! because the buffer sizes must be set before the socket starts receiving
//! and quinn offers no hook for that.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};

use crate::alpn::AlpnDispatch;
use crate::{
    ClientCertFiles, ClientTls, ServerTls, TransportConfig, TransportError, ALPN_FELIX_V1,
};

/// Bidirectional streams a v1 client opens as soon as it connects. A server
/// that allows fewer would leave those clients stalled at connect, so
/// [`server_config`] refuses such a config outright.
pub const V1_CLIENT_CONNECT_STREAMS: u64 = 40;

/// How a client reaches and verifies the broker.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Trust policy for the broker certificate.
    pub tls: ClientTls,
    /// Name the certificate must be valid for (SNI); an IP literal is matched
    /// against iPAddress SANs. Default `"localhost"`.
    pub server_name: String,
    /// Offer ALPN `felix/1`. Default true; false mimics a v1 client.
    pub offer_alpn: bool,
    /// Transport knobs (the client side of stream limits matters too: it caps
    /// how many subscription streams the server may open towards us).
    pub transport: TransportConfig,
    /// Client certificate offered to a broker that requires one (mTLS). Default none.
    pub client_cert: Option<ClientCertFiles>,
}

impl ClientOptions {
    /// Options with the given trust policy and defaults for everything else.
    pub fn new(tls: ClientTls) -> Self {
        Self {
            tls,
            server_name: "localhost".to_string(),
            offer_alpn: true,
            transport: TransportConfig::default(),
            client_cert: None,
        }
    }
}

/// The wildcard address of the same family as `remote`, port 0: what a
/// client should bind to reach `remote`. Matching families avoids relying on
/// dual-stack sockets, whose defaults differ between platforms.
pub fn client_bind_addr(remote: SocketAddr) -> SocketAddr {
    match remote {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// quinn server config: TLS 1.3 only, ALPN `felix/1` selected when offered,
/// and clients offering no ALPN still accepted (see the `alpn` module for why
/// that needs two rustls configs).
pub fn server_config(
    tls: &ServerTls,
    cfg: &TransportConfig,
) -> Result<quinn::ServerConfig, TransportError> {
    if cfg.max_concurrent_bidi_streams < V1_CLIENT_CONNECT_STREAMS {
        return Err(TransportError::InvalidConfig(format!(
            "max_concurrent_bidi_streams = {} but v1 clients open {} streams at connect",
            cfg.max_concurrent_bidi_streams, V1_CLIENT_CONNECT_STREAMS
        )));
    }
    let quic = |alpn: Vec<Vec<u8>>| -> Result<QuicServerConfig, TransportError> {
        QuicServerConfig::try_from(tls.rustls_config(alpn)?)
            .map_err(|e| TransportError::Tls(e.to_string()))
    };
    let strict = quic(vec![ALPN_FELIX_V1.to_vec()])?;
    let lenient = quic(Vec::new())?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(AlpnDispatch::new(strict, lenient)));
    let mut transport = cfg.to_quinn()?;
    // Felix clients never open unidirectional streams (the broker opens them, toward the
    // client, whose own `max_concurrent_uni_streams` bounds them). Allowing the peer 4096
    // of them cost every connection ~200 KB: quinn allocates the state of every stream a
    // peer may open up front. A client that opens one anyway breaks the protocol, and QUIC
    // closes its connection (STREAM_LIMIT_ERROR).
    transport.max_concurrent_uni_streams(0u32.into());
    server
        .transport_config(Arc::new(transport))
        .migration(cfg.allow_migration);
    Ok(server)
}

/// Server endpoint bound to `addr`. Must be called inside a Tokio runtime.
pub fn server_endpoint(
    addr: SocketAddr,
    tls: ServerTls,
    cfg: &TransportConfig,
) -> Result<quinn::Endpoint, TransportError> {
    server_endpoint_with_reset_key(addr, tls, cfg, None)
}

/// [`server_endpoint`] with a stable stateless-reset key.
///
/// A broker that restarts with the same key answers packets of connections it no longer
/// knows with a stateless reset the client recognises, so clients notice the restart at
/// once and reconnect, instead of waiting for their idle timeout. With `None` the key is
/// random per process (quinn's default).
pub fn server_endpoint_with_reset_key(
    addr: SocketAddr,
    tls: ServerTls,
    cfg: &TransportConfig,
    reset_key: Option<&[u8]>,
) -> Result<quinn::Endpoint, TransportError> {
    let server = server_config(&tls, cfg)?;
    let runtime = runtime()?;
    let socket = bind_udp(addr, cfg)?;
    let endpoint_config = match reset_key {
        Some(k) => {
            let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k);
            // quinn's default connection-ID generator signs CIDs with a random per-process
            // key, and the endpoint silently drops short-header packets whose CID fails that
            // check *before* considering a stateless reset. After a restart every old CID
            // fails it, so a stable reset key alone never produced a reset (clients waited
            // for their idle timeout). Derive the CID-signing key from the reset key too.
            let tag = ring::hmac::sign(&reset_key, b"felix connection id generator key");
            let mut cid_key = [0u8; 8];
            cid_key.copy_from_slice(&tag.as_ref()[..8]);
            let cid_key = u64::from_le_bytes(cid_key);
            let mut c = quinn::EndpointConfig::new(Arc::new(reset_key));
            c.cid_generator(move || {
                Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
            });
            c
        }
        None => quinn::EndpointConfig::default(),
    };
    let endpoint = quinn::Endpoint::new(endpoint_config, Some(server), socket, runtime)?;
    tracing::info!(addr = %endpoint.local_addr()?, config = ?cfg, "felix server endpoint listening");
    Ok(endpoint)
}

/// quinn client config from `opts`.
pub fn client_config(opts: &ClientOptions) -> Result<quinn::ClientConfig, TransportError> {
    // quinn would only report a bad name at connect time, per connection;
    // failing here surfaces a config mistake at startup.
    ServerName::try_from(opts.server_name.as_str()).map_err(|_| {
        TransportError::InvalidConfig(format!("invalid server_name {:?}", opts.server_name))
    })?;
    let alpn = if opts.offer_alpn {
        vec![ALPN_FELIX_V1.to_vec()]
    } else {
        Vec::new()
    };
    let quic = QuicClientConfig::try_from(opts.tls.rustls_config(alpn, opts.client_cert.as_ref())?)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(opts.transport.to_quinn()?));
    client.initial_dst_cid_provider(Arc::new(initial_dst_cid));
    Ok(client)
}

/// The connection ID a client puts in its first Initial packet, drawn from the OS.
///
/// quinn's default draws it from the calling thread's userspace RNG, which a forked child
/// inherits: a child and its parent then open connections with the same ID, and a server
/// routes Initial packets by that ID alone, so one of the two handshakes went to the
/// other's connection and timed out (seen in the Python fork test). One getrandom call per
/// connection attempt costs nothing next to a handshake.
fn initial_dst_cid() -> quinn::ConnectionId {
    use ring::rand::SecureRandom;
    let mut id = [0u8; INITIAL_DST_CID_LEN];
    if ring::rand::SystemRandom::new().fill(&mut id).is_err() {
        // Not expected on any supported OS; a time-and-counter ID still differs between
        // processes, which is all routing needs (the ID is not a secret).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        id[..16].copy_from_slice(&nanos.to_le_bytes());
        id[16..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    quinn::ConnectionId::new(&id)
}

/// Length of [`initial_dst_cid`]: quinn's default (the maximum QUIC allows).
const INITIAL_DST_CID_LEN: usize = 20;

/// Client endpoint bound to `bind` (normally [`client_bind_addr`]), with
/// `opts` as its default client config, so `endpoint.connect(addr,
/// &opts.server_name)` just works. Must be called inside a Tokio runtime.
pub fn client_endpoint(
    bind: SocketAddr,
    opts: &ClientOptions,
) -> Result<quinn::Endpoint, TransportError> {
    let client = client_config(opts)?;
    let runtime = runtime()?;
    let socket = bind_udp(bind, &opts.transport)?;
    let mut endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// [`client_endpoint`] bound to the wildcard address of `remote`'s family.
pub fn client_endpoint_for(
    remote: SocketAddr,
    opts: &ClientOptions,
) -> Result<quinn::Endpoint, TransportError> {
    client_endpoint(client_bind_addr(remote), opts)
}

fn runtime() -> Result<Arc<dyn quinn::Runtime>, TransportError> {
    // quinn::Endpoint::new would panic when spawning its driver outside a
    // runtime; turn that into an error the caller can report.
    tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
    Ok(Arc::new(quinn::TokioRuntime))
}

fn bind_udp(addr: SocketAddr, cfg: &TransportConfig) -> Result<UdpSocket, TransportError> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // Let a `[::]` listener also serve IPv4 clients where the OS allows
        // it; failure just leaves the platform default in place.
        if let Err(e) = socket.set_only_v6(false) {
            tracing::debug!(error = %e, "could not make [::] socket dual-stack");
        }
    }
    if let Some(n) = cfg.send_buffer() {
        socket.set_send_buffer_size(n)?;
        report_buffer("SO_SNDBUF", "wmem_max", n, socket.send_buffer_size()?);
    }
    if let Some(n) = cfg.recv_buffer() {
        socket.set_recv_buffer_size(n)?;
        report_buffer("SO_RCVBUF", "rmem_max", n, socket.recv_buffer_size()?);
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The kernel silently clamps buffer requests (Linux: to `net.core.*mem_max`,
/// and it reports double the granted size for bookkeeping overhead), so say
/// when the request was not honoured; otherwise loss under bursts would be a
/// mystery.
fn report_buffer(opt: &str, sysctl: &str, requested: usize, actual: usize) {
    let granted = if cfg!(target_os = "linux") {
        actual / 2
    } else {
        actual
    };
    if granted < requested {
        tracing::info!(
            requested,
            granted,
            "{opt} capped by the OS; raise net.core.{sysctl} to get the configured size"
        );
    } else {
        tracing::debug!(requested, actual, "{opt} set");
    }
}
