//! Tenant quotas over real QUIC: each kind refuses exactly past its bound with
//! `quota_exceeded`, recovers when usage drops (or time passes, for rates), and never touches
//! another tenant: tenant B's calls are asserted to succeed while A is being refused.

mod common;
#[path = "common/tokens.rs"]
mod tokens;
mod v1;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use felix_broker::quota::{QuotaKind, QuotaOverride};
use felix_broker::BrokerConfig;
use felix_client::{Client, ErrorCode, GroupSettings, Start, StreamSettings};

const NS: &str = "ns";

fn config(name: &str, a: QuotaOverride) -> BrokerConfig {
    let mut cfg = test_config(name);
    cfg.quotas.tenants.insert("a".into(), a);
    cfg
}

async fn client_as(b: &TestBroker, tenant: &str) -> felix_client::Result<Client> {
    let mut cfg = b.client_config();
    cfg.tenant = tenant.into();
    cfg.connect_timeout = Duration::from_secs(2);
    let c = Client::connect(cfg).await?;
    // Connecting is lazy on some paths: a ping authenticates a stream for sure.
    c.ping().await?;
    Ok(c)
}

fn assert_quota<T: std::fmt::Debug>(r: felix_client::Result<T>, what: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::QuotaExceeded, "{what}: {e}");
            assert!(e.retryable(), "quota_exceeded is retryable");
        }
        Ok(v) => panic!("{what}: expected quota_exceeded, got Ok({v:?})"),
    }
}

fn exceeded(b: &TestBroker, kind: QuotaKind) -> u64 {
    b.broker.shared().quotas.exceeded(kind)
}

#[tokio::test]
async fn connections_quota_counts_each_connection_once_and_spares_other_tenants() {
    let b = TestBroker::with_config(config(
        "quota-conn",
        QuotaOverride {
            connections: Some(2),
            ..Default::default()
        },
    ))
    .await;
    let a1 = client_as(&b, "a").await.unwrap();
    // Several streams of one connection (pings, publishes) count once.
    a1.publish(NS, "s", Bytes::from_static(b"x")).await.unwrap();
    let a2 = client_as(&b, "a").await.unwrap();
    assert_eq!(b.broker.shared().quotas.held("a").0, 2);
    assert_quota(
        client_as(&b, "a").await.map(|_| ()),
        "third connection of a",
    );
    assert!(exceeded(&b, QuotaKind::Connections) >= 1);
    // B is not limited by A's quota (default 1000), and A's open connections keep working.
    let mut bs = Vec::new();
    for _ in 0..3 {
        bs.push(
            client_as(&b, "b")
                .await
                .expect("b connects while a is refused"),
        );
    }
    bs[2]
        .publish(NS, "s", Bytes::from_static(b"y"))
        .await
        .unwrap();
    a2.publish(NS, "s", Bytes::from_static(b"z")).await.unwrap();
    // A closed connection gives its slot back.
    a1.close();
    drop(a1);
    eventually(10, "a's slot comes back", || async {
        b.broker.shared().quotas.held("a").0 < 2
    })
    .await;
    client_as(&b, "a").await.expect("a connects again");
}

#[tokio::test]
async fn subscriptions_quota_is_exact_and_comes_back_when_one_ends() {
    let b = TestBroker::with_config(config(
        "quota-subs",
        QuotaOverride {
            subscriptions: Some(3),
            ..Default::default()
        },
    ))
    .await;
    let a = client_as(&b, "a").await.unwrap();
    let other = client_as(&b, "b").await.unwrap();
    let mut subs = Vec::new();
    for i in 0..3 {
        subs.push(
            a.subscribe(NS, &format!("s{i}"), Start::Latest)
                .await
                .unwrap_or_else(|e| panic!("subscription {i} of 3: {e}")),
        );
    }
    assert_quota(
        a.subscribe(NS, "s3", Start::Latest).await.map(|_| ()),
        "4th subscription",
    );
    // B subscribes (more than A may) and is served while A is refused.
    let mut b_subs = Vec::new();
    for i in 0..4 {
        b_subs.push(
            other
                .subscribe(NS, &format!("s{i}"), Start::Latest)
                .await
                .unwrap(),
        );
    }
    other
        .publish(NS, "s3", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    let ev = within(5, "b's event", b_subs[3].next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.payload, Bytes::from_static(b"hi"));
    assert_eq!(exceeded(&b, QuotaKind::Subscriptions), 1);
    drop(subs.pop());
    eventually(10, "the ended subscription's slot", || async {
        b.broker.shared().quotas.held("a").1 < 3
    })
    .await;
    a.subscribe(NS, "s3", Start::Latest).await.unwrap();
}

#[tokio::test]
async fn publish_message_rate_is_exact_at_the_burst_and_recovers_with_time() {
    let b = TestBroker::with_config(config(
        "quota-msgs",
        QuotaOverride {
            publish_messages_per_sec: Some(4),
            ..Default::default()
        },
    ))
    .await;
    let a = client_as(&b, "a").await.unwrap();
    let other = client_as(&b, "b").await.unwrap();
    let batch = |n: usize| vec![Bytes::from_static(b"m"); n];
    let ack = felix_client::AckMode::PerBatch;
    // One second of the rate is the burst: 5 at once never fit, and the refusal takes
    // nothing, so 4 do right after.
    assert_quota(a.publish_batch(NS, "s", &batch(5), ack).await, "5 messages");
    a.publish_batch(NS, "s", &batch(4), ack).await.unwrap();
    // The bucket is empty: one more message needs 250 ms of refill, far more than the
    // round trip between these two calls.
    assert_quota(
        a.publish(NS, "s", Bytes::from_static(b"m")).await,
        "the 5th",
    );
    // B publishes far past A's rate meanwhile.
    for _ in 0..20 {
        other.publish_batch(NS, "s", &batch(10), ack).await.unwrap();
    }
    assert_quota(
        a.publish(NS, "s", Bytes::from_static(b"m")).await,
        "a still over",
    );
    // The bucket refills: within a bounded wait a's publish goes through again.
    eventually(10, "a's rate to recover", || async {
        a.publish(NS, "s", Bytes::from_static(b"m")).await.is_ok()
    })
    .await;
    assert!(exceeded(&b, QuotaKind::PublishMessages) >= 2);
}

#[tokio::test]
async fn publish_byte_rate_is_exact_at_the_burst() {
    let b = TestBroker::with_config(config(
        "quota-bytes",
        QuotaOverride {
            publish_bytes_per_sec: Some(1000),
            ..Default::default()
        },
    ))
    .await;
    let a = client_as(&b, "a").await.unwrap();
    let other = client_as(&b, "b").await.unwrap();
    assert_quota(
        a.publish(NS, "s", Bytes::from(vec![0u8; 1001])).await,
        "1001 bytes",
    );
    a.publish(NS, "s", Bytes::from(vec![0u8; 1000]))
        .await
        .unwrap();
    // 500 bytes need 500 ms of refill.
    assert_quota(
        a.publish(NS, "s", Bytes::from(vec![0u8; 500])).await,
        "500 more",
    );
    other
        .publish(NS, "s", Bytes::from(vec![0u8; 10_000]))
        .await
        .unwrap();
    assert_eq!(exceeded(&b, QuotaKind::PublishBytes), 2);
}

#[tokio::test]
async fn cache_bytes_quota_counts_all_the_tenants_caches() {
    // Three entries of key "kN" (2 bytes) + 100-byte value + the cache's 160-byte overhead.
    let entry = 2 + 100 + felix_broker::cache::ENTRY_OVERHEAD as u64;
    let b = TestBroker::with_config(config(
        "quota-cache",
        QuotaOverride {
            cache_bytes: Some(3 * entry),
            ..Default::default()
        },
    ))
    .await;
    let a = client_as(&b, "a").await.unwrap();
    let other = client_as(&b, "b").await.unwrap();
    let v = || Bytes::from(vec![7u8; 100]);
    a.cache_put(NS, "c1", "k1", v(), None).await.unwrap();
    a.cache_put(NS, "c1", "k2", v(), None).await.unwrap();
    // A second cache of the same tenant counts towards the same quota.
    a.cache_put(NS, "c2", "k3", v(), None).await.unwrap();
    assert_quota(a.cache_put(NS, "c2", "k4", v(), None).await, "4th entry");
    for i in 0..10 {
        other
            .cache_put(NS, "c1", &format!("k{i}"), v(), None)
            .await
            .expect("b's puts while a is refused");
    }
    // Reads are not quota'd; a delete makes room.
    assert!(a.cache_get(NS, "c1", "k1").await.unwrap().is_some());
    assert!(a.cache_delete(NS, "c1", "k1").await.unwrap());
    a.cache_put(NS, "c2", "k4", v(), None).await.unwrap();
    assert_eq!(exceeded(&b, QuotaKind::CacheBytes), 1);
}

#[tokio::test]
async fn queue_depth_quota_bounds_pending_messages_per_group() {
    let b = TestBroker::with_config(config(
        "quota-queue",
        QuotaOverride {
            queue_depth: Some(3),
            ..Default::default()
        },
    ))
    .await;
    let a = client_as(&b, "a").await.unwrap();
    let other = client_as(&b, "b").await.unwrap();
    for c in [&a, &other] {
        c.create_stream(NS, "jobs", StreamSettings::default())
            .await
            .unwrap();
        c.create_group(NS, "jobs", "workers", GroupSettings::default())
            .await
            .unwrap();
    }
    for i in 0..3 {
        a.publish(NS, "jobs", Bytes::from(format!("j{i}")))
            .await
            .unwrap();
    }
    assert_quota(
        a.publish(NS, "jobs", Bytes::from_static(b"j3")).await,
        "4th job",
    );
    for i in 0..10 {
        other
            .publish(NS, "jobs", Bytes::from(format!("j{i}")))
            .await
            .unwrap();
    }
    // A consumer taking one makes room for one.
    let got = a
        .consumer(NS, "jobs", "workers")
        .pull(1, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    a.publish(NS, "jobs", Bytes::from_static(b"j3"))
        .await
        .unwrap();
    assert_quota(
        a.publish(NS, "jobs", Bytes::from_static(b"j4")).await,
        "full again",
    );
    assert_eq!(exceeded(&b, QuotaKind::QueueDepth), 2);
}

#[tokio::test]
async fn the_metric_counts_refusals_by_kind() {
    let b = TestBroker::with_config(config(
        "quota-metric",
        QuotaOverride {
            subscriptions: Some(0),
            publish_messages_per_sec: Some(1),
            ..Default::default()
        },
    ))
    .await;
    let a = client_as(&b, "a").await.unwrap();
    a.publish(NS, "s", Bytes::from_static(b"1")).await.unwrap();
    assert_quota(a.publish(NS, "s", Bytes::from_static(b"2")).await, "2nd");
    // subscriptions = 0 is unlimited.
    a.subscribe(NS, "s", Start::Latest).await.unwrap();
    let addr = b.broker.metrics_addr().unwrap();
    let body = http_get(addr, "/metrics").await;
    assert!(
        body.contains("felix_quota_exceeded_total{kind=\"publish_messages\"} 1"),
        "{body}"
    );
    assert!(body.contains("felix_quota_exceeded_total{kind=\"connections\"} 0"));
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A connection whose only principal of a tenant was revoked gives the tenant's connection
/// slot back when the broker ends that principal: with `connections = 1`, a second
/// connection is refused while the first one is live and accepted once it was revoked. A
/// `reauth` that would revive the revoked connection then needs a slot again and is refused
/// `quota_exceeded`. On the old code the revoked connection kept the slot until it closed.
#[tokio::test]
async fn a_revoked_principal_gives_back_its_tenants_connection_slot() {
    use felix_auth::{RevocationList, RevokedJti, SigningKey};
    use serde_json::json;
    use tokens::*;
    let key = SigningKey::generate("k1");
    let cp = FakeControlPlane::start(&jwks(&[&key])).await;
    let mut cfg = config(
        "quota-revoked",
        QuotaOverride {
            connections: Some(1),
            ..Default::default()
        },
    );
    cfg.auth = felix_broker::auth::AuthConfig {
        controlplane_url: Some(format!("http://{}", cp.addr)),
        issuer: Some(ISSUER.into()),
        audience: AUDIENCE.into(),
        region: REGION.into(),
        leeway_s: 0,
        feed_interval_ms: 100,
        feed_timeout_ms: 1_000,
        ..Default::default()
    };
    let b = TestBroker::with_config(cfg).await;
    eventually(10, "keys", || async { auth_details(&b)["keys"] == 1 }).await;
    let connect = |sub: &str| {
        let cfg = felix_client::ClientConfig {
            connect_timeout: Duration::from_secs(2),
            ..client_for(
                &b,
                "a",
                &key.sign(&tokens::claims("a", sub, all(), 300)).unwrap(),
            )
        };
        async move {
            let c = Client::connect(cfg).await?;
            c.ping().await?;
            Ok::<_, felix_client::Error>(c)
        }
    };
    // The first connection (raw, so that it can reauth later) holds tenant a's only slot.
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let alice_claims = tokens::claims("a", "alice", all(), 300);
    let alice = key.sign(&alice_claims).unwrap();
    let auth = json!({"type": "auth", "tenant_id": "a", "token": alice,
                      "client_features": 1 | 512});
    let (mut req, reply) = within(5, "auth", raw.open_authed(&auth)).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    assert_eq!(b.broker.shared().quotas.held("a").0, 1);
    assert_quota(
        within(10, "second", connect("bob")).await,
        "second connection",
    );

    cp.set_revocations(&RevocationList {
        revision: 1,
        store_id: String::new(),
        jtis: vec![RevokedJti {
            jti: alice_claims.jti.clone(),
            exp: alice_claims.exp,
        }],
        subjects: vec![],
    });
    eventually(10, "the revoked connection's slot given back", || async {
        b.broker.shared().quotas.held("a").0 == 0
    })
    .await;
    let bob = within(10, "after the revocation", connect("bob"))
        .await
        .expect("the slot is free again");
    assert_eq!(b.broker.shared().quotas.held("a").0, 1);

    // Reviving the revoked connection with a fresh token needs the slot bob holds now.
    let fresh = key.sign(&tokens::claims("a", "alice", all(), 300)).unwrap();
    req.send_json(&json!({"type": "reauth", "request_id": 1, "token": fresh}))
        .await;
    let r = within(5, "reauth", req.json()).await;
    assert_eq!(r["code"], "quota_exceeded", "{r}");
    within(
        5,
        "bob serves",
        bob.publish(NS, "s", Bytes::from_static(b"x")),
    )
    .await
    .unwrap();
    bob.close();
    eventually(10, "bob's slot back", || async {
        b.broker.shared().quotas.held("a").0 == 0
    })
    .await;
    req.send_json(&json!({"type": "reauth", "request_id": 2, "token": fresh}))
        .await;
    let r = within(5, "reauth with a free slot", req.json()).await;
    assert_eq!(r, json!({"type": "ok", "request_id": 2}));
    assert_eq!(b.broker.shared().quotas.held("a").0, 1);
    cp.stop().await;
}
