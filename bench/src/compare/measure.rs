//! The one harness every system is measured with: closed loops (N workers, one request in
//! flight each), open loops at a fixed rate (latency counted from the intended send time, so
//! a stall is charged to every request it delayed: no coordinated omission), and the
//! summary of one trial.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::procs::BoxError;
use crate::stats::{histogram, record};

/// One trial of one figure.
#[derive(Clone, Debug, Default)]
pub struct Trial {
    /// Latency quantiles, µs (0 when the figure has no latency).
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Operations (or messages) per second.
    pub throughput: f64,
    /// Latency samples recorded.
    pub samples: u64,
    /// Figure-specific values (e.g. RSS in MiB, loss), by name.
    pub extra: Vec<(String, f64)>,
}

impl Trial {
    pub fn from_hist(h: &Histogram<u64>, elapsed: Duration, ops: u64) -> Self {
        let q = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        Self {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / 1_000.0,
            throughput: ops as f64 / elapsed.as_secs_f64().max(1e-9),
            samples: h.len(),
            extra: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, v: f64) -> Self {
        self.extra.push((name.to_owned(), v));
        self
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "p50" => Some(self.p50),
            "p90" => Some(self.p90),
            "p99" => Some(self.p99),
            "p999" => Some(self.p999),
            "max" => Some(self.max),
            "throughput" => Some(self.throughput),
            _ => self.extra.iter().find(|(n, _)| n == name).map(|(_, v)| *v),
        }
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "p50_us": self.p50, "p90_us": self.p90, "p99_us": self.p99,
            "p999_us": self.p999, "max_us": self.max,
            "throughput": self.throughput, "samples": self.samples,
        });
        for (k, x) in &self.extra {
            v[k] = json!(x);
        }
        v
    }
}

/// A shared histogram the operations of one loop record into (single-threaded runtime).
pub struct Recorder {
    pub hist: RefCell<Histogram<u64>>,
    pub on: Cell<bool>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            hist: RefCell::new(histogram()),
            on: Cell::new(false),
        }
    }

    pub fn record(&self, d: Duration) {
        if self.on.get() {
            record(&mut self.hist.borrow_mut(), d);
        }
    }
}

/// Closed loop: `concurrency` workers share `warmup + ops` operations, each worker with one
/// operation in flight. `op(i)` runs operation `i`; its latency is measured around it.
/// Warm-up operations are not recorded. All workers run on the calling task.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    warmup: usize,
    ops: usize,
    op: F,
) -> Result<Trial, BoxError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let rec = Recorder::new();
    let next = Cell::new(0usize);
    let total = warmup + ops;
    let started = Cell::new(None::<Instant>);
    let worker = || async {
        loop {
            let i = next.get();
            if i >= total {
                return Ok::<(), BoxError>(());
            }
            next.set(i + 1);
            if i == warmup {
                rec.on.set(true);
                started.set(Some(Instant::now()));
            }
            let t = Instant::now();
            op(i).await?;
            rec.record(t.elapsed());
        }
    };
    let mut workers: FuturesUnordered<_> = (0..concurrency.max(1)).map(|_| worker()).collect();
    while let Some(r) = workers.next().await {
        r?;
    }
    drop(workers);
    let elapsed = started.get().map(|s| s.elapsed()).unwrap_or_default();
    let t = Trial::from_hist(&rec.hist.borrow(), elapsed, ops as u64);
    Ok(t)
}

/// Open loop: operation `i` is due at `start + i / rate`; it starts then whatever the others
/// are doing, and its latency runs from when it was due. At most `max_in_flight` operations
/// may be outstanding: beyond that the system has fallen behind and the trial fails.
pub async fn open_loop<F, Fut>(
    rate: u64,
    warmup: usize,
    ops: usize,
    max_in_flight: usize,
    op: F,
) -> Result<Trial, BoxError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let rec = Recorder::new();
    let total = warmup + ops;
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut i = 0usize;
    let mut measured_from = None;
    while i < total || !in_flight.is_empty() {
        let due = start + period * i as u32;
        tokio::select! {
            biased;
            Some(r) = in_flight.next(), if !in_flight.is_empty() => {
                let r: Result<(), BoxError> = r;
                r?;
            }
            _ = pace(due), if i < total => {
                if i == warmup {
                    rec.on.set(true);
                    measured_from = Some(Instant::now());
                }
                if in_flight.len() >= max_in_flight {
                    return Err(format!(
                        "open loop at {rate}/s fell behind: {max_in_flight} operations outstanding"
                    )
                    .into());
                }
                let due_std = due.into_std();
                let fut = op(i);
                let rec = &rec;
                in_flight.push(async move {
                    fut.await?;
                    rec.record(due_std.elapsed());
                    Ok(())
                });
                i += 1;
            }
        }
    }
    drop(in_flight);
    let elapsed = measured_from.map(|s| s.elapsed()).unwrap_or_default();
    let t = Trial::from_hist(&rec.hist.borrow(), elapsed, ops as u64);
    Ok(t)
}

/// Resolves at `due`: tokio's timer is only 1 ms coarse (a late wake-up would be charged
/// to the system measured), so the last 2 ms are spent yielding to the runtime instead.
pub async fn pace(due: tokio::time::Instant) {
    const SPIN: Duration = Duration::from_millis(2);
    loop {
        let now = tokio::time::Instant::now();
        if now >= due {
            return;
        }
        if due - now > SPIN {
            tokio::time::sleep_until(due - SPIN).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// Median, minimum and maximum of one value over trials.
pub fn spread(trials: &[Trial], key: &str) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = trials.iter().filter_map(|t| t.get(key)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some((v[v.len() / 2], v[0], v[v.len() - 1]))
}

/// A payload of `size` bytes that starts (room permitting) with a sequence number and the
/// send time in ns since `base`, so a receiver can compute end-to-end latency on its own.
pub fn stamped(size: usize, seq: u64, base: Instant) -> bytes::Bytes {
    stamp_ns(size, seq, base.elapsed().as_nanos() as u64)
}

/// [`stamped`] with the send time given (ns since the receiver's `base`): an open loop
/// stamps the time a message was due, not when it went out.
pub fn stamp_ns(size: usize, seq: u64, ns: u64) -> bytes::Bytes {
    let mut b = vec![0xa5u8; size];
    if size >= 16 {
        b[0..8].copy_from_slice(&seq.to_le_bytes());
        b[8..16].copy_from_slice(&ns.to_le_bytes());
    }
    b.into()
}

/// Sequence number and send time of a [`stamped`] payload.
pub fn stamp_of(p: &[u8], base: Instant) -> Option<(u64, Instant)> {
    if p.len() < 16 {
        return None;
    }
    let seq = u64::from_le_bytes(p[0..8].try_into().ok()?);
    let ns = u64::from_le_bytes(p[8..16].try_into().ok()?);
    Some((seq, base + Duration::from_nanos(ns)))
}
