//! RBAC in JWT mode over real QUIC: a matrix of tenants × principals × every action ×
//! resources (exact names, wildcard patterns, another namespace, another tenant, another
//! region), each cell asserted allowed or denied (`forbidden`; `unauthorized` for tokens of
//! another tenant or region), and wildcard subscriptions that only ever receive the streams
//! their principal is granted. Expectations are written out by hand, not derived from the
//! permission code under test.

mod common;
#[path = "common/tokens.rs"]
mod tokens;
mod v1;

use std::time::Duration;

use common::*;
use felix_auth::{Grant, SigningKey};
use felix_client::{Client, ErrorCode, Start, StreamSettings};
use serde_json::json;
use tokens::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Publish,
    Subscribe,
    Consume,
    CacheRead,
    CacheWrite,
    Admin,
}

const ACTS: [Act; 6] = [
    Act::Publish,
    Act::Subscribe,
    Act::Consume,
    Act::CacheRead,
    Act::CacheWrite,
    Act::Admin,
];

/// Exact resources of the matrix.
const RESOURCES: [(&str, &str); 5] = [
    ("orders", "eu.fr"),
    ("orders", "us.ny"),
    ("payments", "p1.x"),
    ("orders", "sessions"),
    ("payments", "sessions"),
];

fn alice() -> Vec<Grant> {
    vec![
        grant(&["publish", "subscribe"], &["orders/eu.*"]),
        grant(&["consume"], &["orders/eu.fr"]),
        grant(&["cache.read"], &["*/sessions"]),
        grant(&["cache.write"], &["orders/sessions"]),
    ]
}

fn bob() -> Vec<Grant> {
    vec![
        grant(&["*"], &["payments/>"]),
        grant(&["admin"], &["orders/eu.fr"]),
    ]
}

/// The hand-written expectation: may `who` do `act` on resource index `r`?
fn expected(who: &str, act: Act, r: usize) -> bool {
    use Act::*;
    match (who, act) {
        ("alice", Publish | Subscribe | Consume) => r == 0,
        ("alice", CacheRead) => r == 3 || r == 4,
        ("alice", CacheWrite) => r == 3,
        ("alice", Admin) => false,
        ("bob", Admin) => r == 0 || r == 2 || r == 4,
        ("bob", _) => r == 2 || r == 4,
        _ => unreachable!(),
    }
}

/// Runs `act` on `ns/name`: Ok, or the error's code.
async fn run(c: &Client, act: Act, ns: &str, name: &str) -> Result<(), ErrorCode> {
    let r = match act {
        Act::Publish => c.publish(ns, name, "x".into()).await,
        Act::Subscribe => c.subscribe(ns, name, Start::Latest).await.map(|_| ()),
        Act::Consume => c
            .consumer(ns, name, "g")
            .pull(1, Duration::ZERO)
            .await
            .map(|_| ()),
        Act::CacheRead => c.cache_get(ns, name, "k").await.map(|_| ()),
        Act::CacheWrite => c
            .cache_put(ns, name, "k", "v".into(), None)
            .await
            .map(|_| ()),
        Act::Admin => c.create_stream(ns, name, StreamSettings::default()).await,
    };
    r.map_err(|e| e.code())
}

#[tokio::test]
async fn rbac_matrix_every_cell_allowed_or_denied() {
    let key = SigningKey::generate("k1");
    let b = jwt_broker("rbac-matrix", jwks(&[&key]), 0).await;
    let mut cells = 0;
    // Creating a resource on first use needs `admin` on it (server/first_use.rs): an operator
    // creates the matrix's resources, so each cell measures its own action only.
    for tenant in ["acme", "globex"] {
        let op = key.sign(&claims(tenant, "operator", all(), 300)).unwrap();
        let c = within(10, "connect", Client::connect(client_for(&b, tenant, &op)))
            .await
            .unwrap();
        for (ns, name) in RESOURCES {
            within(10, "setup", async {
                c.create_stream(ns, name, StreamSettings::default()).await?;
                c.create_cache(ns, name, None, None).await?;
                c.create_group(ns, name, "g", Default::default()).await
            })
            .await
            .unwrap_or_else(|e| panic!("setup {tenant}/{ns}/{name}: {e}"));
        }
    }
    for tenant in ["acme", "globex"] {
        for (who, perms) in [("alice", alice()), ("bob", bob())] {
            let token = key.sign(&claims(tenant, who, perms.clone(), 300)).unwrap();
            let c = within(
                10,
                "connect",
                Client::connect(client_for(&b, tenant, &token)),
            )
            .await
            .unwrap_or_else(|e| panic!("{tenant}/{who}: {e}"));
            for act in ACTS {
                for (r, (ns, name)) in RESOURCES.iter().enumerate() {
                    let got = within(10, "request", run(&c, act, ns, name)).await;
                    let want = expected(who, act, r);
                    match got {
                        Ok(()) => assert!(
                            want,
                            "{tenant}/{who} {act:?} {ns}/{name}: allowed, expected forbidden"
                        ),
                        Err(code) => {
                            assert!(
                                !want,
                                "{tenant}/{who} {act:?} {ns}/{name}: {code:?}, expected allowed"
                            );
                            assert_eq!(
                                code,
                                ErrorCode::Forbidden,
                                "{tenant}/{who} {act:?} {ns}/{name}"
                            );
                        }
                    }
                    cells += 1;
                }
            }
            // Wildcard patterns (subscribe): granted when the namespace holds a grant.
            for (ns, pattern, want) in [
                ("orders", "eu.>", who == "alice"),
                ("orders", "*.fr", who == "alice"),
                ("payments", ">", who == "bob"),
                ("other", ">", false),
            ] {
                let got = within(10, "pattern", run(&c, Act::Subscribe, ns, pattern)).await;
                assert_eq!(
                    got.is_ok(),
                    want,
                    "{tenant}/{who} subscribe {ns}/{pattern}: {got:?}"
                );
                if let Err(code) = got {
                    assert_eq!(code, ErrorCode::Forbidden);
                }
                cells += 1;
            }
            // Another namespace, exact: nothing at all.
            for act in ACTS {
                assert_eq!(
                    within(10, "other ns", run(&c, act, "other", "x")).await,
                    Err(ErrorCode::Forbidden),
                    "{tenant}/{who} {act:?} other/x"
                );
                cells += 1;
            }
            // Another tenant: every action named for the other tenant on this stream is
            // forbidden, and the token does not open the other tenant at all.
            let other = if tenant == "acme" { "globex" } else { "acme" };
            cells += other_tenant_requests(&b, tenant, other, &token).await;
            let e = within(
                10,
                "other tenant",
                Client::connect(client_for(&b, other, &token)),
            )
            .await
            .map(|_| ())
            .expect_err("a token never opens another tenant");
            assert_eq!(e.code(), ErrorCode::Unauthorized);
            // Another region: the same grants, refused at auth.
            let mut c2 = claims(tenant, who, perms, 300);
            c2.region = "us-1".into();
            let e = within(
                10,
                "other region",
                Client::connect(client_for(&b, tenant, &key.sign(&c2).unwrap())),
            )
            .await
            .map(|_| ())
            .expect_err("a token of another region is refused");
            assert_eq!(e.code(), ErrorCode::Unauthorized);
            cells += 2;
        }
    }
    eprintln!("RBAC matrix: {cells} cells asserted");
    assert!(cells >= 2 * 2 * (6 * 5 + 4 + 6 + 6 + 2));
}

/// Every action on `resource`s of tenant `other`, sent on a stream authenticated for
/// `tenant` (with a token granting everything the matrix uses): each `forbidden`.
async fn other_tenant_requests(b: &TestBroker, tenant: &str, other: &str, token: &str) -> usize {
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let auth = json!({"type": "auth", "tenant_id": tenant, "token": token,
                      "client_features": 1 | 2 | 4 | 16 | 128});
    let (mut s, reply) = within(5, "auth", raw.open_authed(&auth)).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    let common = |ty: &str, rid: u64| json!({"type": ty, "tenant_id": other, "namespace": "payments", "request_id": rid});
    let mut requests = Vec::new();
    let mut m = common("publish", 1);
    m["stream"] = json!("p1.x");
    m["payload"] = json!(v1::b64(b"x"));
    requests.push(("publish", m, "publish_error"));
    let mut m = common("queue_pull", 2);
    m["stream"] = json!("p1.x");
    m["group"] = json!("g");
    m["max"] = json!(1);
    requests.push(("queue_pull", m, "error"));
    let mut m = common("cache_get", 3);
    m["cache"] = json!("sessions");
    m["key"] = json!("k");
    requests.push(("cache_get", m, "error"));
    let mut m = common("cache_put", 4);
    m["cache"] = json!("sessions");
    m["key"] = json!("k");
    m["value"] = json!(v1::b64(b"v"));
    requests.push(("cache_put", m, "error"));
    let mut m = common("stream_create", 5);
    m["stream"] = json!("p1.x");
    requests.push(("stream_create", m, "error"));
    let n = requests.len();
    for (what, m, ty) in requests {
        s.send_json(&m).await;
        let r = within(5, what, s.json()).await;
        assert_eq!(r["type"], ty, "{tenant}->{other} {what}: {r}");
        assert_eq!(r["code"], "forbidden", "{tenant}->{other} {what}: {r}");
    }
    // Subscribe is the first request of its own stream.
    let (mut s, _) = within(5, "auth", raw.open_authed(&auth)).await;
    let mut m = common("subscribe", 6);
    m["stream"] = json!("p1.x");
    s.send_json(&m).await;
    let r = within(5, "subscribe", s.json()).await;
    assert_eq!(r["code"], "forbidden", "{tenant}->{other} subscribe: {r}");
    n + 1
}

async fn next_stream(sub: &mut felix_client::Subscription) -> (String, String) {
    let e = within(5, "event", sub.next())
        .await
        .expect("open")
        .expect("event");
    (
        e.stream.to_string(),
        String::from_utf8(e.payload.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn a_tenant_subscribed_to_everything_never_sees_another_tenants_streams() {
    let key = SigningKey::generate("k1");
    let b = jwt_broker("rbac-tenants", jwks(&[&key]), 0).await;
    let acme_t = key.sign(&claims("acme", "a", all(), 300)).unwrap();
    let globex_t = key.sign(&claims("globex", "g", all(), 300)).unwrap();
    let acme = Client::connect(client_for(&b, "acme", &acme_t))
        .await
        .unwrap();
    let globex = Client::connect(client_for(&b, "globex", &globex_t))
        .await
        .unwrap();
    globex.publish("ns", "before", "g0".into()).await.unwrap();
    let mut all_acme = acme.subscribe("ns", ">", Start::Latest).await.unwrap();
    for round in 0..3 {
        // Existing and new streams of the other tenant, same namespace and names.
        globex
            .publish("ns", "before", format!("g{round}").into())
            .await
            .unwrap();
        globex
            .publish("ns", &format!("new{round}"), "g".into())
            .await
            .unwrap();
        acme.publish("ns", &format!("mark{round}"), format!("a{round}").into())
            .await
            .unwrap();
        assert_eq!(
            next_stream(&mut all_acme).await,
            (format!("mark{round}"), format!("a{round}")),
            "the first event after globex's publishes is acme's own"
        );
    }
    assert!(all_acme.try_next().is_none());
}

#[tokio::test]
async fn a_wildcard_subscriber_receives_only_the_streams_it_is_granted() {
    let key = SigningKey::generate("k1");
    let b = jwt_broker("rbac-wildcard", jwks(&[&key]), 0).await;
    let writer_t = key.sign(&claims("acme", "writer", all(), 300)).unwrap();
    let writer = Client::connect(client_for(&b, "acme", &writer_t))
        .await
        .unwrap();
    // Streams that exist before the subscription.
    writer
        .publish("ns", "payments", "old".into())
        .await
        .unwrap();
    writer
        .publish("ns", "orders.eu", "old".into())
        .await
        .unwrap();

    let reader_t = key
        .sign(&claims(
            "acme",
            "reader",
            vec![grant(&["subscribe"], &["ns/orders.>"])],
            300,
        ))
        .unwrap();
    let reader = Client::connect(client_for(&b, "acme", &reader_t))
        .await
        .unwrap();
    let mut everything = reader.subscribe("ns", ">", Start::Latest).await.unwrap();
    let e = reader
        .subscribe("ns", "payments", Start::Latest)
        .await
        .map(|_| ())
        .expect_err("exact ungranted stream");
    assert_eq!(e.code(), ErrorCode::Forbidden);
    let e = reader
        .subscribe("other", ">", Start::Latest)
        .await
        .map(|_| ())
        .expect_err("namespace without grants");
    assert_eq!(e.code(), ErrorCode::Forbidden);

    for (stream, payload) in [
        ("payments", "p1"),
        ("orders.eu", "o1"),
        ("payments.new", "p2"), // created after the subscription
        ("orders.us", "o2"),    // created after the subscription
        ("payments", "p3"),
        ("orders", "o-bare"), // `orders.>` needs a token after `orders`
        ("orders.eu", "o3"),
    ] {
        writer.publish("ns", stream, payload.into()).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_stream(&mut everything).await);
    }
    assert_eq!(
        got,
        vec![
            ("orders.eu".into(), "o1".into()),
            ("orders.us".into(), "o2".into()),
            ("orders.eu".into(), "o3".into()),
        ]
    );
    assert!(everything.try_next().is_none(), "nothing of ns/payments");
}

/// The next frame of an event stream: `Ok(())` for an event batch, `Err(json)` for a JSON
/// frame (`subscription_end`, `error`).
async fn next_event(r: &mut v1::Reader) -> Result<(), serde_json::Value> {
    let f = r.frame().await;
    if f.flags == v1::F_JSON {
        Err(f.json())
    } else {
        Ok(())
    }
}

fn assert_withdrawn(v: &serde_json::Value, what: &str) {
    assert_eq!(v["code"], "unauthorized", "{what}: {v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("permission withdrawn by refresh")),
        "{what}: {v}"
    );
}

/// A refresh with narrower permissions ends exactly what the new token no longer grants —
/// an exact subscription, a wildcard subscription attached to a stream no longer granted, a
/// parked pull — with `unauthorized` "permission withdrawn by refresh", and leaves the rest
/// (an exact and a wildcard subscription still granted, a parked pull still granted)
/// running. On the old code every subscription and pull carried on under the new token.
#[tokio::test]
async fn a_narrowing_refresh_ends_what_the_new_token_no_longer_grants() {
    let key = SigningKey::generate("k1");
    let b = jwt_broker("rbac-narrow", jwks(&[&key]), 0).await;
    let wide = key
        .sign(&claims(
            "acme",
            "alice",
            vec![grant(&["*"], &["ns/>"])],
            300,
        ))
        .unwrap();
    let narrow = key
        .sign(&claims(
            "acme",
            "alice",
            vec![
                grant(&["publish"], &["ns/>"]),
                grant(&["subscribe"], &["ns/b", "ns/v.>", "ns/w.keep"]),
                grant(&["consume"], &["ns/q2"]),
            ],
            300,
        ))
        .unwrap();
    let c = within(10, "connect", v1::Client::connect(b.addr(), &b.ca)).await;
    // error_codes | queues | wildcard | event_offsets | token_refresh
    let auth = json!({"type": "auth", "tenant_id": "acme", "token": wide,
                      "client_features": 1 | 2 | 16 | 64 | 512});
    let (mut req, reply) = within(5, "request stream", c.open_authed(&auth)).await;
    assert_eq!(reply["type"], "auth_ok", "{reply}");
    let mut rid = 0;
    let mut publish = async |req: &mut v1::Stream, stream: &str| {
        rid += 1;
        req.send_json(
            &json!({"type": "publish", "tenant_id": "acme", "namespace": "ns",
                             "stream": stream, "payload": v1::b64(b"x"), "request_id": rid}),
        )
        .await;
        let r = within(5, "publish", req.json()).await;
        assert_eq!(r["type"], "publish_ok", "{stream}: {r}");
    };
    // The wildcards' streams exist before they subscribe.
    for s in ["w.keep", "w.drop", "v.keep"] {
        publish(&mut req, s).await;
    }
    let sub = |stream: &str| json!({"type": "subscribe", "tenant_id": "acme", "namespace": "ns", "stream": stream});
    let mut sub_a = within(5, "sub a", c.subscribe(&auth, &sub("a"))).await;
    let mut sub_b = within(5, "sub b", c.subscribe(&auth, &sub("b"))).await;
    let mut sub_w = within(5, "sub w.>", c.subscribe(&auth, &sub("w.>"))).await;
    let mut sub_v = within(5, "sub v.>", c.subscribe(&auth, &sub("v.>"))).await;
    let pull = |stream: &str| {
        json!({"type": "queue_pull", "tenant_id": "acme", "namespace": "ns", "stream": stream,
               "group": "g", "request_id": 900, "max": 5, "wait_ms": 30_000})
    };
    let (mut pull_q, _) = within(5, "pull stream q", c.open_authed(&auth)).await;
    pull_q.send_json(&pull("q")).await;
    let (mut pull_q2, _) = within(5, "pull stream q2", c.open_authed(&auth)).await;
    pull_q2.send_json(&pull("q2")).await;
    let metrics = &b.broker.shared().metrics;
    eventually(10, "both pulls parked", || async {
        metrics.parked_pulls.get() == 2
    })
    .await;

    req.send_json(&json!({"type": "reauth", "request_id": 50, "token": narrow}))
        .await;
    let r = within(5, "reauth", req.json()).await;
    assert_eq!(r, json!({"type": "ok", "request_id": 50}));

    // Withdrawn: ns/a, the wildcard attached to w.drop, the pull on q.
    let end = within(5, "sub a ends", next_event(&mut sub_a.events))
        .await
        .expect_err("subscription_end, not an event");
    assert_eq!(end["type"], "subscription_end", "{end}");
    assert_withdrawn(&end, "exact subscription");
    within(5, "sub a finished", sub_a.events.expect_end()).await;
    let end = within(5, "sub w.> ends", next_event(&mut sub_w.events))
        .await
        .expect_err("subscription_end, not an event");
    assert_withdrawn(&end, "wildcard attached to w.drop");
    let r = within(5, "pull q answered", pull_q.json()).await;
    assert_eq!(
        (&r["type"], &r["request_id"]),
        (&json!("error"), &json!(900)),
        "{r}"
    );
    assert_withdrawn(&r, "parked pull");

    // Still granted: they carry on under the new token.
    for s in ["b", "v.keep", "q2"] {
        publish(&mut req, s).await;
    }
    within(5, "sub b event", next_event(&mut sub_b.events))
        .await
        .unwrap_or_else(|v| panic!("sub b ended: {v}"));
    within(5, "sub v.> event", next_event(&mut sub_v.events))
        .await
        .unwrap_or_else(|v| panic!("sub v.> ended: {v}"));
    let r = within(5, "pull q2 answered", pull_q2.json()).await;
    assert_eq!(r["type"], "queue_messages", "{r}");
    assert_eq!(r["messages"].as_array().unwrap().len(), 1, "{r}");
    // A new request the new token does not grant is forbidden, not ended.
    req.send_json(&pull("q")).await;
    let r = within(5, "pull q after", req.json()).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    assert_eq!(metrics.permission_withdrawn.get(), 3);
}
