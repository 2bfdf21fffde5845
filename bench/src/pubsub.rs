//! Pub/sub 1→1 end-to-end latency: one client publishes, a second client (its own QUIC
//! connection) is subscribed; latency is from the send time embedded in the payload to the
//! moment `Subscription::next` returns the event in the subscriber.
//!
//! Both clients live in this process, so the payload carries nanoseconds since a shared
//! `Instant` base (plus a sequence number to detect loss or reordering).

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use felix_client::{AckMode, Client, ClientConfig, Start, Subscription};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;

use crate::procs::BoxError;
use crate::stats::{record, Rec};

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

async fn publish(c: &Client, stream: &str, p: Bytes, ack: AckMode) -> felix_client::Result<()> {
    match ack {
        AckMode::None => {
            c.publish_batch(NAMESPACE, stream, &[p], AckMode::None)
                .await
        }
        _ => c.publish(NAMESPACE, stream, p).await,
    }
}

fn ack_tag(ack: AckMode) -> &'static str {
    if ack == AckMode::None {
        "noack"
    } else {
        "ack"
    }
}

/// A publisher client and a subscribed subscriber client on a fresh stream.
pub struct Pair {
    pub publisher: Client,
    pub subscriber: Client,
    pub sub: Subscription,
    pub stream: String,
}

impl Pair {
    pub async fn new(cfg: &ClientConfig, stream: &str) -> Result<Self, BoxError> {
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

/// Closed loop: publish, wait for the event (and the ack), publish the next. Records the
/// end-to-end latency and, when acked, the publish → ack round trip seen by the publisher.
pub struct ClosedRunner {
    pub pair: Pair,
    pub ack: AckMode,
    base: Instant,
    seq: u64,
}

impl ClosedRunner {
    pub fn new(pair: Pair, ack: AckMode) -> Self {
        Self {
            pair,
            ack,
            base: Instant::now(),
            seq: 0,
        }
    }

    /// (name, description) of each histogram this runner records.
    pub fn labels(ack: AckMode) -> Vec<(String, String)> {
        let tag = ack_tag(ack);
        let what = match ack {
            AckMode::None => "no ack (publish_batch AckMode::None)",
            _ => "Client::publish (acked)",
        };
        let mut v = vec![(
            format!("pubsub.e2e.{tag}"),
            format!("pub→sub e2e 256 B, closed loop, {what}"),
        )];
        if ack != AckMode::None {
            v.push((
                "pubsub.publish_ack".into(),
                "publish → ack round trip (same loop)".into(),
            ));
        }
        v
    }

    pub async fn round(&mut self, n: usize, mut rec: Rec<'_>) -> Result<(), BoxError> {
        let Pair {
            publisher,
            sub,
            stream,
            ..
        } = &mut self.pair;
        for _ in 0..n {
            let i = self.seq;
            self.seq += 1;
            let sent = Instant::now();
            let p = payload(i, sent, self.base);
            let publish = async {
                let r = publish(publisher, stream, p, self.ack).await;
                (r, Instant::now())
            };
            let ((r, acked), got) = tokio::join!(publish, next_event(sub));
            r?;
            let (body, received) = got?;
            let (seq, sent_at) = parse(&body, self.base)?;
            if seq != i {
                return Err(format!("expected event {i}, got {seq} (loss or reordering)").into());
            }
            if let Some(h) = rec.as_deref_mut() {
                record(&mut h[0], received.duration_since(sent_at));
                if h.len() > 1 {
                    record(&mut h[1], acked.duration_since(sent));
                }
            }
        }
        Ok(())
    }
}

/// Closed loop with the subscriber on its own thread and current-thread runtime, as if it
/// were another process: the publisher's ack (and its processing) no longer shares a thread
/// with the event's delivery. Separates that bench-topology effect from broker cost (on 2
/// cores the third busy thread competes for a CPU, so it is no free lunch either).
pub struct SplitRunner {
    publisher: Client,
    stream: String,
    ack: AckMode,
    seq: u64,
    seen: tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// Event arrival minus ack arrival, ns (same clock): which one the broker sent first.
    event_minus_ack: Vec<i64>,
}

impl SplitRunner {
    pub async fn new(cfg: &ClientConfig, stream: &str, ack: AckMode) -> Result<Self, BoxError> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sub_cfg = cfg.clone();
        let sub_stream = stream.to_owned();
        let thread = std::thread::spawn(move || -> Result<(), String> {
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
                let base = Instant::now();
                loop {
                    let got = tokio::select! {
                        g = next_event(&mut sub) => g.map_err(|e| e.to_string())?,
                        _ = &mut stop_rx => break,
                    };
                    let (body, received) = got;
                    let (seq, _) = parse(&body, base).map_err(|e| e.to_string())?;
                    if seen_tx.send((seq, received)).is_err() {
                        break;
                    }
                }
                client.close();
                Ok(())
            })
        });
        ready_rx.await.map_err(|_| "subscriber thread died")??;
        Ok(Self {
            publisher: Client::connect(cfg.clone()).await?,
            stream: stream.to_owned(),
            ack,
            seq: 0,
            seen,
            stop: Some(stop),
            thread: Some(thread),
            event_minus_ack: Vec::new(),
        })
    }

    pub fn labels(ack: AckMode) -> Vec<(String, String)> {
        let tag = ack_tag(ack);
        vec![(
            format!("pubsub.e2e.{tag}.split"),
            format!("pub→sub e2e 256 B, closed loop ({tag}), subscriber on its own thread"),
        )]
    }

    pub async fn round(&mut self, n: usize, mut rec: Rec<'_>) -> Result<(), BoxError> {
        for _ in 0..n {
            let i = self.seq;
            self.seq += 1;
            let sent = Instant::now();
            let p = payload(i, sent, sent);
            publish(&self.publisher, &self.stream, p, self.ack).await?;
            let acked = Instant::now();
            let (seq, at) = self
                .seen
                .recv()
                .await
                .ok_or("subscriber thread ended (see its error below)")?;
            if seq != i {
                return Err(format!("expected event {i}, got {seq}").into());
            }
            if let Some(h) = rec.as_deref_mut() {
                record(&mut h[0], at.duration_since(sent));
                if self.ack != AckMode::None {
                    let d = if at >= acked {
                        at.duration_since(acked).as_nanos() as i64
                    } else {
                        -(acked.duration_since(at).as_nanos() as i64)
                    };
                    self.event_minus_ack.push(d);
                }
            }
        }
        Ok(())
    }

    pub fn note(&self) -> String {
        let mut d = self.event_minus_ack.clone();
        if d.is_empty() {
            return String::new();
        }
        let before = d.iter().filter(|x| **x < 0).count();
        d.sort_unstable();
        format!(
            "event before ack {:.0}%, median event−ack {:+.1} µs",
            100.0 * before as f64 / d.len() as f64,
            d[d.len() / 2] as f64 / 1e3
        )
    }

    pub fn close(mut self) -> Result<(), BoxError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.publisher.close();
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| "subscriber thread panicked")??;
        }
        Ok(())
    }
}

/// Open loop at a fixed rate: in each round message `i` is due at `start + i / rate`;
/// latency is measured from that intended time (not the actual send), so a stall on our side
/// or the broker's is charged to every message it delays (no coordinated omission).
/// Publishes are acked and kept in flight concurrently; pacing spins below 2 ms because tokio
/// timers have 1 ms granularity.
pub struct OpenRunner {
    pub pair: Pair,
    pub rate: u64,
    base: Instant,
    seq: u64,
    max_lag: Duration,
}

impl OpenRunner {
    pub fn new(pair: Pair, rate: u64) -> Self {
        Self {
            pair,
            rate: rate.max(1),
            base: Instant::now(),
            seq: 0,
            max_lag: Duration::ZERO,
        }
    }

    pub fn labels(rate: u64) -> Vec<(String, String)> {
        vec![(
            format!("pubsub.e2e.open{rate}"),
            format!("pub→sub e2e 256 B, open loop {rate} msg/s, from intended send time"),
        )]
    }

    pub fn note(&self) -> String {
        format!("max send lag {:.0} µs", self.max_lag.as_secs_f64() * 1e6)
    }

    pub async fn round(&mut self, n: usize, mut rec: Rec<'_>) -> Result<(), BoxError> {
        let first = self.seq;
        self.seq += n as u64;
        let base = self.base;
        let Pair {
            publisher,
            sub,
            stream,
            ..
        } = &mut self.pair;
        let interval = Duration::from_nanos(1_000_000_000 / self.rate);
        let start = Instant::now() + Duration::from_millis(2);
        let spin = Duration::from_millis(2);
        let mut max_lag = self.max_lag;
        let send = async {
            let mut inflight = FuturesUnordered::new();
            for k in 0..n {
                let due = start + interval * k as u32;
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
                let p = payload(first + k as u64, due, base);
                let (c, s) = (&*publisher, stream.as_str());
                inflight.push(async move { c.publish(NAMESPACE, s, p).await });
                while let Some(Some(r)) = inflight.next().now_or_never() {
                    r?;
                }
            }
            while let Some(r) = inflight.next().await {
                r?;
            }
            Ok::<_, BoxError>(())
        };
        let recv = async {
            // Concurrent publishes travel on different request streams of the publisher's
            // connection, so the broker may append them in another order: only loss and
            // duplicates are errors.
            let mut seen = vec![false; n];
            for _ in 0..n {
                let (body, received) = next_event(sub).await?;
                let (seq, due) = parse(&body, base)?;
                let slot = seq
                    .checked_sub(first)
                    .and_then(|k| seen.get_mut(k as usize));
                match slot {
                    Some(s) if !*s => *s = true,
                    _ => return Err::<_, BoxError>(format!("unexpected event {seq}").into()),
                }
                if let Some(h) = rec.as_deref_mut() {
                    record(&mut h[0], received.duration_since(due));
                }
            }
            Ok(())
        };
        let recv = async {
            tokio::time::timeout(Duration::from_secs(30), recv)
                .await
                .map_err(|_| BoxError::from("open loop: events missing after 30 s"))?
        };
        let (s, r) = tokio::join!(send, recv);
        s?;
        r?;
        self.max_lag = max_lag;
        Ok(())
    }
}
