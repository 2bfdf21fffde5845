//! Malformed input fails only the stream (or request) that carried it: each bad frame gets the
//! documented error code (`docs/wire-protocol.md` sections 6, 7.2 and 7.9), and afterwards the
//! same connection and other clients keep publishing, subscribing and caching.

mod common;
mod v1;

use bytes::Bytes;
use common::*;
use felix_broker::auth::StaticTokenAuth;
use felix_broker::Broker;
use felix_client::{AckMode, ErrorCode, Start};
use serde_json::{json, Value};
use v1::*;

const T: &str = "t1";
const NS: &str = "ns";
/// Everything before this is a 16 MiB default limit.
const MAX_FRAME: u32 = 16 * 1024 * 1024;

/// `auth` asking for the error-codes extension (feature bit 0) only.
fn codes_auth(tenant: &str) -> Value {
    json!({"type": "auth", "tenant_id": tenant, "token": "tok", "client_features": 1})
}

fn assert_codes_auth_ok(reply: &Value) {
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    assert_eq!(reply["server_features"], 1, "error codes granted: {reply}");
}

/// What must happen to the stream after the error.
#[derive(Debug, Clone, Copy)]
enum After {
    /// Framing is lost: the broker finishes the stream; `Some(code)`: and it stopped reading
    /// with STOP_SENDING carrying that error code number.
    Closed(Option<u32>),
    /// The frame was whole: the stream keeps serving requests.
    Serves,
}

struct Case {
    name: &'static str,
    /// `auth` sent first (its reply checked); `None`: the bad bytes are the first frame.
    auth: Option<Value>,
    bytes: Vec<u8>,
    /// Finish the send side after the bytes.
    finish: bool,
    /// Expected `code`; `None`: the error must carry no code (nothing was negotiated).
    code: Option<&'static str>,
    after: After,
}

fn case(name: &'static str, bytes: Vec<u8>, code: &'static str, after: After) -> Case {
    Case {
        name,
        auth: Some(codes_auth(T)),
        bytes,
        finish: false,
        code: Some(code),
        after,
    }
}

async fn run_case(c: &Client, case: Case) {
    let name = case.name;
    let mut s = match &case.auth {
        Some(auth) => {
            let (s, reply) = c.open_authed(auth).await;
            assert_codes_auth_ok(&reply);
            s
        }
        None => {
            let (send, recv) = c.conn.open_bi().await.expect("open_bi");
            Stream {
                send,
                rx: Reader::new(recv),
            }
        }
    };
    s.write(&case.bytes).await;
    if case.finish {
        s.finish();
    }
    let err = s.json().await;
    assert_eq!(err["type"], "error", "{name}: {err}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{name}: error without a message: {err}"
    );
    assert_eq!(
        err.get("request_id"),
        None,
        "{name}: no request id could be read"
    );
    match case.code {
        Some(code) => {
            assert_eq!(err["code"], code, "{name}: {err}");
            let retryable = err["retryable"].as_bool();
            assert_eq!(retryable, Some(false), "{name}: {err}");
        }
        None => assert_v1_shape(&err),
    }
    match case.after {
        After::Closed(stop) => {
            s.rx.expect_end().await;
            if let Some(code) = stop {
                let stopped = s.send.stopped().await;
                assert_eq!(
                    stopped,
                    Ok(Some(code.into())),
                    "{name}: STOP_SENDING with the code number"
                );
            }
        }
        After::Serves => {
            s.send_json(
                &json!({"type": "cache_get", "tenant_id": T, "namespace": NS,
                "cache": "c", "key": "k", "request_id": 99}),
            )
            .await;
            let r = s.json().await;
            assert_eq!(
                r["type"], "cache_value",
                "{name}: stream must keep serving: {r}"
            );
            assert_eq!(r["request_id"], 99, "{name}");
        }
    }
}

fn json_bytes(text: &[u8]) -> Vec<u8> {
    frame(F_JSON, text)
}

/// Every frame-level failure, each on its own stream of ONE connection, all at once.
fn frame_cases() -> Vec<Case> {
    let publish_json = |extra: Value| {
        let mut m = json!({"type": "publish", "tenant_id": T, "namespace": NS,
            "stream": "s", "payload": b64(b"x")});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        json_frame(&m)
    };
    let mut short_batch = publish_body(T, NS, "s", &[]);
    let n = short_batch.len();
    short_batch[n - 4..].copy_from_slice(&5u32.to_be_bytes()); // 5 items declared, none sent
    let mut trailing = publish_body(T, NS, "s", &[b"x"]);
    trailing.extend_from_slice(b"junk");
    let mut bad_mode = 1u64.to_be_bytes().to_vec();
    bad_mode.push(7); // ack mode 7 does not exist
    bad_mode.extend_from_slice(&publish_body(T, NS, "s", &[b"x"]));
    let mut event_batch = 1u64.to_be_bytes().to_vec();
    event_batch.extend_from_slice(&0u32.to_be_bytes());
    let mut bad_magic = header(0xDEAD_BEEF, 1, 0, 2);
    bad_magic.extend_from_slice(b"{}");
    let mut bad_version = header(MAGIC, 2, 0, 2);
    bad_version.extend_from_slice(b"{}");
    let mut truncated = header(MAGIC, VERSION, F_JSON, 100);
    truncated.extend_from_slice(b"{\"type\":\"");

    use After::*;
    vec![
        // Bad headers: framing is lost, the stream ends.
        case("bad magic", bad_magic.clone(), "protocol", Closed(Some(12))),
        case("unknown version", bad_version, "protocol", Closed(Some(12))),
        case(
            "length above the limit",
            header(MAGIC, VERSION, F_JSON, MAX_FRAME + 1),
            "frame_too_large",
            Closed(Some(8)),
        ),
        case(
            "length u32::MAX",
            header(MAGIC, VERSION, F_PUBLISH, u32::MAX),
            "frame_too_large",
            Closed(Some(8)),
        ),
        Case {
            finish: true,
            ..case(
                "stream ends inside a frame",
                truncated,
                "protocol",
                Closed(None),
            )
        },
        // Whole frames that cannot be decoded: error, then the stream keeps serving.
        case(
            "unknown flags 0x0080",
            frame(0x0080, b"{}"),
            "unsupported",
            Serves,
        ),
        case(
            "flags 0x0008 alone",
            frame(0x0008, b"{}"),
            "unsupported",
            Serves,
        ),
        case("flags 0x0003", frame(0x0003, b"{}"), "unsupported", Serves),
        case("invalid JSON", json_bytes(b"{not json"), "protocol", Serves),
        case(
            "invalid UTF-8",
            json_bytes(&[0xff, 0xfe, 0x7b]),
            "protocol",
            Serves,
        ),
        case("JSON array", json_bytes(b"[1,2]"), "protocol", Serves),
        case(
            "unknown type",
            json_frame(&json!({"type": "frobnicate", "request_id": 5})),
            "unsupported",
            Serves,
        ),
        case(
            "missing fields",
            json_frame(&json!({"type": "publish"})),
            "protocol",
            Serves,
        ),
        case(
            "unknown ack value",
            publish_json(json!({"request_id": 1, "ack": "bogus"})),
            "protocol",
            Serves,
        ),
        case(
            "request_id out of range",
            publish_json(json!({"request_id": -1})),
            "protocol",
            Serves,
        ),
        case(
            "publish batch count past the end",
            frame(F_PUBLISH, &short_batch),
            "protocol",
            Serves,
        ),
        case(
            "publish batch trailing bytes",
            frame(F_PUBLISH, &trailing),
            "protocol",
            Serves,
        ),
        case(
            "acked publish with ack mode 7",
            frame(F_PUBLISH | F_ACKED, &bad_mode),
            "protocol",
            Serves,
        ),
        case(
            "client sends an event batch",
            frame(F_EVENTS, &event_batch),
            "unsupported",
            Serves,
        ),
        case(
            "client sends an event_stream_hello",
            json_frame(&json!({"type": "event_stream_hello", "subscription_id": 1})),
            "unsupported",
            Serves,
        ),
        // Nothing negotiated yet: errors without codes.
        Case {
            auth: None,
            code: None,
            ..case(
                "request before auth",
                publish_json(json!({"request_id": 1})),
                "",
                Closed(None),
            )
        },
        Case {
            auth: None,
            code: None,
            ..case("bad magic before auth", bad_magic, "", Closed(Some(12)))
        },
    ]
}

#[tokio::test]
async fn malformed_frames_fail_only_their_stream_with_the_documented_code() {
    let b = TestBroker::start("malformed-frames").await;
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;
    let errors_before = b.broker.shared().metrics.protocol_errors.get();

    let cases = frame_cases();
    let n = cases.len();
    let runs = cases.into_iter().map(|case| {
        let c = &c;
        async move { within(10, case.name, run_case(c, case)).await }
    });
    // Authentication failures: `invalid_argument` for a bad tenant name, stream finished.
    let long = "t".repeat(65);
    let bad_tenants = [
        ("bad characters", "bad tenant!"),
        ("empty", ""),
        ("too long", &long),
    ];
    let auths = bad_tenants.iter().map(|(what, tenant)| {
        let c = &c;
        async move { run_auth_failure(c, what, codes_auth(tenant), "invalid_argument").await }
    });
    // All at once, each on its own stream of the one connection.
    let all = futures::future::join(
        futures::future::join_all(runs),
        futures::future::join_all(auths),
    );
    within(30, "all malformed cases", all).await;
    assert!(n >= 20);
    let counted = b.broker.shared().metrics.protocol_errors.get() - errors_before;
    assert!(
        counted >= 10,
        "malformed frames are counted in felix_protocol_errors_total (got {counted})"
    );

    // The same connection still does everything.
    still_serves(&c, "after-frames").await;
    // And so does another client.
    other_client_works(&b, "after-frames").await;
}

async fn run_auth_failure(c: &Client, name: &str, auth: Value, code: &str) {
    let (mut s, reply) = within(5, name, c.open_authed(&auth)).await;
    assert_eq!(reply["type"], "error", "{name}: {reply}");
    assert_eq!(reply["code"], code, "{name}: {reply}");
    within(5, name, s.rx.expect_end()).await;
}

/// A fresh stream on `c` publishes (acked), subscribes and uses the cache.
async fn still_serves(c: &Client, stream: &str) {
    let mut sub = within(
        5,
        "subscribe",
        c.subscribe(
            &plain_auth(T),
            &json!({"type": "subscribe", "tenant_id": T, "namespace": NS, "stream": stream}),
        ),
    )
    .await;
    let (mut s, reply) = within(5, "auth", c.open_authed(&codes_auth(T))).await;
    assert_codes_auth_ok(&reply);
    s.send_json(
        &json!({"type": "publish", "tenant_id": T, "namespace": NS, "stream": stream,
        "payload": b64(b"still here"), "request_id": 1}),
    )
    .await;
    assert_eq!(
        within(5, "publish_ok", s.json()).await,
        json!({"type": "publish_ok", "request_id": 1})
    );
    let (got, _) = within(5, "event", sub.payloads(1)).await;
    assert_eq!(got, vec![b"still here".to_vec()]);
    s.send_json(
        &json!({"type": "cache_put", "tenant_id": T, "namespace": NS, "cache": "c",
        "key": stream, "value": b64(b"v"), "request_id": 2}),
    )
    .await;
    assert_eq!(
        within(5, "cache_ok", s.json()).await,
        json!({"type": "cache_ok", "request_id": 2})
    );
    s.send_json(
        &json!({"type": "cache_get", "tenant_id": T, "namespace": NS, "cache": "c",
        "key": stream, "request_id": 3}),
    )
    .await;
    assert_eq!(within(5, "cache_value", s.json()).await["value"], b64(b"v"));
}

async fn other_client_works(b: &TestBroker, stream: &str) {
    let other = within(10, "felix-client connect", b.client()).await;
    let mut sub = within(5, "subscribe", other.subscribe(NS, stream, Start::Latest))
        .await
        .unwrap();
    within(5, "publish", other.publish(NS, stream, "other".into()))
        .await
        .unwrap();
    let ev = within(5, "event", sub.next()).await.unwrap().unwrap();
    assert_eq!(ev.payload.as_ref(), b"other");
    within(
        5,
        "cache_put",
        other.cache_put(NS, "oc", "k", Bytes::from_static(b"v"), None),
    )
    .await
    .unwrap();
    let v = within(5, "cache_get", other.cache_get(NS, "oc", "k"))
        .await
        .unwrap();
    assert_eq!(v.map(|v| v.value).as_deref(), Some(&b"v"[..]));
}

/// Request-level failures (bad names, another tenant) are answered per request, with the
/// request id and the code, in the form of the request; the stream keeps serving.
#[tokio::test]
async fn invalid_names_and_foreign_tenants_fail_only_their_request() {
    let b = TestBroker::start("malformed-requests").await;
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;
    let (mut s, reply) = within(5, "auth", c.open_authed(&codes_auth(T))).await;
    assert_codes_auth_ok(&reply);

    let long_ns = "n".repeat(65);
    let long_stream = "s".repeat(256);
    let bad_publishes: Vec<(&str, &str, &str, &str)> = vec![
        // (what, tenant, namespace, stream) -> code
        ("namespace with a space", T, "bad ns", "s"),
        ("namespace with a dot", T, "a.b", "s"),
        ("empty namespace", T, "", "s"),
        ("namespace too long", T, &long_ns, "s"),
        ("stream with a slash", T, NS, "a/b"),
        ("stream with a doubled dot", T, NS, "a..b"),
        ("stream with a leading dot", T, NS, ".a"),
        ("empty stream", T, NS, ""),
        ("stream too long", T, NS, &long_stream),
        ("stream with a wildcard", T, NS, "orders.*"),
    ];
    let mut rid = 0u64;
    for (what, tenant, ns, stream) in &bad_publishes {
        rid += 1;
        s.send_json(
            &json!({"type": "publish", "tenant_id": tenant, "namespace": ns,
            "stream": stream, "payload": b64(b"x"), "request_id": rid}),
        )
        .await;
        let r = within(5, what, s.json()).await;
        assert_eq!(
            (&r["type"], &r["request_id"], &r["code"], &r["retryable"]),
            (
                &json!("publish_error"),
                &json!(rid),
                &json!("invalid_argument"),
                &json!(false)
            ),
            "{what}: {r}"
        );
    }
    // Binary acked publish with a bad stream: error ack with the code trailer
    // (code 1 = invalid_argument, not retryable).
    s.write(&binary_publish_acked(
        500,
        PER_BATCH,
        T,
        NS,
        "a..b",
        &[b"x"],
    ))
    .await;
    let f = within(5, "error ack", s.frame()).await;
    assert_eq!(f.flags, F_ACK);
    let ack = parse_ack(&f.payload);
    assert_eq!((ack.status, ack.request_id), (1, 500));
    assert_eq!(ack.trailer, vec![0, 1, 0], "code trailer: invalid_argument");

    // Cache with bad names / another tenant: `error` with request id and code.
    let cache_cases = [
        ("bad cache name", T, NS, "c c", "invalid_argument"),
        ("bad namespace", T, "n s", "c", "invalid_argument"),
        ("another tenant", "t2", NS, "c", "forbidden"),
    ];
    for (what, tenant, ns, cache, code) in cache_cases {
        rid += 1;
        s.send_json(
            &json!({"type": "cache_put", "tenant_id": tenant, "namespace": ns,
            "cache": cache, "key": "k", "value": b64(b"v"), "request_id": rid}),
        )
        .await;
        let r = within(5, what, s.json()).await;
        assert_eq!(
            (&r["type"], &r["request_id"], &r["code"]),
            (&json!("error"), &json!(rid), &json!(code)),
            "{what}: {r}"
        );
    }
    // Publishing for another tenant than the stream authenticated as.
    rid += 1;
    s.send_json(
        &json!({"type": "publish", "tenant_id": "t2", "namespace": NS,
        "stream": "s", "payload": b64(b"x"), "request_id": rid}),
    )
    .await;
    let r = within(5, "foreign publish", s.json()).await;
    assert_eq!(
        (&r["type"], &r["code"]),
        (&json!("publish_error"), &json!("forbidden")),
        "{r}"
    );
    // `subscribe` is only valid as the first request of its own stream.
    s.send_json(
        &json!({"type": "subscribe", "tenant_id": T, "namespace": NS,
        "stream": "s"}),
    )
    .await;
    let r = within(5, "late subscribe", s.json()).await;
    assert_eq!(
        (&r["type"], &r["code"]),
        (&json!("error"), &json!("invalid_argument"))
    );

    // Subscriptions: refused with `error` + code, then the stream is finished.
    for (what, tenant, stream, code) in [
        ("bad stream", T, "a..b", "invalid_argument"),
        ("another tenant", "t2", "s", "forbidden"),
        ("wildcard not negotiated", T, "s.*", "unsupported"),
    ] {
        let (mut sub, reply) = within(5, "auth", c.open_authed(&codes_auth(T))).await;
        assert_codes_auth_ok(&reply);
        sub.send_json(
            &json!({"type": "subscribe", "tenant_id": tenant, "namespace": NS,
            "stream": stream}),
        )
        .await;
        let r = within(5, what, sub.json()).await;
        assert_eq!(
            (&r["type"], &r["code"]),
            (&json!("error"), &json!(code)),
            "{what}: {r}"
        );
        within(5, what, sub.rx.expect_end()).await;
    }

    // The request stream survived all of it.
    rid += 1;
    s.send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "ok", "payload": b64(b"x"), "request_id": rid}))
        .await;
    assert_eq!(
        within(5, "publish_ok", s.json()).await,
        json!({"type": "publish_ok", "request_id": rid})
    );
    still_serves(&c, "after-requests").await;
    other_client_works(&b, "after-requests").await;
}

/// A publish with ack `none` is never answered, not even when it fails (wire-protocol 7.3):
/// the next reply on the stream belongs to the next request. A client that treats a reply
/// without request id as fatal (felix-client does) must not lose its stream over it.
#[tokio::test]
async fn failed_unacknowledged_publishes_are_not_answered() {
    let b = TestBroker::start("malformed-noack").await;
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;
    let (mut s, reply) = within(5, "auth", c.open_authed(&codes_auth(T))).await;
    assert_codes_auth_ok(&reply);
    s.send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "bad name", "payload": b64(b"x")}))
        .await;
    s.send_json(
        &json!({"type": "publish", "tenant_id": "t2", "namespace": NS,
        "stream": "s", "payload": b64(b"x"), "request_id": 1, "ack": "none"}),
    )
    .await;
    s.send_json(
        &json!({"type": "publish_batch", "tenant_id": T, "namespace": NS,
        "stream": "..", "payloads": [b64(b"x")]}),
    )
    .await;
    s.write(&binary_publish(T, NS, "no way", &[b"x"])).await;
    s.send_json(
        &json!({"type": "cache_get", "tenant_id": T, "namespace": NS,
        "cache": "c", "key": "k", "request_id": 2}),
    )
    .await;
    let r = within(5, "cache_value", s.json()).await;
    assert_eq!(
        (&r["type"], &r["request_id"]),
        (&json!("cache_value"), &json!(2)),
        "an unacknowledged publish was answered: {r}"
    );

    // The same through felix-client: a failed fire-and-forget publish must not cost the
    // client its connection (it would reconnect: connections_total would move).
    let fc = within(10, "felix-client connect", b.client()).await;
    let metrics = &b.broker.shared().metrics;
    let connections = metrics.connections_total.get();
    for _ in 0..4 {
        // One per request stream of the client.
        within(
            5,
            "publish none",
            fc.publish_batch(NS, "bad name", &[Bytes::from_static(b"x")], AckMode::None),
        )
        .await
        .unwrap();
    }
    for i in 0..8u8 {
        within(
            5,
            "acked publish",
            fc.publish(NS, "good", Bytes::from(vec![i])),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        metrics.connections_total.get(),
        connections,
        "felix-client had to reconnect after a failed unacknowledged publish"
    );
}

/// With a token-checking authenticator: a missing or wrong token is `unauthorized`, the
/// stream is finished, and the connection can still authenticate another stream.
#[tokio::test]
async fn bad_tokens_are_unauthorized_and_the_connection_survives() {
    let cfg = test_config("malformed-auth");
    let ca = cfg.dev_ca_path.clone();
    let auth = StaticTokenAuth::new(StaticTokenAuth::parse_list("t1:s3cret").unwrap()).unwrap();
    let b = TestBroker {
        broker: Broker::start_with_auth(cfg, Box::new(auth))
            .await
            .expect("broker starts"),
        ca,
    };
    let c = within(10, "connect", Client::connect(b.addr(), &b.ca)).await;
    for (what, auth) in [
        (
            "wrong token",
            json!({"type": "auth", "tenant_id": T, "token": "guess", "client_features": 1}),
        ),
        (
            "no token",
            json!({"type": "auth", "tenant_id": T, "client_features": 1}),
        ),
    ] {
        let (mut s, reply) = within(5, what, c.open_authed(&auth)).await;
        assert_eq!(
            (&reply["type"], &reply["code"], &reply["retryable"]),
            (&json!("error"), &json!("unauthorized"), &json!(false)),
            "{what}: {reply}"
        );
        within(5, what, s.rx.expect_end()).await;
    }
    // A plain v1 client with a wrong token: the same, without a code.
    let (mut s, reply) = within(5, "v1 wrong token", c.open_authed(&plain_auth(T))).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_v1_shape(&reply);
    within(5, "v1 wrong token", s.rx.expect_end()).await;

    let good = json!({"type": "auth", "tenant_id": T, "token": "s3cret", "client_features": 1});
    let (mut s, reply) = within(5, "good token", c.open_authed(&good)).await;
    assert_codes_auth_ok(&reply);
    s.send_json(&json!({"type": "publish", "tenant_id": T, "namespace": NS,
        "stream": "s", "payload": b64(b"x"), "request_id": 1}))
        .await;
    assert_eq!(
        within(5, "publish_ok", s.json()).await,
        json!({"type": "publish_ok", "request_id": 1})
    );
}

/// felix-client reports the documented codes for the failures it can provoke.
#[tokio::test]
async fn felix_client_sees_invalid_argument_and_keeps_working() {
    let b = TestBroker::start("malformed-client").await;
    let c = within(10, "connect", b.client()).await;
    let err = within(5, "bad ns", c.publish("bad ns", "s", "x".into()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    let err = within(5, "bad cache", c.cache_get(NS, "bad cache", "k"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    let err = within(5, "bad sub", c.subscribe(NS, "a..b", Start::Latest))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    other_client_works(&b, "client-after").await;
    within(5, "publish", c.publish(NS, "s", "x".into()))
        .await
        .unwrap();
}
