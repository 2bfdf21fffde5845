//! Durable streams against `kill -9` of a real broker process (docs/storage-plan.md 3.3).
//!
//! Per cycle: start (or restart) `felix-broker` on one data directory with durable `always`
//! streams, wait for `/ready`, check everything published so far, then run 4 producers
//! publishing `(producer, seq)` with 4 acks in flight each and `kill -9` the broker at a seeded
//! random moment. The check, from `earliest`: every acked `(p, seq)` present exactly once at
//! its acked offset; per producer the seqs increase with the offset; nothing that was never
//! published; offsets contiguous; the epoch that of the first cycle.
//!
//! `FELIX_CRASH_SEED` replays a run (the seed is printed); `FELIX_CRASH_CYCLES` sets the
//! cycles of the long variant (`-- --ignored long`, see docs/testing.md).

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::durable::{data_dir, Node, Raw, NS, TENANT};
use common::*;
use felix_wire::{Decoded, Message};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

const STREAM: &str = "crash.s";
const PRODUCERS: u64 = 4;
const IN_FLIGHT: usize = 4;

/// Durable by default with `fsync`, large enough that retention never cuts during a run.
fn config(fsync: &str) -> String {
    format!(
        "[stream_defaults]\ndurability = \"durable\"\nfsync = \"{fsync}\"\n\
         fsync_interval_ms = 20\nmax_records = 10000000\nmax_bytes = 1073741824\n"
    )
}

/// What the producers did, as the clients saw it.
#[derive(Default, Clone)]
struct Ledger {
    /// Every (producer, seq) ever sent (acked or not).
    sent: HashSet<(u64, u64)>,
    /// (producer, seq) -> offset from its `publish_ok`.
    acked: HashMap<(u64, u64), u64>,
    /// Next seq per producer (continues across cycles).
    next_seq: HashMap<u64, u64>,
    /// Publish round trips (send to ack), for the printed p50.
    latencies: Vec<Duration>,
}

fn payload(p: u64, seq: u64) -> Bytes {
    Bytes::from(format!("{p}:{seq}"))
}

fn parse(b: &[u8]) -> (u64, u64) {
    let s = std::str::from_utf8(b).expect("utf-8 payload");
    let (p, seq) = s.split_once(':').expect("p:seq payload");
    (p.parse().unwrap(), seq.parse().unwrap())
}

/// One producer on its own connection: keeps `IN_FLIGHT` publishes outstanding, records each
/// as sent before it is written and as acked (with its offset) when the ack arrives. Returns
/// when the broker goes away (it is aborted after the kill).
async fn produce(
    addr: std::net::SocketAddr,
    ca: std::path::PathBuf,
    stream: &'static str,
    p: u64,
    ledger: Arc<Mutex<Ledger>>,
) {
    let Ok(mut raw) = Raw::connect_at(addr, &ca).await else {
        return;
    };
    let mut seq = *ledger.lock().next_seq.get(&p).unwrap_or(&0);
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::new();
    loop {
        while inflight.len() < IN_FLIGHT {
            {
                let mut l = ledger.lock();
                l.sent.insert((p, seq));
                l.next_seq.insert(p, seq + 1);
            }
            if raw
                .write(&Raw::publish(stream, payload(p, seq), seq))
                .await
                .is_err()
            {
                return;
            }
            inflight.push_back((seq, Instant::now()));
            seq += 1;
        }
        let Ok(Some(frame)) = raw.reader.next().await else {
            return;
        };
        match felix_wire::decode(frame) {
            Ok(Decoded::Json(Message::PublishOk { request_id, offset })) => {
                let (s, t0) = inflight.pop_front().expect("an ack answers a request");
                assert_eq!(s, request_id, "acks come in request order on a stream");
                let mut l = ledger.lock();
                l.acked
                    .insert((p, s), offset.expect("publish_ok carries the offset"));
                l.latencies.push(t0.elapsed());
            }
            other => panic!("producer {p}: unexpected reply {other:?}"),
        }
    }
}

/// The stream's record count from `/metrics` (0 before the stream exists).
async fn records(node: &Node) -> usize {
    let text = node.metrics().await;
    metric(
        &text,
        &format!("felix_stream_records{{stream=\"{TENANT}/{NS}/{STREAM}\"}}"),
    )
    .map_or(0, |v| v as usize)
}

/// Reads the whole stream and checks it against the ledger; returns the epoch.
async fn verify(node: &Node, ledger: &Ledger, cycle: usize) -> Option<u64> {
    let n = records(node).await;
    if n == 0 {
        assert!(
            ledger.acked.is_empty(),
            "cycle {cycle}: acked records but an empty stream"
        );
        return None;
    }
    let raw = Raw::connect(node).await.expect("connect for the check");
    let (epoch, got) = raw.read_from_earliest(STREAM, n, 30).await;
    let mut seen: HashMap<(u64, u64), u64> = HashMap::new();
    let mut last_seq: HashMap<u64, u64> = HashMap::new();
    for (i, (offset, body)) in got.iter().enumerate() {
        assert_eq!(
            *offset, i as u64,
            "cycle {cycle}: offsets contiguous from 0"
        );
        let (p, seq) = parse(body);
        assert!(
            ledger.sent.contains(&(p, seq)),
            "cycle {cycle}: ({p}, {seq}) at {offset} was never published"
        );
        if let Some(prev) = seen.insert((p, seq), *offset) {
            panic!("cycle {cycle}: ({p}, {seq}) twice, at {prev} and {offset}");
        }
        if let Some(&prev) = last_seq.get(&p) {
            assert!(
                seq > prev,
                "cycle {cycle}: producer {p} seq {seq} after {prev}"
            );
        }
        last_seq.insert(p, seq);
    }
    for (&(p, seq), &offset) in &ledger.acked {
        assert_eq!(
            seen.get(&(p, seq)),
            Some(&offset),
            "cycle {cycle}: acked ({p}, {seq}) at {offset} is missing or moved"
        );
    }
    Some(epoch)
}

fn p50(v: &mut [Duration]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[v.len() / 2]
}

/// Runs the 4 producers on `stream` for `run`, then stops them.
async fn load(node: &Node, stream: &'static str, run: Duration, ledger: &Arc<Mutex<Ledger>>) {
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(produce(
                node.addr,
                node.ca.clone(),
                stream,
                p,
                ledger.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(run).await;
    for t in tasks {
        t.abort();
        let _ = t.await;
    }
}

async fn crash_loop(cycles: usize, fsync: &str) {
    let seed: u64 = std::env::var("FELIX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!(
        "crash_loop ({fsync}): seed {seed} (FELIX_CRASH_SEED={seed} replays), {cycles} cycles"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let scratch = scratch("crash");
    let data = data_dir("crash");
    let config = scratch.join("broker.toml");
    std::fs::write(&config, self::config(fsync)).unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut first_epoch = None;
    let mut ready_times = Vec::new();
    let mut recovery_ms = Vec::new();
    let mut ephemeral_p50 = Duration::ZERO;
    for cycle in 0..=cycles {
        let mut node = Node::spawn(&scratch, &data, &config);
        ready_times.push(node.wait_ready(30).await);
        let m = node.metrics().await;
        recovery_ms.push(metric(&m, "felix_storage_recovery_ms").unwrap_or(-1.0));
        // No producer runs now; the check reads a copy.
        let snapshot = ledger.lock().clone();
        let epoch = verify(&node, &snapshot, cycle).await;
        match (first_epoch, epoch) {
            (None, Some(e)) => first_epoch = Some(e),
            (Some(f), Some(e)) => assert_eq!(e, f, "cycle {cycle}: the epoch changed"),
            _ => {}
        }
        if cycle == cycles {
            // Last: the same load on an ephemeral stream of this broker, for the figure, then
            // a clean stop.
            let mut raw = Raw::connect(&node).await.unwrap();
            assert!(matches!(
                raw.create_stream("crash.e", "ephemeral").await,
                Message::Ok { .. }
            ));
            let eph = Arc::new(Mutex::new(Ledger::default()));
            load(&node, "crash.e", Duration::from_secs(1), &eph).await;
            ephemeral_p50 = p50(&mut eph.lock().latencies);
            assert!(node.stop(30).success(), "clean exit on SIGTERM");
            break;
        }
        let run = Duration::from_millis(rng.gen_range(50..=1500));
        let tasks: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                tokio::spawn(produce(
                    node.addr,
                    node.ca.clone(),
                    STREAM,
                    p,
                    ledger.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(run).await;
        node.kill9();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        let l = ledger.lock();
        println!(
            "cycle {cycle}: ran {} ms, {} sent, {} acked so far",
            run.as_millis(),
            l.sent.len(),
            l.acked.len()
        );
    }
    let mut l = ledger.lock();
    assert!(
        l.acked.len() as u64 > PRODUCERS,
        "the producers got acks ({} acked)",
        l.acked.len()
    );
    let lat = p50(&mut l.latencies);
    ready_times.sort();
    println!(
        "crash_loop ({fsync}): {} acked of {} sent; publish p50 (4 producers x 4 in flight) \
         {fsync} {:?} vs ephemeral {:?}; spawn-to-ready p50 {:?} max {:?}; recovery_ms per start {:?}",
        l.acked.len(),
        l.sent.len(),
        lat,
        ephemeral_p50,
        ready_times[ready_times.len() / 2],
        ready_times.last().unwrap(),
        recovery_ms
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_never_loses_an_acked_durable_publish() {
    crash_loop(20, "always").await;
}

/// `interval` and `os` ack after the write to the kernel: a process kill loses nothing acked
/// either (a power loss could; that is the engine's SimFs tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_never_loses_an_acked_interval_or_os_publish() {
    crash_loop(6, "interval").await;
    crash_loop(6, "os").await;
}

/// The long variant: `FELIX_CRASH_CYCLES=200 cargo test --release -p felix-broker --test
/// crash_loop -- --ignored long --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn long() {
    let cycles = std::env::var("FELIX_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    crash_loop(cycles, "always").await;
}
