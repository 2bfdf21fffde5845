//! The RFC 8693 token exchange at the Felix control plane (blocking HTTP, `ureq` over rustls
//! with ring). Bounded in time (one global deadline) and in size (the reply is read up to a
//! limit, never buffered past it); no redirect is followed, so the subject token goes only
//! to the configured host. Errors never quote a token.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::token::{self, SubjectToken, TokenExchange};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The parts of a successful exchange reply the client uses.
#[derive(Debug)]
pub(crate) struct Exchanged {
    pub access_token: String,
    pub expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct Reply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Exchanges `x.subject_token` for a Felix token for `tenant` (unless `x.audience` names
/// another audience). Blocking.
pub(crate) fn exchange(x: &TokenExchange, tenant: &str) -> Result<Exchanged> {
    let endpoint = token_endpoint(&x.url)?;
    let subject = subject_token(&x.subject_token)?;
    let audience = x.audience.as_deref().unwrap_or(tenant);
    let agent = agent(x)?;
    let mut resp = agent
        .post(&endpoint)
        .header("accept", "application/json")
        .send_form([
            ("grant_type", GRANT_TYPE),
            ("subject_token", subject.as_str()),
            ("subject_token_type", x.subject_token_type.as_str()),
            ("audience", audience),
        ])
        .map_err(|e| Error::Connect(format!("control plane {endpoint}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(x.max_response_bytes as u64)
        .read_to_string()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(n) => Error::Protocol(format!(
                "control plane reply longer than {n} bytes (max_response_bytes)"
            )),
            e => Error::Connect(format!("control plane {endpoint}: reading the reply: {e}")),
        })?;
    if status == 200 {
        let r: Reply = serde_json::from_str(&body).map_err(|e| {
            Error::Protocol(format!("control plane reply is not a token response: {e}"))
        })?;
        return Ok(Exchanged {
            access_token: r.access_token,
            expires_in: r.expires_in,
        });
    }
    match serde_json::from_str::<OAuthError>(&body) {
        // An OAuth error is the control plane's decision about this credential.
        Ok(e) if (400..500).contains(&status) => Err(Error::Unauthorized(format!(
            "token exchange refused ({}): {}",
            e.error,
            e.error_description.as_deref().unwrap_or("no description")
        ))),
        // Anything else (5xx, a proxy's page) may pass: retryable.
        _ => Err(Error::Connect(format!(
            "control plane {endpoint}: HTTP {status}"
        ))),
    }
}

fn agent(x: &TokenExchange) -> Result<ureq::Agent> {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if let Some(path) = &x.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            Error::InvalidArgument(format!("control plane CA {}: {e}", path.display()))
        })?;
        let certs: Vec<_> = parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "control plane CA {}: no certificate found",
                path.display()
            )));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let timeout = if x.timeout.is_zero() {
        Duration::from_secs(10)
    } else {
        x.timeout
    };
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(tls.build())
        .build()
        .into())
}

/// `{url}/oauth/token`, refusing plain HTTP to anything but loopback.
fn token_endpoint(url: &str) -> Result<String> {
    use felix_auth::url::{check_credential_url, UrlRefusal};
    let base = url.trim_end_matches('/');
    let why = match check_credential_url(base, false) {
        Ok(()) => return Ok(format!("{base}/oauth/token")),
        Err(UrlRefusal::UserInfo) => "user information (`…@`) is not allowed",
        Err(UrlRefusal::PlainRemote) => {
            "plain http is allowed only to a loopback host (the exchange sends a credential)"
        }
        Err(_) => "expected https://...",
    };
    Err(Error::InvalidArgument(format!(
        "control plane URL {base}: {why}"
    )))
}

fn subject_token(s: &SubjectToken) -> Result<String> {
    let t = match s {
        SubjectToken::Value(v) => v.clone(),
        SubjectToken::File(p) => std::fs::read_to_string(p)
            .map_err(|e| Error::Unauthorized(format!("subject token file {}: {e}", p.display())))?
            .trim_end()
            .to_owned(),
        SubjectToken::Callback(f) => token::call(f, "subject token callback")?,
    };
    if t.is_empty() {
        return Err(Error::Unauthorized("the subject token is empty".into()));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert_eq!(
            token_endpoint("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080/oauth/token"
        );
        assert!(token_endpoint("http://localhost/x").is_ok());
        assert!(token_endpoint("http://[::1]:9/").is_ok());
        assert!(token_endpoint("https://cp.example").is_ok());
        for bad in [
            "http://cp.example",
            "http://10.0.0.1:80",
            "ftp://x",
            "cp",
            "http://127.0.0.1:80@cp.evil.example/",
            "http://[::1]@evil/",
            "https://user:pw@cp.example",
        ] {
            let e = token_endpoint(bad).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidArgument, "{bad}");
        }
    }
}
