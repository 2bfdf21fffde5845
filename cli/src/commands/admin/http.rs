//! The admin API client: blocking HTTP/1.1 (`ureq`, rustls with ring) with a deadline per
//! request, a bounded answer, no redirects, and the admin token as a bearer header.
//!
//! The token comes from `--admin-token-file` or `FELIX_ADMIN_TOKEN`, never from a flag value
//! (command lines are visible to every local user and kept in shell histories), and it is
//! never printed: error messages name the file, not its content.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use ureq::http::{Method, Request};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::{AdminOpts, EXIT_REFUSED};
use crate::output::{warn, Failure, EXIT_OTHER, EXIT_UNAVAILABLE};

/// Largest answer read: lists of a big deployment fit; a runaway answer does not fill memory.
pub const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;
/// Deadline of one request when `--timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable holding the admin token (when no `--admin-token-file`).
pub const TOKEN_ENV: &str = "FELIX_ADMIN_TOKEN";

/// A configured control-plane client.
pub struct Api {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// A 2xx answer: status and JSON body (`Null` for 204).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Api {
    /// Checks the options and reads the token; no network work yet.
    pub fn new(o: &AdminOpts, timeout: Option<Duration>) -> Result<Api, Failure> {
        let base = o.controlplane.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::usage(format!(
                "--controlplane {base:?}: expected an http:// or https:// URL"
            )));
        }
        let token = read_token(o.admin_token_file.as_deref())?;
        if token.is_some()
            && base.starts_with("http://")
            && !felix_auth::url::is_loopback_url(&base)
        {
            warn(format_args!(
                "sending the admin token over plain http to {base}: anyone on the path can \
                 read it (use https)"
            ));
        }
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &o.ca_file {
            tls = tls.root_certs(RootCerts::Specific(Arc::new(read_ca(ca)?)));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout.unwrap_or(DEFAULT_TIMEOUT)))
            .max_redirects(0)
            .http_status_as_error(false)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Api { agent, base, token })
    }

    /// One request. `body` is sent as `application/json`; errors of the API become a
    /// [`Failure`] with its `error` code and `error_description` (exit 1).
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<u64>,
    ) -> Result<Reply, Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("accept", "application/json")
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(rev) = if_match {
            req = req.header("if-match", rev.to_string());
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let req = req
            .body(bytes)
            .map_err(|e| Failure::usage(format!("{method} {url}: {e}")))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| transport(&method, &url, e))?;
        let status = resp.status().as_u16();
        let raw = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| transport(&method, &url, e))?;
        let parsed: Option<Value> = serde_json::from_slice(&raw).ok();
        // With redirects off a 3xx comes back as it is: not a success.
        if status >= 300 {
            return Err(api_error(status, parsed, &raw));
        }
        Ok(Reply {
            status,
            body: parsed.unwrap_or(Value::Null),
        })
    }
}

/// `{error, error_description}` → `error[code]: description`, exit 1 (the server refused).
fn api_error(status: u16, body: Option<Value>, raw: &[u8]) -> Failure {
    let field = |k: &str| {
        body.as_ref()
            .and_then(|b| b.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match field("error") {
        Some(code) => {
            let desc = field("error_description").unwrap_or_else(|| format!("HTTP {status}"));
            Failure::new(code, desc, EXIT_REFUSED)
        }
        None => {
            let text: String = String::from_utf8_lossy(raw).chars().take(200).collect();
            Failure::new(
                format!("http_{status}"),
                format!("HTTP {status} {}", text.trim()),
                EXIT_REFUSED,
            )
        }
    }
}

/// The control plane could not be reached or did not answer in time: exit 3, retrying may
/// help. An answer over [`MAX_RESPONSE_BYTES`] is not something a retry fixes: exit 4.
fn transport(method: &Method, url: &str, e: ureq::Error) -> Failure {
    let (code, exit) = match e {
        ureq::Error::Timeout(_) => ("timeout", EXIT_UNAVAILABLE),
        ureq::Error::BodyExceedsLimit(_) => ("response_too_large", EXIT_OTHER),
        _ => ("unavailable", EXIT_UNAVAILABLE),
    };
    Failure::new(code, format!("{method} {url}: {e}"), exit)
}

/// The admin token: the first non-empty line of the file, else the environment, else none
/// (a dev control plane has an open admin API).
fn read_token(file: Option<&Path>) -> Result<Option<String>, Failure> {
    let (text, from) = match file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => {
                warn_if_shared(p);
                (t, format!("admin token file {}", p.display()))
            }
            Err(e) => {
                return Err(Failure::usage(format!(
                    "cannot read admin token file {}: {e}",
                    p.display()
                )))
            }
        },
        None => match std::env::var(TOKEN_ENV) {
            Ok(t) => (t, TOKEN_ENV.to_owned()),
            Err(_) => return Ok(None),
        },
    };
    let token = text.lines().map(str::trim).find(|l| !l.is_empty());
    match token {
        Some(t) if t.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(t.to_owned())),
        Some(_) => Err(Failure::usage(format!(
            "{from}: the token must be printable ASCII without spaces"
        ))),
        None => Err(Failure::usage(format!("{from} is empty"))),
    }
}

/// A token file others can read is a leaked token: say so (the control plane refuses such a
/// file for itself; a client's copy is the operator's business, so only a warning).
#[cfg(unix)]
fn warn_if_shared(p: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(p) {
        if m.permissions().mode() & 0o077 != 0 {
            warn(format_args!(
                "admin token file {} is readable by group or others (chmod 600 it)",
                p.display()
            ));
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path) {}

/// Every certificate of a PEM file.
fn read_ca(path: &Path) -> Result<Vec<Certificate<'static>>, Failure> {
    let pem = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read --ca-file {}: {e}", path.display())))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(Failure::usage(format!("--ca-file {}: {e}", path.display()))),
        }
    }
    if certs.is_empty() {
        return Err(Failure::usage(format!(
            "--ca-file {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// One path segment: names are checked by the server, but a name must never change the
/// path (`/`, `..`, `?`), so everything outside `[A-Za-z0-9._~-]` is percent-encoded.
pub fn seg(name: &str) -> Result<String, Failure> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(Failure::usage(format!("invalid name {name:?}")));
    }
    let mut s = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-') {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(felix_auth::url::is_loopback_url("http://127.0.0.1:7700"));
        assert!(felix_auth::url::is_loopback_url("http://localhost/x"));
        assert!(felix_auth::url::is_loopback_url("http://[::1]:7700"));
        assert!(!felix_auth::url::is_loopback_url(
            "http://cp.example.com:7700"
        ));
        assert!(!felix_auth::url::is_loopback_url(
            "http://127.0.0.1.evil.com"
        ));
    }

    #[test]
    fn segments_cannot_escape_the_path() {
        assert_eq!(seg("orders.eu").unwrap(), "orders.eu");
        assert_eq!(seg("a/b").unwrap(), "a%2Fb");
        assert_eq!(seg("x?y").unwrap(), "x%3Fy");
        assert!(seg("..").is_err());
        assert!(seg("").is_err());
    }

    #[test]
    fn api_errors_keep_code_and_description() {
        let body = serde_json::json!({"error": "conflict", "error_description": "children"});
        match api_error(409, Some(body), b"") {
            Failure::Error {
                code,
                message,
                exit,
            } => {
                assert_eq!(
                    (code.as_str(), message.as_str(), exit),
                    ("conflict", "children", 1)
                );
            }
            Failure::Quiet(_) => panic!("quiet"),
        }
    }
}
