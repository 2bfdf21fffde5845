//! The issuer key cache against a real HTTP server on loopback that counts its JWKS fetches:
//! an unknown `kid` refetches at most once per interval, a rotated issuer key is found after
//! it, oversized and unreachable issuers fail cleanly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use felix_controlplane::config::OidcClientConfig;
use felix_controlplane::exchange::fetch::Fetcher;
use felix_controlplane::exchange::issuers::{IssuerKeys, KeyLookupError};
use felix_controlplane::exchange::jwt::Alg;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct FakeIssuer {
    url: String,
    jwks: Arc<Mutex<serde_json::Value>>,
    fetches: Arc<AtomicUsize>,
    /// Every request, any path.
    requests: Arc<AtomicUsize>,
    /// Status of every answer (200 unless changed) and a delay before it.
    status: Arc<Mutex<(u16, Duration)>>,
}

fn jwk(kid: &str) -> serde_json::Value {
    serde_json::to_value(felix_auth::SigningKey::generate(kid).public_jwk()).unwrap()
}

/// A minimal HTTP/1.1 server: discovery and JWKS documents, `Connection: close`.
async fn serve(extra_bytes: usize) -> FakeIssuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let jwks = Arc::new(Mutex::new(serde_json::json!({"keys": [jwk("k1")]})));
    let fetches = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let status = Arc::new(Mutex::new((200u16, Duration::ZERO)));
    let (u, j, f, r, st) = (
        url.clone(),
        jwks.clone(),
        fetches.clone(),
        requests.clone(),
        status.clone(),
    );
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let (u, j, f, r, st) = (u.clone(), j.clone(), f.clone(), r.clone(), st.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                r.fetch_add(1, Ordering::SeqCst);
                let (code, delay) = *st.lock();
                tokio::time::sleep(delay).await;
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split(' ').nth(1).unwrap_or("").to_string();
                let body = if path == "/.well-known/openid-configuration" {
                    serde_json::json!({"issuer": u, "jwks_uri": format!("{u}/jwks")}).to_string()
                } else if path == "/jwks" {
                    f.fetch_add(1, Ordering::SeqCst);
                    let mut v = j.lock().clone();
                    if extra_bytes > 0 {
                        v["padding"] = "x".repeat(extra_bytes).into();
                    }
                    v.to_string()
                } else {
                    String::new()
                };
                let head = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    FakeIssuer {
        url,
        jwks,
        fetches,
        requests,
        status,
    }
}

fn cache(cfg: &OidcClientConfig) -> IssuerKeys {
    IssuerKeys::new(Fetcher::new(cfg).unwrap(), cfg, true)
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval_and_finds_a_rotated_key() {
    let issuer = serve(0).await;
    let cfg = OidcClientConfig {
        min_refetch_interval_s: 2,
        ..OidcClientConfig::default()
    };
    let keys = cache(&cfg);
    let k = keys.key(&issuer.url, Some("k1"), Alg::EdDsa).await.unwrap();
    assert_eq!(k.kid.as_deref(), Some("k1"));
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);
    // Wrong algorithm for the key's type: never used, whatever the kid.
    assert!(matches!(
        keys.key(&issuer.url, Some("k1"), Alg::Rs256).await,
        Err(KeyLookupError::UnknownKey)
    ));
    // A flood of made-up kids right after a fetch causes no fetch at all.
    for i in 0..50 {
        let r = keys
            .key(&issuer.url, Some(&format!("made-up-{i}")), Alg::EdDsa)
            .await;
        assert!(matches!(r, Err(KeyLookupError::UnknownKey)));
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "rate limited");
    assert_eq!(keys.stats(), (1, 0, 51), "each refused refetch is counted");

    // The issuer rotates: k2 appears. It is found once the interval has passed, with exactly
    // one more fetch however often we asked meanwhile.
    issuer.jwks.lock()["keys"]
        .as_array_mut()
        .unwrap()
        .push(jwk("k2"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if keys.key(&issuer.url, Some("k2"), Alg::EdDsa).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "k2 never found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);
    // Known kids are served from the cache.
    for _ in 0..20 {
        keys.key(&issuer.url, Some("k1"), Alg::EdDsa).await.unwrap();
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn oversized_and_unreachable_issuers_fail_as_unavailable() {
    let big = serve(64 * 1024).await;
    let cfg = OidcClientConfig {
        max_response_bytes: 16 * 1024,
        ..OidcClientConfig::default()
    };
    let keys = cache(&cfg);
    match keys.key(&big.url, Some("k1"), Alg::EdDsa).await {
        Err(KeyLookupError::Unavailable(m)) => assert!(m.contains("limit"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Nothing listens on port 1.
    let r = keys.key("http://127.0.0.1:1", Some("k1"), Alg::EdDsa).await;
    assert!(matches!(r, Err(KeyLookupError::Unavailable(_))), "{r:?}");
    // The same cache still works for a healthy issuer.
    let ok = serve(0).await;
    assert!(keys.key(&ok.url, Some("k1"), Alg::EdDsa).await.is_ok());
}

/// A burst of exchanges against an issuer answering 500 makes one fetch (maybe two), not one
/// each: failures back off, and concurrent lookups share the fetch in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_issuer_is_asked_once_per_back_off_not_once_per_exchange() {
    let issuer = serve(0).await;
    *issuer.status.lock() = (500, Duration::from_millis(200));
    let cfg = OidcClientConfig {
        failure_backoff_ms: 10_000,
        ..OidcClientConfig::default()
    };
    let keys = Arc::new(cache(&cfg));
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let (keys, url) = (keys.clone(), issuer.url.clone());
            tokio::spawn(async move { keys.key(&url, Some("k1"), Alg::EdDsa).await })
        })
        .collect();
    for t in burst {
        let r = t.await.unwrap();
        assert!(matches!(r, Err(KeyLookupError::Unavailable(_))), "{r:?}");
    }
    let n = issuer.requests.load(Ordering::SeqCst);
    assert!((1..=2).contains(&n), "{n} requests to the issuer");
    assert_eq!(keys.stats().1 as usize, n, "each failure counted");
    // While backing off, the issuer is not asked even once it is healthy again.
    *issuer.status.lock() = (200, Duration::ZERO);
    assert!(keys.key(&issuer.url, Some("k1"), Alg::EdDsa).await.is_err());
    assert_eq!(issuer.requests.load(Ordering::SeqCst), n);
}

/// A slow refresh does not hold up exchanges whose keys are cached: no lock is held across
/// the fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_refresh_does_not_block_lookups_served_from_the_cache() {
    let issuer = serve(0).await;
    let cfg = OidcClientConfig {
        jwks_ttl_s: 0,
        // Longer than the issuer's 20 s: a lookup waiting on the fetch would wait ~20 s.
        timeout_ms: 30_000,
        ..OidcClientConfig::default()
    };
    let keys = Arc::new(cache(&cfg));
    keys.key(&issuer.url, Some("k1"), Alg::EdDsa).await.unwrap();
    // Every lookup now wants a refresh (ttl 0); the issuer takes 20 s to answer.
    *issuer.status.lock() = (200, Duration::from_secs(20));
    let (k, u) = (keys.clone(), issuer.url.clone());
    let refresher = tokio::spawn(async move { k.key(&u, Some("k1"), Alg::EdDsa).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while issuer.requests.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the refresh never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    for _ in 0..20 {
        keys.key(&issuer.url, Some("k1"), Alg::EdDsa).await.unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "cached lookups waited for the refresh: {:?}",
        t.elapsed()
    );
    refresher.abort();
}

/// Cached keys serve through a failing refresh, but not past `max_stale_s`; and an http
/// issuer is never fetched outside dev mode, whatever the store says.
#[tokio::test]
async fn stale_keys_expire_and_production_never_fetches_plain_http() {
    let issuer = serve(0).await;
    let cfg = OidcClientConfig {
        jwks_ttl_s: 0,
        max_stale_s: 2,
        failure_backoff_ms: 1,
        ..OidcClientConfig::default()
    };
    let keys = cache(&cfg);
    keys.key(&issuer.url, Some("k1"), Alg::EdDsa).await.unwrap();
    *issuer.status.lock() = (500, Duration::ZERO);
    // Within max_stale_s: the refresh fails, the cached key still answers.
    keys.key(&issuer.url, Some("k1"), Alg::EdDsa).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match keys.key(&issuer.url, Some("k1"), Alg::EdDsa).await {
            Err(KeyLookupError::Unavailable(_)) => break,
            Ok(_) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(Instant::now() < deadline, "stale keys used forever");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Production (dev = false): the plain-http issuer is refused before any request.
    let fresh = serve(0).await;
    let prod = IssuerKeys::new(Fetcher::new(&cfg).unwrap(), &cfg, false);
    let r = prod.key(&fresh.url, Some("k1"), Alg::EdDsa).await;
    assert!(matches!(r, Err(KeyLookupError::Unavailable(_))), "{r:?}");
    assert_eq!(fresh.requests.load(Ordering::SeqCst), 0);
}
