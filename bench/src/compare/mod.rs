//! `felix-bench compare`: Felix side by side with the raw QUIC and TCP floors, NATS and
//! Valkey, in one run, with one harness and one load pattern for every system.
//!
//! Every server is its own process on loopback, pinned to the same CPUs; the bench runs on
//! a current-thread runtime (pin it elsewhere with `taskset`, as `bench/run` does). Each
//! figure is measured in `trials` trials, systems interleaved within a trial, and reported
//! as the median with min and max. Results go to `<out>/<date>.json` and `<out>/<date>.md`.

pub mod measure;
mod memory;
mod pubsub;
mod queue;
mod report;
mod reqs;
mod servers;

use std::net::SocketAddr;
use std::path::PathBuf;

use felix_client::ClientConfig;

use crate::procs::{self, BoxError};
use pubsub::{Topic, TopicSpec};
use report::Results;
pub use servers::serve_tcp_echo;
use servers::{ServerSpec, TcpServer};

/// Options of `felix-bench compare`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Smoke run (about a minute): fewer operations, fewer parameters, one trial.
    #[arg(long)]
    pub quick: bool,
    /// Trials per figure (median, min and max reported). Default 3, or 1 with --quick.
    #[arg(long)]
    pub trials: Option<usize>,
    /// nats-server binary.
    #[arg(long, default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// valkey-server (or redis-server) binary.
    #[arg(long, default_value = "valkey-server")]
    pub valkey_server: PathBuf,
    /// felix-broker binary (default: next to this executable).
    #[arg(long)]
    pub broker_bin: Option<PathBuf>,
    /// CPUs for every server (`taskset -c`), e.g. "1"; empty: no pinning.
    #[arg(long, default_value = "")]
    pub server_cpus: String,
    /// Directory for `<date>.json` and `<date>.md`.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Only workloads whose name starts with one of these (comma-separated): floor,
    /// pubsub.e2e, pubsub.open, pubsub.throughput, cache, queue, isolation, memory.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sys {
    Felix,
    Nats,
    Valkey,
    /// Raw quinn echo (the floor under Felix).
    Quic,
    /// Raw TCP echo (the floor under NATS and Valkey).
    Tcp,
}

impl Sys {
    pub fn name(self) -> &'static str {
        match self {
            Sys::Felix => "felix",
            Sys::Nats => "nats",
            Sys::Valkey => "valkey",
            Sys::Quic => "quic-floor",
            Sys::Tcp => "tcp-floor",
        }
    }
}

/// The running servers.
pub struct Env {
    felix: Option<procs::Broker>,
    nats: Option<TcpServer>,
    valkey: Option<TcpServer>,
    quic: Option<(procs::ChildProc, SocketAddr, PathBuf)>,
    tcp: Option<(procs::ChildProc, SocketAddr, PathBuf)>,
}

impl Env {
    /// Starts the servers of `systems`.
    pub async fn start(spec: &ServerSpec, systems: &[Sys]) -> Result<Self, BoxError> {
        let mut env = Env {
            felix: None,
            nats: None,
            valkey: None,
            quic: None,
            tcp: None,
        };
        for s in systems {
            match s {
                Sys::Felix => env.felix = Some(servers::felix(spec, &[]).await?),
                Sys::Nats => env.nats = Some(servers::nats(spec)?),
                Sys::Valkey => env.valkey = Some(servers::valkey(spec)?),
                Sys::Quic => env.quic = Some(servers::echo(spec, "echo-server")?),
                Sys::Tcp => env.tcp = Some(servers::echo(spec, "tcp-echo-server")?),
            }
        }
        Ok(env)
    }

    pub fn felix_config(&self) -> ClientConfig {
        let b = self.felix.as_ref().expect("felix-broker started");
        procs::client_config(b.addr, &b.ca)
    }

    pub fn nats_addr(&self) -> SocketAddr {
        self.nats.as_ref().expect("nats-server started").addr
    }

    pub fn valkey_addr(&self) -> SocketAddr {
        self.valkey.as_ref().expect("valkey-server started").addr
    }

    pub fn pid(&self, sys: Sys) -> u32 {
        match sys {
            Sys::Felix => self.felix.as_ref().map(|b| b.proc.pid()),
            Sys::Nats => self.nats.as_ref().map(|s| s.pid()),
            Sys::Valkey => self.valkey.as_ref().map(|s| s.pid()),
            Sys::Quic => self.quic.as_ref().map(|s| s.0.pid()),
            Sys::Tcp => self.tcp.as_ref().map(|s| s.0.pid()),
        }
        .unwrap_or(0)
    }

    pub async fn close(self) {
        // Dropping the handles kills and reaps the processes.
    }
}

/// Sizes of one run.
struct Plan {
    trials: usize,
    floor_ops: usize,
    payloads: Vec<usize>,
    /// (fanout, measured messages).
    fanouts: Vec<(usize, usize)>,
    open_rate: u64,
    open_ops: usize,
    tput_total: usize,
    cache_values: Vec<usize>,
    cache_ops_c1: usize,
    cache_ops_c32: usize,
    queue_ops: usize,
    queue_total: usize,
    iso_total: usize,
    iso_ops: usize,
    mem_subs: usize,
    mem_keys: usize,
}

impl Plan {
    fn new(quick: bool, trials: Option<usize>) -> Self {
        if quick {
            Plan {
                trials: trials.unwrap_or(1),
                floor_ops: 1_000,
                payloads: vec![0, 256],
                fanouts: vec![(1, 300), (10, 100)],
                open_rate: 2_000,
                open_ops: 1_000,
                tput_total: 10_000,
                cache_values: vec![256],
                cache_ops_c1: 500,
                cache_ops_c32: 2_000,
                queue_ops: 200,
                queue_total: 2_000,
                iso_total: 10_000,
                iso_ops: 1_000,
                mem_subs: 1_000,
                mem_keys: 10_000,
            }
        } else {
            Plan {
                trials: trials.unwrap_or(3),
                floor_ops: 10_000,
                payloads: vec![0, 256, 1024, 4096],
                fanouts: vec![(1, 3_000), (10, 1_000), (100, 200), (1000, 40)],
                open_rate: 5_000,
                open_ops: 20_000,
                tput_total: 200_000,
                cache_values: vec![0, 256, 4096],
                cache_ops_c1: 5_000,
                cache_ops_c32: 20_000,
                queue_ops: 2_000,
                queue_total: 50_000,
                iso_total: 100_000,
                iso_ops: 10_000,
                mem_subs: 10_000,
                mem_keys: 1_000_000,
            }
        }
    }
}

fn wants(args: &CompareArgs, workload: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| workload.starts_with(o.as_str()))
}

fn progress(msg: &str) {
    crate::progress(msg);
}

/// Runs the comparison and writes the report.
pub async fn run(args: CompareArgs) -> Result<(), BoxError> {
    let plan = Plan::new(args.quick, args.trials);
    let spec = ServerSpec {
        broker_bin: args
            .broker_bin
            .clone()
            .unwrap_or_else(procs::default_broker_bin),
        nats_server: args.nats_server.clone(),
        valkey_server: args.valkey_server.clone(),
        cpus: Some(args.server_cpus.clone()).filter(|c| !c.is_empty()),
    };
    let mut res = Results::new(&args, plan.trials);
    let all = [Sys::Felix, Sys::Nats, Sys::Valkey, Sys::Quic, Sys::Tcp];
    let env = Env::start(&spec, &all).await?;
    for trial in 0..plan.trials {
        progress(&format!("trial {}/{}", trial + 1, plan.trials));
        run_trial(&args, &plan, &env, &mut res).await?;
    }
    env.close().await;
    if wants(&args, "memory") {
        memory_figures(&plan, &spec, &mut res).await?;
    }
    res.finish(&args.out)
}

async fn run_trial(
    args: &CompareArgs,
    plan: &Plan,
    env: &Env,
    res: &mut Results,
) -> Result<(), BoxError> {
    let warm = |ops: usize| (ops / 10).max(10);
    if wants(args, "floor") {
        progress("floor");
        let (_, a, ca) = env.quic.as_ref().expect("quic echo started");
        let t = reqs::quic_echo(*a, ca.clone(), 64, warm(plan.floor_ops), plan.floor_ops).await?;
        res.add("floor.echo", "64B", Sys::Quic, t);
        let (_, a, _) = env.tcp.as_ref().expect("tcp echo started");
        let t = reqs::tcp_echo(*a, 64, warm(plan.floor_ops), plan.floor_ops).await?;
        res.add("floor.echo", "64B", Sys::Tcp, t);
    }
    let pubsub_systems = [Sys::Felix, Sys::Nats];
    if wants(args, "pubsub.e2e") {
        for &(fanout, ops) in &plan.fanouts {
            for sys in pubsub_systems {
                progress(&format!("pubsub.e2e fanout {fanout} {}", sys.name()));
                let name = res.unique("e2e");
                let mut topic = Topic::open(sys, env, topic(&name, fanout, None, false)).await?;
                for &p in &plan.payloads {
                    let t = pubsub::e2e_closed(&mut topic, p, warm(ops), ops).await?;
                    res.add("pubsub.e2e", &format!("{p}B fanout{fanout}"), sys, t);
                }
                topic.close().await;
            }
        }
    }
    if wants(args, "pubsub.open") {
        for sys in pubsub_systems {
            progress(&format!("pubsub.open {}", sys.name()));
            let name = res.unique("open");
            let mut topic = Topic::open(sys, env, topic(&name, 1, None, false)).await?;
            let t = pubsub::e2e_open(
                &mut topic,
                256,
                plan.open_rate,
                warm(plan.open_ops),
                plan.open_ops,
            )
            .await?;
            res.add(
                "pubsub.open",
                &format!("256B fanout1 {}/s", plan.open_rate),
                sys,
                t,
            );
            topic.close().await;
        }
    }
    if wants(args, "pubsub.throughput") {
        for fanout in [1, 4] {
            for sys in pubsub_systems {
                progress(&format!("pubsub.throughput fanout {fanout} {}", sys.name()));
                let name = res.unique("tput");
                let spec = topic(&name, fanout, Some(pubsub::lossless()), false);
                let mut topic = Topic::open(sys, env, spec).await?;
                let t = pubsub::throughput(&mut topic, 64, 64, 4096, plan.tput_total).await?;
                res.add("pubsub.throughput", &format!("64B fanout{fanout}"), sys, t);
                topic.close().await;
            }
        }
    }
    if wants(args, "cache") {
        cache_figures(plan, env, res).await?;
    }
    if wants(args, "queue") {
        for sys in pubsub_systems {
            progress(&format!("queue {}", sys.name()));
            let ops = plan.queue_ops;
            let mode = queue::Mode::Latency {
                warm: warm(ops),
                ops,
            };
            let t = queue::run(sys, env, &res.unique("ql"), 4, 256, mode).await?;
            res.add("queue.latency", "256B 4 consumers", sys, t);
            let mode = queue::Mode::Throughput {
                total: plan.queue_total,
                window: 8192,
            };
            let t = queue::run(sys, env, &res.unique("qt"), 4, 256, mode).await?;
            res.add("queue.throughput", "256B 4 consumers", sys, t);
        }
    }
    if wants(args, "isolation") {
        for sys in pubsub_systems {
            for stalled in [false, true] {
                progress(&format!("isolation {} stalled={stalled}", sys.name()));
                let tag = if stalled {
                    "one stalled"
                } else {
                    "none stalled"
                };
                let name = res.unique("iso");
                let mut topic = Topic::open(sys, env, topic(&name, 3, None, stalled)).await?;
                let t = pubsub::throughput(&mut topic, 64, 64, 2048, plan.iso_total).await?;
                res.add("isolation.throughput", &format!("3 readers, {tag}"), sys, t);
                let t =
                    pubsub::e2e_open(&mut topic, 256, plan.open_rate, 100, plan.iso_ops).await?;
                res.add("isolation.latency", &format!("3 readers, {tag}"), sys, t);
                topic.close().await;
            }
        }
    }
    Ok(())
}

fn topic(
    name: &str,
    subscribers: usize,
    settings: Option<felix_client::StreamSettings>,
    stalled: bool,
) -> TopicSpec<'_> {
    TopicSpec {
        name,
        subscribers,
        // One connection per subscriber up to 4, then shared: the same for both systems.
        connections: subscribers.min(4),
        settings,
        stalled,
    }
}

async fn cache_figures(plan: &Plan, env: &Env, res: &mut Results) -> Result<(), BoxError> {
    use reqs::Load;
    const KEYS: usize = 1024;
    for &v in &plan.cache_values {
        for sys in [Sys::Felix, Sys::Valkey, Sys::Nats] {
            progress(&format!("cache {v}B {}", sys.name()));
            for (put, op) in [(false, "get"), (true, "put")] {
                for (c, ops) in [(1, plan.cache_ops_c1), (32, plan.cache_ops_c32)] {
                    let t =
                        reqs::cache(sys, env, put, KEYS, v, Load::Closed(c), ops / 10, ops).await?;
                    res.add(&format!("cache.{op}"), &format!("{v}B c{c}"), sys, t);
                }
            }
        }
    }
    for sys in [Sys::Felix, Sys::Valkey, Sys::Nats] {
        progress(&format!("cache open loop {}", sys.name()));
        let load = Load::Open(plan.open_rate);
        let t = reqs::cache(sys, env, false, KEYS, 256, load, 100, plan.open_ops).await?;
        res.add(
            "cache.get.open",
            &format!("256B {}/s", plan.open_rate),
            sys,
            t,
        );
    }
    Ok(())
}

async fn memory_figures(plan: &Plan, spec: &ServerSpec, res: &mut Results) -> Result<(), BoxError> {
    use memory::Holding;
    for sys in [Sys::Felix, Sys::Nats, Sys::Valkey] {
        progress(&format!("memory {}", sys.name()));
        let idle = memory::measure(sys, spec, Holding::Idle, None).await?;
        let idle_mib = idle.get("rss_mib");
        res.add("memory", "idle", sys, idle);
        let t = memory::measure(sys, spec, Holding::Subscriptions(plan.mem_subs), idle_mib).await?;
        res.add(
            "memory",
            &format!("{} subscriptions", plan.mem_subs),
            sys,
            t,
        );
        let t = memory::measure(sys, spec, Holding::Keys(plan.mem_keys), idle_mib).await?;
        res.add("memory", &format!("{} keys x 100B", plan.mem_keys), sys, t);
    }
    Ok(())
}
