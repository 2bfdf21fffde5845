//! `felix-bench`: latency of Felix against the raw QUIC floor, in one run.
//!
//! Starts `felix-broker` as its own process (private CA, free loopback port), re-executes
//! itself as a bare quinn echo server for the floor, then measures: raw echo round trips,
//! `Client::ping`, pub/sub end-to-end latency (closed loop, acked and unacked; open loop at a
//! fixed rate), cache get/put at concurrency 1 and N, and diagnostics that split the gap to
//! the floor (a raw quinn relay, the broker driven without the client library). All figures
//! are measured in interleaved rounds (see `plan`). Prints a table, the ratios against the
//! floor, and optionally writes JSON. See bench/README.md.

mod auth;
mod compare;
mod cpu;
mod echo;
mod plan;
mod procs;
mod pubsub;
mod raw;
mod relay;
mod reqs;
mod setup;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::json;

use procs::BoxError;
use stats::{Figure, Ratio};

#[derive(Parser, Debug)]
#[command(
    name = "felix-bench",
    about = "Felix latency benchmark against the raw QUIC floor"
)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// Broker binary (default: `felix-broker` next to this executable).
    #[arg(long)]
    pub broker_bin: Option<PathBuf>,
    /// Broker runtime flavour: current-thread or multi-thread.
    #[arg(long, default_value = "current-thread")]
    pub broker_runtime: String,
    /// Worker threads of a multi-thread broker.
    #[arg(long)]
    pub broker_worker_threads: Option<usize>,
    /// Command prefix for the broker, e.g. "valgrind --tool=callgrind" (split on spaces).
    #[arg(long)]
    pub broker_wrapper: Option<String>,
    /// Extra broker argument (repeatable).
    #[arg(long = "broker-arg", allow_hyphen_values = true)]
    pub broker_args: Vec<String>,
    /// Keep the broker's temporary directory (log, CA) after the run.
    #[arg(long)]
    pub keep_broker_dir: bool,
    /// Seconds to wait for the broker to accept connections.
    #[arg(long, default_value_t = 20)]
    pub startup_timeout: u64,
    /// Use an already running broker at this address instead of starting one (needs --ca).
    #[arg(long, requires = "ca")]
    pub external_broker: Option<SocketAddr>,
    /// CA PEM of the external broker.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Measured operations per figure.
    #[arg(long, default_value_t = 20_000)]
    pub ops: usize,
    /// Unrecorded warm-up operations before each figure.
    #[arg(long, default_value_t = 2_000)]
    pub warmup: usize,
    /// Smoke run (~10 s): 500 warm-up + 5,000 measured operations per figure, 2 rounds.
    #[arg(long)]
    pub quick: bool,
    /// Measured operations of each figure are split into this many rounds, interleaved
    /// with the other figures' (see README: noise on a shared machine).
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Unrecorded operations before each figure's turn in every round.
    #[arg(long, default_value_t = 200)]
    pub round_warmup: usize,
    /// Open-loop publish rate, messages per second.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Concurrency of the concurrent cache figures.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Only these groups (comma-separated): floor, ping, pubsub (.ack, .noack, .split), open,
    /// cache (.c1, .cN); diagnostics: relay (raw quinn relay in the pub/sub topology), raw
    /// (.req, .pubsub: the broker driven by a minimal client without the client library).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip the diagnostic figures (relay, raw, pubsub.split).
    #[arg(long)]
    pub no_diag: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Cmd {
    /// Internal: the raw quinn echo server used for the floor.
    EchoServer {
        /// Address to bind (port 0 picks one; the bound address is printed on stdout).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Where to write the generated CA PEM.
        #[arg(long)]
        ca_path: PathBuf,
    },
    /// Internal: the TCP echo server used for the TCP floor.
    TcpEchoServer {
        /// Address to bind (port 0 picks one; the bound address is printed on stdout).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Felix side by side with the raw floors, NATS and Valkey (see bench/README.md).
    Compare(compare::CompareArgs),
    /// What JWT mode costs: cache get latency with JWT auth vs dev mode in the same run, and
    /// the per-request permission check in nanoseconds (see bench/README.md).
    Auth(auth::AuthArgs),
}

fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    if let Some(Cmd::EchoServer { listen, ca_path }) = &args.cmd {
        return match echo::serve(*listen, ca_path) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("echo-server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Cmd::TcpEchoServer { listen }) = &args.cmd {
        return match compare::serve_tcp_echo(*listen) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tcp-echo-server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if args.quick {
        args.ops = 5_000;
        args.warmup = 500;
        args.rounds = 2;
        args.round_warmup = 100;
    }
    // Current-thread on the bench side: on 2 cores it halves p50 compared with a
    // multi-thread runtime (no cross-thread wake-ups). The concurrency-32 figures run as
    // tasks on this thread too; with the broker busy on one of the two cores, a second client
    // thread would mostly compete with it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match args.cmd.clone() {
        Some(Cmd::Compare(c)) => rt.block_on(compare::run(c)),
        Some(Cmd::Auth(a)) => rt.block_on(auth::run(a)),
        _ => rt.block_on(run(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("felix-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Diagnostic groups, skipped by `--no-diag` (unless named in `--only`).
const DIAG_GROUPS: [&str; 3] = ["relay", "raw", "pubsub.split"];

/// Whether `group` (e.g. `pubsub.ack`) was selected: `--only pubsub` selects every
/// `pubsub.*` group.
pub fn wants(args: &Args, group: &str) -> bool {
    let diag = DIAG_GROUPS
        .iter()
        .any(|d| group == *d || group.starts_with(&format!("{d}.")));
    (args.only.is_empty() && !(diag && args.no_diag))
        || args.only.iter().any(|g| {
            group == g || (group.starts_with(g.as_str()) && group[g.len()..].starts_with('.'))
        })
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn uname() -> String {
    std::process::Command::new("uname")
        .arg("-a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default()
}

pub fn progress(msg: &str) {
    eprintln!("[felix-bench] {msg}");
}

async fn run(args: Args) -> Result<(), BoxError> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load_start = loadavg();
    progress(&format!(
        "{cores} cores, load {load_start}; {} warm-up + {} measured ops per figure in {} rounds",
        args.warmup, args.ops, args.rounds
    ));
    if let Some(l1) = load_start
        .split_whitespace()
        .next()
        .and_then(|l| l.parse::<f64>().ok())
    {
        if l1 > 0.5 {
            progress("warning: the machine is busy; latency figures will be noisy");
        }
    }
    let (warm, ops) = (args.warmup, args.ops);

    let mut env = setup::Setup::start(&args).await?;
    let mut entries = env.entries(&args).await?;
    for e in entries.iter_mut() {
        progress(&format!("warm-up {}", e.name()));
        e.warm(warm).await?;
    }
    let rounds = args.rounds.clamp(1, ops.max(1));
    for r in 0..rounds {
        let n = ops / rounds + usize::from(r < ops % rounds);
        progress(&format!("round {}/{rounds}: {n} ops per figure", r + 1));
        let k = entries.len();
        for j in 0..k {
            // Rotate the order so no figure always follows the same one.
            let e = &mut entries[(j + r) % k];
            e.warm(args.round_warmup.min(warm)).await?;
            let pid = env.server_pid(e.server);
            e.measure(n, pid).await?;
        }
    }
    let mut figures: Vec<Figure> = Vec::new();
    for e in entries {
        figures.extend(e.finish().await?);
    }
    let broker_desc = env.broker_desc.clone();
    env.close().await;

    let load_end = loadavg();
    let ratios = ratios(&figures);
    println!();
    println!(
        "felix-bench: {cores} cores ({}), load {load_start} → {load_end}",
        cpu_model()
    );
    println!("{}", uname());
    println!(
        "broker: {broker_desc}; client runtime: current-thread; {warm} warm-up + {ops} \
         measured ops per figure in {rounds} interleaved rounds"
    );
    println!();
    print!("{}", stats::table(&figures));
    println!();
    print!("{}", stats::ratios_text(&ratios));

    if let Some(path) = &args.json {
        let meta = json!({
            "uname": uname(),
            "cpu": cpu_model(),
            "cores": cores,
            "load_start": load_start,
            "load_end": load_end,
            "broker": broker_desc,
            "broker_runtime": args.broker_runtime,
            "warmup": warm,
            "ops": ops,
            "rounds": rounds,
            "rate": args.rate,
            "concurrency": args.concurrency,
            "payload_bytes": pubsub::PAYLOAD,
            "cache_keys": reqs::KEYS,
            "cache_value_bytes": reqs::VALUE,
        });
        let report = stats::report_json(&figures, &ratios, meta);
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        progress(&format!("wrote {}", path.display()));
    }
    Ok(())
}

/// The ratios of p50s: (name, numerator, denominator, target). The 256 B echo is the floor
/// for pub/sub (256 B payloads) and cache (256 B values); the 64 B echo for ping.
fn ratios(figures: &[Figure]) -> Vec<Ratio> {
    const E256: &str = "floor.echo256";
    let specs: [(&str, &str, &str, Option<f64>); 14] = [
        ("pub/sub e2e / floor", "pubsub.e2e.ack", E256, Some(1.3)),
        ("cache get c1 / floor", "cache.get.c1", E256, Some(1.2)),
        (
            "pub/sub e2e (no ack) / floor",
            "pubsub.e2e.noack",
            E256,
            None,
        ),
        ("cache put c1 / floor", "cache.put.c1", E256, None),
        ("ping / floor", "ping", "floor.echo64", None),
        (
            "relay inline noack / floor",
            "relay.inline.noack",
            E256,
            None,
        ),
        ("relay task noack / floor", "relay.task.noack", E256, None),
        (
            "relay inline ack_after / floor",
            "relay.inline.ack_after",
            E256,
            None,
        ),
        (
            "relay task ack_before / floor",
            "relay.task.ack_before",
            E256,
            None,
        ),
        (
            "relay task ack_after_yield / floor",
            "relay.task.ack_after_yield",
            E256,
            None,
        ),
        ("raw ping / floor", "raw.ping", "floor.echo64", None),
        ("raw cache get / floor", "raw.cache.get.c1", E256, None),
        ("raw pub/sub e2e / floor", "raw.pubsub.e2e.ack", E256, None),
        (
            "raw pub/sub e2e (no ack) / floor",
            "raw.pubsub.e2e.noack",
            E256,
            None,
        ),
    ];
    specs
        .iter()
        .filter_map(|(name, num, den, target)| Ratio::of(name, figures, num, den, *target))
        .collect()
}
