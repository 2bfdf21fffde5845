//! `felix-bench`: latency of Felix against the raw QUIC floor, in one run.
//!
//! Starts `felix-broker` as its own process (private CA, free loopback port), re-executes
//! itself as a bare quinn echo server for the floor, then measures: raw echo round trips,
//! `Client::ping`, pub/sub end-to-end latency (closed loop, acked and unacked; open loop at a
//! fixed rate), and cache get/put at concurrency 1 and N. Prints a table, the ratios against
//! the floor, and optionally writes JSON. See bench/README.md.

mod cpu;
mod echo;
mod procs;
mod pubsub;
mod raw;
mod reqs;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use felix_client::{AckMode, Client};
use serde_json::json;

use procs::{BoxError, BrokerSpec};
use stats::{Figure, Ratio};

#[derive(Parser, Debug)]
#[command(
    name = "felix-bench",
    about = "Felix latency benchmark against the raw QUIC floor"
)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Broker binary (default: `felix-broker` next to this executable).
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Broker runtime flavour: current-thread or multi-thread.
    #[arg(long, default_value = "current-thread")]
    broker_runtime: String,
    /// Worker threads of a multi-thread broker.
    #[arg(long)]
    broker_worker_threads: Option<usize>,
    /// Command prefix for the broker, e.g. "valgrind --tool=callgrind" (split on spaces).
    #[arg(long)]
    broker_wrapper: Option<String>,
    /// Extra broker argument (repeatable).
    #[arg(long = "broker-arg", allow_hyphen_values = true)]
    broker_args: Vec<String>,
    /// Keep the broker's temporary directory (log, CA) after the run.
    #[arg(long)]
    keep_broker_dir: bool,
    /// Seconds to wait for the broker to accept connections.
    #[arg(long, default_value_t = 20)]
    startup_timeout: u64,
    /// Use an already running broker at this address instead of starting one (needs --ca).
    #[arg(long, requires = "ca")]
    external_broker: Option<SocketAddr>,
    /// CA PEM of the external broker.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Measured operations per figure.
    #[arg(long, default_value_t = 20_000)]
    ops: usize,
    /// Unrecorded warm-up operations before each figure.
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    /// Smoke run (~10 s): 500 warm-up + 3,000 measured operations per figure.
    #[arg(long)]
    quick: bool,
    /// Open-loop publish rate, messages per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Concurrency of the concurrent cache figures.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Only these groups (comma-separated): floor, ping, pubsub (.ack, .noack, .split), open,
    /// cache (.c1, .cN), raw (.req, .pubsub: diagnostics, the broker driven by a minimal
    /// client without the client library).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Internal: the raw quinn echo server used for the floor.
    EchoServer {
        /// Address to bind (port 0 picks one; the bound address is printed on stdout).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Where to write the generated CA PEM.
        #[arg(long)]
        ca_path: PathBuf,
    },
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
    if args.quick {
        args.ops = 3_000;
        args.warmup = 500;
    }
    // Current-thread on the bench side: on 2 cores it halves p50 compared with a
    // multi-thread runtime (no cross-thread wake-ups), and the concurrent figures need
    // concurrency, not parallelism.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("felix-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether `group` (e.g. `pubsub.ack`) was selected: `--only pubsub` selects every
/// `pubsub.*` group.
fn wants(args: &Args, group: &str) -> bool {
    args.only.is_empty()
        || args.only.iter().any(|g| {
            group == g || (group.starts_with(g.as_str()) && group[g.len()..].starts_with('.'))
        })
}

fn loadavg() -> String {
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

fn cpu_model() -> String {
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

fn progress(msg: &str) {
    eprintln!("[felix-bench] {msg}");
}

async fn run(args: Args) -> Result<(), BoxError> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load_start = loadavg();
    progress(&format!(
        "{cores} cores, load {load_start}; {} warm-up + {} measured ops per figure",
        args.warmup, args.ops
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
    let mut figures: Vec<Figure> = Vec::new();
    let (warm, ops) = (args.warmup, args.ops);

    if wants(&args, "floor") {
        progress("floor: raw quinn echo in a separate process");
        let (echo_proc, addr, ca) = procs::start_echo_server()?;
        cpu::set_server(echo_proc.pid());
        figures.extend(echo::measure(addr, ca, &[64, 256], warm, ops).await?);
        drop(echo_proc);
        cpu::set_server(0);
    }

    let needs_broker = [
        "ping",
        "pubsub.ack",
        "pubsub.noack",
        "pubsub.split",
        "open",
        "cache.c1",
        "cache.cN",
        "raw.req",
        "raw.pubsub",
    ]
    .iter()
    .any(|g| wants(&args, g));
    let mut broker_desc = String::from("none");
    if needs_broker {
        let (_broker, addr, ca) = match (&args.external_broker, &args.ca) {
            (Some(addr), Some(ca)) => {
                broker_desc = format!("external {addr}");
                (None, *addr, ca.clone())
            }
            _ => {
                let spec = BrokerSpec {
                    bin: args
                        .broker_bin
                        .clone()
                        .unwrap_or_else(procs::default_broker_bin),
                    runtime: args.broker_runtime.clone(),
                    worker_threads: args.broker_worker_threads,
                    wrapper: args
                        .broker_wrapper
                        .as_deref()
                        .map(|w| w.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                    extra_args: args.broker_args.clone(),
                    startup_timeout: Duration::from_secs(args.startup_timeout),
                    keep_dir: args.keep_broker_dir,
                };
                let b = procs::start_broker(&spec).await?;
                progress(&format!(
                    "broker pid {} on {} (runtime {}), dir {}",
                    b.proc.pid(),
                    b.addr,
                    spec.runtime,
                    b.proc.dir.display()
                ));
                broker_desc = format!("{} --runtime {}", spec.bin.display(), spec.runtime);
                cpu::set_server(b.proc.pid());
                (Some(b.proc), b.addr, b.ca)
            }
        };
        let cfg = procs::client_config(addr, &ca);
        figures.extend(broker_figures(&args, &cfg, warm, ops).await?);
        figures.extend(raw_figures(&args, addr, &ca, &cfg, warm, ops).await?);
        // `_broker` drops here: the broker process is killed.
    }

    let load_end = loadavg();
    let ratios: Vec<Ratio> = [
        Ratio::of(
            "pub/sub e2e / floor",
            &figures,
            "pubsub.e2e.ack",
            "floor.echo256",
            Some(1.3),
        ),
        Ratio::of(
            "cache get c1 / floor",
            &figures,
            "cache.get.c1",
            "floor.echo256",
            Some(1.2),
        ),
        Ratio::of(
            "pub/sub e2e (no ack) / floor",
            &figures,
            "pubsub.e2e.noack",
            "floor.echo256",
            None,
        ),
        Ratio::of(
            "cache put c1 / floor",
            &figures,
            "cache.put.c1",
            "floor.echo256",
            None,
        ),
        Ratio::of("ping / floor", &figures, "ping", "floor.echo64", None),
        Ratio::of(
            "raw ping / floor",
            &figures,
            "raw.ping",
            "floor.echo64",
            None,
        ),
        Ratio::of(
            "raw cache get / floor",
            &figures,
            "raw.cache.get.c1",
            "floor.echo256",
            None,
        ),
        Ratio::of(
            "raw pub/sub e2e / floor",
            &figures,
            "raw.pubsub.e2e.ack",
            "floor.echo256",
            None,
        ),
        Ratio::of(
            "raw pub/sub e2e (no ack) / floor",
            &figures,
            "raw.pubsub.e2e.noack",
            "floor.echo256",
            None,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();

    let table = stats::table(&figures);
    let ratio_text = stats::ratios_text(&ratios);
    println!();
    println!(
        "felix-bench: {cores} cores ({}), load {load_start} → {load_end}",
        cpu_model()
    );
    println!("{}", uname());
    println!("broker: {broker_desc}; client runtime: current-thread; {warm} warm-up + {ops} measured ops per figure");
    println!();
    print!("{table}");
    println!();
    print!("{ratio_text}");

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

/// Everything measured against the broker.
async fn broker_figures(
    args: &Args,
    cfg: &felix_client::ClientConfig,
    warm: usize,
    ops: usize,
) -> Result<Vec<Figure>, BoxError> {
    let mut figures = Vec::new();
    let run_id = std::process::id();

    if wants(args, "ping") {
        progress("ping");
        let client = Client::connect(cfg.clone()).await?;
        figures.push(reqs::ping(&client, warm, ops).await?);
        client.close();
    }

    for (ack, tag) in [(AckMode::PerBatch, "ack"), (AckMode::None, "noack")] {
        if !wants(args, &format!("pubsub.{tag}")) {
            continue;
        }
        progress(&format!("pub/sub closed loop ({tag})"));
        let stream = format!("e2e-closed-{tag}-{run_id}");
        let mut pair = pubsub::Pair::new(cfg, &stream).await?;
        figures.extend(pubsub::closed_loop(&mut pair, ack, warm, ops, "pubsub").await?);
        pair.close();
    }

    if wants(args, "pubsub.split") {
        for (ack, tag) in [(AckMode::PerBatch, "ack"), (AckMode::None, "noack")] {
            progress(&format!("pub/sub closed loop ({tag}), subscriber thread"));
            let stream = format!("e2e-split-{tag}-{run_id}");
            figures.push(pubsub::closed_loop_split(cfg, &stream, ack, warm, ops, "pubsub").await?);
        }
    }

    if wants(args, "open") {
        progress(&format!("pub/sub open loop at {} msg/s", args.rate));
        let stream = format!("e2e-open-{run_id}");
        let pair = pubsub::Pair::new(cfg, &stream).await?;
        figures.push(pubsub::open_loop(pair, args.rate, warm, ops, "pubsub").await?);
    }

    if wants(args, "cache.c1") || wants(args, "cache.cN") {
        let client = Client::connect(cfg.clone()).await?;
        let keys = Arc::new(reqs::keys());
        reqs::populate(&client, &keys).await?;
        for (c, g) in [(1, "cache.c1"), (args.concurrency, "cache.cN")] {
            if !wants(args, g) {
                continue;
            }
            for op in [reqs::Op::Get, reqs::Op::Put] {
                progress(&format!("cache {op:?} concurrency {c}"));
                figures.push(reqs::cache_figure(&client, &keys, op, c, warm, ops).await?);
            }
        }
        client.close();
    }
    Ok(figures)
}

/// Diagnostics: the same broker paths driven without the client library.
async fn raw_figures(
    args: &Args,
    addr: SocketAddr,
    ca: &std::path::Path,
    cfg: &felix_client::ClientConfig,
    warm: usize,
    ops: usize,
) -> Result<Vec<Figure>, BoxError> {
    let mut figures = Vec::new();
    if wants(args, "raw.req") {
        progress("diagnostics: ping and cache get with a raw protocol client");
        let keys = reqs::keys();
        let client = Client::connect(cfg.clone()).await?;
        reqs::populate(&client, &keys).await?;
        client.close();
        figures
            .extend(raw::requests(addr, ca, reqs::NAMESPACE, reqs::CACHE, &keys, warm, ops).await?);
    }
    if !wants(args, "raw.pubsub") {
        return Ok(figures);
    }
    progress("diagnostics: pub/sub with raw protocol clients");
    let run_id = std::process::id();
    for ack in [true, false] {
        let stream = format!("e2e-raw-{ack}-{run_id}");
        figures.push(raw::pubsub(addr, ca, pubsub::NAMESPACE, &stream, ack, warm, ops).await?);
    }
    Ok(figures)
}
