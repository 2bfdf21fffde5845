//! Shared test harness: a real broker on loopback (in-process or as its own process) and
//! clients configured for it. No mocks: every test speaks QUIC to a real broker.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use felix_broker::{Broker, BrokerConfig};
use felix_client::{Client, ClientConfig, Tls};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A unique scratch directory for this test process.
pub fn scratch(name: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("felix-test-{}-{name}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Broker settings for tests: ephemeral ports, a private CA path.
pub fn test_config(name: &str) -> BrokerConfig {
    let mut cfg = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        dev_ca_path: scratch(name).join("ca.pem"),
        ..BrokerConfig::default()
    };
    cfg.shutdown_grace_ms = 2_000;
    cfg
}

/// An in-process broker on the current runtime.
pub struct TestBroker {
    pub broker: Broker,
    pub ca: PathBuf,
}

impl TestBroker {
    pub async fn start(name: &str) -> Self {
        Self::with_config(test_config(name)).await
    }

    pub async fn with_config(cfg: BrokerConfig) -> Self {
        let ca = cfg.dev_ca_path.clone();
        let broker = Broker::start(cfg).await.expect("broker starts");
        Self { broker, ca }
    }

    pub fn addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            addresses: vec![self.addr().to_string()],
            tls: Tls::CaFile(self.ca.clone()),
            tenant: "t1".into(),
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.client_config())
            .await
            .expect("client connects")
    }
}

/// Awaits `f` with a deadline; panics with `what` when it passes.
pub async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s waiting for {what}"))
}

/// Polls `cond` until true or the deadline passes (for state observable only by asking).
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The broker binary as its own process.
pub struct BrokerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub dir: PathBuf,
}

impl BrokerProcess {
    /// Starts `felix-broker` on `addr` (port 0 picks a free one) and waits until it serves.
    pub fn spawn(dir: PathBuf, addr: SocketAddr) -> Self {
        let addr = if addr.port() == 0 {
            free_udp_port()
        } else {
            addr
        };
        let ca = dir.join("ca.pem");
        let _ = std::fs::remove_file(&ca);
        let child = Command::new(env!("CARGO_BIN_EXE_felix-broker"))
            .args([
                "--listen",
                &addr.to_string(),
                "--no-metrics",
                "--dev-ca-path",
            ])
            .arg(&ca)
            .env("FELIX_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn felix-broker");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !ca.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "broker did not write its CA"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            child,
            addr,
            ca,
            dir,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A UDP port free right now on loopback.
pub fn free_udp_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}
