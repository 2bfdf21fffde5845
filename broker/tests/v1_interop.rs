//! Interoperability with existing v1 clients: a client written from `felix-wire-v1.md` alone
//! (module `v1`: hand-built frames over raw quinn, no ALPN, no felix-wire / felix-client)
//! against the real broker, plus the frames of the original v1 implementation
//! (`wire/vectors/v1/`) replayed byte for byte.

mod common;
mod v1;

use common::*;
use serde_json::{json, Value};
use v1::*;

const T: &str = "t1";
const NS: &str = "v1ns";

#[tokio::test]
async fn v1_client_without_alpn_authenticates_plain_and_with_client_flags() {
    let b = TestBroker::start("v1-auth").await;
    let c = within(10, "v1 connect", Client::connect(b.addr(), &b.ca)).await;
    assert_eq!(
        felix_transport::negotiated_alpn(&c.conn),
        None,
        "a v1 client offers no ALPN and must be accepted without one"
    );

    let (_plain, reply) = within(5, "plain auth", c.open_authed(&plain_auth(T))).await;
    assert_eq!(reply, json!({"type": "ok"}));

    let auth = json!({"type": "auth", "tenant_id": T, "token": "tok", "client_flags": 25});
    let (_flags, reply) = within(5, "auth with client_flags", c.open_authed(&auth)).await;
    // Exactly the v1 shape (the original implementation's `auth_ok` vector): the flags are
    // the client's own subset, no feature fields for a client that asked for none.
    assert_eq!(reply, json!({"type": "auth_ok", "server_flags": 25}));

    // Flags outside what the broker knows are not granted back.
    let auth = json!({"type": "auth", "tenant_id": T, "client_flags": 0xFFFF});
    let (_all, reply) = within(5, "auth with all flags", c.open_authed(&auth)).await;
    assert_eq!(reply["type"], "auth_ok");
    assert_eq!(
        reply["server_flags"], 0x001F,
        "a client without features gets the v1 flags only: {reply}"
    );
    assert_v1_shape(&reply);
}

#[tokio::test]
async fn v1_client_offering_felix_alpn_is_served_too() {
    let b = TestBroker::start("v1-alpn").await;
    let c = within(
        10,
        "connect",
        Client::connect_with_alpn(b.addr(), &b.ca, true),
    )
    .await;
    assert_eq!(
        felix_transport::negotiated_alpn(&c.conn).as_deref(),
        Some(&b"felix/1"[..])
    );
    let mut s = within(5, "auth", c.request_stream(T)).await;
    s.send_json(
        &json!({"type": "publish", "tenant_id": T, "namespace": NS, "stream": "a",
        "payload": b64(b"x"), "request_id": 1}),
    )
    .await;
    assert_eq!(
        within(5, "publish_ok", s.json()).await,
        json!({"type": "publish_ok", "request_id": 1})
    );
}

#[tokio::test]
async fn v1_client_opening_forty_streams_at_connect_is_served() {
    let b = TestBroker::start("v1-forty").await;
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;
    let opens = (0..40).map(|_| c.request_stream(T));
    let mut streams = within(
        10,
        "40 authenticated streams",
        futures::future::join_all(opens),
    )
    .await;
    assert_eq!(streams.len(), 40);
    // Every one of them serves requests, all in flight at once.
    for (i, s) in streams.iter_mut().enumerate() {
        s.send_json(
            &json!({"type": "cache_put", "tenant_id": T, "namespace": NS,
            "cache": "c", "key": format!("k{i}"), "value": b64(&[i as u8]),
            "request_id": i, "ttl_ms": null}),
        )
        .await;
    }
    for (i, s) in streams.iter_mut().enumerate() {
        let r = within(5, "cache_ok", s.json()).await;
        assert_eq!(r, json!({"type": "cache_ok", "request_id": i}));
    }
}

/// Every v1 publish form on one request stream; the replies must be exactly the expected
/// sequence (so a reply to an unacknowledged publish would show up as a mismatch), and a
/// plain v1 subscriber (baseline flags) must get every payload, in order, as `0x0002` batches.
#[tokio::test]
async fn v1_publish_forms_reach_a_plain_subscriber_as_binary_batches_in_order() {
    let b = TestBroker::start("v1-pub").await;
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;
    let mut sub = within(
        5,
        "subscribe",
        c.subscribe(
            &plain_auth(T),
            &json!({"type": "subscribe", "tenant_id": T, "namespace": NS, "stream": "orders"}),
        ),
    )
    .await;
    assert_eq!(
        keys(&sub.subscribed),
        key_set(&["type", "subscription_id"]),
        "subscribed to a v1 client: {}",
        sub.subscribed
    );

    let mut p = within(5, "publisher", c.request_stream(T)).await;
    let msg = |s: &str| s.as_bytes().to_vec();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    let publish = |payload: &[u8], extra: Value| {
        let mut m = json!({"type": "publish", "tenant_id": T, "namespace": NS,
            "stream": "orders", "payload": b64(payload)});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        json_frame(&m)
    };
    let batch = |payloads: &[Vec<u8>], extra: Value| {
        let mut m = json!({"type": "publish_batch", "tenant_id": T, "namespace": NS,
            "stream": "orders",
            "payloads": payloads.iter().map(|p| b64(p)).collect::<Vec<_>>()});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        json_frame(&m)
    };

    // 1. JSON publish, no request id, no ack: never answered.
    p.write(&publish(b"json-noack", json!({}))).await;
    expected.push(msg("json-noack"));
    // 2. JSON publish with request id (ack defaults to per_message).
    p.write(&publish(b"json-acked", json!({"request_id": 1})))
        .await;
    expected.push(msg("json-acked"));
    // 3. Explicit ack none with a request id: still never answered.
    p.write(&publish(
        b"json-none",
        json!({"request_id": 2, "ack": "none"}),
    ))
    .await;
    expected.push(msg("json-none"));
    // 4. publish_batch per_message: one publish_ok per message.
    let b3 = vec![msg("b1"), vec![0x00, 0xff, 0xfe], Vec::new()];
    p.write(&batch(&b3, json!({"request_id": 3, "ack": "per_message"})))
        .await;
    expected.extend(b3.iter().cloned());
    // 5. publish_batch with a request id and no ack: per_batch, one reply.
    let b2 = vec![msg("b4"), msg("b5")];
    p.write(&batch(&b2, json!({"request_id": 4}))).await;
    expected.extend(b2.iter().cloned());
    // 6. binary 0x0001: never acknowledged.
    p.write(&binary_publish(T, NS, "orders", &[b"bin1", b"bin2"]))
        .await;
    expected.extend([msg("bin1"), msg("bin2")]);
    // 7. binary 0x0009 per_message, 8. per_batch.
    p.write(&binary_publish_acked(
        5,
        PER_MESSAGE,
        T,
        NS,
        "orders",
        &[b"ack1", b"ack2"],
    ))
    .await;
    expected.extend([msg("ack1"), msg("ack2")]);
    p.write(&binary_publish_acked(
        u64::MAX,
        PER_BATCH,
        T,
        NS,
        "orders",
        &[b"ack3", b"ack4", b"ack5"],
    ))
    .await;
    expected.extend([msg("ack3"), msg("ack4"), msg("ack5")]);
    // 9. A final acked publish: everything before it has been answered when this is.
    p.write(&publish(
        b"last",
        json!({"request_id": 6, "ack": "per_batch"}),
    ))
    .await;
    expected.push(msg("last"));

    let ok = |rid: u64| json!({"type": "publish_ok", "request_id": rid});
    let mut replies = Vec::new();
    for _ in 0..(1 + 3 + 1 + 2 + 1 + 1) {
        replies.push(within(5, "publish reply", p.frame()).await);
    }
    assert_eq!(replies[0].json(), ok(1));
    for r in &replies[1..4] {
        assert_eq!(r.json(), ok(3), "per_message batch replies");
    }
    assert_eq!(replies[4].json(), ok(4));
    for (r, rid) in replies[5..8].iter().zip([5, 5, u64::MAX]) {
        assert_eq!(r.flags, F_ACK, "acked binary publish is answered by 0x0010");
        let ack = parse_ack(&r.payload);
        assert_eq!(
            ack,
            Ack {
                status: 0,
                request_id: rid,
                message: String::new(),
                trailer: Vec::new(),
            }
        );
        assert_eq!(r.payload.len(), 11, "an ok ack is 11 bytes");
    }
    assert_eq!(replies[8].json(), ok(6));

    let (got, frames) = within(10, "all events", sub.payloads(expected.len())).await;
    assert_eq!(got, expected, "events in publish order");
    assert!(
        frames.iter().all(|f| f.flags == F_EVENTS),
        "a client with baseline flags gets 0x0002 batches, got flags {:?}",
        frames.iter().map(|f| f.flags).collect::<Vec<_>>()
    );
}

/// A client whose `client_flags` (25 = 0x0019) lack `0x0002` gets JSON `event` frames, with
/// exactly the v1 fields, and a client-chosen subscription id is echoed everywhere.
#[tokio::test]
async fn v1_subscriber_without_event_batch_flag_gets_json_events() {
    let b = TestBroker::start("v1-json-events").await;
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;
    let auth = json!({"type": "auth", "tenant_id": T, "token": "tok", "client_flags": 25});
    let mut sub = within(
        5,
        "subscribe",
        c.subscribe(
            &auth,
            &json!({"type": "subscribe", "tenant_id": T, "namespace": NS,
                "stream": "ev.json", "subscription_id": 77}),
        ),
    )
    .await;
    assert_eq!(
        sub.subscribed,
        json!({"type": "subscribed", "subscription_id": 77})
    );
    assert_eq!(sub.id, 77);

    let mut p = within(5, "publisher", c.request_stream(T)).await;
    let payloads: Vec<Vec<u8>> = vec![
        b"first".to_vec(),
        vec![0, 1, 2, 255],
        Vec::new(),
        vec![b'x'; 3000],
        b"last".to_vec(),
    ];
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    p.write(&binary_publish_acked(
        1,
        PER_BATCH,
        T,
        NS,
        "ev.json",
        &refs[..3],
    ))
    .await;
    p.send_json(
        &json!({"type": "publish_batch", "tenant_id": T, "namespace": NS,
        "stream": "ev.json", "payloads": [b64(refs[3]), b64(refs[4])], "request_id": 2}),
    )
    .await;
    assert_eq!(
        parse_ack(&within(5, "ack", p.frame()).await.payload).status,
        0
    );
    assert_eq!(
        within(5, "publish_ok", p.json()).await,
        json!({"type": "publish_ok", "request_id": 2})
    );

    let (got, frames) = within(10, "events", sub.payloads(payloads.len())).await;
    assert_eq!(got, payloads);
    for f in &frames {
        assert_eq!(
            f.flags, F_JSON,
            "0x0002 was not negotiated: JSON events only"
        );
        let v = f.json();
        assert_eq!(v["type"], "event", "{v}");
        assert_eq!(
            keys(&v),
            key_set(&["type", "tenant_id", "namespace", "stream", "payload"]),
            "{v}"
        );
        assert_eq!((&v["tenant_id"], &v["namespace"]), (&json!(T), &json!(NS)));
        assert_eq!(v["stream"], "ev.json");
    }
}

#[tokio::test]
async fn v1_cache_round_trips_base64_values_with_null_for_missing_keys() {
    let b = TestBroker::start("v1-cache").await;
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;
    let mut s = within(5, "auth", c.request_stream(T)).await;
    let put = |key: &str, value: &[u8], rid: u64, ttl: Value| {
        json!({"type": "cache_put", "tenant_id": T, "namespace": NS, "cache": "sessions",
            "key": key, "value": b64(value), "request_id": rid, "ttl_ms": ttl})
    };
    let get = |key: &str, rid: u64| {
        json!({"type": "cache_get", "tenant_id": T, "namespace": NS, "cache": "sessions",
            "key": key, "request_id": rid})
    };
    let binary = vec![0u8, 159, 146, 150, 255];
    s.send_json(&put("alice", b"{\"cart\":3}", 1, json!(60_000)))
        .await;
    s.send_json(&put("bin:1", &binary, 2, Value::Null)).await;
    s.send_json(&put("short", b"soon gone", 3, json!(150)))
        .await;
    for rid in 1..=3 {
        let r = within(5, "cache_ok", s.json()).await;
        assert_eq!(r, json!({"type": "cache_ok", "request_id": rid}));
    }
    s.send_json(&get("alice", 4)).await;
    s.send_json(&get("bin:1", 5)).await;
    s.send_json(&get("nobody", 6)).await;
    let value = |key: &str, v: Value, rid: u64| {
        json!({"type": "cache_value", "tenant_id": T, "namespace": NS, "cache": "sessions",
            "key": key, "value": v, "request_id": rid})
    };
    assert_eq!(
        within(5, "hit", s.json()).await,
        value("alice", json!(b64(b"{\"cart\":3}")), 4)
    );
    assert_eq!(
        within(5, "binary hit", s.json()).await,
        value("bin:1", json!(b64(&binary)), 5)
    );
    let miss = within(5, "miss", s.json()).await;
    assert_eq!(miss, value("nobody", Value::Null, 6));
    assert!(
        miss.as_object().unwrap().contains_key("value"),
        "a miss carries \"value\": null"
    );

    // The short TTL runs out; expiry is only observable by asking, so ask until it shows
    // (bounded), the way `common::eventually` polls.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    for rid in 100.. {
        s.send_json(&get("short", rid)).await;
        let r = within(5, "short TTL get", s.json()).await;
        assert_eq!(r["request_id"], rid);
        if r["value"].is_null() {
            break;
        }
        assert_eq!(r["value"], b64(b"soon gone"));
        assert!(
            tokio::time::Instant::now() < deadline,
            "a 150 ms TTL entry still readable after 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The long TTL entry is still there.
    s.send_json(&get("alice", 7)).await;
    assert_eq!(
        within(5, "long TTL still there", s.json()).await,
        value("alice", json!(b64(b"{\"cart\":3}")), 7)
    );
}

/// Failures are reported in the v1 shape: `message` only, no `code` / `retryable`, and an
/// error ack without the code trailer.
#[tokio::test]
async fn v1_errors_carry_no_extension_fields() {
    let b = TestBroker::start("v1-errors").await;
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;
    let mut s = within(5, "auth", c.request_stream(T)).await;

    s.send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "bad name!", "payload": b64(b"x"), "request_id": 1}))
        .await;
    let r = within(5, "publish_error", s.json()).await;
    assert_eq!(r["type"], "publish_error", "{r}");
    assert_eq!(r["request_id"], 1);
    assert_eq!(keys(&r), key_set(&["type", "request_id", "message"]), "{r}");

    s.write(&binary_publish_acked(2, PER_BATCH, T, NS, "..", &[b"x"]))
        .await;
    let f = within(5, "error ack", s.frame()).await;
    assert_eq!(f.flags, F_ACK);
    let ack = parse_ack(&f.payload);
    assert_eq!((ack.status, ack.request_id), (1, 2));
    assert!(!ack.message.is_empty());
    assert!(
        ack.trailer.is_empty(),
        "no code trailer for a v1 client: {:?}",
        ack.trailer
    );

    // A request for another tenant than the stream authenticated as.
    s.send_json(
        &json!({"type": "cache_get", "tenant_id": "someone-else", "namespace": NS,
        "cache": "c", "key": "k", "request_id": 3}),
    )
    .await;
    let r = within(5, "forbidden", s.json()).await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["request_id"], 3);
    assert_v1_shape(&r);
    assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()));

    // The stream still serves after the failures.
    s.send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "fine", "payload": b64(b"x"), "request_id": 4}))
        .await;
    assert_eq!(
        within(5, "publish_ok", s.json()).await,
        json!({"type": "publish_ok", "request_id": 4})
    );

    // A refused subscription: `error`, then the broker finishes the stream.
    let mut sub = c.open(&plain_auth(T)).await;
    assert_eq!(within(5, "ok", sub.json()).await, json!({"type": "ok"}));
    sub.send_json(
        &json!({"type": "subscribe", "tenant_id": T, "namespace": NS,
        "stream": "no..pe"}),
    )
    .await;
    let r = within(5, "subscribe error", sub.json()).await;
    assert_eq!(r["type"], "error", "{r}");
    assert_v1_shape(&r);
    within(5, "subscribe stream end", sub.rx.expect_end()).await;
}

fn vector(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wire/vectors/v1")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector JSON")
}

fn vector_frame(name: &str) -> Vec<u8> {
    unhex(vector(name)["frame_hex"].as_str().expect("frame_hex"))
}

fn vector_payload_json(name: &str) -> Value {
    serde_json::from_str(vector(name)["payload_json"].as_str().expect("payload_json"))
        .expect("payload_json is JSON")
}

/// The exact frames the original v1 implementation sends (`wire/vectors/v1/`) are served,
/// and the broker's answers match that implementation's reply vectors.
#[tokio::test]
async fn v1_reference_frames_from_the_original_implementation_are_served() {
    let b = TestBroker::start("v1-vectors").await;
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;

    // auth_with_capabilities (client_flags 25) -> auth_ok exactly as the original sent it.
    let open_raw = |bytes: Vec<u8>| {
        let conn = c.conn.clone();
        async move {
            let (send, recv) = conn.open_bi().await.expect("open_bi");
            let mut s = Stream {
                send,
                rx: Reader::new(recv),
            };
            s.write(&bytes).await;
            s
        }
    };
    let mut sub = within(5, "open", open_raw(vector_frame("auth_with_capabilities"))).await;
    assert_eq!(
        within(5, "auth_ok", sub.json()).await,
        vector_payload_json("auth_ok")
    );
    sub.write(&vector_frame("subscribe")).await;
    let subscribed = within(5, "subscribed", sub.json()).await;
    assert_eq!(keys(&subscribed), key_set(&["type", "subscription_id"]));
    sub.finish();
    let mut events = Reader::new(
        within(5, "event stream", c.conn.accept_uni())
            .await
            .unwrap(),
    );
    assert_eq!(
        within(5, "hello", events.json()).await,
        json!({"type": "event_stream_hello", "subscription_id": subscribed["subscription_id"]})
    );

    // publish (no request id: unanswered), then the acked binary publish (request id 7),
    // whose ack must be the original's `binary_publish_ack_ok` frame byte for byte.
    let mut p = within(5, "open", open_raw(vector_frame("auth_with_capabilities"))).await;
    assert_eq!(
        within(5, "auth_ok", p.json()).await,
        vector_payload_json("auth_ok")
    );
    let mut both = vector_frame("publish");
    both.extend(vector_frame("binary_publish_acked"));
    p.write(&both).await;
    let ack = within(5, "binary ack", p.frame()).await;
    assert_eq!(ack.to_bytes(), vector_frame("binary_publish_ack_ok"));

    // The subscriber authenticated with flags 25 (no 0x0002): JSON events shaped like the
    // original's `event` vector.
    let shape = vector_payload_json("event");
    for expected in ["aGVsbG8=", "aGVsbG8="] {
        let ev = within(5, "event", events.json()).await;
        assert_eq!(keys(&ev), keys(&shape), "{ev}");
        for k in ["type", "tenant_id", "namespace", "stream"] {
            assert_eq!(ev[k], shape[k], "{k} in {ev}");
        }
        assert_eq!(ev["payload"], expected);
    }

    // cache_put (ttl 1000 ms, no request id) and cache_get in one write, so the get is
    // served microseconds after the put: the reply is the original's `cache_value` vector.
    let mut cache = within(5, "open", open_raw(vector_frame("auth_with_capabilities"))).await;
    assert_eq!(
        within(5, "auth_ok", cache.json()).await,
        vector_payload_json("auth_ok")
    );
    let mut both = vector_frame("cache_put");
    both.extend(vector_frame("cache_get"));
    cache.write(&both).await;
    assert_eq!(
        within(5, "cache_ok", cache.json()).await,
        json!({"type": "cache_ok"})
    );
    assert_eq!(
        within(5, "cache_value", cache.json()).await,
        vector_payload_json("cache_value")
    );

    // A plain client's auth is answered with the original's `ok` frame, byte for byte.
    let mut plain = within(5, "open", open_raw(json_frame(&plain_auth("t1")))).await;
    let ok = within(5, "ok", plain.frame()).await;
    assert_eq!(ok.to_bytes(), vector_frame("ok"));
}
