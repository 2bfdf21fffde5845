#![allow(dead_code)] // each test binary uses a different subset
//! Felix JWTs for broker tests: a signing key held by the test (standing in for the control
//! plane's; the end-to-end path with a real OIDC issuer is the control plane's tests), a
//! broker in JWT mode, and a small real HTTP server that serves the control plane's feed
//! documents (`/.well-known/jwks.json`, `/v1/revocations`) from values the test controls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use felix_auth::{Claims, Grant, Jwks, RevocationList, SigningKey, VerifierConfig};
use felix_broker::auth::{AuthConfig, JwtAuth};
use felix_broker::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{test_config, TestBroker};

pub const ISSUER: &str = "https://cp.test";
pub const AUDIENCE: &str = "felix";
pub const REGION: &str = "eu-1";

pub fn now_s() -> u64 {
    felix_broker::auth::now_s()
}

pub fn grant(actions: &[&str], resources: &[&str]) -> Grant {
    Grant {
        actions: actions.iter().map(|s| s.to_string()).collect(),
        resources: resources.iter().map(|s| s.to_string()).collect(),
    }
}

/// Claims valid now for `lifetime_s` seconds.
pub fn claims(tenant: &str, sub: &str, perms: Vec<Grant>, lifetime_s: u64) -> Claims {
    let now = now_s();
    Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: sub.into(),
        tenant: tenant.into(),
        region: REGION.into(),
        perms,
        iat: now,
        nbf: now,
        exp: now + lifetime_s,
        jti: format!("jti-{tenant}-{sub}-{}", rand_suffix()),
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Everything in the tenant.
pub fn all() -> Vec<Grant> {
    vec![grant(&["*"], &[">"])]
}

pub fn jwks(keys: &[&SigningKey]) -> Jwks {
    Jwks {
        keys: keys.iter().map(|k| k.public_jwk()).collect(),
    }
}

pub fn verifier_config(leeway_s: u64) -> VerifierConfig {
    VerifierConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        region: REGION.into(),
        leeway_s,
    }
}

/// An in-process broker in JWT mode with fixed keys (no control plane).
pub async fn jwt_broker(name: &str, keys: Jwks, leeway_s: u64) -> TestBroker {
    let cfg = test_config(name);
    let ca = cfg.dev_ca_path.clone();
    let auth = JwtAuth::with_keys(verifier_config(leeway_s), keys);
    TestBroker {
        broker: Broker::start_with_auth(cfg, Box::new(auth))
            .await
            .expect("broker starts"),
        ca,
    }
}

/// An in-process broker in JWT mode polling `cp` every `interval_ms`.
pub async fn fed_broker(name: &str, cp: &FakeControlPlane, interval_ms: u64) -> TestBroker {
    let mut cfg = test_config(name);
    cfg.auth = AuthConfig {
        controlplane_url: Some(format!("http://{}", cp.addr)),
        issuer: Some(ISSUER.into()),
        audience: AUDIENCE.into(),
        region: REGION.into(),
        leeway_s: 0,
        feed_interval_ms: interval_ms,
        feed_timeout_ms: 1_000,
        ..AuthConfig::default()
    };
    TestBroker::with_config(cfg).await
}

pub fn client_for(b: &TestBroker, tenant: &str, token: &str) -> felix_client::ClientConfig {
    felix_client::ClientConfig {
        tenant: tenant.into(),
        token: Some(token.into()),
        ..b.client_config()
    }
}

/// A real HTTP/1.1 server (tokio, loopback) standing in for the control plane's feed
/// protocol only: it serves whatever JSON the test put at a path, and can be stopped.
pub struct FakeControlPlane {
    pub addr: SocketAddr,
    docs: Arc<Mutex<HashMap<String, String>>>,
    /// When set, requests without exactly this `Authorization` header get 401.
    required_auth: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeControlPlane {
    pub async fn start(keys: &Jwks) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let docs = Arc::new(Mutex::new(HashMap::new()));
        let served = docs.clone();
        let required_auth: Arc<Mutex<Option<String>>> = Arc::default();
        let required = required_auth.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let docs = served.clone();
                let required = required.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                        match sock.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(r) => n += r,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let body = docs.lock().unwrap().get(&path).cloned();
                    let authorized = match required.lock().unwrap().as_deref() {
                        None => true,
                        Some(want) => head.lines().any(|l| {
                            l.split_once(':').is_some_and(|(k, v)| {
                                k.eq_ignore_ascii_case("authorization") && v.trim() == want
                            })
                        }),
                    };
                    let (status, body) = match body {
                        _ if !authorized => ("401 Unauthorized", String::new()),
                        Some(b) => ("200 OK", b),
                        None => ("404 Not Found", String::new()),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        let cp = Self {
            addr,
            docs,
            required_auth,
            task,
        };
        cp.set_keys(keys);
        cp.set_revocations(&RevocationList::default());
        cp
    }

    /// Answers only requests carrying `Authorization: <value>` from now on.
    pub fn require_authorization(&self, value: &str) {
        *self.required_auth.lock().unwrap() = Some(value.to_owned());
    }

    pub fn set_keys(&self, keys: &Jwks) {
        self.docs.lock().unwrap().insert(
            "/.well-known/jwks.json".into(),
            serde_json::to_string(keys).unwrap(),
        );
    }

    pub fn set_revocations(&self, list: &RevocationList) {
        self.docs.lock().unwrap().insert(
            "/v1/revocations".into(),
            serde_json::to_string(list).unwrap(),
        );
    }

    /// Stops answering: the port is closed, polls fail with connection refused.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// GET on the broker's HTTP endpoint: (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The broker's JWT status details (`/ready`'s `auth` object), straight from the broker.
pub fn auth_details(b: &TestBroker) -> serde_json::Value {
    b.broker
        .shared()
        .auth
        .status()
        .expect("JWT mode reports a status")
        .details
}

pub const SECOND: Duration = Duration::from_secs(1);
