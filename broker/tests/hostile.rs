//! Hostile clients on the read path (`docs/limits-read-path.md`): unfinished frames, streams
//! that never authenticate, parked long polls, and a shutdown with a long poll parked.
//! Memory is measured on a real broker process (`VmRSS`); every test also checks that other
//! clients are still served.

mod common;
mod v1;

use std::time::Duration;

use common::process::{mib, rss_bytes, spawn_with_config};
use common::*;
use felix_transport::quinn;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const T: &str = "t1";
const NS: &str = "ns";
const MIB: usize = 1024 * 1024;

/// `auth` with error codes (bit 0) and queues (bit 1).
fn ext_auth() -> Value {
    json!({"type": "auth", "tenant_id": T, "client_features": 3})
}

async fn ext_stream(c: &v1::Client) -> v1::Stream {
    let (s, reply) = c.open_authed(&ext_auth()).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    s
}

fn publish(request_id: u64, stream: &str, payload: &[u8]) -> Value {
    json!({"type": "publish", "tenant_id": T, "namespace": NS, "stream": stream,
        "payload": v1::b64(payload), "request_id": request_id})
}

/// A fresh connection still gets a publish acknowledged.
async fn still_served(addr: std::net::SocketAddr, ca: &std::path::Path) {
    let c = within(20, "a bystander connects", v1::Client::connect(addr, ca)).await;
    let mut s = within(10, "a bystander authenticates", c.request_stream(T)).await;
    s.send_json(&publish(1, "bystander", b"hello")).await;
    let r = within(10, "the bystander's publish_ok", s.json()).await;
    assert_eq!(r["type"], "publish_ok", "{r}");
}

/// Writes `header` then up to `body` bytes of payload in 64 KiB pieces, stopping at the first
/// failed write (the broker stopped the stream).
async fn write_partial(mut send: quinn::SendStream, header: Vec<u8>, body: usize) {
    if send.write_all(&header).await.is_err() {
        return;
    }
    let piece = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < body {
        if send.write_all(&piece).await.is_err() {
            return;
        }
        sent += piece.len();
    }
    // Keep the stream open (unfinished frame) until the test ends.
    std::future::pending::<()>().await;
}

/// Samples the process's RSS until `done` says so, panicking when it passes `bound` or when
/// `secs` pass; returns the largest sample.
async fn watch_rss(
    pid: u32,
    bound: u64,
    secs: u64,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut max = 0;
    loop {
        let rss = rss_bytes(pid);
        max = max.max(rss);
        assert!(
            rss < bound,
            "{what}: broker RSS reached {:.0} MiB (bound {:.0} MiB)",
            mib(rss),
            mib(bound)
        );
        if done() {
            return max;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not done after {secs}s (RSS max {:.0} MiB)",
            mib(max)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const RSS_BOUND: u64 = 150 * 1024 * 1024;
const STREAMS: usize = 64;

/// Before auth a stream may only send a small frame: the headers of 16 MiB frames from an
/// anonymous client are refused at once (`frame_too_large`, stream stopped) instead of being
/// buffered. The old broker buffered every byte (7 MB -> 1 GB of RSS in 1.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_frames_of_an_anonymous_client_do_not_grow_the_broker() {
    let broker = spawn_with_config("hostile-anon", "");
    let pid = broker.child.id();
    wait_for_handshake(broker.addr, 20).await;
    let before = rss_bytes(pid);
    let attacker = within(
        10,
        "attacker connects",
        v1::Client::connect(broker.addr, &broker.ca),
    )
    .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for _ in 0..STREAMS {
        let (send, recv) = attacker.conn.open_bi().await.unwrap();
        let header = v1::header(v1::MAGIC, v1::VERSION, v1::F_JSON, 16 * MIB as u32);
        tasks.spawn(write_partial(send, header, 4 * MIB));
        let tx = tx.clone();
        tasks.spawn(async move {
            let mut r = v1::Reader::new(recv);
            let _ = tx.send(r.next().await);
            std::future::pending::<()>().await;
        });
    }
    let mut answers = Vec::new();
    let max = watch_rss(pid, RSS_BOUND, 60, "anonymous unfinished frames", || {
        while let Ok(a) = rx.try_recv() {
            answers.push(a);
        }
        answers.len() == STREAMS
    })
    .await;
    for a in &answers {
        let f = a.as_ref().expect("an answer").as_ref().expect("a frame");
        let v = f.json();
        assert_eq!(v["type"], "error", "{v}");
        assert!(
            v["message"].as_str().unwrap().contains("exceeds the limit"),
            "{v}"
        );
    }
    eprintln!(
        "anonymous unfinished frames: RSS {:.1} MiB before, max {:.1} MiB",
        mib(before),
        mib(max)
    );
    still_served(broker.addr, &broker.ca).await;
    tasks.abort_all();
}

/// After auth, unfinished frames of all streams of a connection share
/// `max_partial_frame_bytes_per_connection`: 64 streams each sending the header of a 16 MiB
/// frame and 4 MiB of it get two frames' worth buffered; the others are not read (QUIC flow
/// control holds the client) and, past `partial_frame_wait_ms`, fail with `overloaded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_frames_after_auth_are_bounded_per_connection() {
    let broker = spawn_with_config("hostile-authed", "[limits]\npartial_frame_wait_ms = 1500\n");
    let pid = broker.child.id();
    wait_for_handshake(broker.addr, 20).await;
    let before = rss_bytes(pid);
    let attacker = within(
        10,
        "attacker connects",
        v1::Client::connect(broker.addr, &broker.ca),
    )
    .await;
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        streams.push(within(10, "auth", ext_stream(&attacker)).await);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for s in streams {
        let header = v1::header(v1::MAGIC, v1::VERSION, v1::F_JSON, 16 * MIB as u32);
        tasks.spawn(write_partial(s.send, header, 4 * MIB));
        let tx = tx.clone();
        let mut r = s.rx;
        tasks.spawn(async move {
            let _ = tx.send(r.next().await);
            std::future::pending::<()>().await;
        });
    }
    // Two frames fit the 32 MiB per connection; at most two streams are left unanswered.
    let mut answers = Vec::new();
    let max = watch_rss(
        pid,
        RSS_BOUND,
        90,
        "authenticated unfinished frames",
        || {
            while let Ok(a) = rx.try_recv() {
                answers.push(a);
            }
            answers.len() >= STREAMS - 2
        },
    )
    .await;
    for a in &answers {
        let f = a.as_ref().expect("an answer").as_ref().expect("a frame");
        let v = f.json();
        assert_eq!(
            (&v["type"], &v["code"]),
            (&json!("error"), &json!("overloaded")),
            "{v}"
        );
    }
    eprintln!(
        "authenticated unfinished frames: RSS {:.1} MiB before, max {:.1} MiB, {} streams refused",
        mib(before),
        mib(max),
        answers.len()
    );
    still_served(broker.addr, &broker.ca).await;
    tasks.abort_all();
}

/// A stream waiting for room gets it when another stream's frame completes; one that waits
/// longer than `partial_frame_wait_ms` fails alone with `overloaded` (counted), and the
/// stream holding the room finishes its frame normally.
#[tokio::test]
async fn a_stream_waits_for_room_and_fails_alone_past_the_wait_bound() {
    let mut cfg = test_config("hostile-wait");
    cfg.limits.max_frame_bytes = 256 * 1024;
    cfg.limits.max_partial_frame_bytes_per_connection = 256 * 1024;
    cfg.limits.partial_frame_wait_ms = 300;
    let b = TestBroker::with_config(cfg).await;
    let metrics = &b.broker.shared().metrics;
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut a = within(5, "auth a", ext_stream(&c)).await;
    let mut w = within(5, "auth w", ext_stream(&c)).await;
    // `a` holds ~190 KiB of the 256 KiB with its frame (half sent); `w` needs ~110 KiB.
    let big = "x".repeat(140 * 1024);
    let frame_a = v1::json_frame(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "s", "payload": v1::b64(big.as_bytes()), "request_id": 1}));
    let half = frame_a.len() / 2;
    a.write(&frame_a[..half]).await;
    // `w` asks only once the broker has admitted `a`'s frame.
    let frame_w = v1::json_frame(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "s", "payload": v1::b64(&vec![b'y'; 80 * 1024]), "request_id": 2}));
    // The memory budget sees what is buffered (the half sent), which the broker reads only
    // after it reserved the whole frame's room on the connection.
    eventually(5, "a's frame to hold the budget", || async {
        b.broker.shared().memory.used() >= half - 12
    })
    .await;
    w.write(&frame_w).await;
    let r = within(5, "w's overloaded", w.json()).await;
    assert_eq!(
        (&r["type"], &r["code"]),
        (&json!("error"), &json!("overloaded")),
        "{r}"
    );
    let code = within(5, "w's stream to be stopped", w.send.stopped()).await;
    assert_eq!(
        code.unwrap(),
        Some(quinn::VarInt::from_u32(7)),
        "overloaded"
    );
    assert_eq!(metrics.partial_frames_overloaded.get(), 1);
    // `a` finishes its frame: acknowledged as usual.
    a.write(&frame_a[half..]).await;
    let r = within(5, "a's publish_ok", a.json()).await;
    assert_eq!(r["type"], "publish_ok", "{r}");
    // With `a` done, the room is free again: a new stream's large frame goes through.
    let mut x = within(5, "auth x", ext_stream(&c)).await;
    x.write(&frame_w).await;
    let r = within(5, "x's publish_ok", x.json()).await;
    assert_eq!(r["type"], "publish_ok", "{r}");
}

/// A stream that does not complete `auth` within `auth_timeout_ms` is answered
/// (`unauthorized`: no auth in time), stopped with code 5 and finished; authenticated
/// streams on the same connection carry on. The old broker held such streams forever.
#[tokio::test]
async fn streams_that_never_authenticate_are_closed_at_the_deadline() {
    let mut cfg = test_config("hostile-auth-deadline");
    cfg.limits.auth_timeout_ms = 300;
    let b = TestBroker::with_config(cfg).await;
    let metrics = &b.broker.shared().metrics;
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut authed = within(5, "auth", c.request_stream(T)).await;
    const PARKED: usize = 50;
    let mut parked = Vec::new();
    for _ in 0..PARKED {
        let (mut send, recv) = c.conn.open_bi().await.unwrap();
        // Half a header: the broker sees the stream but never a whole frame.
        send.write_all(&v1::header(v1::MAGIC, v1::VERSION, v1::F_JSON, 100)[..6])
            .await
            .unwrap();
        parked.push((send, v1::Reader::new(recv)));
    }
    for (send, rx) in &mut parked {
        let r = within(10, "the auth deadline's error", rx.json()).await;
        assert_eq!(r["type"], "error", "{r}");
        assert!(
            r["message"].as_str().unwrap().contains("auth_timeout_ms"),
            "{r}"
        );
        within(5, "the stream to be finished", rx.expect_end()).await;
        let code = within(5, "STOP_SENDING", send.stopped()).await.unwrap();
        assert_eq!(code, Some(quinn::VarInt::from_u32(5)), "unauthorized");
    }
    assert_eq!(metrics.auth_timeouts.get(), PARKED as u64);
    // The authenticated stream on the same connection is unaffected.
    authed.send_json(&publish(1, "s", b"after")).await;
    let r = within(5, "publish_ok", authed.json()).await;
    assert_eq!(r["type"], "publish_ok", "{r}");
}

fn pull(request_id: u64, wait_ms: u64) -> Value {
    json!({"type": "queue_pull", "tenant_id": T, "namespace": NS, "stream": "q",
        "group": "g", "request_id": request_id, "max": 1, "wait_ms": wait_ms})
}

/// Parked long polls are bounded per connection: past `max_parked_pulls_per_connection` a
/// pull that would wait is answered `overloaded` at once; other connections are not
/// affected, and a woken pull frees its place. (300 000 parked pulls cost the old broker
/// 282 MB.)
#[tokio::test]
async fn parked_long_polls_are_bounded_per_connection() {
    let mut cfg = test_config("hostile-parked");
    cfg.limits.max_parked_pulls_per_connection = 3;
    let b = TestBroker::with_config(cfg).await;
    let metrics = &b.broker.shared().metrics;
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut s = within(5, "auth", ext_stream(&c)).await;
    for rid in 1..=3 {
        s.send_json(&pull(rid, 30_000)).await;
    }
    eventually(5, "three parked pulls", || async {
        metrics.parked_pulls.get() == 3
    })
    .await;
    s.send_json(&pull(4, 30_000)).await;
    let r = within(5, "the fourth pull's answer", s.json()).await;
    assert_eq!(
        (&r["type"], &r["code"], &r["request_id"]),
        (&json!("error"), &json!("overloaded"), &json!(4)),
        "{r}"
    );
    assert_eq!(metrics.parked_pulls_refused.get(), 1);
    // Another connection still parks.
    let c2 = within(10, "connect 2", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut s2 = within(5, "auth 2", ext_stream(&c2)).await;
    s2.send_json(&pull(1, 30_000)).await;
    eventually(5, "a fourth parked pull on another connection", || async {
        metrics.parked_pulls.get() == 4
    })
    .await;
    // A message wakes one parked pull, which frees its place.
    let mut p = within(5, "publisher", c2.request_stream(T)).await;
    p.send_json(&publish(9, "q", b"m")).await;
    assert_eq!(
        within(5, "publish_ok", p.json()).await["type"],
        "publish_ok"
    );
    let m = within(5, "a parked pull to get the message", async {
        tokio::select! {
            m = s.rx.json() => m,
            m = s2.rx.json() => m,
        }
    })
    .await;
    assert_eq!(m["type"], "queue_messages", "{m}");
    assert_eq!(m["messages"].as_array().unwrap().len(), 1, "{m}");
    eventually(5, "three parked pulls left", || async {
        metrics.parked_pulls.get() == 3
    })
    .await;
}

/// On SIGTERM a parked long poll is answered (an empty `queue_messages`) before its stream
/// is finished and the connection closed with `unavailable`. The old broker finished the
/// stream under it with no reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_a_parked_long_poll() {
    let broker = spawn_with_config("hostile-sigterm", "shutdown_grace_ms = 10000\n");
    wait_for_handshake(broker.addr, 20).await;
    let c = within(10, "connect", v1::Client::connect(broker.addr, &broker.ca)).await;
    let mut s = within(5, "auth", ext_stream(&c)).await;
    s.send_json(&pull(1, 60_000)).await;
    // Requests on a stream are taken in order: once the ack is answered the pull is parked.
    s.send_json(
        &json!({"type": "queue_ack", "tenant_id": T, "namespace": NS, "stream": "q",
        "group": "g", "request_id": 2, "offsets": []}),
    )
    .await;
    let r = within(5, "the ack's count", s.json()).await;
    assert_eq!(
        (&r["type"], &r["request_id"]),
        (&json!("count"), &json!(2)),
        "{r}"
    );
    broker.signal("-TERM");
    let r = within(10, "the parked pull's answer", s.json()).await;
    assert_eq!(
        r,
        json!({"type": "queue_messages", "request_id": 1, "messages": []}),
        "{r}"
    );
    within(10, "the stream to be finished", s.rx.expect_end()).await;
    match within(10, "the connection to close", c.conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(11), "{close:?}")
        }
        other => panic!("expected a close with code 11 (unavailable), got {other:?}"),
    }
}

/// Headers that declare frames and never send them hold no memory, so they must not take the
/// broker-wide memory budget from everyone else: the budget counts bytes actually buffered.
/// (A first version reserved each declared length in the broker budget too: 200 anonymous
/// streams declaring 64 KiB each took a 8 MiB budget, and every tenant's publish got
/// `overloaded`.)
#[tokio::test]
async fn declared_lengths_do_not_take_the_memory_budget_from_other_tenants() {
    let mut cfg = test_config("hostile-declared");
    cfg.limits.max_memory_bytes = 8 * MIB;
    let b = TestBroker::with_config(cfg).await;
    let attacker = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut held = Vec::new();
    for _ in 0..200 {
        let (mut send, recv) = attacker.conn.open_bi().await.expect("open_bi");
        let header = v1::header(v1::MAGIC, v1::VERSION, v1::F_JSON, 64 * 1024);
        send.write_all(&header).await.unwrap();
        held.push((send, recv));
    }
    // The broker has read the headers (and reserved their room on that connection only).
    eventually(10, "the headers to be read", || async {
        b.broker.shared().metrics.connections.get() == 1
    })
    .await;
    let c = within(10, "client", b.client()).await;
    for i in 0..20 {
        within(5, "publish", c.publish(NS, "s", vec![b'p'; 1024].into()))
            .await
            .unwrap_or_else(|e| panic!("publish {i} refused while headers are held: {e}"));
    }
    assert!(
        b.broker.shared().memory.used() < 4 * MIB,
        "the budget counts {} bytes for 200 headers and 20 KiB of publishes",
        b.broker.shared().memory.used()
    );
    drop(held);
}
