//! Real parts for the token tests: an in-process dev broker, a QUIC peer that grants
//! `token_refresh` (until the broker serves it: see `tokens.rs`), a tiny HTTP server standing
//! in for the control plane's token endpoint, and Felix JWTs signed with a real key.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use felix_broker::{Broker, BrokerConfig};
use felix_client::{ClientConfig, Tls};
use felix_wire::{features, Decoded, Message};

static NEXT: AtomicU64 = AtomicU64::new(0);

pub fn scratch(name: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "felix-client-test-{}-{name}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A Felix JWT for `acme`/`alice` valid from now for `life_s` seconds, signed with a real
/// Ed25519 key (the client never verifies it; the broker in JWT mode would).
pub fn felix_jwt(life_s: u64, jti: &str) -> String {
    felix_jwt_skewed(life_s, jti, 0)
}

/// [`felix_jwt`] from an issuer whose clock is `skew_s` seconds off this machine's (its `iat`
/// is the issuer's now): what a client with a skewed clock receives.
pub fn felix_jwt_skewed(life_s: u64, jti: &str, skew_s: i64) -> String {
    let key = felix_auth::SigningKey::generate("test-key");
    let now = now_s().saturating_add_signed(skew_s);
    key.sign(&felix_auth::Claims {
        iss: "felix-controlplane".into(),
        aud: "felix".into(),
        sub: "alice".into(),
        tenant: "acme".into(),
        region: "local".into(),
        perms: vec![],
        iat: now,
        nbf: now,
        exp: now + life_s,
        jti: jti.into(),
    })
    .unwrap()
}

/// An in-process dev broker (any token accepted; `token_refresh` as the broker grants it).
pub struct DevBroker {
    pub broker: Broker,
    pub ca: PathBuf,
}

impl DevBroker {
    pub async fn start(name: &str) -> Self {
        let mut cfg = BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: None,
            dev_ca_path: scratch(name).join("ca.pem"),
            ..BrokerConfig::default()
        };
        cfg.shutdown_grace_ms = 1_000;
        let ca = cfg.dev_ca_path.clone();
        let broker = Broker::start(cfg).await.expect("broker starts");
        Self { broker, ca }
    }

    /// A dev broker whose every token is its own principal (subject = the token), so a
    /// `reauth` always names another subject and is refused: the client core then replaces
    /// the connection, as it does with a broker that does not grant `token_refresh`.
    pub async fn start_refusing_reauth(name: &str) -> Self {
        struct EachTokenItsOwnSubject;
        impl felix_broker::auth::Authenticator for EachTokenItsOwnSubject {
            fn authenticate(
                &self,
                tenant: &str,
                token: Option<&str>,
            ) -> Result<felix_broker::auth::Principal, felix_broker::auth::AuthError> {
                Ok(felix_broker::auth::Principal::unrestricted(
                    tenant.to_owned(),
                    token.map(str::to_owned),
                ))
            }
        }
        let mut cfg = BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: None,
            dev_ca_path: scratch(name).join("ca.pem"),
            ..BrokerConfig::default()
        };
        cfg.shutdown_grace_ms = 1_000;
        let ca = cfg.dev_ca_path.clone();
        let broker = Broker::start_with_auth(cfg, Box::new(EachTokenItsOwnSubject))
            .await
            .expect("broker starts");
        Self { broker, ca }
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            addresses: vec![self.broker.local_addr().to_string()],
            tls: Tls::CaFile(self.ca.clone()),
            tenant: "acme".into(),
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        }
    }
}

/// What the [`RefreshPeer`] saw.
#[derive(Default)]
pub struct PeerLog {
    pub connections: u64,
    /// Tokens of every `auth`, in order.
    pub auth_tokens: Vec<Option<String>>,
    /// Tokens of every `reauth`, in order.
    pub reauth_tokens: Vec<String>,
    /// This many `reauth`s (the first ones) are answered `overloaded`, as the broker's
    /// per-connection reauth rate bound does.
    pub overload_reauths: u64,
}

/// A QUIC peer speaking the Felix wire protocol just enough for the token tests: it grants
/// `token_refresh` (and `ping`), answers `ping` with `pong` and `reauth` with `ok` (or with
/// `unauthorized` when `refuse_reauth`). Real QUIC, real TLS, the real codec: it stands in
/// for the broker only until the broker serves `reauth` (then the same assertions run against
/// the broker in JWT mode: see `tokens.rs`).
pub struct RefreshPeer {
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub log: Arc<Mutex<PeerLog>>,
    _endpoint: quinn::Endpoint,
}

impl RefreshPeer {
    pub fn start(name: &str, refuse_reauth: bool) -> Self {
        Self::start_overloading(name, refuse_reauth, 0)
    }

    /// [`RefreshPeer::start`], answering the first `overload` reauths `overloaded`.
    pub fn start_overloading(name: &str, refuse_reauth: bool, overload: u64) -> Self {
        let ca = scratch(name).join("ca.pem");
        let tls = felix_transport::ServerTls::generate_dev(&ca).unwrap();
        let endpoint = felix_transport::server_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            tls,
            &felix_transport::TransportConfig::default(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        let log = Arc::new(Mutex::new(PeerLog {
            overload_reauths: overload,
            ..PeerLog::default()
        }));
        let (ep, lg) = (endpoint.clone(), log.clone());
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let lg = lg.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    lg.lock().unwrap().connections += 1;
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        tokio::spawn(serve_stream(send, recv, lg.clone(), refuse_reauth));
                    }
                });
            }
        });
        Self {
            addr,
            ca,
            log,
            _endpoint: endpoint,
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            addresses: vec![self.addr.to_string()],
            tls: Tls::CaFile(self.ca.clone()),
            tenant: "acme".into(),
            request_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        }
    }
}

async fn serve_stream(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    log: Arc<Mutex<PeerLog>>,
    refuse_reauth: bool,
) {
    let mut reader = felix_transport::framed::FrameReader::new(recv, 1 << 20);
    while let Ok(Some(frame)) = reader.next().await {
        let reply = match felix_wire::decode(frame) {
            Ok(Decoded::Json(Message::Auth { token, .. })) => {
                log.lock().unwrap().auth_tokens.push(token);
                let (lo, hi) = features::split(
                    features::ERROR_CODES | features::PING | features::TOKEN_REFRESH,
                );
                Message::AuthOk {
                    server_flags: 0,
                    server_features: Some(lo),
                    server_features_hi: Some(hi),
                    max_frame_bytes: None,
                }
            }
            Ok(Decoded::Json(Message::Reauth { request_id, token })) => {
                let overloaded = {
                    let mut l = log.lock().unwrap();
                    l.reauth_tokens.push(token);
                    let o = l.overload_reauths > 0;
                    l.overload_reauths = l.overload_reauths.saturating_sub(1);
                    o
                };
                if overloaded {
                    Message::error(
                        felix_wire::ErrorCode::Overloaded,
                        "reauth rate bound",
                        Some(request_id),
                        true,
                    )
                } else if refuse_reauth {
                    Message::error(
                        felix_wire::ErrorCode::Unauthorized,
                        "reauth refused",
                        Some(request_id),
                        true,
                    )
                } else {
                    Message::Ok {
                        request_id: Some(request_id),
                    }
                }
            }
            Ok(Decoded::Json(Message::Ping { request_id })) => Message::Pong { request_id },
            _ => return,
        };
        if send.write_all(&reply.to_frame_bytes()).await.is_err() {
            return;
        }
    }
}

/// One request the [`TokenEndpoint`] received.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub content_type: String,
    /// Form fields, decoded.
    pub form: Vec<(String, String)>,
}

impl HttpRequest {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP/1.1 server on loopback answering every request with `status` and `body`
/// (computed per request), recording each request: the control plane's token endpoint as the
/// client sees it.
pub struct TokenEndpoint {
    pub url: String,
    pub requests: Arc<Mutex<Vec<HttpRequest>>>,
}

impl TokenEndpoint {
    pub fn start(reply: impl Fn(usize) -> (u16, String) + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let Some(req) = read_request(&mut stream) else {
                    continue;
                };
                reqs.lock().unwrap().push(req);
                let (status, body) = reply(n);
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            }
        });
        Self { url, requests }
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<HttpRequest> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let (mut len, mut content_type) = (0usize, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "content-type" => content_type = v.trim().to_owned(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let form = String::from_utf8(body)
        .ok()?
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (url_decode(k), url_decode(v))
        })
        .collect();
    Some(HttpRequest {
        method,
        path,
        content_type,
        form,
    })
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Polls `cond` until true or `secs` pass (state observable only by asking).
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
