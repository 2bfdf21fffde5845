//! Shared fixtures: a real QUIC server on loopback with dev certificates in
//! a per-test temporary directory. No mocks: every test does real handshakes.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use felix_transport::quinn::{self, ConnectionError};
use felix_transport::{negotiated_alpn, server_endpoint, ServerTls, TransportConfig};
use tokio::sync::mpsc;

/// Upper bound for any single await; loopback handshakes take milliseconds,
/// so hitting this means something hangs.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A unique directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "felix-transport-{tag}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the server saw for each incoming connection: the negotiated ALPN,
/// or the handshake error.
pub type HandshakeEvent = Result<Option<Vec<u8>>, ConnectionError>;

pub struct TestServer {
    pub endpoint: quinn::Endpoint,
    pub addr: SocketAddr,
    pub ca_path: PathBuf,
    pub events: mpsc::UnboundedReceiver<HandshakeEvent>,
    pub _dir: TempDir,
}

impl TestServer {
    /// Dev-cert server on 127.0.0.1 that echoes every bidi stream.
    pub fn echo() -> Self {
        Self::with_handler(echo_connection)
    }

    /// Dev-cert server on 127.0.0.1 running `handler` per established connection.
    pub fn with_handler<F, Fut>(handler: F) -> Self
    where
        F: Fn(quinn::Connection) -> Fut + Send + Sync + Copy + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let dir = TempDir::new("srv");
        // Nested path: generate_dev must create missing parent directories.
        let ca_path = dir.path().join("nested/certs/ca.pem");
        let tls = ServerTls::generate_dev(&ca_path).expect("generate dev certs");
        let endpoint = server_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            tls,
            &TransportConfig::default(),
        )
        .expect("server endpoint");
        let addr = endpoint.local_addr().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let accept = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accept.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    match incoming.await {
                        Ok(conn) => {
                            let _ = tx.send(Ok(negotiated_alpn(&conn)));
                            handler(conn).await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            }
        });
        Self {
            endpoint,
            addr,
            ca_path,
            events,
            _dir: dir,
        }
    }

    pub async fn next_event(&mut self) -> HandshakeEvent {
        within("server handshake event", self.events.recv())
            .await
            .expect("server accept loop ended")
    }
}

/// Echo each bidi stream: read to end, write it back, finish.
pub async fn echo_connection(conn: quinn::Connection) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            if let Ok(data) = recv.read_to_end(1 << 20).await {
                let _ = send.write_all(&data).await;
                let _ = send.finish();
            }
        });
    }
}

/// One request/response on a fresh bidi stream.
pub async fn echo_roundtrip(conn: &quinn::Connection, payload: &[u8]) -> Vec<u8> {
    within("echo roundtrip", async {
        let (mut send, mut recv) = conn.open_bi().await.expect("open_bi");
        send.write_all(payload).await.expect("write");
        send.finish().expect("finish");
        recv.read_to_end(1 << 20).await.expect("read echo")
    })
    .await
}
