//! The servers of a comparison run, each its own process on loopback, all pinned alike:
//! felix-broker, nats-server (JetStream on, memory only), valkey-server (no persistence),
//! and the two floors (the quinn echo server and a TCP echo server, both this binary).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::{self, private_dir, BoxError, BrokerSpec, ChildProc};

/// Where and how to start the servers.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub broker_bin: PathBuf,
    pub nats_server: PathBuf,
    pub valkey_server: PathBuf,
    /// CPU list for every server (`taskset -c`), e.g. "1"; none: no pinning.
    pub cpus: Option<String>,
}

impl ServerSpec {
    fn prefix(&self) -> Vec<String> {
        match &self.cpus {
            Some(c) => vec!["taskset".into(), "-c".into(), c.clone()],
            None => Vec::new(),
        }
    }

    fn command(&self, program: &Path) -> Command {
        let prefix = self.prefix();
        match prefix.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

/// A started felix-broker.
pub async fn felix(spec: &ServerSpec, extra: &[&str]) -> Result<procs::Broker, BoxError> {
    procs::start_broker(&BrokerSpec {
        bin: spec.broker_bin.clone(),
        runtime: "current-thread".into(),
        worker_threads: None,
        wrapper: spec.prefix(),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        startup_timeout: Duration::from_secs(20),
        keep_dir: false,
        probe_token: None,
    })
    .await
}

/// A started TCP server (NATS, Valkey) and its address.
pub struct TcpServer {
    pub proc: ChildProc,
    pub addr: SocketAddr,
}

impl TcpServer {
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

fn free_tcp_port() -> Result<u16, BoxError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn spawn_logged(name: &'static str, mut cmd: Command, dir: PathBuf) -> Result<ChildProc, BoxError> {
    let log = dir.join(format!("{name}.log"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.join(format!("{name}.err")))?);
    let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
    Ok(ChildProc {
        name,
        child,
        dir,
        log: Some(log),
        keep_dir: false,
    })
}

fn wait_tcp(proc: &mut ChildProc, addr: SocketAddr) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(st)) = proc.child.try_wait() {
            return Err(format!("{} exited during startup ({st})", proc.name).into());
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{} not listening on {addr} after 20 s", proc.name).into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// nats-server with JetStream (its store in a private directory; streams here are memory).
pub fn nats(spec: &ServerSpec) -> Result<TcpServer, BoxError> {
    let dir = private_dir("nats")?;
    let port = free_tcp_port()?;
    let mut cmd = spec.command(&spec.nats_server);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("js"));
    let mut proc = spawn_logged("nats-server", cmd, dir)?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_tcp(&mut proc, addr)?;
    Ok(TcpServer { proc, addr })
}

/// valkey-server in memory only (no RDB, no AOF), as a cache is run.
pub fn valkey(spec: &ServerSpec) -> Result<TcpServer, BoxError> {
    let dir = private_dir("valkey")?;
    let port = free_tcp_port()?;
    let mut cmd = spec.command(&spec.valkey_server);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(&dir);
    let mut proc = spawn_logged("valkey-server", cmd, dir)?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_tcp(&mut proc, addr)?;
    Ok(TcpServer { proc, addr })
}

/// One of this binary's internal echo servers (`echo-server` for quinn, `tcp-echo-server`),
/// pinned like the others.
pub fn echo(spec: &ServerSpec, sub: &str) -> Result<(ChildProc, SocketAddr, PathBuf), BoxError> {
    procs::start_internal_server(&spec.prefix(), sub)
}

/// Resident set size of a process, MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The TCP echo server (`felix-bench tcp-echo-server`): one task per connection, Nagle off,
/// echoing whatever arrives. Exits when stdin closes.
pub fn serve_tcp_echo(listen: SocketAddr) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind(listen).await?;
        println!("listening {}", l.local_addr()?);
        std::thread::spawn(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
            std::process::exit(0);
        });
        loop {
            let (mut s, _) = l.accept().await?;
            s.set_nodelay(true)?;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), BoxError>(())
    })
}
