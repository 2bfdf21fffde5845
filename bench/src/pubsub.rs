//! Pub/sub 1→1 end-to-end latency: one client publishes, a second client (its own QUIC
//! connection) is subscribed; latency is from the send time embedded in the payload to the
//! moment `Subscription::next` returns the event in the subscriber.
//!
//! Both clients live in this process, so the payload carries nanoseconds since a shared
//! `Instant` base (plus a sequence number to detect loss or reordering).

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use felix_client::{AckMode, Client, Start, Subscription};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;

use crate::cpu::CpuMeter;
use crate::procs::BoxError;
use crate::stats::{histogram, record, Figure};

pub const NAMESPACE: &str = "bench";
pub const PAYLOAD: usize = 256;

/// `seq` (u64 LE) | nanos since `base` (u64 LE) | filler, `PAYLOAD` bytes in all.
fn payload(seq: u64, sent: Instant, base: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(PAYLOAD);
    b.put_u64_le(seq);
    b.put_u64_le(sent.duration_since(base).as_nanos() as u64);
    b.resize(PAYLOAD, 0xa5);
    b.freeze()
}

fn parse(p: &[u8], base: Instant) -> Result<(u64, Instant), BoxError> {
    if p.len() != PAYLOAD {
        return Err(format!("event of {} bytes, expected {PAYLOAD}", p.len()).into());
    }
    let seq = u64::from_le_bytes(p[0..8].try_into()?);
    let nanos = u64::from_le_bytes(p[8..16].try_into()?);
    Ok((seq, base + Duration::from_nanos(nanos)))
}

async fn next_event(sub: &mut Subscription) -> Result<(Bytes, Instant), BoxError> {
    let ev = sub.next().await.ok_or("subscription ended")??;
    Ok((ev.payload, Instant::now()))
}

/// A publisher client and a subscribed subscriber client on a fresh stream.
pub struct Pair {
    pub publisher: Client,
    pub subscriber: Client,
    pub sub: Subscription,
    pub stream: String,
}

impl Pair {
    pub async fn new(cfg: &felix_client::ClientConfig, stream: &str) -> Result<Self, BoxError> {
        let publisher = Client::connect(cfg.clone()).await?;
        let subscriber = Client::connect(cfg.clone()).await?;
        let sub = subscriber
            .subscribe(NAMESPACE, stream, Start::Latest)
            .await?;
        Ok(Self {
            publisher,
            subscriber,
            sub,
            stream: stream.to_owned(),
        })
    }

    pub fn close(self) {
        drop(self.sub);
        self.publisher.close();
        self.subscriber.close();
    }
}

async fn publish(c: &Client, stream: &str, p: Bytes, ack: AckMode) -> felix_client::Result<()> {
    match ack {
        AckMode::None => {
            c.publish_batch(NAMESPACE, stream, &[p], AckMode::None)
                .await
        }
        _ => c.publish(NAMESPACE, stream, p).await,
    }
}

/// Closed loop: publish, wait for the event (and the ack), publish the next. Returns the
/// end-to-end figure and, when acked, the publish-ack round trip seen by the publisher.
pub async fn closed_loop(
    pair: &mut Pair,
    ack: AckMode,
    warmup: usize,
    ops: usize,
    name: &str,
) -> Result<Vec<Figure>, BoxError> {
    let base = Instant::now();
    let mut e2e = histogram();
    let mut acks = histogram();
    let mut measured_start = Instant::now();
    let mut meter = CpuMeter::start();
    let Pair {
        publisher,
        sub,
        stream,
        ..
    } = pair;
    for i in 0..(warmup + ops) {
        if i == warmup {
            measured_start = Instant::now();
            meter = CpuMeter::start();
        }
        let sent = Instant::now();
        let p = payload(i as u64, sent, base);
        let publish = async {
            let r = publish(publisher, stream, p, ack).await;
            (r, Instant::now())
        };
        let ((r, acked), got) = tokio::join!(publish, next_event(sub));
        r?;
        let (body, received) = got?;
        let (seq, sent_at) = parse(&body, base)?;
        if seq != i as u64 {
            return Err(format!("expected event {i}, got {seq} (loss or reordering)").into());
        }
        if i >= warmup {
            record(&mut e2e, received.duration_since(sent_at));
            record(&mut acks, acked.duration_since(sent));
        }
    }
    let elapsed = measured_start.elapsed();
    let cpu = meter.stop(ops);
    let mut out = Vec::new();
    let (label, what) = match ack {
        AckMode::None => ("noack", "no ack (publish_batch AckMode::None)"),
        _ => ("ack", "Client::publish (acked)"),
    };
    out.push(
        Figure::new(
            &format!("{name}.e2e.{label}"),
            &format!("pub→sub e2e 256 B, closed loop, {what}"),
            e2e,
            elapsed,
        )
        .with_cpu(cpu),
    );
    if ack != AckMode::None {
        out.push(
            Figure::new(
                &format!("{name}.publish_ack"),
                "publish → ack round trip (same loop)",
                acks,
                elapsed,
            )
            .with_cpu(cpu),
        );
    }
    Ok(out)
}

/// Open loop at a fixed rate: message `i` is due at `start + i / rate`; latency is measured
/// from that intended time (not the actual send), so a stall on our side or the broker's is
/// charged to every message it delays (no coordinated omission). Publishes are acked and
/// kept in flight concurrently; pacing spins below 2 ms because tokio timers have 1 ms
/// granularity.
pub async fn open_loop(
    pair: Pair,
    rate: u64,
    warmup: usize,
    ops: usize,
    name: &str,
) -> Result<Figure, BoxError> {
    let total = warmup + ops;
    let base = Instant::now();
    // Metered over the whole run (warm-up included): the phases overlap in an open loop.
    let meter = CpuMeter::start();
    let Pair {
        publisher,
        subscriber,
        mut sub,
        stream,
    } = pair;
    let receiver = tokio::spawn(async move {
        let mut h = histogram();
        let mut first_measured: Option<Instant> = None;
        let mut last = base;
        // Concurrent publishes travel on different request streams of the publisher's
        // connection, so the broker may append them in a different order: only loss and
        // duplicates are errors here.
        let mut seen = vec![false; total];
        for _ in 0..total {
            let (body, received) = next_event(&mut sub).await?;
            let (seq, due) = parse(&body, base)?;
            match seen.get_mut(seq as usize) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err::<_, BoxError>(
                        format!("unexpected or duplicate event {seq}").into(),
                    )
                }
            }
            if seq as usize >= warmup {
                first_measured.get_or_insert(due);
                record(&mut h, received.duration_since(due));
                last = received;
            }
        }
        let elapsed = first_measured.map(|f| last.duration_since(f));
        Ok((h, elapsed.unwrap_or_default()))
    });
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = Instant::now() + Duration::from_millis(5);
    let mut inflight = FuturesUnordered::new();
    let mut max_lag = Duration::ZERO;
    let spin = Duration::from_millis(2);
    for i in 0..total {
        let due = start + interval * i as u32;
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            if due - now > spin {
                let wake = tokio::time::Instant::from_std(due - spin);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    Some(r) = inflight.next(), if !inflight.is_empty() => r?,
                }
            } else {
                while let Some(Some(r)) = inflight.next().now_or_never() {
                    r?;
                }
                tokio::task::yield_now().await;
            }
        }
        max_lag = max_lag.max(Instant::now() - due);
        let p = payload(i as u64, due, base);
        let c = &publisher;
        let s = stream.as_str();
        inflight.push(async move { c.publish(NAMESPACE, s, p).await });
        while let Some(Some(r)) = inflight.next().now_or_never() {
            r?;
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    let (h, elapsed) = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .map_err(|_| "open loop: events missing after 30 s")???;
    let cpu = meter.stop(total);
    publisher.close();
    subscriber.close();
    let mut f = Figure::new(
        &format!("{name}.e2e.open{rate}"),
        &format!("pub→sub e2e 256 B, open loop {rate} msg/s, from intended send time"),
        h,
        elapsed,
    )
    .with_cpu(cpu);
    f.note = format!("max send lag {:.0} µs", max_lag.as_secs_f64() * 1e6);
    Ok(f)
}

/// Closed loop with the subscriber on its own thread and current-thread runtime, as if it
/// were another process: the publisher's ack (and its processing) no longer shares a thread
/// with the event's delivery. Separates that bench-topology effect from broker cost.
pub async fn closed_loop_split(
    cfg: &felix_client::ClientConfig,
    stream: &str,
    ack: AckMode,
    warmup: usize,
    ops: usize,
    name: &str,
) -> Result<Figure, BoxError> {
    let total = warmup + ops;
    let base = Instant::now();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let sub_cfg = cfg.clone();
    let sub_stream = stream.to_owned();
    let thread = std::thread::spawn(move || -> Result<_, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let setup = async {
                let c = Client::connect(sub_cfg).await?;
                let s = c.subscribe(NAMESPACE, &sub_stream, Start::Latest).await?;
                Ok::<_, felix_client::Error>((c, s))
            };
            let (client, mut sub) = match setup.await {
                Ok(x) => {
                    let _ = ready_tx.send(Ok(()));
                    x
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return Err(e.to_string());
                }
            };
            let mut h = histogram();
            for i in 0..total {
                let (body, received) = next_event(&mut sub).await.map_err(|e| e.to_string())?;
                let (seq, sent) = parse(&body, base).map_err(|e| e.to_string())?;
                if seq != i as u64 {
                    return Err(format!("expected event {i}, got {seq}"));
                }
                if i >= warmup {
                    record(&mut h, received.duration_since(sent));
                }
                let _ = seen_tx.send((seq, received));
            }
            client.close();
            Ok(h)
        })
    });
    ready_rx.await.map_err(|_| "subscriber thread died")??;
    let publisher = Client::connect(cfg.clone()).await?;
    let mut start = Instant::now();
    let mut meter = CpuMeter::start();
    // Event arrival minus ack arrival, ns (same clock): which one the broker sends first.
    let mut event_minus_ack: Vec<i64> = Vec::with_capacity(ops);
    for i in 0..total {
        if i == warmup {
            start = Instant::now();
            meter = CpuMeter::start();
        }
        let p = payload(i as u64, Instant::now(), base);
        publish(&publisher, stream, p, ack).await?;
        let acked = Instant::now();
        match seen_rx.recv().await {
            Some((s, at)) if s == i as u64 => {
                if i >= warmup {
                    let d = if at >= acked {
                        at.duration_since(acked).as_nanos() as i64
                    } else {
                        -(acked.duration_since(at).as_nanos() as i64)
                    };
                    event_minus_ack.push(d);
                }
            }
            _ => break, // the thread's error is reported by join below
        }
    }
    let elapsed = start.elapsed();
    let cpu = meter.stop(ops);
    publisher.close();
    let h = thread.join().map_err(|_| "subscriber thread panicked")??;
    let tag = if ack == AckMode::None { "noack" } else { "ack" };
    let mut f = Figure::new(
        &format!("{name}.e2e.{tag}.split"),
        &format!("pub→sub e2e 256 B, closed loop ({tag}), subscriber on its own thread"),
        h,
        elapsed,
    )
    .with_cpu(cpu);
    if ack != AckMode::None && !event_minus_ack.is_empty() {
        let before = event_minus_ack.iter().filter(|d| **d < 0).count();
        event_minus_ack.sort_unstable();
        let median = event_minus_ack[event_minus_ack.len() / 2];
        f.note = format!(
            "event before ack {:.0}%, median event−ack {:+.1} µs",
            100.0 * before as f64 / event_minus_ack.len() as f64,
            median as f64 / 1e3
        );
    }
    Ok(f)
}
