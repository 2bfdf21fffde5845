//! Pub/sub figures for Felix and NATS, with one harness: end-to-end latency (closed loop
//! over payload sizes and fanouts; open loop at a fixed rate), throughput with batching and
//! no loss, and slow-consumer isolation. Payloads carry a sequence number and their send
//! time, so every delivery is checked for order and timed on arrival.

use std::time::{Duration, Instant};

use bytes::Bytes;
use felix_client::{AckMode, Client, FullPolicy, Start, StreamSettings};
use futures::stream::{select_all, LocalBoxStream, StreamExt};
use futures::FutureExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::measure::{pace, stamp_ns, stamp_of, stamped, Recorder, Trial};
use super::reqs::NAMESPACE;
use super::{Env, Sys};
use crate::procs::BoxError;

/// No delivery for this long fails the trial.
const STALL: Duration = Duration::from_secs(10);

/// One delivery: (subscriber index, payload, arrival).
type Delivery = (usize, Bytes, Instant);

/// Publisher and subscribers of one topic on one system.
pub struct Topic {
    publisher: Publisher,
    /// Every subscriber's deliveries, merged.
    events: LocalBoxStream<'static, Result<Delivery, String>>,
    subscribers: usize,
    /// Subscriber-side connections (closed at the end).
    clients: Vec<Conn>,
    /// A subscriber nobody reads (isolation figures): kept open, never polled.
    _stalled: Option<Stalled>,
}

enum Publisher {
    Felix(Client, String),
    Nats(async_nats::Client, String),
}

enum Conn {
    Felix(Client),
    Nats(async_nats::Client),
}

#[allow(dead_code)] // held only to keep the stalled subscription open
enum Stalled {
    Felix(Client, felix_client::Subscription),
    Nats(tokio::net::TcpStream),
}

/// How to set a topic up.
pub struct TopicSpec<'a> {
    pub name: &'a str,
    pub subscribers: usize,
    /// Subscriber connections (subscriptions are spread over them round-robin).
    pub connections: usize,
    /// Felix stream settings (NATS core subjects have none).
    pub settings: Option<StreamSettings>,
    /// Add one subscriber that never reads, on a connection of its own.
    pub stalled: bool,
}

impl Topic {
    pub async fn open(sys: Sys, env: &Env, spec: TopicSpec<'_>) -> Result<Self, BoxError> {
        let mut streams: Vec<LocalBoxStream<'static, Result<Delivery, String>>> = Vec::new();
        let mut clients = Vec::new();
        let k = spec.connections.clamp(1, spec.subscribers.max(1));
        let publisher = match sys {
            Sys::Felix => {
                let mut cfg = env.felix_config();
                cfg.subscription_buffer = 16 * 1024;
                let p = Client::connect(cfg.clone()).await?;
                if let Some(s) = &spec.settings {
                    p.create_stream(NAMESPACE, spec.name, s.clone()).await?;
                }
                let subs: Vec<Client> =
                    futures::future::try_join_all((0..k).map(|_| Client::connect(cfg.clone())))
                        .await?;
                for i in 0..spec.subscribers {
                    let s = subs[i % k]
                        .subscribe(NAMESPACE, spec.name, Start::Latest)
                        .await?;
                    streams.push(
                        s.map(move |e| match e {
                            Ok(e) => Ok((i, e.payload, Instant::now())),
                            Err(e) => Err(e.to_string()),
                        })
                        .boxed_local(),
                    );
                }
                clients.extend(subs.into_iter().map(Conn::Felix));
                Publisher::Felix(p, spec.name.to_owned())
            }
            Sys::Nats => {
                let url = env.nats_addr().to_string();
                let opts = || async_nats::ConnectOptions::new().subscription_capacity(64 * 1024);
                let p = opts().connect(url.clone()).await?;
                let subs: Vec<async_nats::Client> =
                    futures::future::try_join_all((0..k).map(|_| opts().connect(url.clone())))
                        .await?;
                for i in 0..spec.subscribers {
                    let s = subs[i % k].subscribe(spec.name.to_owned()).await?;
                    streams.push(
                        s.map(move |m| Ok((i, m.payload, Instant::now())))
                            .boxed_local(),
                    );
                }
                // The server has every subscription once each connection's PING is answered.
                for s in &subs {
                    s.flush().await?;
                }
                clients.extend(subs.into_iter().map(Conn::Nats));
                Publisher::Nats(p, spec.name.to_owned())
            }
            other => return Err(format!("{other:?} has no pub/sub").into()),
        };
        let stalled = if spec.stalled {
            Some(match sys {
                Sys::Felix => {
                    let c = Client::connect(env.felix_config()).await?;
                    let s = c.subscribe(NAMESPACE, spec.name, Start::Latest).await?;
                    Stalled::Felix(c, s)
                }
                _ => Stalled::Nats(nats_raw_subscriber(env, spec.name).await?),
            })
        } else {
            None
        };
        let mut topic = Self {
            publisher,
            events: select_all(streams).boxed_local(),
            subscribers: spec.subscribers,
            clients,
            _stalled: stalled,
        };
        topic.until_all_subscribed().await?;
        Ok(topic)
    }

    /// Publishes short probes until every subscriber has received one, then drains them.
    /// A NATS `flush` only proves the SUB left the client: the server runs each connection
    /// on its own, so a publish on another connection could still overtake it, and the first
    /// messages of a figure went missing for one subscriber. (A Felix subscription is
    /// attached when `subscribe` returns; the probe costs it one round.)
    async fn until_all_subscribed(&mut self) -> Result<(), BoxError> {
        let probe = Bytes::from_static(b"probe");
        let mut seen = vec![false; self.subscribers];
        let mut left = self.subscribers;
        let deadline = Instant::now() + STALL;
        while left > 0 {
            if Instant::now() > deadline {
                return Err(format!("{left} subscribers never saw a probe").into());
            }
            self.publish(std::slice::from_ref(&probe)).await?;
            let round = tokio::time::Instant::now() + Duration::from_millis(5);
            while let Ok(Some(d)) = tokio::time::timeout_at(round, self.events.next()).await {
                let (i, _, _) = d.map_err(|e| -> BoxError { e.into() })?;
                if !seen[i] {
                    seen[i] = true;
                    left -= 1;
                }
            }
        }
        // Later probes still in flight: drain until quiet.
        while let Ok(Some(d)) =
            tokio::time::timeout(Duration::from_millis(50), self.events.next()).await
        {
            d.map_err(|e| -> BoxError { e.into() })?;
        }
        Ok(())
    }

    /// Publishes without waiting for the server (NATS core has no publish ack; Felix's
    /// `AckMode::None` returns once written, like NATS).
    async fn publish(&self, payloads: &[Bytes]) -> Result<(), BoxError> {
        match &self.publisher {
            Publisher::Felix(c, s) => {
                c.publish_batch(NAMESPACE, s, payloads, AckMode::None)
                    .await?
            }
            Publisher::Nats(c, s) => {
                for p in payloads {
                    c.publish(s.clone(), p.clone()).await?;
                }
            }
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Delivery, BoxError> {
        match tokio::time::timeout(STALL, self.events.next()).await {
            Err(_) => Err(format!("no delivery for {STALL:?}").into()),
            Ok(None) => Err("subscriptions ended".into()),
            Ok(Some(Err(e))) => Err(e.into()),
            Ok(Some(Ok(d))) => Ok(d),
        }
    }

    fn ready(&mut self) -> Option<Result<Delivery, String>> {
        self.events.next().now_or_never().flatten()
    }

    pub async fn close(self) {
        drop(self.events);
        if let Publisher::Felix(c, _) = &self.publisher {
            c.close();
        }
        for c in self.clients {
            match c {
                Conn::Felix(c) => c.close(),
                Conn::Nats(c) => drop(c),
            }
        }
    }
}

/// A NATS subscriber that stops reading its socket once subscribed: the slow consumer of
/// the isolation figures, stalled at the socket like a hung process (async-nats would keep
/// reading and drop on the client side, which the server never notices).
async fn nats_raw_subscriber(env: &Env, subject: &str) -> Result<tokio::net::TcpStream, BoxError> {
    let s = tokio::net::TcpStream::connect(env.nats_addr()).await?;
    let mut r = tokio::io::BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await?; // INFO
    r.get_mut()
        .write_all(
            format!(
                "CONNECT {{\"verbose\":false,\"pedantic\":false,\"protocol\":1}}\r\n\
                 SUB {subject} 1\r\nPING\r\n"
            )
            .as_bytes(),
        )
        .await?;
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err("nats closed the raw subscriber".into());
        }
        if line.starts_with("PONG") {
            return Ok(r.into_inner());
        }
    }
}

/// Closed loop: publish one message, wait until every subscriber has it, publish the next.
/// Every delivery is one latency sample.
pub async fn e2e_closed(
    topic: &mut Topic,
    payload: usize,
    warm: usize,
    ops: usize,
) -> Result<Trial, BoxError> {
    let rec = Recorder::new();
    let base = Instant::now();
    let mut measured_from = base;
    let mut lost = 0usize;
    for i in 0..warm + ops {
        if i == warm {
            rec.on.set(true);
            measured_from = Instant::now();
            lost = 0;
        }
        let sent = Instant::now();
        topic.publish(&[stamped(payload, i as u64, base)]).await?;
        let mut got = 0;
        while got < topic.subscribers {
            // A delivery that never comes is counted as lost after 1 s (and reported), so
            // one dropped message does not end the whole run.
            let d = tokio::time::timeout(Duration::from_secs(1), topic.events.next()).await;
            let (_, p, at) = match d {
                Err(_) => {
                    lost += topic.subscribers - got;
                    crate::progress(&format!(
                        "message {i}: {} of {} deliveries missing after 1 s",
                        topic.subscribers - got,
                        topic.subscribers
                    ));
                    break;
                }
                Ok(None) => return Err("subscriptions ended".into()),
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(Some(Ok(d))) => d,
            };
            if let Some((seq, _)) = stamp_of(&p, base) {
                if seq < i as u64 {
                    continue; // late delivery of a message already counted as lost
                }
                if seq != i as u64 {
                    return Err(format!("expected message {i}, got {seq}").into());
                }
            }
            got += 1;
            rec.record(at.duration_since(sent));
        }
    }
    let elapsed = measured_from.elapsed();
    let t = Trial::from_hist(&rec.hist.into_inner(), elapsed, ops as u64);
    Ok(if lost > 0 {
        t.with("lost", lost as f64)
    } else {
        t
    })
}

/// Open loop: message `i` is published when due (`i / rate`), stamped with that due time;
/// latency runs from due time to arrival, for every subscriber. Returns the trial and the
/// deliveries that did not arrive (0 unless the system dropped some).
pub async fn e2e_open(
    topic: &mut Topic,
    payload: usize,
    rate: u64,
    warm: usize,
    ops: usize,
) -> Result<Trial, BoxError> {
    let rec = Recorder::new();
    let base = Instant::now();
    let total = warm + ops;
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = tokio::time::Instant::now();
    let mut published = 0usize;
    let mut received = 0usize;
    let mut measured = 0usize;
    let expected = total * topic.subscribers;
    let mut last_arrival = Instant::now();
    let mut measured_from = None;
    while received < expected {
        let due = start + period * published as u32;
        let wake = if published < total {
            due
        } else {
            tokio::time::Instant::now() + Duration::from_secs(1)
        };
        tokio::select! {
            biased;
            d = topic.events.next() => {
                let (_, p, at) = match d {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err("subscriptions ended".into()),
                };
                let (seq, sent) = stamp_of(&p, base).ok_or("payload too small to stamp")?;
                received += 1;
                last_arrival = at;
                if seq as usize >= warm {
                    measured += 1;
                    rec.hist.borrow_mut().saturating_record(
                        at.saturating_duration_since(sent).as_nanos().max(1) as u64,
                    );
                }
            }
            _ = pace(wake) => {
                if published < total {
                    if published == warm {
                        measured_from = Some(Instant::now());
                    }
                    // Stamped with the due time: a late send is charged to the system.
                    let due_ns = due.into_std().duration_since(base).as_nanos() as u64;
                    topic.publish(&[stamp_ns(payload.max(16), published as u64, due_ns)]).await?;
                    published += 1;
                } else if last_arrival.elapsed() > STALL {
                    break;
                }
            }
        }
    }
    let elapsed = measured_from
        .map(|s| last_arrival.duration_since(s))
        .unwrap_or_default();
    let lost = (expected - received) as f64;
    Ok(Trial::from_hist(
        &rec.hist.into_inner(),
        elapsed,
        (ops * topic.subscribers) as u64,
    )
    .with("lost", lost)
    .with("delivered", measured as f64))
}

/// Throughput with no loss: `total` messages of `payload` bytes in batches of `batch`, the
/// publisher at most `window` messages ahead of the slowest subscriber. Checks that every
/// subscriber got every message in order. Throughput is messages per second per
/// subscriber; the latency samples are send → arrival under that load.
pub async fn throughput(
    topic: &mut Topic,
    payload: usize,
    batch: usize,
    window: usize,
    total: usize,
) -> Result<Trial, BoxError> {
    let rec = Recorder::new();
    rec.on.set(true);
    let base = Instant::now();
    let n = topic.subscribers;
    let mut counts = vec![0usize; n];
    let mut published = 0usize;
    let started = Instant::now();
    let lost = std::cell::Cell::new(0usize);
    // `counts[i]`: the next message subscriber `i` expects. A system that drops skips ahead
    // (counted as lost, reported, not fatal); going backwards is reordering, which fails.
    let count = |counts: &mut Vec<usize>, d: Delivery| -> Result<(), BoxError> {
        let (i, p, at) = d;
        let (seq, sent) = stamp_of(&p, base).ok_or("payload too small to stamp")?;
        let seq = seq as usize;
        if seq < counts[i] {
            return Err(format!("subscriber {i}: message {seq} after {}", counts[i]).into());
        }
        if seq > counts[i] {
            lost.set(lost.get() + seq - counts[i]);
            crate::progress(&format!(
                "subscriber {i} lost messages {}..{seq}",
                counts[i]
            ));
        }
        counts[i] = seq + 1;
        rec.record(at.saturating_duration_since(sent));
        Ok(())
    };
    loop {
        while let Some(d) = topic.ready() {
            count(&mut counts, d?)?;
        }
        let slowest = counts.iter().copied().min().unwrap_or(total);
        if slowest >= total {
            break;
        }
        if published < total && published + batch <= slowest + window {
            let k = batch.min(total - published);
            let msgs: Vec<Bytes> = (0..k)
                .map(|j| stamped(payload.max(16), (published + j) as u64, base))
                .collect();
            topic.publish(&msgs).await?;
            published += k;
            continue;
        }
        let d = topic.next().await?;
        count(&mut counts, d)?;
    }
    let elapsed = started.elapsed();
    let h = rec.hist.into_inner();
    let t = Trial::from_hist(&h, elapsed, total as u64);
    let deliveries = t.throughput * n as f64;
    Ok(t.with("deliveries_per_s", deliveries)
        .with("lost", lost.get() as f64))
}

/// Stream settings for the no-loss throughput figures: the publisher waits rather than
/// anything being dropped (NATS has no such mode; the window keeps it from dropping).
pub fn lossless() -> StreamSettings {
    StreamSettings {
        subscriber_buffer: Some(16 * 1024),
        full_policy: Some(FullPolicy::Block),
        ..Default::default()
    }
}
