//! Request/reply figures: `Client::ping` (the broker's minimal request path) and cache
//! get/put at concurrency 1 and N over a fixed key set.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use felix_client::Client;
use hdrhistogram::Histogram;

use crate::procs::BoxError;
use crate::stats::{histogram, record, Rec};

pub const NAMESPACE: &str = "bench";
pub const CACHE: &str = "bench-cache";
pub const KEYS: usize = 1024;
pub const VALUE: usize = 256;

/// Ping round trips, one at a time.
pub struct PingRunner {
    pub client: Client,
}

impl PingRunner {
    pub async fn round(&mut self, n: usize, mut rec: Rec<'_>) -> Result<(), BoxError> {
        for _ in 0..n {
            let t = Instant::now();
            self.client.ping().await?;
            if let Some(h) = rec.as_deref_mut() {
                record(&mut h[0], t.elapsed());
            }
        }
        Ok(())
    }
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
    keys: Arc<Vec<String>>,
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

/// Cache operations with `concurrency` workers (tasks sharing one `Client`, i.e. one QUIC
/// connection and its request streams).
pub struct CacheRunner {
    pub client: Client,
    pub keys: Arc<Vec<String>>,
    pub op: Op,
    pub concurrency: usize,
    cursor: usize,
}

impl CacheRunner {
    pub fn new(client: Client, keys: Arc<Vec<String>>, op: Op, concurrency: usize) -> Self {
        Self {
            client,
            keys,
            op,
            concurrency: concurrency.max(1),
            cursor: 0,
        }
    }

    /// (name, description).
    pub fn label(op: Op, c: usize) -> (String, String) {
        (
            format!("cache.{}.c{c}", op.label()),
            format!(
                "cache_{} {VALUE} B, {KEYS} keys, concurrency {c}",
                op.label()
            ),
        )
    }

    pub async fn round(&mut self, total: usize, rec: Rec<'_>) -> Result<(), BoxError> {
        let c = self.concurrency;
        let recorded = rec.is_some();
        if c == 1 {
            let part = worker(
                self.client.clone(),
                self.op,
                self.keys.clone(),
                self.cursor,
                total,
                rec.is_some().then(histogram),
            )
            .await?;
            self.cursor += total * 7;
            if let (Some(h), Some(part)) = (rec, part) {
                h[0].add(&part)?;
            }
            return Ok(());
        }
        let mut tasks = Vec::with_capacity(c);
        for w in 0..c {
            let n = total / c + usize::from(w < total % c);
            let offset = self.cursor + w * (self.keys.len() / c).max(1);
            tasks.push(tokio::spawn(worker(
                self.client.clone(),
                self.op,
                self.keys.clone(),
                offset,
                n,
                recorded.then(histogram),
            )));
        }
        self.cursor += 1;
        let mut parts = Vec::with_capacity(c);
        for t in tasks {
            parts.push(t.await??);
        }
        if let Some(h) = rec {
            for part in parts.into_iter().flatten() {
                h[0].add(&part)?;
            }
        }
        Ok(())
    }
}
