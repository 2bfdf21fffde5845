//! Who may create a resource by using it (server/first_use.rs), in JWT mode over real QUIC:
//! without a control plane, an undefined stream / cache / group is created on first use only
//! with `auto_create` and `admin` on it (before, `publish` alone created streams); with
//! definitions applied (`felix_broker::defs::apply`, what the control-plane feed calls), a
//! defined resource is created with its definition's settings by whoever uses it first.
//! The same path against a real control plane process: `controlplane/tests/e2e_definitions.rs`.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

use std::time::Duration;

use common::*;
use felix_auth::SigningKey;
use felix_client::{Client, ErrorCode, Start};
use serde_json::json;
use tokens::*;

async fn connect(b: &TestBroker, token: &str) -> Client {
    within(10, "connect", Client::connect(client_for(b, "acme", token)))
        .await
        .expect("connects")
}

/// Every action but `admin`, on everything in the tenant.
fn writer() -> Vec<felix_auth::Grant> {
    vec![grant(
        &[
            "publish",
            "subscribe",
            "consume",
            "cache.read",
            "cache.write",
        ],
        &[">"],
    )]
}

#[tokio::test]
async fn creating_on_first_use_needs_admin_or_a_definition() {
    let key = SigningKey::generate("k1");
    let b = jwt_broker("first-use", jwks(&[&key]), 0).await;
    assert!(
        b.broker.shared().cfg.auto_create(),
        "dev mode: auto_create on"
    );
    let w = connect(&b, &key.sign(&claims("acme", "w", writer(), 300)).unwrap()).await;
    let a = connect(&b, &key.sign(&claims("acme", "a", all(), 300)).unwrap()).await;

    // Without admin nothing is created by using it: each is not_found (the old broker
    // created the stream, the cache and the group here).
    let e = within(5, "publish", w.publish("ns", "fresh", "x".into()))
        .await
        .expect_err("publish-only principal cannot create a stream");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    assert!(e.to_string().contains("needs admin"), "{e}");
    let e = within(5, "subscribe", w.subscribe("ns", "fresh2", Start::Latest))
        .await
        .map(|_| ())
        .expect_err("nor by subscribing");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    let e = within(
        5,
        "cache put",
        w.cache_put("ns", "c", "k", "v".into(), None),
    )
    .await
    .map(|_| ())
    .expect_err("nor a cache by writing it");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    let mut buf = String::new();
    let reg = &b.broker.shared().registry;
    assert!(reg.stream(&mut buf, "acme", "ns", "fresh", false).is_err());

    // An admin creates by using; then the writer uses what exists.
    within(5, "admin publish", a.publish("ns", "made", "1".into()))
        .await
        .expect("admin creates on first use");
    within(5, "writer publish", w.publish("ns", "made", "2".into()))
        .await
        .expect("existing stream");
    let e = within(
        5,
        "pull",
        w.consumer("ns", "made", "g").pull(1, Duration::ZERO),
    )
    .await
    .map(|_| ())
    .expect_err("a group is created by an admin only");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    within(
        5,
        "admin pull",
        a.consumer("ns", "made", "g").pull(1, Duration::ZERO),
    )
    .await
    .expect("admin creates the group");
    let got = within(
        5,
        "pull",
        w.consumer("ns", "made", "g").pull(2, Duration::ZERO),
    )
    .await
    .expect("the writer consumes the existing group");
    assert!(!got.is_empty(), "records 1 and 2 are there");

    // Definitions (as the control-plane feed applies them): a defined stream, cache and group
    // are created with their settings by the first user, admin or not.
    let snap: felix_broker::defs::Snapshot = serde_json::from_value(json!({
        "revision": 7,
        "tenants": {"acme": {
            "quotas": null,
            "streams": {"ns/orders": {"max_records": 2, "full_policy": "block",
                                      "durability": "always"}},
            "caches": {"ns/sessions": {"max_bytes": 65536, "default_ttl_ms": 60000}},
            "groups": {"ns/workers": {"stream": "orders", "start": "latest",
                                      "ack_timeout_ms": 1500, "max_deliveries": 4}}
        }}
    }))
    .unwrap();
    felix_broker::defs::apply(b.broker.shared(), snap);
    assert!(b.broker.shared().definitions.loaded());
    for i in 0..5 {
        within(
            5,
            "publish",
            w.publish("ns", "orders", format!("m{i}").into()),
        )
        .await
        .expect("a defined stream is created by its first user");
    }
    let orders = reg.stream(&mut buf, "acme", "ns", "orders", false).unwrap();
    let cfg = orders.stream.config();
    assert_eq!(cfg.retention.max_records, 2, "the definition's retention");
    assert_eq!(cfg.full_policy, felix_broker::stream::FullPolicy::Block);
    assert_eq!(
        orders.stream.stats().records,
        2,
        "retention applied: 5 published, 2 kept"
    );
    let mut sub = within(5, "subscribe", w.subscribe("ns", "orders", Start::Earliest))
        .await
        .unwrap();
    let first = within(5, "event", sub.next()).await.unwrap().unwrap();
    assert_eq!(&first.payload[..], b"m3", "the oldest kept record");

    within(
        5,
        "cache put",
        w.cache_put("ns", "sessions", "k", "v".into(), None),
    )
    .await
    .expect("a defined cache is created by its first writer");
    let sessions = reg
        .cache(&mut buf, "acme", "ns", "sessions", false)
        .unwrap();
    assert_eq!(sessions.cache.config().max_bytes, 65536);
    assert_eq!(
        sessions.cache.config().default_ttl,
        Some(Duration::from_secs(60))
    );

    let got = within(
        5,
        "pull",
        w.consumer("ns", "orders", "workers")
            .pull(5, Duration::ZERO),
    )
    .await
    .expect("a defined group is created by its first consumer");
    assert!(got.is_empty(), "the definition's start: latest ({got:?})");
    let e = within(
        5,
        "pull",
        w.consumer("ns", "made", "workers").pull(1, Duration::ZERO),
    )
    .await
    .map(|_| ())
    .expect_err("the group's definition names another stream");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");

    // Still: an undefined stream needs admin, and says a definition would do too.
    let e = within(5, "publish", w.publish("ns", "undefined", "x".into()))
        .await
        .expect_err("undefined");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    assert!(e.to_string().contains("definition"), "{e}");
}

#[tokio::test]
async fn with_auto_create_off_only_definitions_create_on_first_use() {
    let key = SigningKey::generate("k1");
    let mut cfg = test_config_no_auto_create("first-use-off");
    cfg.auth.issuer = Some(verifier_config(0).issuer);
    let auth = felix_broker::auth::JwtAuth::with_keys(verifier_config(0), jwks(&[&key]));
    let b = TestBroker {
        ca: cfg.dev_ca_path.clone(),
        broker: felix_broker::Broker::start_with_auth(cfg, Box::new(auth))
            .await
            .unwrap(),
    };
    let a = connect(&b, &key.sign(&claims("acme", "a", all(), 300)).unwrap()).await;
    let e = within(5, "publish", a.publish("ns", "s", "x".into()))
        .await
        .expect_err("auto_create off: not even an admin creates by using");
    assert_eq!(e.code(), ErrorCode::NotFound, "{e}");
    assert!(e.to_string().contains("auto_create is off"), "{e}");
    let snap = serde_json::from_value(json!({
        "revision": 1, "tenants": {"acme": {"streams": {"ns/s": {}}}}
    }))
    .unwrap();
    felix_broker::defs::apply(b.broker.shared(), snap);
    within(5, "publish", a.publish("ns", "s", "x".into()))
        .await
        .expect("defined: created on first use");
}
