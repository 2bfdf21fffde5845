//! Child processes: the broker under test and the quinn echo server (the floor). Each runs
//! in a private temporary directory (CA, reset key, log) and is killed when its handle drops,
//! including when the bench unwinds from an error.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use felix_client::{Client, ClientConfig, Tls};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A child process killed (SIGKILL) and reaped on drop; its directory is removed.
pub struct ChildProc {
    pub name: &'static str,
    pub child: std::process::Child,
    pub dir: PathBuf,
    pub log: Option<PathBuf>,
    /// Keep the temporary directory (e.g. to read the log afterwards).
    pub keep_dir: bool,
}

impl ChildProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!(
            "\n--- last lines of {} ({}) ---\n{tail}",
            log.display(),
            self.name
        )
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh private directory under the system temp dir.
pub fn private_dir(tag: &str) -> Result<PathBuf, BoxError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "felix-bench-{tag}-{}-{nanos:x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A loopback UDP port that was free a moment ago.
pub fn free_udp_port() -> Result<u16, BoxError> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

/// The `felix-broker` next to this executable (`target/release/felix-broker`).
pub fn default_broker_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("felix-broker")))
        .unwrap_or_else(|| PathBuf::from("felix-broker"))
}

/// How to start the broker.
pub struct BrokerSpec {
    pub bin: PathBuf,
    /// `current-thread` or `multi-thread`.
    pub runtime: String,
    pub worker_threads: Option<usize>,
    /// Command prefix, e.g. `valgrind --tool=callgrind` or `perf record -g -o x --`.
    pub wrapper: Vec<String>,
    pub extra_args: Vec<String>,
    pub startup_timeout: Duration,
    pub keep_dir: bool,
    /// Token of the readiness probe's client (a broker in JWT mode refuses none).
    pub probe_token: Option<(String, String)>,
}

/// A started, reachable broker.
pub struct Broker {
    pub proc: ChildProc,
    pub addr: SocketAddr,
    pub ca: PathBuf,
}

/// Client settings for the bench's broker (same transport defaults as everything else).
pub fn client_config(addr: SocketAddr, ca: &Path) -> ClientConfig {
    ClientConfig {
        addresses: vec![addr.to_string()],
        tls: Tls::CaFile(ca.to_path_buf()),
        ..ClientConfig::default()
    }
}

/// Starts the broker on a free loopback port with a private CA and waits until a client
/// can connect (a few attempts on port collisions).
pub async fn start_broker(spec: &BrokerSpec) -> Result<Broker, BoxError> {
    if spec.wrapper.is_empty() && !spec.bin.exists() {
        return Err(format!(
            "broker binary {} not found; build it with \
             `cargo build --release -p felix-broker -p felix-bench` or pass --broker-bin",
            spec.bin.display()
        )
        .into());
    }
    let mut last: Option<BoxError> = None;
    for _ in 0..3 {
        match start_broker_once(spec).await {
            Ok(b) => return Ok(b),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

async fn start_broker_once(spec: &BrokerSpec) -> Result<Broker, BoxError> {
    let dir = private_dir("broker")?;
    let ca = dir.join("ca.pem");
    let log = dir.join("broker.log");
    let addr: SocketAddr = ([127, 0, 0, 1], free_udp_port()?).into();
    let (program, prefix) = match spec.wrapper.split_first() {
        Some((p, rest)) => (PathBuf::from(p), rest.to_vec()),
        None => (spec.bin.clone(), Vec::new()),
    };
    let mut cmd = Command::new(&program);
    cmd.args(&prefix);
    if !spec.wrapper.is_empty() {
        cmd.arg(&spec.bin);
    }
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--no-metrics")
        .arg("--dev-ca-path")
        .arg(&ca)
        .arg("--runtime")
        .arg(&spec.runtime);
    if let Some(n) = spec.worker_threads {
        cmd.arg("--worker-threads").arg(n.to_string());
    }
    cmd.args(&spec.extra_args);
    if std::env::var_os("FELIX_LOG").is_none() {
        cmd.env("FELIX_LOG", "warn");
    }
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("broker.stdout"))?)
        .stderr(std::fs::File::create(&log)?);
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    let mut proc = ChildProc {
        name: "felix-broker",
        child,
        dir,
        log: Some(log),
        keep_dir: spec.keep_dir,
    };
    let deadline = Instant::now() + spec.startup_timeout;
    // The broker writes its CA before it binds, so the file appearing is only the first sign.
    loop {
        if let Some(st) = proc.exited() {
            return Err(format!("broker exited during startup ({st}){}", proc.log_tail()).into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "broker not reachable on {addr} after {:?}{}",
                spec.startup_timeout,
                proc.log_tail()
            )
            .into());
        }
        if ca.exists() {
            let mut cfg = client_config(addr, &ca);
            cfg.connect_timeout = Duration::from_millis(500);
            cfg.streams_per_connection = 1;
            if let Some((tenant, token)) = &spec.probe_token {
                cfg.tenant = tenant.clone();
                cfg.token = Some(token.clone());
            }
            if let Ok(c) = Client::connect(cfg).await {
                let ok = c.ping().await.is_ok();
                c.close();
                if ok {
                    return Ok(Broker { proc, addr, ca });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Re-executes this binary as `felix-bench echo-server` and reads the address it bound.
pub fn start_echo_server() -> Result<(ChildProc, SocketAddr, PathBuf), BoxError> {
    start_internal_server(&[], "echo-server")
}

/// Re-executes this binary as one of its internal servers (`echo-server`, the quinn floor;
/// `tcp-echo-server`), under `prefix` (e.g. `taskset -c 1`), and reads the address it bound.
pub fn start_internal_server(
    prefix: &[String],
    sub: &str,
) -> Result<(ChildProc, SocketAddr, PathBuf), BoxError> {
    let dir = private_dir(sub)?;
    let ca = dir.join("ca.pem");
    let exe = std::env::current_exe()?;
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.arg(sub).arg("--listen").arg("127.0.0.1:0");
    if sub == "echo-server" {
        cmd.arg("--ca-path").arg(&ca);
    }
    let mut child = cmd
        // The server exits when its stdin closes, so it never outlives the bench.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let proc = ChildProc {
        name: "echo-server",
        child,
        dir,
        log: None,
        keep_dir: false,
    };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| format!("{sub} said {line:?}"))?
        .parse()?;
    Ok((proc, addr, ca))
}
