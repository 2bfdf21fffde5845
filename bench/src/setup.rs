//! Starts the servers (echo server, broker) and builds the runner of every selected figure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use felix_client::{AckMode, Client, ClientConfig};

use crate::echo::EchoConn;
use crate::plan::{Entry, Runner, Server};
use crate::procs::{self, BoxError, BrokerSpec, ChildProc};
use crate::pubsub::{ClosedRunner, OpenRunner, Pair, SplitRunner};
use crate::raw::{RawPubsubRunner, RawReq, RawReqRunner};
use crate::relay::{RelayRunner, VARIANTS};
use crate::reqs::{self, CacheRunner, Op, PingRunner};
use crate::{progress, wants, Args};

/// Groups that need the broker.
const BROKER_GROUPS: [&str; 9] = [
    "ping",
    "pubsub.ack",
    "pubsub.noack",
    "pubsub.split",
    "open",
    "cache.c1",
    "cache.cN",
    "raw.req",
    "raw.pubsub",
];

/// The running servers.
pub struct Setup {
    echo: Option<(ChildProc, SocketAddr, PathBuf, EchoConn)>,
    broker: Option<ChildProc>,
    broker_addr: Option<(SocketAddr, PathBuf)>,
    pub broker_desc: String,
}

impl Setup {
    pub async fn start(args: &Args) -> Result<Self, BoxError> {
        let mut s = Setup {
            echo: None,
            broker: None,
            broker_addr: None,
            broker_desc: "none".into(),
        };
        if wants(args, "floor") || wants(args, "relay") {
            let (p, addr, ca) = procs::start_echo_server()?;
            progress(&format!("echo server pid {} on {addr}", p.pid()));
            let conn = EchoConn::connect(addr, ca.clone()).await?;
            s.echo = Some((p, addr, ca, conn));
        }
        if !BROKER_GROUPS.iter().any(|g| wants(args, g)) {
            return Ok(s);
        }
        if let (Some(addr), Some(ca)) = (&args.external_broker, &args.ca) {
            s.broker_desc = format!("external {addr}");
            s.broker_addr = Some((*addr, ca.clone()));
            return Ok(s);
        }
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
            probe_token: None,
        };
        let b = procs::start_broker(&spec).await?;
        progress(&format!(
            "broker pid {} on {} (runtime {}), dir {}",
            b.proc.pid(),
            b.addr,
            spec.runtime,
            b.proc.dir.display()
        ));
        s.broker_desc = format!("{} --runtime {}", spec.bin.display(), spec.runtime);
        s.broker_addr = Some((b.addr, b.ca));
        s.broker = Some(b.proc);
        Ok(s)
    }

    /// Process whose CPU time is reported for `server` (0 when unknown, e.g. external).
    pub fn server_pid(&self, server: Server) -> u32 {
        match server {
            Server::Echo => self.echo.as_ref().map_or(0, |e| e.0.pid()),
            Server::Broker => self.broker.as_ref().map_or(0, |b| b.pid()),
        }
    }

    /// Closes the floor connection and kills both servers.
    pub async fn close(mut self) {
        if let Some((proc, _, _, conn)) = self.echo.take() {
            conn.close().await;
            drop(proc);
        }
        drop(self.broker.take());
    }

    /// The runner of every selected figure, in measuring order.
    pub async fn entries(&mut self, args: &Args) -> Result<Vec<Entry>, BoxError> {
        let mut out = Vec::new();
        if let Some((_, addr, ca, conn)) = &self.echo {
            if wants(args, "floor") {
                for size in [64usize, 256] {
                    let labels = vec![(
                        format!("floor.echo{size}"),
                        format!("raw quinn echo round trip, {size} B, one bidi stream"),
                    )];
                    let r = Runner::Echo(conn.runner(size).await?);
                    out.push(Entry::new(labels, Server::Echo, r));
                }
            }
            if wants(args, "relay") {
                for (sink, publ) in VARIANTS {
                    let r = RelayRunner::new(*addr, ca, sink, publ).await?;
                    let labels = vec![RelayRunner::label(sink, publ)];
                    out.push(Entry::new(labels, Server::Echo, Runner::Relay(r)));
                }
            }
        }
        let Some((addr, ca)) = self.broker_addr.clone() else {
            return Ok(out);
        };
        let cfg = procs::client_config(addr, &ca);
        out.extend(broker_entries(args, &cfg, addr, &ca).await?);
        Ok(out)
    }
}

async fn broker_entries(
    args: &Args,
    cfg: &ClientConfig,
    addr: SocketAddr,
    ca: &std::path::Path,
) -> Result<Vec<Entry>, BoxError> {
    let mut out = Vec::new();
    let b = Server::Broker;
    let run_id = std::process::id();
    if wants(args, "ping") {
        let labels = vec![(
            "ping".to_owned(),
            "Client::ping round trip (JSON ping/pong)".to_owned(),
        )];
        let client = Client::connect(cfg.clone()).await?;
        out.push(Entry::new(labels, b, Runner::Ping(PingRunner { client })));
    }
    for ack in [AckMode::PerBatch, AckMode::None] {
        let tag = if ack == AckMode::None { "noack" } else { "ack" };
        if wants(args, &format!("pubsub.{tag}")) {
            let pair = Pair::new(cfg, &format!("e2e-closed-{tag}-{run_id}")).await?;
            let r = Runner::Closed(ClosedRunner::new(pair, ack));
            out.push(Entry::new(ClosedRunner::labels(ack), b, r));
        }
    }
    if wants(args, "pubsub.split") {
        for ack in [AckMode::PerBatch, AckMode::None] {
            let tag = if ack == AckMode::None { "noack" } else { "ack" };
            let stream = format!("e2e-split-{tag}-{run_id}");
            let r = Runner::Split(SplitRunner::new(cfg, &stream, ack).await?);
            out.push(Entry::new(SplitRunner::labels(ack), b, r));
        }
    }
    if wants(args, "open") {
        let pair = Pair::new(cfg, &format!("e2e-open-{run_id}")).await?;
        let r = Runner::Open(OpenRunner::new(pair, args.rate));
        out.push(Entry::new(OpenRunner::labels(args.rate), b, r));
    }
    let keys = Arc::new(reqs::keys());
    let cache_wanted = wants(args, "cache.c1") || wants(args, "cache.cN");
    if cache_wanted || wants(args, "raw.req") {
        let client = Client::connect(cfg.clone()).await?;
        reqs::populate(&client, &keys).await?;
        for (c, g) in [(1, "cache.c1"), (args.concurrency, "cache.cN")] {
            if !wants(args, g) {
                continue;
            }
            for op in [Op::Get, Op::Put] {
                let r = CacheRunner::new(client.clone(), keys.clone(), op, c);
                let labels = vec![CacheRunner::label(op, c)];
                out.push(Entry::new(labels, b, Runner::Cache(r)));
            }
        }
        if !cache_wanted {
            client.close();
        }
    }
    if wants(args, "raw.req") {
        for kind in [RawReq::Ping, RawReq::CacheGet] {
            let r = RawReqRunner::new(addr, ca, kind, reqs::NAMESPACE, reqs::CACHE, keys.to_vec())
                .await?;
            out.push(Entry::new(RawReqRunner::labels(kind), b, Runner::RawReq(r)));
        }
    }
    if wants(args, "raw.pubsub") {
        for ack in [true, false] {
            let stream = format!("e2e-raw-{ack}-{run_id}");
            let r = RawPubsubRunner::new(addr, ca, crate::pubsub::NAMESPACE, &stream, ack).await?;
            out.push(Entry::new(
                RawPubsubRunner::labels(ack),
                b,
                Runner::RawPubsub(r),
            ));
        }
    }
    Ok(out)
}
