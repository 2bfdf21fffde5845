//! The client's token provider end to end: a callback token is fetched before connecting
//! (off the I/O path) and refreshed from the token's `exp`; on a connection whose broker
//! granted `token_refresh` the new token goes out in `reauth` (no reconnect), elsewhere the
//! connection is replaced gracefully; a failed refresh keeps the current token until it
//! expires and only then fails calls with `unauthorized`; the exchange at the control plane
//! sends an RFC 8693 request and maps OAuth errors to `unauthorized`; no token ever shows in
//! `Debug`.
//!
//! Brokers here: the in-process dev broker (accepts any token, and does not grant
//! `token_refresh` yet), and [`common::RefreshPeer`], a QUIC peer that grants it. When the
//! broker serves `reauth`, `reauth_*` tests switch to it by replacing `RefreshPeer::start`
//! with a broker in JWT mode (tokens from `common::felix_jwt`).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use felix_client::{
    Client, ClientConfig, ErrorCode, SubjectToken, TokenExchange, TokenRefresh, TokenSource,
};

/// A callback returning `make(n)` on its n-th call (from 0), counting calls.
fn counted<F>(make: F) -> (TokenSource, Arc<AtomicU64>)
where
    F: Fn(u64) -> Result<String, String> + Send + Sync + 'static,
{
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let source = TokenSource::callback(move || {
        let n = c.fetch_add(1, Ordering::SeqCst);
        make(n).map_err(Into::into)
    });
    (source, calls)
}

/// Refresh quickly in tests (opaque tokens on an interval; no 1 s floor).
fn fast_refresh(interval_ms: u64) -> TokenRefresh {
    TokenRefresh {
        interval: Some(Duration::from_millis(interval_ms)),
        min_delay: Duration::from_millis(50),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        ..TokenRefresh::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_token_is_fetched_once_before_connecting_and_used() {
    let b = DevBroker::start("cb-used").await;
    let (source, calls) = counted(|_| Ok("opaque-dev-token".into()));
    let client = Client::connect(ClientConfig {
        token_source: Some(source),
        ..b.client_config()
    })
    .await
    .expect("connects with the callback's token");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    client
        .cache_put("ns", "c", "k", "v".into(), None)
        .await
        .unwrap();
    let got = client.cache_get("ns", "c", "k").await.unwrap().unwrap();
    assert_eq!(&got.value[..], b"v");
    // An opaque token with no interval has no schedule: not fetched again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(client.token_stats().fetched, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_callback_fails_connect_with_unauthorized_and_its_message() {
    let b = DevBroker::start("cb-fails").await;
    let (source, calls) = counted(|_| Err("vault is sealed".into()));
    let e = Client::connect(ClientConfig {
        token_source: Some(source),
        ..b.client_config()
    })
    .await
    .expect_err("no token, no connection");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(e.to_string().contains("vault is sealed"), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A JWT living 3 s is refreshed at about 80% of its life (2.4 s): not at once, not after it
/// expired. Without `token_refresh` (the dev broker) no `reauth` is sent; the connection is
/// replaced instead, and calls keep working on the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_is_refreshed_from_its_exp_and_without_reauth_the_connection_is_replaced() {
    let b = DevBroker::start_refusing_reauth("cb-exp").await;
    let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let t = times.clone();
    let (source, calls) = counted(move |n| {
        t.lock().unwrap().push(Instant::now());
        Ok(felix_jwt(3, &format!("jti-{n}")))
    });
    let client = Client::connect(ClientConfig {
        token_source: Some(source),
        ..b.client_config()
    })
    .await
    .unwrap();
    client.publish("ns", "s", "before".into()).await.unwrap();
    eventually(10, "the refresh before expiry", || {
        calls.load(Ordering::SeqCst) >= 2
    })
    .await;
    let gap = {
        let t = times.lock().unwrap();
        t[1] - t[0]
    };
    // 80% of 3 s is 2.4 s; whole seconds in `exp` make it 1.4..3 s. Generous both ways.
    assert!(
        gap >= Duration::from_millis(1200) && gap < Duration::from_millis(3000),
        "refreshed {gap:?} after the first fetch"
    );
    eventually(5, "the old connection retired", || {
        client.token_stats().retired_connections >= 1
    })
    .await;
    let stats = client.token_stats();
    assert_eq!(
        stats.reauths, 0,
        "the broker refuses every reauth: {stats:?}"
    );
    // New work goes to a new connection authenticated with the new token.
    client.publish("ns", "s", "after".into()).await.unwrap();
    client
        .cache_put("ns", "c", "k", "v".into(), None)
        .await
        .unwrap();
}

/// With `token_refresh` granted, the refreshed token goes out in `reauth` on the live
/// connection: no new connection, no new `auth`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauth_carries_the_new_token_on_the_live_connection_when_granted() {
    let peer = RefreshPeer::start("reauth-ok", false);
    let (source, calls) = counted(|n| Ok(format!("opaque-token-{n}")));
    let client = Client::connect(ClientConfig {
        token_source: Some(source),
        token_refresh: fast_refresh(200),
        ..peer.client_config()
    })
    .await
    .unwrap();
    client.ping().await.unwrap();
    let auths_at_connect = peer.log.lock().unwrap().auth_tokens.len();
    assert!(auths_at_connect >= 1);
    assert!(peer
        .log
        .lock()
        .unwrap()
        .auth_tokens
        .iter()
        .all(|t| t.as_deref() == Some("opaque-token-0")));
    eventually(10, "two reauths", || client.token_stats().reauths >= 2).await;
    {
        let log = peer.log.lock().unwrap();
        assert_eq!(log.connections, 1, "no reconnect");
        assert_eq!(log.auth_tokens.len(), auths_at_connect, "no new auth");
        assert!(log.reauth_tokens.len() >= 2);
        assert_eq!(log.reauth_tokens[0], "opaque-token-1");
        assert_eq!(log.reauth_tokens[1], "opaque-token-2");
    }
    assert!(calls.load(Ordering::SeqCst) >= 3);
    assert_eq!(client.token_stats().retired_connections, 0);
    client.ping().await.unwrap();
}

/// A `reauth` answered `overloaded` (the broker's reauth rate bound) is retried with backoff on
/// the same connection, which is never retired. On the old code any failed reauth retired the
/// connection: a reconnect (handshake, `auth`) exactly when the broker asked for less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_reauth_is_retried_on_the_same_connection() {
    let peer = RefreshPeer::start_overloading("reauth-overloaded", false, 2);
    let (source, _calls) = counted(|n| Ok(format!("opaque-token-{n}")));
    let client = Client::connect(ClientConfig {
        token_source: Some(source),
        token_refresh: TokenRefresh {
            // One refresh within the test: the retries, not later refreshes, carry it.
            interval: Some(Duration::from_millis(300)),
            ..fast_refresh(300)
        },
        request_timeout: Duration::from_millis(500),
        ..peer.client_config()
    })
    .await
    .unwrap();
    eventually(20, "a reauth taken after two overloaded", || {
        client.token_stats().reauths >= 1
    })
    .await;
    let stats = client.token_stats();
    assert!(stats.reauth_failures >= 2, "{stats:?}");
    assert_eq!(stats.retired_connections, 0, "{stats:?}");
    client.ping().await.unwrap();
    let log = peer.log.lock().unwrap();
    assert_eq!(log.connections, 1, "never reconnected");
    assert!(log.reauth_tokens.len() >= 3, "{:?}", log.reauth_tokens);
}

/// A refused `reauth` replaces the connection: the next call connects anew with the newest
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reauth_reconnects_with_the_new_token() {
    let peer = RefreshPeer::start("reauth-refused", true);
    let (source, _calls) = counted(|n| Ok(format!("opaque-token-{n}")));
    let client = Client::connect(ClientConfig {
        token_source: Some(source),
        token_refresh: TokenRefresh {
            interval: Some(Duration::from_millis(300)),
            ..fast_refresh(300)
        },
        request_timeout: Duration::from_millis(500),
        ..peer.client_config()
    })
    .await
    .unwrap();
    eventually(10, "a refused reauth", || {
        client.token_stats().reauth_failures >= 1
    })
    .await;
    // After the grace (the request timeout) the old connection is closed; calls reconnect.
    eventually(10, "a second connection", || {
        client.token_stats().retired_connections >= 1
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if client.ping().await.is_ok() && peer.log.lock().unwrap().connections >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("reconnected");
    let log = peer.log.lock().unwrap();
    let last = log.auth_tokens.last().unwrap().clone().unwrap();
    assert_ne!(
        last, "opaque-token-0",
        "the new connection uses a newer token"
    );
}

/// The refresh follows the token's own lifetime (`exp - iat`, counted from its receipt), not
/// the local clock: with the issuer's clock an hour ahead (the old schedule saw 3603 s left and
/// refreshed long after the broker had ended the token) or an hour behind (it saw the token as
/// expired and refetched every second), a 3 s token is refreshed within its jitter window,
/// 70..80 % of 3 s (generous bounds both ways), and calls keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_clock_refreshes_on_the_tokens_own_lifetime() {
    for skew_s in [3600i64, -3600] {
        let b = DevBroker::start(&format!("cb-skew{}", skew_s.signum() + 1)).await;
        let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let t = times.clone();
        let (source, calls) = counted(move |n| {
            t.lock().unwrap().push(Instant::now());
            Ok(felix_jwt_skewed(3, &format!("jti-{n}"), skew_s))
        });
        let client = Client::connect(ClientConfig {
            token_source: Some(source),
            ..b.client_config()
        })
        .await
        .unwrap();
        eventually(10, "the refresh before expiry", || {
            calls.load(Ordering::SeqCst) >= 2
        })
        .await;
        let gap = {
            let t = times.lock().unwrap();
            t[1] - t[0]
        };
        assert!(
            gap >= Duration::from_millis(1500) && gap < Duration::from_millis(3000),
            "skew {skew_s} s: refreshed {gap:?} after the first fetch"
        );
        client.publish("ns", "s", "x".into()).await.unwrap();
        client.close();
    }
}

/// The callback fails after the first token: the current token keeps serving until its `exp`,
/// then calls fail with `unauthorized` (quoting the callback's error); when the callback
/// recovers, so do calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_surfaces_unauthorized_only_once_the_token_expired() {
    let b = DevBroker::start("cb-expire").await;
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let exp = Arc::new(AtomicU64::new(0));
    let x = exp.clone();
    let (source, _calls) = counted(move |n| {
        if n == 0 || h.load(Ordering::SeqCst) {
            x.store(now_s() + 2, Ordering::SeqCst);
            Ok(felix_jwt(2, &format!("jti-{n}")))
        } else {
            Err("identity provider down".into())
        }
    });
    let client = Client::connect(ClientConfig {
        token_source: Some(source),
        token_refresh: TokenRefresh {
            min_delay: Duration::from_millis(50),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_millis(300),
            ..TokenRefresh::default()
        },
        ..b.client_config()
    })
    .await
    .unwrap();
    let first_exp = exp.load(Ordering::SeqCst);
    let e = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match client.publish("ns", "s", "x".into()).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("calls fail once the token expired");
    assert!(now_s() >= first_exp, "failed before the token expired");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    assert!(e.to_string().contains("identity provider down"), "{e}");
    assert!(client.token_stats().fetch_failures >= 1);
    healthy.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.publish("ns", "s", "y".into()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("calls recover with a fresh token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_shows_in_debug_output() {
    let b = DevBroker::start("debug").await;
    let client = Client::connect(ClientConfig {
        token_source: Some(TokenSource::callback(|| Ok("s3cret-callback-token".into()))),
        ..b.client_config()
    })
    .await
    .unwrap();
    let shown = format!(
        "{client:?} {:?} {:?}",
        client.config(),
        client.token_stats()
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    let exchange = ClientConfig {
        token: Some("s3cret-static".into()),
        token_source: Some(TokenSource::Exchange(TokenExchange::new(
            "https://cp.example",
            SubjectToken::Value("s3cret-oidc".into()),
        ))),
        ..ClientConfig::default()
    };
    let shown = format!("{exchange:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("cp.example"), "{shown}");
}

// ---- token exchange at the control plane (a real HTTP server on loopback) ----

fn exchange_source(url: &str, subject: SubjectToken) -> TokenSource {
    TokenSource::Exchange(TokenExchange {
        timeout: Duration::from_secs(5),
        ..TokenExchange::new(url, subject)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_sends_an_rfc8693_request_and_uses_the_felix_token() {
    let b = DevBroker::start("exchange-ok").await;
    let cp = TokenEndpoint::start(|_| {
        let body = serde_json::json!({
            "access_token": felix_jwt(600, "jti-x"),
            "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_type": "Bearer",
            "expires_in": 600,
        });
        (200, body.to_string())
    });
    // The subject token as a Kubernetes projected ServiceAccount token: a file, read at
    // each exchange.
    let file = scratch("exchange-ok").join("sa-token");
    std::fs::write(&file, "oidc.id.token\n").unwrap();
    let client = Client::connect(ClientConfig {
        token_source: Some(exchange_source(&cp.url, SubjectToken::File(file))),
        ..b.client_config()
    })
    .await
    .expect("connects with the exchanged token");
    client.publish("ns", "s", "x".into()).await.unwrap();
    let reqs = cp.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/oauth/token")
    );
    assert!(
        r.content_type
            .starts_with("application/x-www-form-urlencoded"),
        "{}",
        r.content_type
    );
    assert_eq!(
        r.field("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(r.field("subject_token"), Some("oidc.id.token"));
    assert_eq!(
        r.field("subject_token_type"),
        Some("urn:ietf:params:oauth:token-type:id_token")
    );
    assert_eq!(r.field("audience"), Some("acme"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_error_is_unauthorized_with_its_description() {
    let b = DevBroker::start("exchange-refused").await;
    let cp = TokenEndpoint::start(|_| {
        (
            400,
            r#"{"error":"invalid_grant","error_description":"issuer https://evil is not trusted by tenant acme"}"#
                .into(),
        )
    });
    let e = Client::connect(ClientConfig {
        token_source: Some(exchange_source(&cp.url, SubjectToken::Value("id".into()))),
        ..b.client_config()
    })
    .await
    .expect_err("refused exchange");
    assert_eq!(e.code(), ErrorCode::Unauthorized, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("invalid_grant") && msg.contains("is not trusted"),
        "{msg}"
    );
    assert!(!msg.contains("\"id\""), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_exchange_reply_is_refused() {
    let b = DevBroker::start("exchange-big").await;
    let cp = TokenEndpoint::start(|_| {
        let body = serde_json::json!({"access_token": "x".repeat(200_000), "expires_in": 60});
        (200, body.to_string())
    });
    let e = Client::connect(ClientConfig {
        token_source: Some(exchange_source(&cp.url, SubjectToken::Value("id".into()))),
        ..b.client_config()
    })
    .await
    .expect_err("a reply past max_response_bytes is refused");
    assert_eq!(e.code(), ErrorCode::Protocol, "{e}");
    assert!(e.to_string().contains("max_response_bytes"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_control_plane_is_unavailable() {
    let b = DevBroker::start("exchange-down").await;
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Client::connect(ClientConfig {
        token_source: Some(exchange_source(
            &format!("http://127.0.0.1:{port}"),
            SubjectToken::Value("id".into()),
        )),
        ..b.client_config()
    })
    .await
    .expect_err("no control plane");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
}

/// When the live connection cannot take the new token (no `token_refresh`, or the broker refuses
/// the `reauth`), a refresh replaces the connection; a subscription on it resumes on
/// the new connection from its last offset: nothing published around the switch is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_survives_the_connection_replacement_of_a_refresh() {
    let b = DevBroker::start_refusing_reauth("cb-sub").await;
    let (source, _calls) = counted(|n| Ok(felix_jwt(3, &format!("jti-{n}"))));
    let client = Client::connect(ClientConfig {
        token_source: Some(source),
        // The grace before the old connection is closed.
        request_timeout: Duration::from_secs(1),
        ..b.client_config()
    })
    .await
    .unwrap();
    let mut sub = client
        .subscribe("ns", "events", felix_client::Start::Latest)
        .await
        .unwrap();
    let mut sent = 0u32;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Publish and read until the connection was replaced and closed, then a bit more.
    let mut after_retire = 0;
    while after_retire < 10 {
        assert!(
            Instant::now() < deadline,
            "stuck: sent {sent}, got {}",
            got.len()
        );
        if client
            .publish("ns", "events", sent.to_string().into())
            .await
            .is_ok()
        {
            sent += 1;
        }
        while got.len() < sent as usize {
            let ev = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("event within 10 s")
                .expect("subscription open")
                .expect("event, not an error");
            got.push(String::from_utf8(ev.payload.to_vec()).unwrap());
        }
        if client.token_stats().retired_connections >= 1 {
            after_retire += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let want: Vec<String> = (0..sent).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "every event, in order, across the replacement");
}

/// The real broker grants `token_refresh`: a refreshed token goes out in `reauth` on the live
/// connection, which keeps serving (nothing is replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_broker_takes_the_refreshed_token_with_reauth_on_the_live_connection() {
    let b = DevBroker::start("cb-reauth").await;
    let (source, calls) = counted(|n| Ok(felix_jwt(3, &format!("jti-{n}"))));
    let client = Client::connect(ClientConfig {
        token_source: Some(source),
        ..b.client_config()
    })
    .await
    .unwrap();
    client.publish("ns", "s", "before".into()).await.unwrap();
    eventually(10, "a reauth on the live connection", || {
        client.token_stats().reauths >= 1
    })
    .await;
    let stats = client.token_stats();
    assert!(calls.load(Ordering::SeqCst) >= 2, "{stats:?}");
    assert_eq!(
        (stats.reauth_failures, stats.retired_connections),
        (0, 0),
        "{stats:?}"
    );
    client.publish("ns", "s", "after".into()).await.unwrap();
}
