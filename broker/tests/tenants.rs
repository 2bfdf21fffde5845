//! Tenant isolation, check by check. Every place the broker tells tenants apart has a test
//! here that fails when that check is removed (docs/testing.md lists them with the mutation
//! each one was proven against):
//!
//! - wildcard subscriptions and streams created after them (`Registry::insert_stream`);
//! - wildcard subscriptions replaying streams that already exist (`Registry::subscribe`);
//! - `Authenticator::authorize` and each of its call sites: a request naming another tenant
//!   than its stream authenticated as is `forbidden` for every kind of request, and changes
//!   nothing of the other tenant's streams, groups or caches.
//!
//! Same names in two tenants being distinct resources (the registry key) is pinned by the
//! `tenant_isolation` scenario and by the controls below.

mod common;
mod v1;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use felix_client::{Client, Event, GroupSettings, Start, StreamSettings, Subscription};
use serde_json::{json, Value};
use v1::*;

const NS: &str = "ns";

async fn client_as(b: &TestBroker, tenant: &str) -> Client {
    let mut cfg = b.client_config();
    cfg.tenant = tenant.into();
    Client::connect(cfg).await.expect("client connects")
}

async fn next(sub: &mut Subscription, what: &str) -> Event {
    within(5, what, sub.next())
        .await
        .unwrap_or_else(|| panic!("{what}: subscription ended"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn seen(ev: &Event) -> (String, Option<u64>, Bytes) {
    (ev.stream.to_string(), ev.offset, ev.payload.clone())
}

fn want(stream: &str, offset: u64, payload: &'static str) -> (String, Option<u64>, Bytes) {
    (
        stream.into(),
        Some(offset),
        Bytes::from_static(payload.as_bytes()),
    )
}

/// The planted bug this catches: `Registry::insert_stream` attaching every matching wildcard
/// subscriber to a new stream without comparing tenants. Another tenant's stream created
/// after a `>` subscription must deliver nothing to it; the subscriber's own new streams do
/// arrive (positive control). Events published one after the other reach a wildcard
/// subscriber in that order, so a leaked event would come before the control's: the check
/// does not depend on a quiet period.
#[tokio::test]
async fn wildcard_subscription_gets_no_stream_another_tenant_creates_later() {
    let b = TestBroker::start("tenant-wild-new").await;
    let alpha = client_as(&b, "alpha").await;
    let beta = client_as(&b, "beta").await;
    let mut all = alpha.subscribe(NS, ">", Start::Latest).await.unwrap();
    let mut all_earliest = alpha.subscribe(NS, ">", Start::Earliest).await.unwrap();

    // Beta creates streams in the same namespace after alpha subscribed: on first use, with
    // explicit settings, and one with the name alpha uses next.
    beta.publish(NS, "b.auto", "beta-auto".into())
        .await
        .unwrap();
    beta.create_stream(NS, "b.made", StreamSettings::default())
        .await
        .unwrap();
    beta.publish(NS, "b.made", "beta-made".into())
        .await
        .unwrap();
    beta.publish(NS, "shared", "beta-shared".into())
        .await
        .unwrap();

    // Positive control: alpha's own new streams arrive, and they are the first events.
    alpha
        .publish(NS, "shared", "alpha-shared".into())
        .await
        .unwrap();
    alpha
        .create_stream(NS, "a.made", StreamSettings::default())
        .await
        .unwrap();
    alpha
        .publish(NS, "a.made", "alpha-made".into())
        .await
        .unwrap();
    for (sub, what) in [(&mut all, "latest"), (&mut all_earliest, "earliest")] {
        assert_eq!(
            seen(&next(sub, what).await),
            want("shared", 0, "alpha-shared"),
            "{what}: the first event must be alpha's own (anything else leaked from beta)"
        );
        assert_eq!(
            seen(&next(sub, what).await),
            want("a.made", 0, "alpha-made"),
            "{what}"
        );
        let extra = sub.try_next().map(|e| e.map(|e| seen(&e)));
        assert!(extra.is_none(), "{what}: unexpected {extra:?}");
    }

    // And the other way round: beta's own wildcard sees beta's streams only.
    let mut beta_all = beta.subscribe(NS, ">", Start::Latest).await.unwrap();
    alpha
        .publish(NS, "a.later", "alpha-later".into())
        .await
        .unwrap();
    beta.publish(NS, "b.later", "beta-later".into())
        .await
        .unwrap();
    assert_eq!(
        seen(&next(&mut beta_all, "beta").await),
        want("b.later", 0, "beta-later")
    );
}

/// A wildcard subscription from `earliest` replays the matching streams that exist: its own
/// tenant's only (`Registry::subscribe` matches existing streams by a `tenant/namespace/`
/// key prefix).
#[tokio::test]
async fn wildcard_replay_covers_only_its_own_tenants_existing_streams() {
    let b = TestBroker::start("tenant-wild-old").await;
    let alpha = client_as(&b, "alpha").await;
    let beta = client_as(&b, "beta").await;
    beta.publish(NS, "x", "beta-x".into()).await.unwrap();
    beta.publish(NS, "y", "beta-y".into()).await.unwrap();
    alpha.publish(NS, "y", "alpha-y".into()).await.unwrap();

    let mut all = alpha.subscribe(NS, ">", Start::Earliest).await.unwrap();
    assert_eq!(
        seen(&next(&mut all, "replay").await),
        want("y", 0, "alpha-y")
    );
    // A live event next: had beta's streams been replayed, they would come first.
    alpha.publish(NS, "z", "alpha-z".into()).await.unwrap();
    assert_eq!(seen(&next(&mut all, "live").await), want("z", 0, "alpha-z"));
    let extra = all.try_next().map(|e| e.map(|e| seen(&e)));
    assert!(extra.is_none(), "unexpected {extra:?}");
}

/// `auth` asking for every feature (error codes, queues, cache, binary, admin, ...).
fn full_auth(tenant: &str) -> Value {
    json!({"type": "auth", "tenant_id": tenant, "token": "tok",
        "client_features": felix_wire::features::ALL as u32})
}

/// Every request a client can name a tenant in is `forbidden` when the tenant is not the one
/// its stream authenticated as: `Authenticator::authorize` and each call site of it
/// (publish, stream/cache/group creation, cache reads and writes, every queue operation,
/// subscribe). Each refused request leaves the other tenant's resources as they were.
#[tokio::test]
async fn requests_naming_another_tenant_are_forbidden_and_change_nothing() {
    let b = TestBroker::start("tenant-forbidden").await;
    let beta = client_as(&b, "beta").await;
    let settings = GroupSettings {
        from_latest: false,
        ack_timeout: Some(Duration::from_secs(30)),
        max_deliveries: Some(5),
    };
    beta.create_group(NS, "s", "g", settings).await.unwrap();
    beta.publish(NS, "s", "beta-0".into()).await.unwrap();
    beta.cache_put(NS, "c", "k", "beta-v".into(), None)
        .await
        .unwrap();

    // A raw client authenticated as alpha that names beta in its requests.
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let (mut s, reply) = within(5, "auth", c.open_authed(&full_auth("alpha"))).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    let base = |ty: &str, rid: u64| json!({"type": ty, "tenant_id": "beta", "namespace": NS, "request_id": rid});
    let with = |mut v: Value, extra: Value| {
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let q = |ty: &str, rid: u64, extra: Value| {
        with(
            base(ty, rid),
            with(json!({"stream": "s", "group": "g"}), extra),
        )
    };
    let requests: Vec<(&str, Value)> = vec![
        (
            "publish",
            with(
                base("publish", 1),
                json!({"stream": "s", "payload": b64(b"x")}),
            ),
        ),
        (
            "publish_batch",
            with(
                base("publish_batch", 2),
                json!({"stream": "s", "payloads": [b64(b"x")]}),
            ),
        ),
        (
            "stream_create",
            with(base("stream_create", 3), json!({"stream": "s2"})),
        ),
        (
            "cache_create",
            with(base("cache_create", 4), json!({"cache": "c2"})),
        ),
        (
            "group_create",
            with(
                base("group_create", 5),
                json!({"stream": "s", "group": "g2"}),
            ),
        ),
        (
            "queue_pull",
            q("queue_pull", 6, json!({"max": 10, "wait_ms": 0})),
        ),
        ("queue_ack", q("queue_ack", 7, json!({"offsets": [0]}))),
        ("queue_nack", q("queue_nack", 8, json!({"offsets": [0]}))),
        (
            "queue_extend",
            q(
                "queue_extend",
                9,
                json!({"offsets": [0], "extend_ms": 1000}),
            ),
        ),
        (
            "dead_letter_list",
            q("dead_letter_list", 10, json!({"max": 10})),
        ),
        (
            "dead_letter_redrive",
            q("dead_letter_redrive", 11, json!({})),
        ),
        (
            "dead_letter_discard",
            q("dead_letter_discard", 12, json!({})),
        ),
        (
            "cache_get",
            with(base("cache_get", 13), json!({"cache": "c", "key": "k"})),
        ),
        (
            "cache_put",
            with(
                base("cache_put", 14),
                json!({"cache": "c", "key": "k", "value": b64(b"alpha-v")}),
            ),
        ),
        (
            "cache_delete",
            with(base("cache_delete", 15), json!({"cache": "c", "key": "k"})),
        ),
        (
            "cache_get_many",
            with(
                base("cache_get_many", 16),
                json!({"cache": "c", "keys": ["k"]}),
            ),
        ),
    ];
    for (what, req) in &requests {
        s.send_json(req).await;
        let r = within(5, what, s.json()).await;
        assert_eq!(
            (&r["request_id"], &r["code"]),
            (&req["request_id"], &json!("forbidden")),
            "{what} naming another tenant: {r}"
        );
    }
    // The binary publish path.
    s.write(&binary_publish_acked(
        17,
        PER_BATCH,
        "beta",
        NS,
        "s",
        &[b"x"],
    ))
    .await;
    let ack = parse_ack(&within(5, "binary publish", s.frame()).await.payload);
    assert_eq!((ack.status, ack.request_id), (1, 17), "{ack:?}");
    assert_eq!(ack.trailer, vec![0, 6, 0], "code trailer: forbidden");
    // Subscribing, on a stream of its own.
    let (mut sub, reply) = within(5, "auth", c.open_authed(&full_auth("alpha"))).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    sub.send_json(
        &json!({"type": "subscribe", "tenant_id": "beta", "namespace": NS,
        "stream": "s"}),
    )
    .await;
    let r = within(5, "subscribe", sub.json()).await;
    assert_eq!(
        r["code"], "forbidden",
        "subscribe naming another tenant: {r}"
    );

    // Beta's resources are as they were: one record, its message not leased, acked, nacked
    // or dead-lettered; its cache entry unchanged; nothing created in its name.
    let mut replay = beta.subscribe(NS, "s", Start::Earliest).await.unwrap();
    assert_eq!(
        seen(&next(&mut replay, "replay").await),
        want("s", 0, "beta-0")
    );
    beta.publish(NS, "s", "beta-1".into()).await.unwrap();
    assert_eq!(
        seen(&next(&mut replay, "next record").await),
        want("s", 1, "beta-1"),
        "a publish naming beta got through"
    );
    let consumer = beta.consumer(NS, "s", "g");
    let got = consumer.pull(10, Duration::ZERO).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|m| (m.offset, m.attempt, m.payload.clone()))
            .collect::<Vec<_>>(),
        vec![
            (0, 1, Bytes::from_static(b"beta-0")),
            (1, 1, Bytes::from_static(b"beta-1"))
        ]
    );
    assert!(consumer.dead_letters(10).await.unwrap().is_empty());
    let v = beta
        .cache_get(NS, "c", "k")
        .await
        .unwrap()
        .expect("entry kept");
    assert_eq!(v.value, Bytes::from_static(b"beta-v"));
    // The names alpha tried to create for beta do not exist with other settings: creating
    // them with settings of beta's own succeeds (an existing one would differ or exist).
    let strict = StreamSettings {
        max_records: Some(7),
        ..StreamSettings::default()
    };
    beta.create_stream(NS, "s2", strict).await.unwrap();
    beta.create_cache(NS, "c2", Some(4096), None).await.unwrap();

    // The request stream still serves alpha's own requests.
    s.send_json(
        &json!({"type": "publish", "tenant_id": "alpha", "namespace": NS,
        "stream": "mine", "payload": b64(b"ok"), "request_id": 18}),
    )
    .await;
    let r = within(5, "own publish", s.json()).await;
    assert_eq!(
        (&r["type"], &r["request_id"]),
        (&json!("publish_ok"), &json!(18)),
        "{r}"
    );
}

/// With shared-secret tokens (`StaticTokenAuth`), a valid token still acts only for the
/// tenant its stream authenticated as: a request naming another tenant is `forbidden`, and a
/// wrong token of the right length is `unauthorized`. (Found by `cargo mutants`: replacing
/// `StaticTokenAuth::authorize` with `Ok(())` survived every test.)
#[tokio::test]
async fn token_auth_still_confines_a_stream_to_its_tenant() {
    let cfg = test_config("tenant-token");
    let ca = cfg.dev_ca_path.clone();
    use felix_broker::auth::StaticTokenAuth;
    // The token opens both tenants, so only authorize's own check keeps the stream to its one.
    let auth =
        StaticTokenAuth::new(StaticTokenAuth::parse_list("alpha:s3cret,beta:s3cret").unwrap())
            .unwrap();
    let b = TestBroker {
        broker: felix_broker::Broker::start_with_auth(cfg, Box::new(auth))
            .await
            .expect("broker starts"),
        ca,
    };
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let token_auth = |tenant: &str, token: &str| {
        json!({"type": "auth", "tenant_id": tenant, "token": token,
            "client_features": felix_wire::features::ALL as u32})
    };
    let (_, reply) = within(5, "auth", c.open_authed(&token_auth("alpha", "s3creT"))).await;
    assert_eq!(reply["code"], "unauthorized", "a wrong token: {reply}");
    let (mut s, reply) = within(5, "auth", c.open_authed(&token_auth("alpha", "s3cret"))).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    for (rid, tenant, want) in [(1u64, "beta", "publish_error"), (2, "alpha", "publish_ok")] {
        s.send_json(
            &json!({"type": "publish", "tenant_id": tenant, "namespace": NS,
            "stream": "s", "payload": b64(b"x"), "request_id": rid}),
        )
        .await;
        let r = within(5, "publish", s.json()).await;
        assert_eq!(r["type"], want, "publish naming {tenant}: {r}");
        if tenant == "beta" {
            assert_eq!(r["code"], "forbidden", "{r}");
        }
    }
}
