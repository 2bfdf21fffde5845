//! JWT mode against a real broker over real QUIC: every bad token is refused with
//! `unauthorized` while another client on the same broker keeps being served; a token that
//! expires unrefreshed ends its subscriptions and request streams with `unauthorized`; a
//! `reauth` keeps them going. Tokens are signed in the test with `felix_auth::SigningKey`
//! (standing in for the control plane's key; the OIDC exchange is the control plane's).

mod common;
#[path = "common/tokens.rs"]
mod tokens;
mod v1;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use common::*;
use felix_auth::SigningKey;
use felix_client::ErrorCode;
use serde_json::{json, Value};
use tokens::*;

/// error_codes | wildcard | event_offsets | token_refresh.
const FEATURES: u64 = 1 | 16 | 64 | 512;

fn auth(tenant: &str, token: &str, features: u64) -> Value {
    json!({"type": "auth", "tenant_id": tenant, "token": token, "client_features": features})
}

fn publish(tenant: &str, ns: &str, stream: &str, rid: u64, payload: &[u8]) -> Value {
    json!({"type": "publish", "tenant_id": tenant, "namespace": ns, "stream": stream,
           "payload": v1::b64(payload), "request_id": rid})
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The next frame of an event stream: `Ok(())` for an event batch, `Err(json)` for a JSON
/// frame (`subscription_end`, `error`).
async fn next_event(r: &mut v1::Reader) -> Result<(), Value> {
    let f = r.frame().await;
    if f.flags == v1::F_JSON {
        Err(f.json())
    } else {
        Ok(())
    }
}

fn b64json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn every_bad_token_is_refused_unauthorized_while_a_good_client_keeps_being_served() {
    let key = SigningKey::generate("k1");
    let b = jwt_broker("jwt-bad", jwks(&[&key]), 0).await;
    let good_token = key.sign(&claims("acme", "alice", all(), 300)).unwrap();
    let good = within(10, "good client", async {
        felix_client::Client::connect(client_for(&b, "acme", &good_token))
            .await
            .expect("a good token connects")
    })
    .await;

    let c = claims("acme", "mallory", all(), 300);
    let body = b64json(&serde_json::to_value(&c).unwrap());
    let hs_input = format!("{}.{body}", b64json(&json!({"alg": "HS256", "kid": "k1"})));
    let pk = B64.decode(key.public_jwk().x).unwrap();
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &pk),
        hs_input.as_bytes(),
    );
    let signed = key.sign(&c).unwrap();
    let parts: Vec<&str> = signed.split('.').collect();
    let mut tampered = c.clone();
    tampered.sub = "alice".into();
    let with = |f: &dyn Fn(&mut felix_auth::Claims)| {
        let mut c = claims("acme", "mallory", all(), 300);
        f(&mut c);
        key.sign(&c).unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!("{}.{body}.", b64json(&json!({"alg": "none", "kid": "k1"}))),
        ),
        (
            "HS256 signed with the public key",
            format!("{hs_input}.{}", B64.encode(mac.as_ref())),
        ),
        (
            "unknown kid",
            SigningKey::generate("k-other").sign(&c).unwrap(),
        ),
        (
            "expired",
            with(&|c| {
                c.iat -= 600;
                c.nbf -= 600;
                c.exp = now_s() - 10;
            }),
        ),
        ("not yet valid", with(&|c| c.nbf = now_s() + 3_600)),
        ("wrong aud", with(&|c| c.aud = "other".into())),
        ("wrong iss", with(&|c| c.iss = "https://evil.test".into())),
        ("wrong tenant", with(&|c| c.tenant = "globex".into())),
        ("wrong region", with(&|c| c.region = "us-1".into())),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                b64json(&serde_json::to_value(&tampered).unwrap()),
                parts[2]
            ),
        ),
        ("truncated", signed[..signed.len() - 10].to_owned()),
        (
            "signature cut off",
            signed.rsplit_once('.').unwrap().0.to_owned(),
        ),
        ("garbage base64", "!!!.???.***".to_owned()),
        ("empty", String::new()),
        (
            "bad perms grammar",
            with(&|c| c.perms = vec![grant(&["publish"], &["no-slash"])]),
        ),
    ];
    for (i, (what, token)) in cases.iter().enumerate() {
        let r = within(10, what, async {
            felix_client::Client::connect(client_for(&b, "acme", token)).await
        })
        .await;
        let Err(e) = r else {
            panic!("{what}: a bad token was accepted");
        };
        assert_eq!(e.code(), ErrorCode::Unauthorized, "{what}: {e}");
        // The other client is served throughout.
        within(
            5,
            "good client publishes",
            good.publish("ns", "s", format!("m{i}").into()),
        )
        .await
        .unwrap_or_else(|e| panic!("good client after {what}: {e}"));
    }
    // Oversized tokens. felix-client refuses to send one over 16 KiB (unauthorized, like
    // every bad token). On the wire: a 32 KiB token (over the verifier's 16 KiB bound, within
    // the auth frame's 64 KiB) gets unauthorized; a 1 MB token never reaches the verifier:
    // before authentication a frame may carry limits.max_auth_frame_bytes (64 KiB), so the
    // broker refuses the frame itself with frame_too_large (wire-protocol 7.2 and 7.8,
    // security.md 4.3) without reading it. The bound keeps an anonymous peer from making the
    // broker buffer a megabyte per stream, so that answer is kept, by decision. All of it
    // while the good client keeps publishing.
    let huge = "A".repeat(1024 * 1024);
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let (_, r) = within(
        5,
        "32 KiB token",
        raw.open_authed(&auth(
            "acme",
            &format!("{signed}{}", "A".repeat(32 * 1024)),
            FEATURES,
        )),
    )
    .await;
    assert_eq!(r["code"], "unauthorized", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("token longer than 16384 bytes"),
        "{r}"
    );
    let refused_raw = async {
        let (mut s, reply) = raw.open_authed(&auth("acme", &huge, FEATURES)).await;
        s.rx.expect_end().await;
        reply
    };
    let refused_client = felix_client::Client::connect(client_for(&b, "acme", &huge));
    let served = async {
        for i in 0..20 {
            good.publish("ns", "s", format!("during-{i}").into())
                .await
                .unwrap_or_else(|e| panic!("good client during the 1 MB token: {e}"));
        }
    };
    let (reply, client, ()) = within(20, "1 MB token", async {
        tokio::join!(refused_raw, refused_client, served)
    })
    .await;
    // (No code field: the frame that would have negotiated error codes was never read; a
    // v1 client must not see extension fields.)
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit of 65536"),
        "{reply}"
    );
    let e = client.map(|_| ()).expect_err("a 1 MB token is refused");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(e.to_string().contains("larger than 16 KiB"), "{e}");
    within(
        5,
        "good client cache",
        good.cache_put("ns", "c", "k", "v".into(), None),
    )
    .await
    .unwrap();
    assert!(b.broker.shared().metrics.auth_failures.get() >= cases.len() as u64);
}

#[tokio::test]
async fn expiry_ends_subscriptions_and_request_streams_with_unauthorized() {
    let key = SigningKey::generate("k1");
    let b = jwt_broker("jwt-expiry", jwks(&[&key]), 0).await;
    let short = claims("acme", "alice", all(), 2);
    let exp = short.exp;
    let token = key.sign(&short).unwrap();
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let a = auth("acme", &token, FEATURES);
    let mut sub = within(
        10,
        "subscribe",
        c.subscribe(
            &a,
            &json!({"type": "subscribe", "tenant_id": "acme", "namespace": "ns", "stream": "s"}),
        ),
    )
    .await;
    let (mut req, reply) = within(5, "request stream", c.open_authed(&a)).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    req.send_json(&publish("acme", "ns", "s", 1, b"before"))
        .await;
    assert_eq!(
        within(5, "publish_ok", req.json()).await["type"],
        "publish_ok"
    );
    within(5, "event before expiry", next_event(&mut sub.events))
        .await
        .expect("an event, not the end");

    // Another principal with a long token, on another connection, is unaffected.
    let other = key.sign(&claims("acme", "bob", all(), 300)).unwrap();
    let bob = within(10, "bob connects", async {
        felix_client::Client::connect(client_for(&b, "acme", &other))
            .await
            .unwrap()
    })
    .await;

    let end = within(10, "the subscription ends at expiry", async {
        loop {
            if let Err(v) = next_event(&mut sub.events).await {
                return v;
            }
        }
    })
    .await;
    assert!(
        now_ms() + 50 >= u128::from(exp) * 1000,
        "ended before the token expired (exp {exp}, now {} ms)",
        now_ms()
    );
    assert_eq!(end["type"], "subscription_end", "{end}");
    assert_eq!(end["code"], "unauthorized", "{end}");
    assert!(
        end["message"].as_str().unwrap().contains("expired"),
        "{end}"
    );
    within(5, "event stream finishes", sub.events.expect_end()).await;

    req.send_json(&publish("acme", "ns", "s", 2, b"after"))
        .await;
    let r = within(5, "publish after expiry", req.json()).await;
    assert_eq!(r["type"], "publish_error", "{r}");
    assert_eq!(r["code"], "unauthorized", "{r}");
    assert!(r["message"].as_str().unwrap().contains("expired"), "{r}");

    within(5, "bob publishes", bob.publish("ns", "s", "x".into()))
        .await
        .unwrap();
    let (_, metrics) = http_get(b.broker.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("felix_auth_principals_expired_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn reauth_keeps_a_subscription_flowing_past_the_old_tokens_expiry() {
    let key = SigningKey::generate("k1");
    let b = jwt_broker("jwt-refresh", jwks(&[&key]), 0).await;
    let first = claims("acme", "alice", all(), 2);
    let exp = first.exp;
    let token = key.sign(&first).unwrap();
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let a = auth("acme", &token, FEATURES);
    let mut sub = within(
        10,
        "subscribe",
        c.subscribe(
            &a,
            &json!({"type": "subscribe", "tenant_id": "acme", "namespace": "ns", "stream": "s"}),
        ),
    )
    .await;
    let (mut req, _) = within(5, "request stream", c.open_authed(&a)).await;

    // Refused refreshes leave the current token in force.
    let bob = key.sign(&claims("acme", "bob", all(), 300)).unwrap();
    let globex = key.sign(&claims("globex", "alice", all(), 300)).unwrap();
    let expired = key
        .sign(&{
            let mut c = claims("acme", "alice", all(), 300);
            c.exp = now_s() - 5;
            c
        })
        .unwrap();
    for (i, (what, t)) in [
        ("another subject", bob.as_str()),
        ("another tenant", globex.as_str()),
        ("expired", expired.as_str()),
        ("garbage", "x.y.z"),
    ]
    .into_iter()
    .enumerate()
    {
        let rid = 100 + i as u64;
        req.send_json(&json!({"type": "reauth", "request_id": rid, "token": t}))
            .await;
        let r = within(5, what, req.json()).await;
        assert_eq!(
            (&r["type"], &r["code"], &r["request_id"]),
            (&json!("error"), &json!("unauthorized"), &json!(rid)),
            "{what}: {r}"
        );
    }
    req.send_json(&publish("acme", "ns", "s", 1, b"still"))
        .await;
    assert_eq!(within(5, "publish", req.json()).await["type"], "publish_ok");
    within(5, "event", next_event(&mut sub.events))
        .await
        .unwrap();

    // A stream that did not negotiate token_refresh cannot reauth.
    let (mut plain, _) = within(5, "plain stream", c.open_authed(&auth("acme", &token, 1))).await;
    plain
        .send_json(&json!({"type": "reauth", "request_id": 7, "token": token}))
        .await;
    let r = within(5, "reauth without the feature", plain.json()).await;
    assert_eq!(r["code"], "unsupported", "{r}");

    let fresh = key.sign(&claims("acme", "alice", all(), 300)).unwrap();
    req.send_json(&json!({"type": "reauth", "request_id": 2, "token": fresh}))
        .await;
    let r = within(5, "reauth", req.json()).await;
    assert_eq!(r, json!({"type": "ok", "request_id": 2}));

    // Past the first token's expiry (a wait for the clock, not for the broker), the
    // subscription and the request stream carry on under the new token.
    let past = Duration::from_millis((u128::from(exp + 1) * 1000).saturating_sub(now_ms()) as u64);
    tokio::time::sleep(past).await;
    req.send_json(&publish("acme", "ns", "s", 3, b"after"))
        .await;
    let r = within(5, "publish after the old expiry", req.json()).await;
    assert_eq!(r["type"], "publish_ok", "{r}");
    within(5, "event after the old expiry", next_event(&mut sub.events))
        .await
        .unwrap_or_else(|v| panic!("the subscription ended: {v}"));
}

#[tokio::test]
async fn refused_reauths_count_towards_the_connections_auth_failure_limit() {
    let key = SigningKey::generate("k1");
    let b = jwt_broker("jwt-reauth-limit", jwks(&[&key]), 0).await;
    let token = key.sign(&claims("acme", "alice", all(), 300)).unwrap();
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let (mut req, _) = within(5, "stream", c.open_authed(&auth("acme", &token, FEATURES))).await;
    let limit = b
        .broker
        .shared()
        .cfg
        .limits
        .max_auth_failures_per_connection;
    for rid in 1..=u64::from(limit) {
        req.send_json(&json!({"type": "reauth", "request_id": rid, "token": "guess"}))
            .await;
        let r = within(5, "refusal", req.json()).await;
        assert_eq!(r["code"], "unauthorized", "{r}");
    }
    let closed = within(5, "connection closed", c.conn.closed()).await;
    assert!(
        closed.to_string().contains("too many failed auth attempts"),
        "{closed}"
    );
    assert_eq!(b.broker.shared().metrics.auth_connections_closed.get(), 1);
}

/// The real binary in production mode: JWT mode is an auth configuration (with a keys file it
/// starts and serves signed tokens), and a plain-http control plane off this host is refused.
#[tokio::test]
async fn production_accepts_jwt_mode_and_refuses_plain_http_to_a_remote_control_plane() {
    use std::process::{Command, Stdio};
    let dir = scratch("jwt-prod");
    let tls = felix_transport::ServerTls::generate_dev(&dir.join("ca.pem")).unwrap();
    drop(tls);
    let key = SigningKey::generate("k1");
    let keys = dir.join("jwks.json");
    std::fs::write(&keys, serde_json::to_vec(&jwks(&[&key])).unwrap()).unwrap();
    let base = |addr: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_felix-broker"));
        cmd.args(["--production", "--listen", addr, "--no-metrics"])
            .arg("--tls-cert")
            .arg(dir.join("dev-server.pem"))
            .arg("--tls-key")
            .arg(dir.join("dev-server.key"))
            .args(["--auth-issuer", ISSUER, "--region", REGION])
            .env("FELIX_LOG", "warn")
            .env_remove("FELIX_AUTH_TOKENS")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    };
    let out = base("127.0.0.1:0")
        .args(["--controlplane-url", "http://cp.example:8080"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("plain http"), "{stderr}");

    let addr = free_udp_port();
    let mut child = base(&addr.to_string())
        .arg("--jwt-keys-file")
        .arg(&keys)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let token = key.sign(&claims("acme", "svc", all(), 300)).unwrap();
    let cfg = felix_client::ClientConfig {
        addresses: vec![addr.to_string()],
        tls: felix_client::Tls::CaFile(dir.join("ca.pem")),
        tenant: "acme".into(),
        token: Some(token),
        request_timeout: Duration::from_secs(5),
        ..felix_client::ClientConfig::default()
    };
    let c = within(
        30,
        "production broker in JWT mode serves",
        connect_retrying(cfg),
    )
    .await;
    // Production creates nothing on first use: the stream must be created (admin), then used.
    within(
        5,
        "create",
        c.create_stream("ns", "s", felix_client::StreamSettings::default()),
    )
    .await
    .unwrap();
    within(5, "publish", c.publish("ns", "s", "x".into()))
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

/// Captures the broker's log lines (text format, as `felix-broker` writes them by default).
#[derive(Clone, Default)]
struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every `reauth` is one audit line (principal, the presented token's `kid`, outcome; never
/// the token); past `limits.max_reauths_per_minute` a `reauth` gets `overloaded` and the
/// connection keeps serving. A `kid` crafted to forge a line (`"\n{\"forged\":1}"`) or to
/// flood one (10 000 characters) reaches neither the audit log nor the broker's log raw:
/// escaped, and capped. On the old code reauths were neither audited nor bounded.
#[tokio::test]
async fn reauths_are_audited_and_bounded_and_no_kid_forges_a_log_line() {
    let logs = LogSink::default();
    let writer = logs.clone();
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let key = SigningKey::generate("k1");
    let mut cfg = test_config("jwt-reauth-audit");
    let path = scratch("jwt-reauth-audit-log").join("audit.log");
    cfg.audit.output = Some(path.display().to_string());
    cfg.limits.max_reauths_per_minute = 3;
    let ca = cfg.dev_ca_path.clone();
    let auth_impl = felix_broker::auth::JwtAuth::with_keys(verifier_config(0), jwks(&[&key]));
    let b = TestBroker {
        broker: felix_broker::Broker::start_with_auth(cfg, Box::new(auth_impl))
            .await
            .unwrap(),
        ca,
    };
    let token = key.sign(&claims("acme", "alice", all(), 300)).unwrap();
    let fresh = key.sign(&claims("acme", "alice", all(), 300)).unwrap();
    let forged_kid = "\n{\"forged\":1}";
    let with_kid = |kid: &str| {
        format!(
            "{}.{}.AAAA",
            b64json(&json!({"alg": "EdDSA", "typ": "JWT", "kid": kid})),
            b64json(&json!({"sub": "mallory"}))
        )
    };
    let forged = with_kid(forged_kid);
    let long = with_kid(&"K".repeat(10_000));
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let (mut req, _) = within(5, "stream", c.open_authed(&auth("acme", &token, FEATURES))).await;
    let mut reauth = async |rid: u64, t: &str| {
        req.send_json(&json!({"type": "reauth", "request_id": rid, "token": t}))
            .await;
        within(5, "reauth reply", req.json()).await
    };
    assert_eq!(reauth(1, &fresh).await["type"], "ok");
    assert_eq!(reauth(2, &forged).await["code"], "unauthorized");
    assert_eq!(reauth(3, &long).await["code"], "unauthorized");
    let r = reauth(4, &fresh).await;
    assert_eq!(r["code"], "overloaded", "the 4th in a minute: {r}");
    assert_eq!(r["retryable"], true, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_reauths_per_minute"),
        "{r}"
    );
    // The connection and the token in force are kept.
    req.send_json(&publish("acme", "ns", "s", 5, b"x")).await;
    assert_eq!(within(5, "publish", req.json()).await["type"], "publish_ok");
    assert_eq!(b.broker.shared().metrics.reauths_limited.get(), 1);

    // The same kids in `auth`s, on fresh connections until the (rate-limited, process-wide)
    // "auth refused" log line shows them.
    eventually(
        10,
        "an auth refusal quoting the forged kid is logged",
        || async {
            let raw = v1::Client::connect(b.addr(), &b.ca).await;
            let (_, r) = raw.open_authed(&auth("acme", &forged, FEATURES)).await;
            assert_eq!(r["code"], "unauthorized", "{r}");
            let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
            text.contains("forged")
        },
    )
    .await;
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    for line in text.lines() {
        assert!(
            !line.starts_with("{\"forged\""),
            "a forged log line: {line}"
        );
    }

    eventually(10, "the reauth lines are written", || async {
        std::fs::read_to_string(&path).is_ok_and(|t| t.matches("\"event\":\"reauth\"").count() >= 4)
    })
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&token) && !text.contains(&fresh) && !text.contains(&forged));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for l in &lines {
        assert!(l.get("forged").is_none(), "a forged audit line: {l}");
        for v in l.as_object().unwrap().values() {
            if let Some(s) = v.as_str() {
                assert!(!s.contains('\n'), "a raw newline: {l}");
                assert!(s.chars().count() <= 300, "an uncapped field: {l}");
            }
        }
    }
    let reauths: Vec<&Value> = lines.iter().filter(|l| l["event"] == "reauth").collect();
    let outcome = |l: &Value| (l["outcome"].clone(), l["code"].clone());
    assert_eq!(
        reauths.iter().map(|l| outcome(l)).collect::<Vec<_>>(),
        vec![
            (json!("ok"), Value::Null),
            (json!("denied"), json!("unauthorized")),
            (json!("denied"), json!("unauthorized")),
            (json!("denied"), json!("overloaded")),
        ]
    );
    for l in &reauths {
        assert_eq!(
            (&l["tenant"], &l["sub"]),
            (&json!("acme"), &json!("alice")),
            "{l}"
        );
    }
    assert_eq!(reauths[0]["kid"], "k1");
    assert_eq!(reauths[1]["kid"], "\\n{\"forged\":1}", "escaped, not raw");
    let capped = reauths[2]["kid"].as_str().unwrap();
    assert!(
        capped.starts_with("KKKK") && capped.contains("bytes)"),
        "{capped}"
    );
}
