//! Durable-storage process harness: a `felix-broker` process with a data directory, restarted
//! on it (fresh ports each time), `/ready` over HTTP, and a raw protocol client that sees what
//! the client core hides (the offset in `publish_ok`, the epoch in `subscribed`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use felix_transport::framed::FrameReader;
use felix_wire::{features, flags, AckMode, Decoded, Message, StartPos};

use super::{free_udp_port, process::broker_bin, wait_for_ca};

pub const TENANT: &str = "t1";
pub const NS: &str = "ns";

/// A TCP port free right now on loopback (for the HTTP endpoint).
pub fn free_tcp_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A data directory on the build's file system (`CARGO_TARGET_TMPDIR`), not on a tmpfs
/// `/tmp`, so fsync costs what it costs on this machine's disk.
pub fn data_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "felix-data-{}-{name}-{}",
        std::process::id(),
        super::scratch("n").file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One run of the broker process on a data directory.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    pub http: SocketAddr,
    pub ca: PathBuf,
}

impl Node {
    /// Starts `felix-broker --data-dir DATA --config CONFIG` on fresh ports.
    pub fn spawn(scratch: &Path, data: &Path, config: &Path) -> Self {
        let addr = free_udp_port();
        let http = free_tcp_port();
        let ca = scratch.join("ca.pem");
        let _ = std::fs::remove_file(&ca);
        let child = Command::new(broker_bin())
            .args([
                "--listen",
                &addr.to_string(),
                "--metrics-listen",
                &http.to_string(),
                "--dev-ca-path",
            ])
            .arg(&ca)
            .arg("--data-dir")
            .arg(data)
            .arg("--config")
            .arg(config)
            .env("FELIX_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn felix-broker");
        wait_for_ca(&ca);
        Self {
            child,
            addr,
            http,
            ca,
        }
    }

    /// Waits until `/ready` answers 200 (at most `secs`); returns how long it took.
    pub async fn wait_ready(&mut self, secs: u64) -> Duration {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the broker exited before it was ready: {status}");
            }
            if http_get(self.http, "/ready")
                .await
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "broker not ready within {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to exit (at most `secs`).
    pub fn stop(&mut self, secs: u64) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "broker did not stop on SIGTERM within {secs} s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await.expect("metrics")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `GET path` over plain HTTP/1.1; `None` if nothing listens.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    sock.write_all(req.as_bytes()).await.ok()?;
    let mut body = String::new();
    sock.read_to_string(&mut body).await.ok()?;
    Some(body)
}

/// A raw request stream (JSON) with error codes, event offsets and subscribe-from.
pub struct Raw {
    _endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub reader: FrameReader,
}

impl Raw {
    /// Connects to `node` and authenticates.
    pub async fn connect(node: &Node) -> Result<Self, String> {
        Self::connect_at(node.addr, &node.ca).await
    }

    /// Connects and authenticates; `Err` when the broker is not there.
    pub async fn connect_at(addr: SocketAddr, ca: &Path) -> Result<Self, String> {
        let opts =
            felix_transport::ClientOptions::new(felix_transport::ClientTls::CaFile(ca.into()));
        let endpoint =
            felix_transport::client_endpoint_for(addr, &opts).map_err(|e| e.to_string())?;
        let conn = endpoint
            .connect(addr, "localhost")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let mut raw = Self {
            _endpoint: endpoint,
            conn,
            send,
            reader: FrameReader::new(recv, felix_wire::frame::DEFAULT_MAX_FRAME),
        };
        let want = features::ERROR_CODES
            | features::EVENT_OFFSETS
            | features::SUBSCRIBE_FROM
            | features::ADMIN;
        let (lo, hi) = features::split(want);
        raw.write(&Message::Auth {
            tenant_id: TENANT.into(),
            token: None,
            client_flags: Some(flags::V1_ALL),
            client_features: Some(lo),
            client_features_hi: Some(hi),
        })
        .await?;
        match raw.read().await? {
            Message::AuthOk { .. } => Ok(raw),
            other => Err(format!("auth: {other:?}")),
        }
    }

    pub async fn write(&mut self, m: &Message) -> Result<(), String> {
        self.send
            .write_all(&m.to_frame_bytes())
            .await
            .map_err(|e| e.to_string())
    }

    /// The next JSON reply.
    pub async fn read(&mut self) -> Result<Message, String> {
        match self.reader.next().await {
            Ok(Some(frame)) => match felix_wire::decode(frame) {
                Ok(Decoded::Json(m)) => Ok(m),
                other => Err(format!("expected JSON, got {other:?}")),
            },
            Ok(None) => Err("stream finished".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A publish of one payload with a per-message ack.
    pub fn publish(stream: &str, payload: Bytes, request_id: u64) -> Message {
        Message::Publish {
            tenant_id: TENANT.into(),
            namespace: NS.into(),
            stream: stream.into(),
            payload,
            request_id: Some(request_id),
            ack: Some(AckMode::PerMessage),
        }
    }

    /// Publishes and waits for the ack: `Ok(offset)`, or the error's code and message.
    pub async fn publish_one(&mut self, stream: &str, payload: Bytes) -> Result<u64, String> {
        self.write(&Self::publish(stream, payload, 1)).await?;
        match self.read().await? {
            Message::PublishOk {
                offset: Some(o), ..
            } => Ok(o),
            other => Err(format!("{other:?}")),
        }
    }

    /// Creates a stream with this durability (`stream_create`).
    pub async fn create_stream(&mut self, stream: &str, durability: &str) -> Message {
        self.write(&Message::StreamCreate {
            tenant_id: TENANT.into(),
            namespace: NS.into(),
            stream: stream.into(),
            request_id: 7,
            max_records: None,
            max_bytes: None,
            subscriber_buffer: None,
            full_policy: None,
            durability: Some(durability.into()),
            fsync: None,
            fsync_interval_ms: None,
        })
        .await
        .unwrap();
        self.read().await.unwrap()
    }

    /// Subscribes from the earliest record and reads until `count` records arrived (at most
    /// `secs`). Returns the epoch from `subscribed` and the (offset, payload) records.
    pub async fn read_from_earliest(
        mut self,
        stream: &str,
        count: usize,
        secs: u64,
    ) -> (u64, Vec<(u64, Bytes)>) {
        self.write(&Message::Subscribe {
            tenant_id: TENANT.into(),
            namespace: NS.into(),
            stream: stream.into(),
            subscription_id: None,
            start: Some(StartPos::Earliest),
        })
        .await
        .unwrap();
        let epoch = match self.read().await.unwrap() {
            Message::Subscribed { epoch: Some(e), .. } => e,
            other => panic!("subscribe: {other:?}"),
        };
        let mut out = Vec::new();
        if count == 0 {
            return (epoch, out);
        }
        let deadline = Duration::from_secs(secs);
        let recv = tokio::time::timeout(deadline, self.conn.accept_uni())
            .await
            .expect("event stream within the deadline")
            .unwrap();
        let mut events = FrameReader::new(recv, felix_wire::frame::DEFAULT_MAX_FRAME);
        let t0 = Instant::now();
        while out.len() < count {
            let left = deadline.saturating_sub(t0.elapsed());
            let frame = tokio::time::timeout(left, events.next())
                .await
                .unwrap_or_else(|_| panic!("only {} of {count} records within {secs} s", out.len()))
                .unwrap()
                .expect("event frame");
            match felix_wire::decode(frame).unwrap() {
                Decoded::OffsetEvents(b) => out.extend(b.events),
                Decoded::Json(Message::EventStreamHello { .. }) => {}
                other => panic!("unexpected on the event stream: {other:?}"),
            }
        }
        (epoch, out)
    }
}
