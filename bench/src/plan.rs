//! Interleaved measurement. Every figure has a runner holding its connections for the whole
//! run; after one warm-up per runner, the measured operations are split into rounds and the
//! runners take turns, round after round. A burst of background load (other builds on a
//! shared 2-core machine) then lands on every figure alike instead of on whichever figure
//! happened to run at the time, which keeps the ratios against the floor meaningful.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::cpu::{CpuMeter, CpuUsage};
use crate::echo::EchoRunner;
use crate::procs::BoxError;
use crate::pubsub::{ClosedRunner, OpenRunner, SplitRunner};
use crate::raw::{RawPubsubRunner, RawReqRunner};
use crate::relay::RelayRunner;
use crate::reqs::{CacheRunner, PingRunner};
use crate::stats::{histogram, Figure, Rec};

/// Which server a runner talks to (its CPU time is reported as "server").
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Echo,
    Broker,
}

pub enum Runner {
    Echo(EchoRunner),
    Relay(RelayRunner),
    Ping(PingRunner),
    Closed(ClosedRunner),
    Split(SplitRunner),
    Open(OpenRunner),
    Cache(CacheRunner),
    RawReq(RawReqRunner),
    RawPubsub(RawPubsubRunner),
}

impl Runner {
    async fn prepare(&mut self) -> Result<(), BoxError> {
        match self {
            Runner::Relay(r) => r.prepare().await,
            _ => Ok(()),
        }
    }

    async fn round(&mut self, n: usize, rec: Rec<'_>) -> Result<(), BoxError> {
        match self {
            Runner::Echo(r) => r.round(n, rec).await,
            Runner::Relay(r) => r.round(n, rec).await,
            Runner::Ping(r) => r.round(n, rec).await,
            Runner::Closed(r) => r.round(n, rec).await,
            Runner::Split(r) => r.round(n, rec).await,
            Runner::Open(r) => r.round(n, rec).await,
            Runner::Cache(r) => r.round(n, rec).await,
            Runner::RawReq(r) => r.round(n, rec).await,
            Runner::RawPubsub(r) => r.round(n, rec).await,
        }
    }

    fn note(&self) -> String {
        match self {
            Runner::Split(r) => r.note(),
            Runner::Open(r) => r.note(),
            _ => String::new(),
        }
    }

    async fn close(self) -> Result<(), BoxError> {
        match self {
            Runner::Relay(r) => r.close().await,
            Runner::Ping(r) => r.client.close(),
            Runner::Closed(r) => r.pair.close(),
            Runner::Split(r) => r.close()?,
            Runner::Open(r) => r.pair.close(),
            Runner::Cache(r) => r.client.close(),
            Runner::RawReq(r) => r.close().await,
            Runner::RawPubsub(r) => r.close().await,
            Runner::Echo(_) => {}
        }
        Ok(())
    }
}

/// One runner and what it has measured so far.
pub struct Entry {
    labels: Vec<(String, String)>,
    pub server: Server,
    runner: Runner,
    hists: Vec<Histogram<u64>>,
    elapsed: Duration,
    cpu: CpuUsage,
}

impl Entry {
    /// `labels`: (name, description) of each histogram the runner records.
    pub fn new(labels: Vec<(String, String)>, server: Server, runner: Runner) -> Self {
        let hists = labels.iter().map(|_| histogram()).collect();
        Self {
            labels,
            server,
            runner,
            hists,
            elapsed: Duration::ZERO,
            cpu: CpuUsage::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.labels[0].0
    }

    /// Unrecorded operations.
    pub async fn warm(&mut self, n: usize) -> Result<(), BoxError> {
        self.runner.prepare().await?;
        self.runner.round(n, None).await
    }

    /// `n` recorded operations (wall time and CPU time accumulate across rounds).
    pub async fn measure(&mut self, n: usize, server_pid: u32) -> Result<(), BoxError> {
        let meter = CpuMeter::start(server_pid);
        let t = Instant::now();
        self.runner.round(n, Some(&mut self.hists)).await?;
        self.elapsed += t.elapsed();
        self.cpu.add(meter.stop(n));
        Ok(())
    }

    /// The figures, after closing the runner's connections.
    pub async fn finish(self) -> Result<Vec<Figure>, BoxError> {
        let note = self.runner.note();
        self.runner.close().await?;
        Ok(self
            .labels
            .into_iter()
            .zip(self.hists)
            .enumerate()
            .map(|(i, ((name, what), h))| {
                let mut f = Figure::new(&name, &what, h, self.elapsed).with_cpu(self.cpu);
                if i == 0 {
                    f.note = note.clone();
                }
                f
            })
            .collect())
    }
}
