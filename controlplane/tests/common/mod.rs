//! Real parts for the control plane's end-to-end tests: the `felix-controlplane` binary as a
//! process, the real OIDC issuer (`tests/oidc/issuer.mjs`, oidc-provider on node) as a
//! process, real ID tokens obtained through its authorization-code flow, and a small HTTP/1.1
//! client (plain or rustls) over std sockets.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn oidc_dir() -> PathBuf {
    repo_root().join("tests/oidc")
}

/// Installs the issuer's npm packages once (the test command runs `npm ci` itself; this
/// covers a bare `cargo test`).
fn ensure_npm() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap();
    if *done {
        return;
    }
    if !oidc_dir().join("node_modules/oidc-provider").exists() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(oidc_dir())
            .status()
            .expect("npm (node 20.19+) is needed for the OIDC issuer");
        assert!(st.success(), "npm ci in tests/oidc failed");
    }
    *done = true;
}

/// Reads the first stdout line of a child, with a deadline.
fn first_line(child: &mut Child, what: &str) -> String {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining: a child writing to a closed pipe would die of EPIPE.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} printed nothing within 60 s"));
    assert!(
        !line.is_empty(),
        "{what} exited before printing its address"
    );
    line
}

/// A running OIDC issuer. Killed on drop (and it exits by itself when our stdin pipe closes).
pub struct Issuer {
    child: Child,
    pub url: String,
    /// With TLS: the certificate clients must trust.
    ca: Option<PathBuf>,
    _accounts: tempfile::NamedTempFile,
}

impl Issuer {
    /// `accounts`: login → extra claims, e.g. `{"alice": {"groups": ["admins"]}}`.
    pub fn start(accounts: Value) -> Issuer {
        Issuer::start_with(accounts, None)
    }

    /// An HTTPS issuer at `https://localhost:PORT` with this certificate (naming localhost)
    /// and key.
    pub fn start_tls(accounts: Value, cert: &Path, key: &Path) -> Issuer {
        Issuer::start_with(accounts, Some((cert, key)))
    }

    fn start_with(accounts: Value, tls: Option<(&Path, &Path)>) -> Issuer {
        ensure_npm();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(accounts.to_string().as_bytes()).unwrap();
        let mut cmd = Command::new("node");
        cmd.arg(oidc_dir().join("issuer.mjs"))
            .arg("--accounts")
            .arg(file.path());
        if let Some((cert, key)) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let line = first_line(&mut child, "issuer.mjs");
        let v: Value = serde_json::from_str(&line).unwrap();
        Issuer {
            child,
            url: v["issuer"].as_str().unwrap().to_string(),
            ca: tls.map(|(cert, _)| cert.to_path_buf()),
            _accounts: file,
        }
    }

    /// A real ID token for `login`, through the authorization-code flow of `client`.
    pub fn id_token(&self, login: &str, client: &str) -> String {
        let mut cmd = Command::new("node");
        cmd.arg(oidc_dir().join("get-id-token.mjs"))
            .args([&self.url, login, client]);
        if let Some(ca) = &self.ca {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let out = cmd.output().expect("node");
        assert!(
            out.status.success(),
            "get-id-token.mjs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["id_token"].as_str().unwrap().to_string()
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/oidc/crafted-issuer.mjs`: an issuer with keys of our own that signs deliberately
/// defective tokens (the real issuer never would, and its private keys stay inside it).
pub struct CraftedIssuer {
    child: Child,
    pub url: String,
    pub tokens: serde_json::Map<String, Value>,
}

impl CraftedIssuer {
    pub fn start(audience: &str) -> CraftedIssuer {
        let mut child = Command::new("node")
            .arg(oidc_dir().join("crafted-issuer.mjs"))
            .arg(audience)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let line = first_line(&mut child, "crafted-issuer.mjs");
        let v: Value = serde_json::from_str(&line).unwrap();
        CraftedIssuer {
            child,
            url: v["issuer"].as_str().unwrap().to_string(),
            tokens: v["tokens"].as_object().unwrap().clone(),
        }
    }

    pub fn token(&self, name: &str) -> &str {
        self.tokens[name].as_str().unwrap()
    }
}

impl Drop for CraftedIssuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `felix-controlplane` process.
pub struct Cp {
    child: Child,
    pub addr: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub admin: Option<String>,
    pub log: PathBuf,
}

pub struct CpOptions<'a> {
    pub args: Vec<String>,
    pub env: Vec<(&'a str, String)>,
    pub tls_ca: Option<Arc<rustls::ClientConfig>>,
    pub admin: Option<String>,
}

impl Cp {
    pub fn start(args: &[&str]) -> Cp {
        Cp::start_with(CpOptions {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            tls_ca: None,
            admin: None,
        })
    }

    pub fn start_with(o: CpOptions<'_>) -> Cp {
        let log = tempfile::Builder::new()
            .prefix("felix-cp-log-")
            .tempfile()
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_felix-controlplane"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .args(&o.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("felix-controlplane");
        let line = first_line(&mut child, "felix-controlplane");
        let v: Value = serde_json::from_str(&line).unwrap();
        Cp {
            child,
            addr: v["listen"].as_str().unwrap().to_string(),
            tls: o.tls_ca,
            admin: o.admin,
            log,
        }
    }

    /// A client handle to a control plane another `Cp` owns (no process of its own).
    pub fn attach(addr: &str) -> CpClient {
        CpClient {
            addr: addr.to_string(),
        }
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and waits for it.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("felix-controlplane did not stop on SIGTERM");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request; answers (status, JSON body or Null, raw head).
    pub fn req(
        &self,
        method: &str,
        path: &str,
        ctype: Option<&str>,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> (u16, Value, String) {
        raw_request(
            &self.addr,
            self.tls.clone(),
            method,
            path,
            ctype,
            body,
            headers,
        )
    }

    fn auth(&self) -> Vec<(&str, String)> {
        self.admin
            .iter()
            .map(|t| ("Authorization", format!("Bearer {t}")))
            .collect()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let a = self.auth();
        let h: Vec<(&str, &str)> = a.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, v, _) = self.req("GET", path, None, b"", &h);
        (s, v)
    }

    pub fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let a = self.auth();
        let h: Vec<(&str, &str)> = a.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, v, _) = self.req(
            method,
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
            &h,
        );
        (s, v)
    }

    /// PUT that must succeed.
    pub fn put_ok(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.send("PUT", path, body);
        assert!(s == 200 || s == 201, "PUT {path}: {s} {v}");
        v
    }

    /// A token exchange with these form fields.
    pub fn exchange(&self, fields: &[(&str, &str)]) -> (u16, Value, String) {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let (s, v, head) = self.req(
            "POST",
            "/oauth/token",
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
            &[],
        );
        (s, v, head)
    }

    /// The standard exchange of an ID token.
    pub fn exchange_id_token(&self, token: &str, audience: Option<&str>) -> (u16, Value) {
        let mut f = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
        ];
        if let Some(a) = audience {
            f.push(("audience", a));
        }
        let (s, v, _) = self.exchange(&f);
        (s, v)
    }

    /// The `/metrics` text.
    pub fn metrics_text(&self) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    pub fn jwks(&self) -> felix_auth::Jwks {
        let (s, v) = self.get("/.well-known/jwks.json");
        assert_eq!(s, 200, "{v}");
        serde_json::from_value(v).unwrap()
    }
}

impl Drop for Cp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`). A connection closed
/// or reset without an answer gives status 0.
pub fn raw_request(
    addr: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    ctype: Option<&str>,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, Value, String) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = ctype {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let Ok(tcp) = TcpStream::connect(addr) else {
        return (0, Value::Null, String::new());
    };
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut raw = Vec::new();
    match tls {
        None => {
            let mut s = tcp;
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
            let _ = s.read_to_end(&mut raw);
        }
        Some(cfg) => {
            let conn = rustls::ClientConnection::new(cfg, "localhost".try_into().unwrap()).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
            let _ = s.read_to_end(&mut raw);
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json, head.to_string())
}

/// Plain-HTTP requests to a control plane owned elsewhere.
pub struct CpClient {
    addr: String,
}

impl CpClient {
    pub fn req(
        &self,
        method: &str,
        path: &str,
        ctype: Option<&str>,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> (u16, Value, String) {
        raw_request(&self.addr, None, method, path, ctype, body, headers)
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Verifies a Felix token with the control plane's published keys.
pub fn verify(cp: &Cp, token: &str) -> Result<felix_auth::Claims, felix_auth::TokenError> {
    verify_with(cp.jwks(), token)
}

/// Verifies a Felix token with a JWKS fetched earlier (what a broker's cache holds).
pub fn verify_with(
    jwks: felix_auth::Jwks,
    token: &str,
) -> Result<felix_auth::Claims, felix_auth::TokenError> {
    let v = felix_auth::Verifier::new(
        felix_auth::VerifierConfig {
            issuer: "felix-controlplane".into(),
            audience: "felix".into(),
            region: "local".into(),
            leeway_s: 5,
        },
        jwks,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    v.verify(token, now)
}

/// The header's `kid` of a JWT.
pub fn kid_of(token: &str) -> String {
    use base64::Engine;
    let h = token.split('.').next().unwrap();
    let h: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap();
    h["kid"].as_str().unwrap().to_string()
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends raw bytes on a fresh connection and reads until EOF (or `max`): what came back and
/// how long the server took to close.
pub fn raw_exchange(addr: &str, bytes: &[u8], max: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(max)).unwrap();
    let t = Instant::now();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).to_string(), t.elapsed())
}

/// Waits for a condition with a deadline.
pub fn wait_until(what: &str, max: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {max:?} waiting for {what}");
}

/// A tenant with a namespace, roles `admin` (everything) and `reader` (subscribe in `ns`),
/// trusting `issuer` for the test clients, `groups: payments-admins` → admin, `sub: bob` →
/// reader.
pub fn setup_tenant(cp: &Cp, tenant: &str, issuer: &str) {
    cp.put_ok(&format!("/v1/tenants/{tenant}"), serde_json::json!({}));
    cp.put_ok(
        &format!("/v1/tenants/{tenant}/namespaces/ns"),
        serde_json::json!({}),
    );
    cp.put_ok(
        &format!("/v1/tenants/{tenant}/roles/admin"),
        serde_json::json!({"grants": [{"actions": ["*"], "resources": [">"]}]}),
    );
    cp.put_ok(
        &format!("/v1/tenants/{tenant}/roles/reader"),
        serde_json::json!({"grants": [{"actions": ["subscribe"], "resources": ["ns/orders.>"]}]}),
    );
    cp.put_ok(
        &format!("/v1/tenants/{tenant}/issuers/test"),
        serde_json::json!({
            "issuer": issuer,
            "audiences": ["felix-test", "felix-es256", "felix-eddsa", "felix-ps256", "felix-short"],
            "rules": [
                {"claim": "groups", "equals": "payments-admins", "roles": ["admin"]},
                {"claim": "sub", "equals": "bob", "roles": ["reader"]}
            ]
        }),
    );
}

pub fn accounts() -> Value {
    serde_json::json!({
        "alice": {"groups": ["payments-admins", "staff"]},
        "bob": {"groups": ["staff"]},
        "carol": {"groups": ["visitors"]}
    })
}

pub fn data_dir(root: &Path) -> PathBuf {
    let d = root.join("data");
    std::fs::create_dir_all(&d).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// A plain HTTP/1.1 GET: (status, body), or `None` while nothing listens.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).ok()?;
    let code = status.split_whitespace().nth(1)?.parse().ok()?;
    let mut rest = String::new();
    reader.read_to_string(&mut rest).ok()?;
    let body = rest.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}
