//! Definitions and quotas from a real `felix-controlplane` process to a real `felix-broker`
//! process (JWT mode, polling with the broker read token), used by real `felix-client`
//! connections over QUIC. The Felix token comes from a real token exchange of an OIDC token of
//! `tests/oidc/crafted-issuer.mjs` (its good RS256 token; the principal gets a role without
//! `admin`, so every stream it creates by using it must come from a definition).
//!
//! Asserted: `GET /v1/broker/definitions` (snapshot, `304` for an unchanged `since`, read
//! token required); a quota changed at the control plane applies at the broker within a few
//! feed periods (both directions); a stream definition's retention applies to a stream created
//! by first use; an undefined stream is `not_found` for a non-admin; the control plane killed →
//! the broker keeps serving with its last good copy (definitions and quotas) and `/ready` says
//! `stale`.

mod common;

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use felix_client::{Client, ClientConfig, ErrorCode, Start, Tls};
use serde_json::{json, Value};

const ADMIN: &str = "defs-admin-token-0123456789";
const READER: &str = "defs-broker-read-token-0123456789";
const FEED_MS: u64 = 200;

fn broker_bin() -> PathBuf {
    felix_test_support::workspace_bin("felix-broker", "felix-broker", "FELIX_BROKER_BIN")
}

fn free_port(udp: bool) -> u16 {
    if udp {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

struct Broker {
    child: Child,
    addr: String,
    http: String,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    fn start(cp: &Cp, issuer: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("cp-read-token");
        std::fs::write(&token_file, format!("{READER}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let addr = format!("127.0.0.1:{}", free_port(true));
        let http = format!("127.0.0.1:{}", free_port(false));
        let ca = dir.path().join("ca.pem");
        let child = Command::new(broker_bin())
            .args(["--listen", &addr, "--metrics-listen", &http])
            .arg("--dev-ca-path")
            .arg(&ca)
            .args(["--controlplane-url", &format!("http://{}", cp.addr)])
            .arg("--controlplane-token-file")
            .arg(&token_file)
            .args(["--auth-issuer", issuer, "--region", "local"])
            .args(["--auth-feed-interval-ms", &FEED_MS.to_string()])
            .env("FELIX_LOG", "warn")
            .env_remove("FELIX_AUTH_TOKENS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("felix-broker");
        let mut b = Broker {
            child,
            addr,
            http,
            ca,
            _dir: dir,
        };
        // Ready once both feeds brought a good copy.
        b.wait_ready("keys and definitions", |v| {
            v["auth"]["feed"] == "ok" && v["definitions"]["state"] == "ok"
        });
        b
    }

    fn ready(&self) -> Option<Value> {
        let (status, body) = common::http_get(&self.http, "/ready")?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    fn wait_ready(&mut self, what: &str, f: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("felix-broker exited: {status}");
            }
            if self.ready().is_some_and(|v| f(&v)) {
                return;
            }
            assert!(Instant::now() < deadline, "broker: {what} not within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn config(&self, token: &str) -> ClientConfig {
        ClientConfig {
            addresses: vec![self.addr.clone()],
            tls: Tls::CaFile(self.ca.clone()),
            tenant: "acme".into(),
            token: Some(token.into()),
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        }
    }
}

async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {secs} s"))
}

async fn subscribe_code(c: &Client, stream: &str) -> Result<felix_client::Subscription, ErrorCode> {
    within(10, "subscribe", c.subscribe("ns", stream, Start::Latest))
        .await
        .map_err(|e| e.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_and_quotas_flow_from_the_control_plane_and_survive_its_loss() {
    let issuer = CraftedIssuer::start("felix-test");
    let cp = Cp::start_with(CpOptions {
        args: Vec::new(),
        env: vec![
            ("FELIX_CP_ADMIN_TOKEN", ADMIN.to_string()),
            ("FELIX_CP_BROKER_TOKEN", READER.to_string()),
        ],
        tls_ca: None,
        admin: Some(ADMIN.to_string()),
    });
    cp.put_ok("/v1/tenants/acme", json!({}));
    cp.put_ok("/v1/tenants/acme/namespaces/ns", json!({}));
    cp.put_ok(
        "/v1/tenants/acme/roles/writer",
        json!({"grants": [{"actions": ["publish", "subscribe", "consume"], "resources": ["ns/>"]}]}),
    );
    cp.put_ok(
        "/v1/tenants/acme/issuers/crafted",
        json!({"issuer": issuer.url, "audiences": ["felix-test"],
               "rules": [{"claim": "sub", "equals": "alice", "roles": ["writer"]}]}),
    );
    cp.put_ok("/v1/tenants/acme/quotas", json!({"max_subscriptions": 1}));
    cp.put_ok(
        "/v1/tenants/acme/namespaces/ns/streams/orders",
        json!({"max_records": 3}),
    );
    cp.put_ok("/v1/tenants/acme/namespaces/ns/streams/ticks", json!({}));
    cp.put_ok("/v1/tenants/acme/namespaces/ns/streams/later", json!({}));

    // The endpoint itself: one snapshot, 304 when unchanged, the read token required.
    let (status, snap) = cp.get("/v1/broker/definitions");
    assert_eq!(status, 200, "{snap}");
    let rev = snap["revision"].as_u64().unwrap();
    assert_eq!(
        snap["tenants"]["acme"]["quotas"]["max_subscriptions"], 1,
        "{snap}"
    );
    assert_eq!(
        snap["tenants"]["acme"]["streams"]["ns/orders"]["max_records"], 3,
        "{snap}"
    );
    assert!(snap.to_string().len() < 4096 && !snap.to_string().contains("private"));
    let (status, _, _) = cp.req(
        "GET",
        &format!("/v1/broker/definitions?since={rev}"),
        None,
        b"",
        &[("Authorization", &format!("Bearer {READER}"))],
    );
    assert_eq!(status, 304, "unchanged since {rev}");
    let (status, _, _) = cp.req("GET", "/v1/broker/definitions", None, b"", &[]);
    assert_eq!(status, 401, "no token, no definitions");

    let (status, v) = cp.exchange_id_token(issuer.token("good_rs256"), Some("acme"));
    assert_eq!(status, 200, "{v}");
    let token = v["access_token"].as_str().unwrap().to_string();
    let iss = verify(&cp, &token).unwrap().iss;
    let broker = Broker::start(&cp, &iss);
    let c = within(20, "connect", Client::connect(broker.config(&token)))
        .await
        .expect("the exchanged token opens acme");

    // Quota from the control plane: one subscription.
    let _s1 = subscribe_code(&c, "ticks")
        .await
        .expect("first subscription");
    assert_eq!(
        subscribe_code(&c, "ticks").await.err(),
        Some(ErrorCode::QuotaExceeded),
        "max_subscriptions = 1 from the control plane"
    );
    // Raised at the control plane: in force within a few feed periods.
    cp.put_ok("/v1/tenants/acme/quotas", json!({"max_subscriptions": 3}));
    let t = Instant::now();
    let _s2 = loop {
        match subscribe_code(&c, "ticks").await {
            Ok(s) => break s,
            Err(code) => assert_eq!(code, ErrorCode::QuotaExceeded),
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the raised quota did not reach the broker within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = t.elapsed();
    eprintln!("quota change reached the broker in {took:?} (feed period {FEED_MS} ms)");

    // A defined stream, created by its first (non-admin) publisher with the definition's
    // retention: 5 published, the 3 newest kept.
    for i in 0..5 {
        within(
            10,
            "publish",
            c.publish("ns", "orders", format!("m{i}").into()),
        )
        .await
        .expect("defined stream");
    }
    let mut sub = within(
        10,
        "subscribe",
        c.subscribe("ns", "orders", Start::Earliest),
    )
    .await
    .expect("subscription 3 of 3");
    let first = within(10, "event", sub.next()).await.unwrap().unwrap();
    assert_eq!(
        &first.payload[..],
        b"m2",
        "max_records = 3 from the definition"
    );
    let e = within(10, "publish", c.publish("ns", "undefined", "x".into()))
        .await
        .expect_err("an undefined stream needs admin to be created");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");

    // The control plane dies: the broker keeps its last good copy and says so.
    cp.kill_9();
    let mut broker = broker;
    broker.wait_ready("stale definitions", |v| {
        v["definitions"]["state"] == "stale" && v["auth"]["feed"] == "stale"
    });
    let v = broker.ready().expect("still ready (200)");
    assert_eq!(v["status"], "ready", "{v}");
    assert!(v["definitions"]["loaded"].as_bool().unwrap(), "{v}");
    assert!(v["definitions"]["last_error"].is_string(), "{v}");
    let (_, metrics) = common::http_get(&broker.http, "/metrics").unwrap();
    assert!(
        metrics.contains("felix_definitions_feed_age_seconds "),
        "{metrics}"
    );
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("felix_definitions_feed_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 1, "{metrics}");
    within(10, "publish", c.publish("ns", "later", "x".into()))
        .await
        .expect("a definition from the last good copy still creates its stream");
    assert_eq!(
        subscribe_code(&c, "ticks").await.err(),
        Some(ErrorCode::QuotaExceeded),
        "the last good quotas stay in force (3 held, max 3)"
    );
    let e = within(10, "publish", c.publish("ns", "undefined2", "x".into()))
        .await
        .expect_err("still undefined");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
}
