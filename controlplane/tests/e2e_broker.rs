//! The whole identity path with real parts only: a real OIDC issuer (`oidc-provider`) issues
//! ID tokens through its authorization-code flow; a real `felix-controlplane` process exchanges
//! them for Felix JWTs; a real `felix-broker` process in JWT mode polls the control plane for
//! its keys and revocations (with the broker read token); real `felix-client` connections over
//! QUIC use the Felix tokens. Nothing is signed by the test.

mod common;

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use felix_client::{
    Client, ClientConfig, ErrorCode, Start, SubjectToken, Tls, TokenExchange, TokenSource,
};
use serde_json::json;

const ADMIN: &str = "e2e-admin-token-0123456789";
const READER: &str = "e2e-broker-read-token-0123456789";

/// The broker binary of this checkout: built now, so a stale one is never tested.
fn broker_bin() -> PathBuf {
    felix_test_support::workspace_bin("felix-broker", "felix-broker", "FELIX_BROKER_BIN")
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    fn start(cp: &Cp, issuer: &str, extra: &[&str]) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("cp-read-token");
        std::fs::write(&token_file, format!("{READER}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let addr = format!("127.0.0.1:{}", free_udp());
        let http = format!("127.0.0.1:{}", free_tcp());
        let ca = dir.path().join("ca.pem");
        let mut child = Command::new(broker_bin())
            .args(["--listen", &addr, "--metrics-listen", &http])
            .arg("--dev-ca-path")
            .arg(&ca)
            .args(["--controlplane-url", &format!("http://{}", cp.addr)])
            .arg("--controlplane-token-file")
            .arg(&token_file)
            .args(["--auth-issuer", issuer, "--region", "local"])
            .args(["--auth-feed-interval-ms", "200"])
            .args(extra)
            .env("FELIX_LOG", "warn")
            .env_remove("FELIX_AUTH_TOKENS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("felix-broker");
        // Ready once the feed brought the control plane's keys (503 before).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("felix-broker exited: {status}");
            }
            if let Some((200, body)) = common::http_get(&http, "/ready") {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                if v["auth"]["feed"] == "ok" {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "broker not ready with keys in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            child,
            addr,
            http,
            ca,
            _dir: dir,
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

fn exchange(cp: &Cp, id_token: &str) -> String {
    let (status, v) = cp.exchange_id_token(id_token, None);
    assert_eq!(status, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {secs} s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_login_to_broker_request_with_rbac_and_revocation() {
    let issuer = Issuer::start(accounts());
    let cp = Cp::start_with(CpOptions {
        args: Vec::new(),
        env: vec![
            ("FELIX_CP_ADMIN_TOKEN", ADMIN.to_string()),
            ("FELIX_CP_BROKER_TOKEN", READER.to_string()),
        ],
        tls_ca: None,
        admin: Some(ADMIN.to_string()),
    });
    setup_tenant(&cp, "acme", &issuer.url);

    // alice: groups payments-admins → role admin → everything in acme.
    // bob: sub bob → role reader → subscribe ns/orders.> only.
    // carol: no rule matches → no token at all.
    let alice_token = exchange(&cp, &issuer.id_token("alice", "felix-test"));
    let bob_token = exchange(&cp, &issuer.id_token("bob", "felix-test"));
    let (status, v) = cp.exchange_id_token(&issuer.id_token("carol", "felix-test"), None);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );
    let iss = verify(&cp, &alice_token).unwrap().iss;
    let bob_sub = verify(&cp, &bob_token).unwrap().sub;

    let broker = Broker::start(&cp, &iss, &[]);
    let alice = within(
        20,
        "alice connects",
        Client::connect(broker.config(&alice_token)),
    )
    .await
    .expect("alice's Felix token opens acme");
    let bob = within(
        20,
        "bob connects",
        Client::connect(broker.config(&bob_token)),
    )
    .await
    .expect("bob's Felix token opens acme");

    // RBAC from the issuer's claims: bob may subscribe to ns/orders.> and nothing else.
    let mut orders = within(
        10,
        "bob subscribes",
        bob.subscribe("ns", "orders.>", Start::Latest),
    )
    .await
    .expect("subscribe to a granted pattern");
    within(
        10,
        "alice publishes",
        alice.publish("ns", "orders.eu", "o1".into()),
    )
    .await
    .expect("admin publishes");
    within(
        10,
        "alice publishes",
        alice.publish("ns", "payments", "p1".into()),
    )
    .await
    .expect("admin publishes");
    let e = within(
        10,
        "bob publishes",
        bob.publish("ns", "orders.eu", "x".into()),
    )
    .await
    .expect_err("reader cannot publish");
    assert_eq!(e.code(), ErrorCode::Forbidden, "{e}");
    let e = within(
        10,
        "bob reads a cache",
        bob.cache_get("ns", "sessions", "k"),
    )
    .await
    .map(|_| ())
    .expect_err("reader cannot read caches");
    assert_eq!(e.code(), ErrorCode::Forbidden, "{e}");
    let ev = within(10, "bob's event", orders.next())
        .await
        .expect("subscription open")
        .expect("event");
    assert_eq!((&*ev.stream, &ev.payload[..]), ("orders.eu", &b"o1"[..]));

    // A token for another tenant's name is refused like a bad one.
    let mut other = broker.config(&alice_token);
    other.tenant = "globex".into();
    let e = within(20, "cross-tenant connect", Client::connect(other))
        .await
        .map(|_| ())
        .expect_err("acme's token never opens globex");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");

    // Revocation at the control plane ends bob's live subscription through the feed.
    let revoked_at = Instant::now();
    let (status, v) = cp.send(
        "POST",
        "/v1/revocations",
        json!({"tenant": "acme", "sub": bob_sub}),
    );
    assert!(status == 200 || status == 201, "{status} {v}");
    let end = within(15, "bob's subscription ends", async {
        loop {
            match orders.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await;
    let e = end.expect("the subscription ends with an error, not silently");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    eprintln!(
        "revocation at the control plane reached bob's subscription in {:?}",
        revoked_at.elapsed()
    );
    within(
        10,
        "alice still publishes",
        alice.publish("ns", "orders.eu", "o2".into()),
    )
    .await
    .expect("other principals unaffected");

    let (_, ready) = common::http_get(&broker.http, "/ready").unwrap();
    assert!(ready.contains("\"feed\":\"ok\""), "{ready}");
}

/// Tokens that live 3 seconds, refreshed by the client core itself: it exchanges the ID token
/// at the control plane before each Felix token expires and moves the live connection to the
/// new one with `reauth`, so a subscription opened under the first token keeps flowing through
/// several token lifetimes (without the refresh the broker would end it at the first expiry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_refreshed_in_place_and_a_subscription_outlives_them() {
    let issuer = Issuer::start(accounts());
    let cp = Cp::start(&["--token-lifetime-s", "3", "--broker-leeway-s", "0"]);
    setup_tenant(&cp, "acme", &issuer.url);
    let id_token = issuer.id_token("alice", "felix-test");
    let first = exchange(&cp, &id_token);
    let iss = verify(&cp, &first).unwrap().iss;
    let broker = Broker::start(&cp, &iss, &["--auth-leeway-s", "0"]);

    let mut cfg = broker.config("unused");
    cfg.token = None;
    cfg.token_source = Some(TokenSource::Exchange(TokenExchange::new(
        format!("http://{}", cp.addr),
        SubjectToken::Value(id_token),
    )));
    let alice = within(20, "connect with an exchanged token", Client::connect(cfg))
        .await
        .expect("the client core exchanges the ID token itself");
    let mut sub = within(
        10,
        "subscribe",
        alice.subscribe("ns", "ticks", Start::Latest),
    )
    .await
    .unwrap();

    // Publish and receive one event at a time until the token was replaced in place at least
    // twice (more than two lifetimes of the first token), or fail at the deadline.
    let started = Instant::now();
    let mut n = 0u32;
    while alice.token_stats().reauths < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "no second reauth within 40 s: {:?}",
            alice.token_stats()
        );
        let payload = format!("tick-{n}");
        within(
            10,
            "publish",
            alice.publish("ns", "ticks", payload.clone().into()),
        )
        .await
        .unwrap_or_else(|e| panic!("publish {n} after {:?}: {e}", started.elapsed()));
        let ev = within(10, "event", sub.next())
            .await
            .expect("the subscription outlives its first token")
            .unwrap_or_else(|e| panic!("event {n} after {:?}: {e}", started.elapsed()));
        assert_eq!(&ev.payload[..], payload.as_bytes(), "in order, none lost");
        n += 1;
        // Pacing only (about ten events a second); every wait above has a deadline.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = alice.token_stats();
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "past the first token's expiry"
    );
    assert!(stats.fetched >= 3, "{stats:?}");
    assert_eq!(stats.reauth_failures, 0, "{stats:?}");
    assert_eq!(
        stats.retired_connections, 0,
        "the broker granted token_refresh: no connection was replaced: {stats:?}"
    );
    eprintln!("{n} events over {:?} with {stats:?}", started.elapsed());
}
