//! Shared test harness: a real broker on loopback (in-process or as its own process) and
//! clients configured for it. No mocks: every test speaks QUIC to a real broker.

#![allow(dead_code)]

pub mod durable;
pub mod process;

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

/// `felix-broker` listening on `addr` with its dev CA written to `ca`, the HTTP endpoint off
/// and warnings only (the binary is [`process::broker_bin`]).
pub fn broker_command(addr: SocketAddr, ca: &std::path::Path) -> Command {
    let mut cmd = Command::new(process::broker_bin());
    cmd.args([
        "--listen",
        &addr.to_string(),
        "--no-metrics",
        "--dev-ca-path",
    ])
    .arg(ca)
    .env("FELIX_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    cmd
}

/// Waits (at most 20 s) until a starting broker has written its CA file.
pub fn wait_for_ca(ca: &std::path::Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ca.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "broker did not write its CA {}",
            ca.display()
        );
        std::thread::sleep(Duration::from_millis(10));
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
        let child = broker_command(addr, &ca)
            .spawn()
            .expect("spawn felix-broker");
        wait_for_ca(&ca);
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

    /// Sends `sig` (`-STOP`, `-CONT`): a stopped broker keeps its connections but answers
    /// nothing.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig}");
    }
}

/// Connects, retrying while the broker process starts.
pub async fn connect_retrying(cfg: ClientConfig) -> Client {
    retry_until(20, "initial connect", || Client::connect(cfg.clone()))
        .await
        .0
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

// ---- Helpers added for the queue, cache and reconnect suites. ----

/// A `BrokerConfig` for tests in which nothing is created on first use: streams, caches and
/// groups must be created explicitly (`create_stream`, `create_cache`, `create_group`).
pub fn test_config_no_auto_create(name: &str) -> BrokerConfig {
    let mut cfg = test_config(name);
    cfg.auto_create = Some(false);
    cfg
}

/// The broker's `/metrics` text, fetched over plain HTTP/1.1.
pub async fn scrape_metrics(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the metrics endpoint");
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    sock.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "metrics reply: {body}");
    body
}

/// The value of the metric line starting with `series` (name plus labels, e.g.
/// `felix_cache_evictions_total{cache="t1/ns/c"}`), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Calls `op` until it succeeds or `secs` pass, asserting every failure is retryable.
/// Returns the value, the time to the first success, and the first error seen (if any)
/// with the time at which it was seen.
pub async fn retry_until<T, F, Fut>(
    secs: u64,
    what: &str,
    mut op: F,
) -> (T, Duration, Option<(felix_client::Error, Duration)>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = felix_client::Result<T>>,
{
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut first_err = None;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, op()).await {
            Ok(Ok(v)) => return (v, start.elapsed(), first_err),
            Ok(Err(e)) => {
                assert!(e.retryable(), "{what}: non-retryable error {e:?}");
                if first_err.is_none() {
                    first_err = Some((e, start.elapsed()));
                }
            }
            Err(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still failing after {secs}s (first error: {first_err:?})"
        );
        // Back off a little between failed attempts (the client's own reconnect backoff
        // bounds the pace too); this is a retry pace, not a wait for a condition.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl BrokerProcess {
    /// Starts `felix-broker` on `addr` with `dir` as its dev directory, keeping the dev
    /// identity (CA, certificate, stateless-reset key) a previous broker left there, as a
    /// restarted production-like dev broker would. (`spawn` deletes the CA so it can tell
    /// when the broker is up, which forces a new CA.) Waits until a QUIC handshake with the
    /// broker succeeds.
    pub async fn spawn_keeping_identity(dir: PathBuf, addr: SocketAddr) -> Self {
        let ca = dir.join("ca.pem");
        let child = broker_command(addr, &ca)
            .spawn()
            .expect("spawn felix-broker");
        let p = Self {
            child,
            addr,
            ca,
            dir,
        };
        wait_for_handshake(addr, 20).await;
        p
    }
}

/// Waits until a QUIC handshake with `addr` succeeds (the broker is serving).
pub async fn wait_for_handshake(addr: SocketAddr, secs: u64) {
    let opts = felix_transport::ClientOptions::new(felix_transport::ClientTls::InsecureSkipVerify);
    let endpoint = felix_transport::client_endpoint_for(addr, &opts).expect("probe endpoint");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let attempt = async { endpoint.connect(addr, "localhost").ok()?.await.ok() };
        if let Ok(Some(conn)) = tokio::time::timeout(Duration::from_millis(250), attempt).await {
            conn.close(0u32.into(), b"probe");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker at {addr} did not complete a handshake within {secs}s"
        );
    }
}
