//! Request/reply figures: `Client::ping` (the broker's minimal request path) and cache
//! get/put at concurrency 1 and N over a fixed key set.

use std::time::Instant;

use bytes::Bytes;
use felix_client::Client;
use hdrhistogram::Histogram;

use crate::cpu::CpuMeter;
use crate::procs::BoxError;
use crate::stats::{histogram, record, Figure};

pub const NAMESPACE: &str = "bench";
pub const CACHE: &str = "bench-cache";
pub const KEYS: usize = 1024;
pub const VALUE: usize = 256;

/// Ping round trips, one at a time.
pub async fn ping(client: &Client, warmup: usize, ops: usize) -> Result<Figure, BoxError> {
    for _ in 0..warmup {
        client.ping().await?;
    }
    let mut h = histogram();
    let start = Instant::now();
    let meter = CpuMeter::start();
    for _ in 0..ops {
        let t = Instant::now();
        client.ping().await?;
        record(&mut h, t.elapsed());
    }
    Ok(Figure::new(
        "ping",
        "Client::ping round trip (JSON ping/pong)",
        h,
        start.elapsed(),
    )
    .with_cpu(meter.stop(ops)))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Get,
    Put,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
        }
    }
}

/// Key names `k0000`..`k1023`.
pub fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("k{i:04}")).collect()
}

pub fn value() -> Bytes {
    Bytes::from(vec![0xc3u8; VALUE])
}

/// Writes every key once so gets always hit.
pub async fn populate(client: &Client, keys: &[String]) -> Result<(), BoxError> {
    let v = value();
    for k in keys {
        client
            .cache_put(NAMESPACE, CACHE, k, v.clone(), None)
            .await?;
    }
    Ok(())
}

async fn one(client: &Client, op: Op, key: &str, v: &Bytes) -> Result<(), BoxError> {
    match op {
        Op::Get => {
            let got = client.cache_get(NAMESPACE, CACHE, key).await?;
            match got {
                Some(cv) if cv.value.len() == VALUE => Ok(()),
                Some(cv) => {
                    Err(format!("{key}: {} bytes, expected {VALUE}", cv.value.len()).into())
                }
                None => Err(format!("{key}: missing (evicted?)").into()),
            }
        }
        Op::Put => {
            client
                .cache_put(NAMESPACE, CACHE, key, v.clone(), None)
                .await?;
            Ok(())
        }
    }
}

/// `n` operations by one worker, starting at key `offset`; latencies go to `h` if given.
async fn worker(
    client: Client,
    op: Op,
    keys: std::sync::Arc<Vec<String>>,
    offset: usize,
    n: usize,
    mut h: Option<Histogram<u64>>,
) -> Result<Option<Histogram<u64>>, BoxError> {
    let v = value();
    for i in 0..n {
        let key = &keys[(offset + i * 7) % keys.len()];
        let t = Instant::now();
        one(&client, op, key, &v).await?;
        if let Some(h) = h.as_mut() {
            record(h, t.elapsed());
        }
    }
    Ok(h)
}

/// Runs `ops` operations with `concurrency` workers (tasks sharing one `Client`, i.e. one
/// QUIC connection with its request streams), after an unrecorded warm-up.
pub async fn cache_figure(
    client: &Client,
    keys: &std::sync::Arc<Vec<String>>,
    op: Op,
    concurrency: usize,
    warmup: usize,
    ops: usize,
) -> Result<Figure, BoxError> {
    let c = concurrency.max(1);
    let run = |total: usize, recorded: bool| {
        let mut tasks = Vec::with_capacity(c);
        for w in 0..c {
            let n = total / c + usize::from(w < total % c);
            let h = recorded.then(histogram);
            let offset = w * (keys.len() / c).max(1);
            tasks.push(tokio::spawn(worker(
                client.clone(),
                op,
                keys.clone(),
                offset,
                n,
                h,
            )));
        }
        tasks
    };
    for t in run(warmup, false) {
        t.await??;
    }
    let start = Instant::now();
    let meter = CpuMeter::start();
    let tasks = run(ops, true);
    let mut h = histogram();
    for t in tasks {
        if let Some(part) = t.await?? {
            h.add(&part)?;
        }
    }
    let elapsed = start.elapsed();
    let cpu = meter.stop(ops);
    Ok(Figure::new(
        &format!("cache.{}.c{c}", op.label()),
        &format!(
            "cache_{} {VALUE} B, {KEYS} keys, concurrency {c}",
            op.label()
        ),
        h,
        elapsed,
    )
    .with_cpu(cpu))
}
