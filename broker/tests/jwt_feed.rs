//! JWT mode fed by a control plane: key rotation with live connections, revocation of live
//! principals, and a control plane that goes down (the broker keeps serving the keys it has
//! and `/ready` says the feed is stale).
//!
//! A small real HTTP server in the test ([`tokens::FakeControlPlane`], tokio on loopback,
//! serving JSON the test controls) stands in for the control plane, for the broker's feed
//! protocol only (`GET /.well-known/jwks.json`, `GET /v1/revocations`); the control plane
//! itself is tested in its own crate. The broker, QUIC and clients are real.

mod common;
#[path = "common/tokens.rs"]
mod tokens;
mod v1;

use std::time::Instant;

use common::*;
use felix_auth::{RevocationList, RevokedJti, RevokedSubject, SigningKey};
use felix_client::{Client, ErrorCode, Start};
use serde_json::json;
use tokens::*;

async fn connect(b: &TestBroker, tenant: &str, token: &str) -> Result<Client, felix_client::Error> {
    within(10, "connect", Client::connect(client_for(b, tenant, token))).await
}

async fn wait_keys(b: &TestBroker, n: u64) {
    eventually(10, &format!("{n} keys in force"), || async {
        auth_details(b)["keys"] == n
    })
    .await;
}

#[tokio::test]
async fn key_rotation_with_live_connections() {
    let k1 = SigningKey::generate("k1");
    let k2 = SigningKey::generate("k2");
    let cp = FakeControlPlane::start(&jwks(&[&k1])).await;
    let b = fed_broker("feed-rotation", &cp, 100).await;
    wait_keys(&b, 1).await;

    let old = k1.sign(&claims("acme", "alice", all(), 300)).unwrap();
    let alice = connect(&b, "acme", &old).await.expect("k1 token");
    let mut sub = within(5, "subscribe", alice.subscribe("ns", "s", Start::Latest))
        .await
        .unwrap();
    let new = k2.sign(&claims("acme", "bob", all(), 300)).unwrap();
    let e = connect(&b, "acme", &new)
        .await
        .map(|_| ())
        .expect_err("k2 not yet published");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");

    // The overlap: both keys published, tokens of both verify.
    cp.set_keys(&jwks(&[&k1, &k2]));
    wait_keys(&b, 2).await;
    let bob = connect(&b, "acme", &new)
        .await
        .expect("k2 token after the feed update");
    connect(&b, "acme", &old)
        .await
        .expect("k1 token during the overlap");
    within(
        5,
        "bob publishes",
        bob.publish("ns", "s", "from-bob".into()),
    )
    .await
    .unwrap();

    // k1 retired: new connections with its tokens are refused, and the live connection
    // whose token k1 verified ends (its subscription and its requests: `unauthorized`).
    cp.set_keys(&jwks(&[&k2]));
    eventually(10, "k1 tokens refused", || async {
        connect(&b, "acme", &old).await.is_err()
    })
    .await;
    within(
        5,
        "bob publishes",
        bob.publish("ns", "s", "from-bob-2".into()),
    )
    .await
    .unwrap();
    eventually(10, "alice refused", || async {
        alice
            .publish("ns", "s", "from-alice".into())
            .await
            .is_err_and(|e| e.code() == ErrorCode::Unauthorized)
    })
    .await;
    let mut seen = Vec::new();
    let end = loop {
        match within(5, "event", sub.next()).await {
            Some(Ok(e)) => seen.push(e.payload),
            Some(Err(e)) => break e,
            None => panic!("the subscription ended without a reason"),
        }
    };
    assert_eq!(end.code(), ErrorCode::Unauthorized, "{end}");
    assert!(end.to_string().contains("signing key withdrawn"), "{end}");
    assert_eq!(seen[0], "from-bob");
    cp.stop().await;
}

/// A key dropped from the key set (a rotation's end, or `DELETE /v1/keys/{kid}`) ends, within
/// the feed interval, the live principals whose current token it verified: their
/// subscriptions get `subscription_end` `unauthorized` "signing key withdrawn". A principal
/// that refreshed to a token of the remaining key, and another connection on that key, carry
/// on. On the old code the live connection kept working until its token's expiry.
#[tokio::test]
async fn a_withdrawn_signing_key_ends_the_live_principals_it_verified() {
    let k1 = SigningKey::generate("k1");
    let k2 = SigningKey::generate("k2");
    let cp = FakeControlPlane::start(&jwks(&[&k1, &k2])).await;
    let b = fed_broker("feed-key-withdrawn", &cp, 200).await;
    wait_keys(&b, 2).await;
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let auth = |t: &str| {
        json!({"type": "auth", "tenant_id": "acme", "token": t,
               "client_features": 1 | 64 | 512})
    };
    let subscribe =
        json!({"type": "subscribe", "tenant_id": "acme", "namespace": "ns", "stream": "s"});
    let alice_k1 = k1.sign(&claims("acme", "alice", all(), 300)).unwrap();
    let mut alice = within(5, "alice", raw.subscribe(&auth(&alice_k1), &subscribe)).await;
    // Carol starts on k1 and refreshes to a k2 token before k1 goes.
    let carol_k1 = k1.sign(&claims("acme", "carol", all(), 300)).unwrap();
    let mut carol = within(5, "carol", raw.subscribe(&auth(&carol_k1), &subscribe)).await;
    let (mut carol_req, _) = within(5, "carol req", raw.open_authed(&auth(&carol_k1))).await;
    let carol_k2 = k2.sign(&claims("acme", "carol", all(), 300)).unwrap();
    carol_req
        .send_json(&json!({"type": "reauth", "request_id": 1, "token": carol_k2}))
        .await;
    assert_eq!(within(5, "reauth", carol_req.json()).await["type"], "ok");
    let dave = connect(
        &b,
        "acme",
        &k2.sign(&claims("acme", "dave", all(), 300)).unwrap(),
    )
    .await
    .unwrap();

    let withdrawn_at = Instant::now();
    cp.set_keys(&jwks(&[&k2]));
    let end = within(10, "alice's subscription ends", async {
        loop {
            let f = alice.events.frame().await;
            if f.flags == v1::F_JSON {
                return f.json();
            }
        }
    })
    .await;
    eprintln!(
        "key withdrawal reached the live subscription in {:?}",
        withdrawn_at.elapsed()
    );
    assert_eq!(end["type"], "subscription_end", "{end}");
    assert_eq!(end["code"], "unauthorized", "{end}");
    assert!(
        end["message"]
            .as_str()
            .unwrap()
            .contains("signing key withdrawn"),
        "{end}"
    );
    within(5, "dave publishes", dave.publish("ns", "s", "d".into()))
        .await
        .unwrap();
    let f = within(5, "carol still gets events", carol.events.frame()).await;
    assert_ne!(
        f.flags,
        v1::F_JSON,
        "carol's subscription ended: {:?}",
        f.json()
    );
    let (_, metrics) = http_get(b.broker.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("felix_auth_principals_key_withdrawn_total 1"),
        "{metrics}"
    );
    cp.stop().await;
}

/// A revocation list with a lower revision than the applied one (a stale control-plane
/// replica, a replayed response) is refused whole: what it leaves out stays revoked, the
/// feed counts a rollback and `/ready` says why. A revoked jti stays revoked after a newer
/// list drops it, as long as its token could still be accepted. On the old code the stale
/// list replaced the applied one and un-revoked both.
#[tokio::test]
async fn a_stale_revocation_list_is_refused_and_revoked_jtis_are_kept() {
    let key = SigningKey::generate("k1");
    let cp = FakeControlPlane::start(&jwks(&[&key])).await;
    let b = fed_broker("feed-rollback", &cp, 100).await;
    wait_keys(&b, 1).await;
    let revoked = claims("acme", "alice", all(), 300);
    let token = key.sign(&revoked).unwrap();
    let dave = key.sign(&claims("acme", "dave", all(), 300)).unwrap();
    let dave_before = now_s() + 1;
    cp.set_revocations(&RevocationList {
        revision: 5,
        store_id: String::new(),
        jtis: vec![RevokedJti {
            jti: revoked.jti.clone(),
            exp: revoked.exp,
        }],
        subjects: vec![RevokedSubject {
            tenant: "acme".into(),
            sub: "dave".into(),
            before: dave_before,
        }],
    });
    eventually(10, "revision 5 applied", || async {
        auth_details(&b)["revocation_revision"] == 5
    })
    .await;
    let refused = |t: String| {
        let b = &b;
        async move {
            connect(b, "acme", &t)
                .await
                .map(|_| ())
                .expect_err("revoked")
                .code()
        }
    };
    assert_eq!(refused(token.clone()).await, ErrorCode::Unauthorized);
    assert_eq!(refused(dave.clone()).await, ErrorCode::Unauthorized);

    // A stale replica answers revision 3, without either revocation.
    cp.set_revocations(&RevocationList {
        revision: 3,
        ..RevocationList::default()
    });
    eventually(10, "the rollback refused", || async {
        auth_details(&b)["rollbacks"].as_u64() >= Some(1)
    })
    .await;
    let d = auth_details(&b);
    assert_eq!(d["revocation_revision"], 5, "{d}");
    assert_eq!(d["feed"], "stale", "{d}");
    assert!(
        d["last_error"].as_str().unwrap().contains("revision 3"),
        "{d}"
    );
    assert_eq!(refused(token.clone()).await, ErrorCode::Unauthorized);
    assert_eq!(refused(dave.clone()).await, ErrorCode::Unauthorized);
    let (_, metrics) = http_get(b.broker.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        !metrics.contains("felix_auth_feed_rollbacks_total 0"),
        "{metrics}"
    );

    // A newer list that lifts dave's revocation and leaves alice's jti out: dave's tokens
    // issued after the cutoff are accepted (they always were); his tokens from before it and
    // alice's token stay revoked until they could have expired anyway.
    cp.set_revocations(&RevocationList {
        revision: 6,
        ..RevocationList::default()
    });
    eventually(10, "revision 6 applied", || async {
        auth_details(&b)["revocation_revision"] == 6
    })
    .await;
    assert_eq!(auth_details(&b)["feed"], "ok");
    assert_eq!(refused(dave).await, ErrorCode::Unauthorized);
    eventually(5, "past dave's cutoff", || async { now_s() >= dave_before }).await;
    let fresh = key.sign(&claims("acme", "dave", all(), 300)).unwrap();
    connect(&b, "acme", &fresh)
        .await
        .expect("a token of dave issued after the cutoff");
    assert_eq!(refused(token).await, ErrorCode::Unauthorized);
    assert_eq!(auth_details(&b)["revoked_jtis"], 1);
    cp.stop().await;
}

/// The revision is the control plane store's counter: it restarts when the store is
/// recreated or restored. A list of another store (new `store_id`, low revision) re-arms the
/// rollback guard and is applied; a lower revision of the same store is still refused; a
/// refused poll's key set is applied all the same. On the old code the fresh store's list was
/// refused forever (the broker frozen on the old revocations) and the refused poll's keys were
/// dropped (a key added by a rotation never trusted).
#[tokio::test]
async fn a_recreated_control_plane_store_rearms_the_rollback_guard_and_keys_always_apply() {
    let k1 = SigningKey::generate("k1");
    let k2 = SigningKey::generate("k2");
    let cp = FakeControlPlane::start(&jwks(&[&k1])).await;
    let b = fed_broker("feed-store-id", &cp, 100).await;
    wait_keys(&b, 1).await;
    let dave = k1.sign(&claims("acme", "dave", all(), 300)).unwrap();
    let alice = claims("acme", "alice", all(), 300);
    let alice_token = k1.sign(&alice).unwrap();
    let list = |store: &str, revision: u64| RevocationList {
        revision,
        store_id: store.into(),
        ..RevocationList::default()
    };
    cp.set_revocations(&RevocationList {
        subjects: vec![RevokedSubject {
            tenant: "acme".into(),
            sub: "dave".into(),
            before: now_s() + 1,
        }],
        ..list("store-a", 500)
    });
    eventually(10, "store-a 500 applied", || async {
        auth_details(&b)["revocation_revision"] == 500
    })
    .await;
    let code = |t: String| {
        let b = &b;
        async move {
            connect(b, "acme", &t)
                .await
                .map(|_| ())
                .map_err(|e| e.code())
        }
    };
    assert_eq!(code(dave.clone()).await, Err(ErrorCode::Unauthorized));

    // Same store, lower revision (a stale replica) while a rotation adds k2: the list is
    // refused, the keys are applied.
    cp.set_revocations(&list("store-a", 400));
    cp.set_keys(&jwks(&[&k1, &k2]));
    eventually(10, "refused list, new keys", || async {
        let d = auth_details(&b);
        d["keys"] == 2 && d["rollbacks"].as_u64() >= Some(1)
    })
    .await;
    let d = auth_details(&b);
    assert_eq!(d["revocation_revision"], 500, "{d}");
    assert!(
        d["rollback"].as_str().is_some_and(|r| r.contains("400")),
        "{d}"
    );
    let (_, metrics) = http_get(b.broker.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("felix_auth_feed_rollback_active 1"),
        "{metrics}"
    );
    assert_eq!(code(dave.clone()).await, Err(ErrorCode::Unauthorized));
    let carol = k2.sign(&claims("acme", "carol", all(), 300)).unwrap();
    assert_eq!(
        code(carol).await,
        Ok(()),
        "a key of the refused poll verifies"
    );

    // The store was recreated: new id, its counter restarted at 2. Applied.
    cp.set_revocations(&RevocationList {
        jtis: vec![RevokedJti {
            jti: alice.jti.clone(),
            exp: alice.exp,
        }],
        ..list("store-b", 2)
    });
    eventually(10, "store-b 2 applied", || async {
        let d = auth_details(&b);
        d["revocation_revision"] == 2 && d["store_id"] == "store-b"
    })
    .await;
    let d = auth_details(&b);
    assert!(d["rollback"].is_null(), "{d}");
    assert_eq!(d["feed"], "ok", "{d}");
    assert_eq!(code(alice_token).await, Err(ErrorCode::Unauthorized));
    // dave's revocation is not in the new store's list: it is kept all the same while his
    // token from before the cutoff could still be accepted.
    assert_eq!(code(dave).await, Err(ErrorCode::Unauthorized));
    let (_, metrics) = http_get(b.broker.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("felix_auth_feed_rollback_active 0"),
        "{metrics}"
    );

    // The new store's own lower revision is refused.
    let before = auth_details(&b)["rollbacks"].as_u64().unwrap();
    cp.set_revocations(&list("store-b", 1));
    eventually(10, "store-b 1 refused", || async {
        auth_details(&b)["rollbacks"].as_u64() > Some(before)
    })
    .await;
    assert_eq!(auth_details(&b)["revocation_revision"], 2);
    cp.stop().await;
}

/// A token living longer than `auth.max_token_lifetime_s` (`exp - iat`) is refused
/// `unauthorized` with the reason: revocations are kept only that long, so such a token
/// would outlive its revocation. On the old code it was accepted.
#[tokio::test]
async fn a_token_living_longer_than_max_token_lifetime_is_refused() {
    let key = SigningKey::generate("k1");
    let cp = FakeControlPlane::start(&jwks(&[&key])).await;
    let b = fed_broker("feed-lifetime", &cp, 100).await;
    wait_keys(&b, 1).await;
    let max = felix_broker::auth::AuthConfig::default().max_token_lifetime_s;
    let long = key.sign(&claims("acme", "alice", all(), max + 1)).unwrap();
    let e = connect(&b, "acme", &long)
        .await
        .map(|_| ())
        .expect_err("too long-lived");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(e.to_string().contains("max_token_lifetime_s"), "{e}");
    let ok = key.sign(&claims("acme", "alice", all(), max)).unwrap();
    connect(&b, "acme", &ok).await.expect("at the limit");
    cp.stop().await;
}

#[tokio::test]
async fn revocation_ends_live_principals_within_the_feed_interval() {
    let key = SigningKey::generate("k1");
    let cp = FakeControlPlane::start(&jwks(&[&key])).await;
    let interval_ms = 200;
    let b = fed_broker("feed-revoke", &cp, interval_ms).await;
    wait_keys(&b, 1).await;

    let doomed = claims("acme", "alice", all(), 300);
    let token = key.sign(&doomed).unwrap();
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let auth = json!({"type": "auth", "tenant_id": "acme", "token": token,
                      "client_features": 1 | 16 | 64 | 512});
    let mut sub = within(
        10,
        "subscribe",
        raw.subscribe(
            &auth,
            &json!({"type": "subscribe", "tenant_id": "acme", "namespace": "ns", "stream": "s"}),
        ),
    )
    .await;
    let dave_token = key.sign(&claims("acme", "dave", all(), 300)).unwrap();
    let dave = connect(&b, "acme", &dave_token).await.unwrap();
    let carol_token = key.sign(&claims("acme", "carol", all(), 300)).unwrap();
    let carol = connect(&b, "acme", &carol_token).await.unwrap();
    within(5, "dave publishes", dave.publish("ns", "s", "x".into()))
        .await
        .unwrap();

    // Revoke alice's token by jti and every token of dave issued so far.
    let revoked_at = Instant::now();
    cp.set_revocations(&RevocationList {
        revision: 1,
        store_id: String::new(),
        jtis: vec![RevokedJti {
            jti: doomed.jti.clone(),
            exp: doomed.exp,
        }],
        subjects: vec![RevokedSubject {
            tenant: "acme".into(),
            sub: "dave".into(),
            before: now_s() + 1,
        }],
    });
    let end = within(10, "alice's subscription ends", async {
        loop {
            let f = sub.events.frame().await;
            if f.flags == v1::F_JSON {
                return f.json();
            }
        }
    })
    .await;
    let took = revoked_at.elapsed();
    assert_eq!(end["type"], "subscription_end", "{end}");
    assert_eq!(end["code"], "unauthorized", "{end}");
    assert!(
        end["message"].as_str().unwrap().contains("revoked"),
        "{end}"
    );
    eprintln!(
        "revocation reached the live subscription in {took:?} (feed interval {interval_ms} ms)"
    );

    eventually(10, "dave refused", || async {
        dave.publish("ns", "s", "y".into())
            .await
            .is_err_and(|e| e.code() == ErrorCode::Unauthorized)
    })
    .await;
    let e = connect(&b, "acme", &token)
        .await
        .map(|_| ())
        .expect_err("revoked token refused");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    within(5, "carol publishes", carol.publish("ns", "s", "z".into()))
        .await
        .unwrap();
    let (_, metrics) = http_get(b.broker.metrics_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("felix_auth_principals_revoked_total 2"),
        "{metrics}"
    );
    cp.stop().await;
}

#[tokio::test]
async fn control_plane_down_keeps_serving_known_keys_and_ready_says_stale() {
    let key = SigningKey::generate("k1");
    let cp = FakeControlPlane::start(&jwks(&[&key])).await;
    let b = fed_broker("feed-down", &cp, 100).await;
    let http = b.broker.metrics_addr().unwrap();
    eventually(10, "feed ok", || async {
        let (status, body) = http_get(http, "/ready").await;
        status == 200 && body.contains("\"feed\":\"ok\"")
    })
    .await;
    let token = key.sign(&claims("acme", "alice", all(), 300)).unwrap();
    let live = connect(&b, "acme", &token).await.unwrap();

    cp.stop().await;
    eventually(10, "feed stale", || async {
        let (status, body) = http_get(http, "/ready").await;
        status == 200 && body.contains("\"feed\":\"stale\"")
    })
    .await;
    let (_, body) = http_get(http, "/ready").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(v["auth"]["keys"], 1, "{v}");
    assert!(v["auth"]["age_s"].as_f64().unwrap() >= 0.0, "{v}");
    assert!(v["auth"]["last_error"].is_string(), "{v}");
    let (_, metrics) = http_get(http, "/metrics").await;
    assert!(metrics.contains("felix_auth_keys 1"), "{metrics}");
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("felix_auth_feed_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 1, "{metrics}");
    assert!(
        metrics.contains("felix_auth_feed_age_seconds "),
        "{metrics}"
    );

    // Known keys keep serving: the live connection and a new one.
    within(5, "live publish", live.publish("ns", "s", "a".into()))
        .await
        .unwrap();
    let fresh = connect(&b, "acme", &token)
        .await
        .expect("known key, cp down");
    within(5, "new publish", fresh.publish("ns", "s", "b".into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn without_keys_yet_the_broker_is_not_ready_and_refuses_tokens() {
    // A control plane that never answers (a closed port).
    let cp = FakeControlPlane::start(&jwks(&[])).await;
    let addr = cp.addr;
    cp.stop().await;
    let mut cfg = test_config("feed-none");
    cfg.auth.controlplane_url = Some(format!("http://{addr}"));
    cfg.auth.issuer = Some(ISSUER.into());
    cfg.auth.region = REGION.into();
    cfg.auth.feed_interval_ms = 100;
    let b = TestBroker::with_config(cfg).await;
    let http = b.broker.metrics_addr().unwrap();
    eventually(10, "a failed poll", || async {
        http_get(http, "/ready")
            .await
            .1
            .contains("last_error\":\"GET")
    })
    .await;
    let (status, body) = http_get(http, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no token signing keys yet"), "{body}");
    let key = SigningKey::generate("k1");
    let token = key.sign(&claims("acme", "alice", all(), 300)).unwrap();
    let e = connect(&b, "acme", &token)
        .await
        .map(|_| ())
        .expect_err("nothing verifies yet");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
}

#[tokio::test]
async fn the_feed_sends_the_broker_read_token_and_fails_without_it() {
    use std::os::unix::fs::PermissionsExt;
    let key = SigningKey::generate("k1");
    let cp = FakeControlPlane::start(&jwks(&[&key])).await;
    cp.require_authorization("Bearer read-token-123");

    // With the token file: the feed is served, tokens verify.
    let dir = std::env::temp_dir().join(format!("felix-feed-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cp-token");
    std::fs::write(&file, "\n  read-token-123  \n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cfg = test_config("feed-token");
    cfg.auth = felix_broker::auth::AuthConfig {
        controlplane_url: Some(format!("http://{}", cp.addr)),
        controlplane_token_file: Some(file.clone()),
        issuer: Some(ISSUER.into()),
        audience: AUDIENCE.into(),
        region: REGION.into(),
        leeway_s: 0,
        feed_interval_ms: 100,
        feed_timeout_ms: 1_000,
        ..felix_broker::auth::AuthConfig::default()
    };
    let b = TestBroker::with_config(cfg).await;
    wait_keys(&b, 1).await;
    let token = key.sign(&claims("acme", "alice", all(), 300)).unwrap();
    connect(&b, "acme", &token)
        .await
        .expect("keys came through the authorized feed");

    // Without it: every poll is refused (401), nothing verifies, /ready says why.
    let b2 = fed_broker("feed-no-token", &cp, 100).await;
    let http = b2.broker.metrics_addr().unwrap();
    eventually(10, "feed failing with 401", || async {
        let (status, body) = http_get(http, "/ready").await;
        status == 503 && body.contains("401")
    })
    .await;
    let e = connect(&b2, "acme", &token)
        .await
        .map(|_| ())
        .expect_err("no keys without the read token");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
