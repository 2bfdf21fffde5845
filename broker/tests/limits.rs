//! Limits (`docs/wire-protocol.md` 7.9), health/metrics over HTTP, and graceful shutdown.
//! Each limit fails only the connection, subscription or request that exceeds it; the
//! offender's other work and every other client carry on.

mod common;
mod v1;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use felix_client::{AckMode, ErrorCode, Start};
use felix_transport::quinn;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: &str = "t1";
const NS: &str = "ns";

/// `auth` with error codes (bit 0) and queues (bit 1).
fn ext_auth() -> Value {
    json!({"type": "auth", "tenant_id": T, "client_features": 3})
}

async fn ext_stream(c: &v1::Client) -> v1::Stream {
    let (s, reply) = c.open_authed(&ext_auth()).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    assert_eq!(reply["server_features"], 3, "{reply}");
    s
}

/// One HTTP/1.1 request on its own connection: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut sock = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP endpoint");
    sock.write_all(format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut resp = String::new();
    sock.read_to_string(&mut resp).await.unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `series` (name with labels) in a Prometheus text body.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = within(5, "GET /metrics", http(addr, "GET", "/metrics")).await;
    assert_eq!(status, 200);
    body
}

#[tokio::test]
async fn max_connections_refuses_only_the_extra_connection() {
    let mut cfg = test_config("limit-conns");
    cfg.limits.max_connections = 2;
    let b = TestBroker::with_config(cfg).await;
    let metrics = &b.broker.shared().metrics;

    // Two connections: a felix-client (one pooled connection) and a raw v1 client that has
    // completed a request round trip (so the broker has admitted it).
    let fc = within(10, "felix-client", b.client()).await;
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut raw_req = within(5, "raw auth", raw.request_stream(T)).await;

    // A third connection completes its handshake, then is closed with application error
    // code 7 (overloaded) and a reason.
    let extra = within(10, "extra connect", v1::Client::connect(b.addr(), &b.ca)).await;
    match within(5, "extra closed", extra.conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                c.error_code,
                quinn::VarInt::from_u32(ErrorCode::Overloaded.as_u16() as u32)
            );
            assert_eq!(&c.reason[..], b"overloaded: max_connections reached");
        }
        other => panic!("expected an application close with code 7, got {other:?}"),
    }
    // felix-client cannot connect either; the error is retryable (a limit, not a fault).
    let err = within(
        10,
        "refused client",
        felix_client::Client::connect(b.client_config()),
    )
    .await
    .expect_err("a third connection must be refused");
    assert!(err.retryable(), "{err:?}");
    assert!(
        matches!(err.code(), ErrorCode::Overloaded | ErrorCode::Unavailable),
        "{err:?}"
    );
    assert_eq!(metrics.connections_refused.get(), 2);
    assert_eq!(metrics.connections.get(), 2);

    // The admitted connections are unaffected.
    let mut sub = within(5, "subscribe", fc.subscribe(NS, "s", Start::Latest))
        .await
        .unwrap();
    raw_req
        .send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
            "stream": "s", "payload": v1::b64(b"from raw"), "request_id": 1}))
        .await;
    assert_eq!(
        within(5, "publish_ok", raw_req.json()).await,
        json!({"type": "publish_ok", "request_id": 1})
    );
    let ev = within(5, "event", sub.next()).await.unwrap().unwrap();
    assert_eq!(ev.payload.as_ref(), b"from raw");

    // Once a connection closes, a new one is admitted.
    drop(sub);
    fc.close();
    eventually(10, "the broker to see the close", || async {
        metrics.connections.get() == 1
    })
    .await;
    let again = within(10, "connect after a slot freed", b.client()).await;
    within(5, "publish", again.publish(NS, "s", "x".into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn one_connection_holds_more_subscriptions_than_its_bidi_stream_limit() {
    // The subscribe stream is closed once `subscribed` is sent: held open, each
    // subscription pinned one of the 1024 bidirectional streams and the 1025th hung.
    let b = TestBroker::start("many-subs").await;
    let mut cfg = b.client_config();
    cfg.connections = 1;
    let c = within(10, "client", felix_client::Client::connect(cfg))
        .await
        .unwrap();
    let n = 1_200;
    let subscribe_all = futures::stream::iter(0..n)
        .map(|i| {
            let c = c.clone();
            async move { c.subscribe(NS, &format!("s{i}"), Start::Latest).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>();
    let mut subs: Vec<_> = within(30, "subscriptions", subscribe_all)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every subscription accepted");
    assert_eq!(subs.len(), n);
    assert_eq!(
        b.broker.shared().metrics.subscriptions.get() as usize,
        n,
        "all held at once"
    );
    // Some subscription (not knowing which stream) still receives.
    within(5, "publish", c.publish(NS, "s7", "x".into()))
        .await
        .unwrap();
    let mut got = 0;
    for s in subs.iter_mut() {
        if let Some(Some(Ok(ev))) = futures::FutureExt::now_or_never(s.next()) {
            assert_eq!(ev.payload.as_ref(), b"x");
            got += 1;
        }
    }
    if got == 0 {
        // The event may still be in flight: wait on the many with a deadline.
        let all = futures::stream::select_all(subs.iter_mut());
        let ev = within(5, "event", all.into_future())
            .await
            .0
            .unwrap()
            .unwrap();
        assert_eq!(ev.payload.as_ref(), b"x");
    }
}

#[tokio::test]
async fn max_subscriptions_per_connection_refuses_only_the_extra_subscription() {
    let mut cfg = test_config("limit-subs");
    cfg.limits.max_subscriptions_per_connection = 3;
    let b = TestBroker::with_config(cfg).await;
    let metrics = &b.broker.shared().metrics;
    let c = within(10, "client", b.client()).await;
    let mut subs = Vec::new();
    for stream in ["a", "a", "b"] {
        subs.push(
            within(5, "subscribe", c.subscribe(NS, stream, Start::Latest))
                .await
                .unwrap(),
        );
    }
    for stream in ["a", "c"] {
        let err = within(5, "4th subscribe", c.subscribe(NS, stream, Start::Latest))
            .await
            .expect_err("over the per-connection limit");
        assert_eq!(err.code(), ErrorCode::Overloaded, "{err}");
        assert!(err.retryable());
    }
    // The earlier subscriptions keep working, and so do requests on the connection.
    within(5, "publish a", c.publish(NS, "a", "to a".into()))
        .await
        .unwrap();
    within(5, "publish b", c.publish(NS, "b", "to b".into()))
        .await
        .unwrap();
    for (sub, want) in subs.iter_mut().zip(["to a", "to a", "to b"]) {
        let ev = within(5, "event", sub.next()).await.unwrap().unwrap();
        assert_eq!(ev.payload.as_ref(), want.as_bytes());
    }

    // The limit is per connection: another client subscribes as usual.
    let other = within(10, "other client", b.client()).await;
    let mut other_subs = Vec::new();
    for _ in 0..3 {
        other_subs.push(
            within(
                5,
                "other subscribe",
                other.subscribe(NS, "a", Start::Latest),
            )
            .await
            .unwrap(),
        );
    }
    // A plain v1 client hits the same limit on its own connection: `error` (no code), then
    // the subscribe stream is finished.
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let subscribe = json!({"type": "subscribe", "tenant_id": T, "namespace": NS, "stream": "a"});
    let mut raw_subs = Vec::new();
    for _ in 0..3 {
        raw_subs.push(
            within(
                5,
                "raw subscribe",
                raw.subscribe(&v1::plain_auth(T), &subscribe),
            )
            .await,
        );
    }
    let (mut s, reply) = within(5, "auth", raw.open_authed(&v1::plain_auth(T))).await;
    assert_eq!(reply, json!({"type": "ok"}));
    s.send_json(&subscribe).await;
    let r = within(5, "refused", s.json()).await;
    assert_eq!(r["type"], "error", "{r}");
    v1::assert_v1_shape(&r);
    within(5, "refused stream end", s.rx.expect_end()).await;

    // Ending one subscription frees its slot.
    assert_eq!(metrics.subscriptions.get(), 9);
    drop(subs.pop());
    eventually(10, "the broker to end the dropped subscription", || async {
        metrics.subscriptions.get() == 8
    })
    .await;
    let mut sub = within(
        5,
        "subscribe after a slot freed",
        c.subscribe(NS, "d", Start::Latest),
    )
    .await
    .unwrap();
    within(5, "publish d", c.publish(NS, "d", "to d".into()))
        .await
        .unwrap();
    let ev = within(5, "event d", sub.next()).await.unwrap().unwrap();
    assert_eq!(ev.payload.as_ref(), b"to d");
    // Every admitted subscription, on every connection, still gets events.
    within(5, "publish a", c.publish(NS, "a", "late a".into()))
        .await
        .unwrap();
    for sub in subs.iter_mut().take(2).chain(other_subs.iter_mut()) {
        let ev = within(5, "late event", sub.next()).await.unwrap().unwrap();
        assert_eq!(ev.payload.as_ref(), b"late a");
    }
    for sub in raw_subs.iter_mut() {
        let (got, _) = within(5, "raw late event", sub.payloads(1)).await;
        assert_eq!(got, vec![b"late a".to_vec()]);
    }
}

/// A binary acked publish whose frame payload is exactly `len` bytes.
fn acked_publish_of_len(request_id: u64, stream: &str, len: usize) -> Vec<u8> {
    let overhead = 9 + (2 + T.len()) + (2 + NS.len()) + (2 + stream.len()) + 4 + 4;
    let payload = vec![7u8; len - overhead];
    let f = v1::binary_publish_acked(request_id, v1::PER_BATCH, T, NS, stream, &[&payload]);
    assert_eq!(f.len(), 12 + len);
    f
}

#[tokio::test]
async fn max_frame_bytes_fails_only_the_stream_with_the_large_frame() {
    const MAX: u32 = 64 * 1024;
    let mut cfg = test_config("limit-frame");
    cfg.limits.max_frame_bytes = MAX;
    let b = TestBroker::with_config(cfg).await;
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;

    let (mut s, reply) = within(5, "auth", raw.open_authed(&ext_auth())).await;
    assert_eq!(
        reply["max_frame_bytes"], MAX,
        "the limit is advertised: {reply}"
    );
    // Exactly at the limit: accepted.
    s.write(&acked_publish_of_len(1, "big", MAX as usize)).await;
    let ack = v1::parse_ack(&within(5, "ack", s.frame()).await.payload);
    assert_eq!((ack.status, ack.request_id), (0, 1));
    // One byte over: frame_too_large before the payload is read, STOP_SENDING 8, FIN.
    s.write(&v1::header(
        v1::MAGIC,
        v1::VERSION,
        v1::F_PUBLISH | v1::F_ACKED,
        MAX + 1,
    ))
    .await;
    let r = within(5, "frame_too_large", s.json()).await;
    assert_eq!(
        (&r["type"], &r["code"]),
        (&json!("error"), &json!("frame_too_large")),
        "{r}"
    );
    within(5, "stream end", s.rx.expect_end()).await;
    assert_eq!(
        within(5, "stopped", s.send.stopped()).await,
        Ok(Some(quinn::VarInt::from_u32(8)))
    );

    // A v1 stream on the same connection: the same, without a code.
    let mut v = within(5, "v1 auth", raw.request_stream(T)).await;
    v.write(&v1::header(v1::MAGIC, v1::VERSION, v1::F_JSON, u32::MAX))
        .await;
    let r = within(5, "v1 frame_too_large", v.json()).await;
    assert_eq!(r["type"], "error", "{r}");
    v1::assert_v1_shape(&r);
    within(5, "v1 stream end", v.rx.expect_end()).await;

    // The connection keeps serving on new streams.
    let mut s = within(5, "auth", ext_stream(&raw)).await;
    s.write(&acked_publish_of_len(2, "big", 1000)).await;
    let ack = v1::parse_ack(&within(5, "ack", s.frame()).await.payload);
    assert_eq!((ack.status, ack.request_id), (0, 2));

    // felix-client learns the limit from auth_ok and refuses locally; other clients fine.
    let c = within(10, "client", b.client()).await;
    let err = within(
        5,
        "too large",
        c.publish(NS, "big", Bytes::from(vec![0u8; MAX as usize + 1])),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FrameTooLarge, "{err}");
    within(
        5,
        "publish",
        c.publish(NS, "big", Bytes::from(vec![0u8; 1000])),
    )
    .await
    .unwrap();
}

/// The per-connection in-flight budget: long-poll pulls hold their request bytes; while they
/// do, requests that would exceed the budget fail with `overloaded` (with their request id,
/// in their own reply form), smaller ones pass, other connections are unaffected, and the
/// bytes come back when the pulls are answered.
#[tokio::test]
async fn inflight_byte_budget_fails_only_the_requests_over_it() {
    const BUDGET: usize = 16 * 1024;
    let mut cfg = test_config("limit-inflight");
    cfg.limits.max_inflight_bytes_per_connection = BUDGET;
    let b = TestBroker::with_config(cfg).await;
    let metrics = &b.broker.shared().metrics;
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut s = within(5, "auth", ext_stream(&raw)).await;

    // Three long polls of ~4 KiB each (padded with an unknown field, which receivers
    // ignore) hold ~12 KiB of the 16 KiB budget until a message arrives.
    for rid in 1..=3u64 {
        let pull = json!({"type": "queue_pull", "tenant_id": T, "namespace": NS,
            "stream": "jobs", "group": "g", "request_id": rid, "max": 1, "wait_ms": 30_000,
            "pad": "p".repeat(4000)});
        s.send_json(&pull).await;
    }
    let big = vec![1u8; 6000];
    s.send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "s", "payload": v1::b64(&big), "request_id": 10}))
        .await;
    s.write(&v1::binary_publish_acked(
        11,
        v1::PER_MESSAGE,
        T,
        NS,
        "s",
        &[&big],
    ))
    .await;
    s.send_json(
        &json!({"type": "cache_put", "tenant_id": T, "namespace": NS,
        "cache": "c", "key": "k", "value": v1::b64(&big), "request_id": 12}),
    )
    .await;
    s.write(&v1::binary_publish(T, NS, "s", &[&big])).await; // ack none: no reply
    s.send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "s", "payload": v1::b64(b"small"), "request_id": 13}))
        .await;

    let r = within(5, "publish over budget", s.json()).await;
    assert_eq!(
        (&r["type"], &r["request_id"], &r["code"], &r["retryable"]),
        (
            &json!("publish_error"),
            &json!(10),
            &json!("overloaded"),
            &json!(true)
        ),
        "{r}"
    );
    let f = within(5, "binary publish over budget", s.frame()).await;
    assert_eq!(f.flags, v1::F_ACK);
    let ack = v1::parse_ack(&f.payload);
    assert_eq!((ack.status, ack.request_id), (1, 11));
    assert_eq!(ack.trailer, vec![0, 7, 1], "code 7 overloaded, retryable");
    let r = within(5, "cache_put over budget", s.json()).await;
    assert_eq!(
        (&r["type"], &r["request_id"], &r["code"], &r["retryable"]),
        (
            &json!("error"),
            &json!(12),
            &json!("overloaded"),
            &json!(true)
        ),
        "{r}"
    );
    assert_eq!(
        within(5, "small publish", s.json()).await,
        json!({"type": "publish_ok", "request_id": 13}),
        "a request within the remaining budget passes"
    );
    assert!(metrics.overloaded.get() >= 4);

    // Other connections have their own budget.
    let c = within(10, "client", b.client()).await;
    within(
        5,
        "other publish",
        c.publish(NS, "s", Bytes::from(big.clone())),
    )
    .await
    .unwrap();
    let raw2 = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut s2 = within(5, "auth", ext_stream(&raw2)).await;
    s2.write(&v1::binary_publish_acked(
        1,
        v1::PER_BATCH,
        T,
        NS,
        "s",
        &[&big],
    ))
    .await;
    assert_eq!(
        v1::parse_ack(&within(5, "ack", s2.frame()).await.payload).status,
        0
    );

    // Messages for the pulls: each is answered, and the bytes they held come back.
    let jobs: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![i])).collect();
    within(
        5,
        "jobs",
        c.publish_batch(NS, "jobs", &jobs, AckMode::PerBatch),
    )
    .await
    .unwrap();
    let mut answered = Vec::new();
    for _ in 0..3 {
        let r = within(5, "queue_messages", s.json()).await;
        assert_eq!(r["type"], "queue_messages", "{r}");
        assert_eq!(r["messages"].as_array().map(Vec::len), Some(1), "{r}");
        answered.push(r["request_id"].as_u64().unwrap());
    }
    answered.sort();
    assert_eq!(answered, vec![1, 2, 3]);
    s.send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "s", "payload": v1::b64(&big), "request_id": 14}))
        .await;
    assert_eq!(
        within(5, "publish after the pulls", s.json()).await,
        json!({"type": "publish_ok", "request_id": 14})
    );
}

/// felix-client's view of the in-flight budget: a request larger than the whole budget
/// fails with `overloaded` and the client keeps its connection (no reconnect).
#[tokio::test]
async fn inflight_overload_reaches_felix_client_without_costing_the_connection() {
    let mut cfg = test_config("limit-inflight-client");
    cfg.limits.max_inflight_bytes_per_connection = 16 * 1024;
    let b = TestBroker::with_config(cfg).await;
    let metrics = &b.broker.shared().metrics;
    let c = within(10, "client", b.client()).await;
    let mut sub = within(5, "subscribe", c.subscribe(NS, "s", Start::Latest))
        .await
        .unwrap();
    let connections = metrics.connections_total.get();
    let huge = Bytes::from(vec![0u8; 20 * 1024]);
    for _ in 0..4 {
        let err = within(5, "over budget", c.publish(NS, "s", huge.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Overloaded, "{err}");
        assert!(err.retryable());
        within(
            5,
            "over budget, ack none",
            c.publish_batch(NS, "s", std::slice::from_ref(&huge), AckMode::None),
        )
        .await
        .unwrap();
        let err = within(
            5,
            "cache over budget",
            c.cache_put(NS, "c", "k", huge.clone(), None),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Overloaded, "{err}");
    }
    for i in 0..8u8 {
        within(5, "publish", c.publish(NS, "s", Bytes::from(vec![i])))
            .await
            .unwrap();
    }
    for i in 0..8u8 {
        let ev = within(5, "event", sub.next()).await.unwrap().unwrap();
        assert_eq!(
            ev.payload.as_ref(),
            &[i],
            "only the small publishes were appended"
        );
    }
    assert_eq!(
        metrics.connections_total.get(),
        connections,
        "the client reconnected: an overload reply cost it its connection"
    );
}

#[tokio::test]
async fn health_and_metrics_endpoints_answer_and_counters_move() {
    let b = TestBroker::start("limit-http").await;
    let addr = b.broker.metrics_addr().expect("metrics endpoint enabled");
    assert_eq!(
        within(5, "/live", http(addr, "GET", "/live")).await,
        (200, "ok\n".into())
    );
    assert_eq!(
        within(5, "/ready", http(addr, "GET", "/ready")).await,
        (200, "ready\n".into())
    );
    assert_eq!(within(5, "404", http(addr, "GET", "/nope")).await.0, 404);
    assert_eq!(
        within(5, "405", http(addr, "POST", "/metrics")).await.0,
        405
    );

    let c = within(10, "client", b.client()).await;
    let mut sub = within(5, "subscribe", c.subscribe(NS, "m", Start::Latest))
        .await
        .unwrap();
    let before = scrape(addr).await;
    assert_eq!(sample(&before, "felix_connections"), 1.0);
    assert_eq!(sample(&before, "felix_subscriptions"), 1.0);

    let batch: Vec<Bytes> = [&b"a"[..], b"bb", b"ccc"]
        .iter()
        .map(|p| Bytes::copy_from_slice(p))
        .collect();
    within(
        5,
        "batch",
        c.publish_batch(NS, "m", &batch, AckMode::PerBatch),
    )
    .await
    .unwrap();
    within(5, "publish", c.publish(NS, "m", "dddd".into()))
        .await
        .unwrap();
    within(5, "publish", c.publish(NS, "m", "eeeee".into()))
        .await
        .unwrap();
    let events: Vec<_> = within(5, "events", sub.by_ref().take(5).collect::<Vec<_>>()).await;
    assert_eq!(events.len(), 5);
    within(5, "put", c.cache_put(NS, "mc", "k", "v".into(), None))
        .await
        .unwrap();
    assert!(within(5, "hit", c.cache_get(NS, "mc", "k"))
        .await
        .unwrap()
        .is_some());
    assert!(within(5, "miss", c.cache_get(NS, "mc", "absent"))
        .await
        .unwrap()
        .is_none());

    let delta = |after: &str, series: &str| sample(after, series) - sample(&before, series);
    let after = scrape(addr).await;
    assert_eq!(delta(&after, "felix_published_messages_total"), 5.0);
    assert_eq!(delta(&after, "felix_published_bytes_total"), 15.0);
    assert_eq!(delta(&after, "felix_publish_seconds_count"), 3.0);
    assert_eq!(delta(&after, "felix_cache_hits_total"), 1.0);
    assert_eq!(delta(&after, "felix_cache_misses_total"), 1.0);
    assert_eq!(delta(&after, "felix_cache_op_seconds_count"), 3.0);
    assert_eq!(
        sample(&after, "felix_stream_records{stream=\"t1/ns/m\"}"),
        5.0
    );
    assert_eq!(
        sample(&after, "felix_stream_subscribers{stream=\"t1/ns/m\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "felix_cache_entries{cache=\"t1/ns/mc\"}"),
        1.0
    );
    // Delivery is counted once written to the subscriber, which already read all five.
    assert_eq!(delta(&after, "felix_delivered_events_total"), 5.0);

    // A malformed frame and the new connection show up too.
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut s = within(5, "raw auth", raw.request_stream(T)).await;
    s.write(&v1::frame(0x0080, b"{}")).await;
    assert_eq!(within(5, "error", s.json()).await["type"], "error");
    let after2 = scrape(addr).await;
    assert_eq!(delta(&after2, "felix_protocol_errors_total"), 1.0);
    assert_eq!(sample(&after2, "felix_connections"), 2.0);
    assert!(sample(&after2, "felix_connections_total") >= 2.0);
}

/// Graceful shutdown: `/ready` turns 503 at once, subscriptions end (a v1 event stream is
/// finished, an extension one gets `subscription_end` with `unavailable` first), and once
/// in-flight work drains the connection is closed with code 11 (`unavailable`), well before
/// the grace period runs out.
#[tokio::test]
async fn graceful_shutdown_ends_subscriptions_and_reports_not_ready() {
    let mut cfg = test_config("limit-shutdown");
    cfg.shutdown_grace_ms = 20_000;
    let TestBroker { broker, ca } = TestBroker::with_config(cfg).await;
    let (addr, http_addr) = (broker.local_addr(), broker.metrics_addr().unwrap());
    let raw = within(10, "raw connect", v1::Client::connect(addr, &ca)).await;
    let subscribe = json!({"type": "subscribe", "tenant_id": T, "namespace": NS, "stream": "s"});
    let mut plain = within(
        5,
        "v1 subscribe",
        raw.subscribe(&v1::plain_auth(T), &subscribe),
    )
    .await;
    // event_offsets (feature 0x40, flag 0x40) with error codes.
    let ext = json!({"type": "auth", "tenant_id": T, "client_flags": 0x47,
        "client_features": 0x41});
    let mut offsets = within(5, "ext subscribe", raw.subscribe(&ext, &subscribe)).await;
    assert_eq!(offsets.subscribed["start_offset"], 0);
    // A stream whose first frame is still incomplete: in-flight work shutdown waits for.
    let (mut pending, pending_rx) = raw.conn.open_bi().await.unwrap();
    pending
        .write_all(&v1::header(v1::MAGIC, v1::VERSION, v1::F_JSON, 100)[..6])
        .await
        .unwrap();
    let mut pending_rx = v1::Reader::new(pending_rx);
    // Make sure the broker has that stream before shutting down: a request stream's
    // round trip on the same connection orders after it.
    let mut req = within(5, "auth", raw.request_stream(T)).await;
    req.send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "s", "payload": v1::b64(b"before"), "request_id": 1}))
        .await;
    assert_eq!(
        within(5, "publish_ok", req.json()).await["type"],
        "publish_ok"
    );
    assert_eq!(
        within(5, "event", plain.payloads(1)).await.0,
        vec![b"before".to_vec()]
    );
    let f = within(5, "offset event", offsets.events.frame()).await;
    assert_eq!(f.flags, 0x0040, "event_offsets batch");

    let shutdown = tokio::spawn(broker.shutdown());

    within(5, "v1 event stream finished", plain.events.expect_end()).await;
    let end = within(5, "subscription_end", offsets.events.json()).await;
    assert_eq!(
        (&end["type"], &end["subscription_id"], &end["code"]),
        (
            &json!("subscription_end"),
            &json!(offsets.id),
            &json!("unavailable")
        ),
        "{end}"
    );
    within(5, "ext event stream finished", offsets.events.expect_end()).await;
    within(5, "request stream finished", req.rx.expect_end()).await;

    // Shutdown is in progress (the incomplete stream holds it): not ready, still live.
    eventually(5, "/ready to report 503", || async {
        http(http_addr, "GET", "/ready").await.0 == 503
    })
    .await;
    assert_eq!(
        within(5, "/live", http(http_addr, "GET", "/live")).await.0,
        200
    );
    assert!(
        raw.conn.close_reason().is_none(),
        "closed before in-flight work drained"
    );

    // Let the incomplete frame end: the broker answers it (protocol error), the connection
    // drains and is closed with `unavailable`, and shutdown completes well inside the grace.
    pending.finish().unwrap();
    let r = within(5, "error for the incomplete frame", pending_rx.json()).await;
    assert_eq!(r["type"], "error", "{r}");
    match within(5, "connection closed", raw.conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(11), "{c:?}");
        }
        other => panic!("expected an application close with code 11, got {other:?}"),
    }
    within(5, "shutdown to complete", shutdown).await.unwrap();
}
