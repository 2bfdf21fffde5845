//! JWT mode: Felix JWTs verified locally, once per stream `auth` (no network call on the
//! request path), against the keys of the [`Feed`].
//!
//! Checked: size (16 KiB), `alg` = `EdDSA`, `kid` among the current keys, the signature,
//! `iss`, `aud`, `region` (this broker's), `nbf`/`exp` with `auth.leeway_s`, the grammar of
//! `perms`, the token's `tenant` against the `auth` frame's `tenant_id`, and the revocation
//! list. Every refusal is `unauthorized`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use felix_auth::{Jwks, Permissions, VerifierConfig};

use super::feed::Feed;
use super::TokenConfigError;
use super::{now_s, AuthConfig, AuthError, AuthStatus, Authenticator, Principal};

/// Verifies Felix JWTs.
#[derive(Debug)]
pub struct JwtAuth {
    feed: Arc<Feed>,
    leeway_s: u64,
    /// `auth.max_token_lifetime_s`: tokens with `exp - iat` above it are refused (revocation
    /// retention assumes no token lives longer).
    max_token_lifetime_s: u64,
    poll: Option<Poll>,
    expired: AtomicU64,
    revoked: AtomicU64,
    key_withdrawn: AtomicU64,
}

#[derive(Debug, Clone)]
pub(super) struct Poll {
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_bytes: u64,
    /// The broker read token, if configured.
    pub token: Option<FeedToken>,
    /// DER CA certificates for a control plane with a private CA.
    pub ca: Option<Arc<Vec<Vec<u8>>>>,
}

/// The broker read token: never printed.
#[derive(Clone)]
pub(crate) struct FeedToken(pub Arc<str>);

impl std::fmt::Debug for FeedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedToken(<redacted>)")
    }
}

/// Reads the broker read token file (first non-empty line); `production` refuses one that
/// other users can read.
pub(crate) fn read_feed_token(
    path: &std::path::Path,
    production: bool,
) -> Result<FeedToken, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("auth.controlplane_token_file {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let msg = format!(
            "auth.controlplane_token_file {shown} is accessible to other users (mode {mode:o}); \
             run chmod 600 on it"
        );
        if production {
            return Err(msg);
        }
        tracing::warn!("{msg}");
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("auth.controlplane_token_file {shown}: {e}"))?;
    let token = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if token.is_empty() {
        return Err(format!(
            "auth.controlplane_token_file {shown} holds no token"
        ));
    }
    Ok(FeedToken(token.into()))
}

/// Reads PEM CA certificates as DER.
/// The HTTP client of the control-plane feeds (keys and revocations, definitions): one deadline
/// for the whole request, no redirects, and never an environment proxy (it would see the read
/// token); with `ca`, those roots replace the public ones. `statuses_as_errors = false` lets a
/// caller read a 304 as an answer.
pub(crate) fn control_plane_agent(
    timeout: std::time::Duration,
    ca: Option<&[Vec<u8>]>,
    statuses_as_errors: bool,
) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(statuses_as_errors)
        .proxy(None);
    if let Some(ca) = ca {
        let certs: Vec<ureq::tls::Certificate<'static>> = ca
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
            .collect();
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    config.build().into()
}

pub(crate) fn read_ca(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("auth.controlplane_ca_file {shown}: {e}"))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c.der().to_vec()),
            Ok(_) => {}
            Err(e) => return Err(format!("auth.controlplane_ca_file {shown}: {e}")),
        }
    }
    if out.is_empty() {
        return Err(format!(
            "auth.controlplane_ca_file {shown} holds no certificate"
        ));
    }
    Ok(out)
}

impl JwtAuth {
    /// JWT mode from the `[auth]` section; `production` refuses a plain-HTTP control plane
    /// that is not on this host.
    pub fn from_config(cfg: &AuthConfig, production: bool) -> Result<Self, TokenConfigError> {
        let err = |m: String| TokenConfigError(m);
        let issuer = cfg
            .issuer
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| err("JWT mode needs auth.issuer (FELIX_AUTH_ISSUER)".into()))?;
        if cfg.audience.is_empty() || cfg.region.is_empty() {
            return Err(err("auth.audience and auth.region must not be empty".into()));
        }
        if cfg.feed_interval_ms == 0 || cfg.feed_timeout_ms == 0 {
            return Err(err(
                "auth.feed_interval_ms and auth.feed_timeout_ms must be > 0".into(),
            ));
        }
        if cfg.feed_max_response_bytes < 1024 {
            return Err(err(
                "auth.feed_max_response_bytes must be at least 1024".into()
            ));
        }
        let vcfg = VerifierConfig {
            issuer,
            audience: cfg.audience.clone(),
            region: cfg.region.clone(),
            leeway_s: cfg.leeway_s,
        };
        let keys = match &cfg.jwt_keys_file {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| err(format!("auth.jwt_keys_file {}: {e}", path.display())))?;
                Feed::parse_jwks(&vcfg, &bytes)
                    .map_err(|e| err(format!("auth.jwt_keys_file {}: {e}", path.display())))?
            }
            None => Jwks::default(),
        };
        let poll = match &cfg.controlplane_url {
            Some(url) => {
                check_url(url, production).map_err(err)?;
                let token = match &cfg.controlplane_token_file {
                    Some(path) => Some(read_feed_token(path, production).map_err(err)?),
                    None if production => {
                        return Err(err(
                            "production needs auth.controlplane_token_file (the control \
                             plane's broker read token) with auth.controlplane_url"
                                .into(),
                        ))
                    }
                    None => None,
                };
                let ca = match &cfg.controlplane_ca_file {
                    Some(path) => Some(Arc::new(read_ca(path).map_err(err)?)),
                    None => None,
                };
                Some(Poll {
                    url: url.clone(),
                    interval: Duration::from_millis(cfg.feed_interval_ms),
                    timeout: Duration::from_millis(cfg.feed_timeout_ms),
                    max_bytes: cfg.feed_max_response_bytes,
                    token,
                    ca,
                })
            }
            None => None,
        };
        if cfg.max_token_lifetime_s == 0 {
            return Err(err("auth.max_token_lifetime_s must be > 0".into()));
        }
        let mut auth = Self::new(vcfg, keys, poll.is_some(), poll);
        let feed = Arc::into_inner(auth.feed).expect("the feed is not shared yet");
        auth.feed = Arc::new(feed.with_max_token_lifetime(cfg.max_token_lifetime_s));
        auth.max_token_lifetime_s = cfg.max_token_lifetime_s;
        Ok(auth)
    }

    /// JWT mode with fixed keys and no control plane (tests, embedding).
    pub fn with_keys(cfg: VerifierConfig, keys: Jwks) -> Self {
        Self::new(cfg, keys, false, None)
    }

    fn new(cfg: VerifierConfig, keys: Jwks, polled: bool, poll: Option<Poll>) -> Self {
        let leeway_s = cfg.leeway_s;
        Self {
            feed: Arc::new(Feed::new(cfg, keys, polled)),
            leeway_s,
            max_token_lifetime_s: super::config::DEFAULT_MAX_TOKEN_LIFETIME_S,
            poll,
            expired: AtomicU64::new(0),
            revoked: AtomicU64::new(0),
            key_withdrawn: AtomicU64::new(0),
        }
    }

    /// The key and revocation source (tests and embedders may apply documents directly).
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }
}

/// The header `kid` of a token, unverified: trusted only once the token verified (then it
/// names the key that checked the signature); otherwise for the audit log only.
pub fn unverified_kid(token: &str) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Header {
        kid: Option<String>,
    }
    if token.len() > felix_auth::token::MAX_TOKEN_BYTES {
        return None;
    }
    let h = B64.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice::<Header>(&h).ok()?.kid
}

/// `https://` anywhere; `http://` only in dev mode or to a loopback host.
fn check_url(url: &str, production: bool) -> Result<(), String> {
    use felix_auth::url::{check_credential_url, UrlRefusal};
    // Plain http to a remote host is a dev convenience; the read token goes over it.
    match check_credential_url(url, !production) {
        Ok(()) => Ok(()),
        Err(UrlRefusal::UserInfo) => Err(format!(
            "auth.controlplane_url {url:?} must not contain user information (`…@`)"
        )),
        Err(UrlRefusal::PlainRemote) => Err(format!(
            "production refuses auth.controlplane_url {url:?}: plain http is accepted only to \
             a loopback address; use https://"
        )),
        Err(_) => Err(format!(
            "auth.controlplane_url {url:?} must start with https:// (or http:// on loopback)"
        )),
    }
}

impl Authenticator for JwtAuth {
    fn authenticate(&self, tenant: &str, token: Option<&str>) -> Result<Principal, AuthError> {
        crate::names::validate_tenant(tenant)
            .map_err(|e| AuthError::Unauthorized(format!("tenant: {e}")))?;
        let Some(token) = token else {
            return Err(AuthError::Unauthorized("token required".into()));
        };
        let keys = self.feed.current();
        if keys.verifier.key_count() == 0 {
            return Err(AuthError::Unauthorized(
                "no token signing keys yet (the control plane has not answered)".into(),
            ));
        }
        let claims = keys
            .verifier
            .verify(token, now_s())
            .map_err(|e| AuthError::Unauthorized(e.to_string()))?;
        // Revocations are kept only as long as a token can live: a longer-lived token (a
        // misconfigured issuer, a stolen key) would outlive them.
        let lifetime = claims.exp.saturating_sub(claims.iat);
        if lifetime > self.max_token_lifetime_s {
            return Err(AuthError::Unauthorized(format!(
                "token lifetime (exp - iat) of {lifetime} s is over this broker's \
                 auth.max_token_lifetime_s of {} s",
                self.max_token_lifetime_s
            )));
        }
        // The same answer as any bad token: a token of one tenant never opens another.
        if claims.tenant != tenant {
            return Err(AuthError::Unauthorized(
                "invalid token for this tenant".into(),
            ));
        }
        if keys
            .revocations
            .revokes_token(&claims.tenant, &claims.sub, claims.iat, &claims.jti)
        {
            return Err(AuthError::Unauthorized("token revoked".into()));
        }
        let perms = Permissions::compile(&claims.perms)
            .map_err(|e| AuthError::Unauthorized(format!("bad claims: {e}")))?;
        Ok(Principal {
            tenant: claims.tenant,
            subject: Some(claims.sub),
            perms: Arc::new(perms),
            expires_at: Some(claims.exp),
            issued_at: Some(claims.iat),
            jti: Some(claims.jti),
            // Verified: the header's kid is the key that checked the signature.
            kid: unverified_kid(token),
        })
    }

    fn key_withdrawn(&self, p: &Principal) -> bool {
        p.kid
            .as_ref()
            .is_some_and(|kid| !self.feed.current().kids.contains(kid))
    }

    fn revoked(&self, p: &Principal) -> bool {
        let (Some(sub), Some(iat), Some(jti)) = (&p.subject, p.issued_at, &p.jti) else {
            return false;
        };
        self.feed
            .current()
            .revocations
            .revokes_token(&p.tenant, sub, iat, jti)
    }

    fn leeway_s(&self) -> u64 {
        self.leeway_s
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.feed.changes())
    }

    fn background(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
        let p = self.poll.clone()?;
        Some(Box::pin(self.feed.clone().run(p)))
    }

    fn status(&self) -> Option<AuthStatus> {
        Some(self.feed.status())
    }

    fn principal_ended(&self, reason: &str) {
        let counter = match reason {
            super::ENDED_REVOKED => &self.revoked,
            super::ENDED_KEY_WITHDRAWN => &self.key_withdrawn,
            _ => &self.expired,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        self.feed.render_metrics(out);
        let _ = writeln!(
            out,
            "# HELP felix_auth_principals_expired_total Live principals whose token expired unrefreshed (their streams ended).\n\
             # TYPE felix_auth_principals_expired_total counter\nfelix_auth_principals_expired_total {}\n\
             # HELP felix_auth_principals_revoked_total Live principals ended by a revocation.\n\
             # TYPE felix_auth_principals_revoked_total counter\nfelix_auth_principals_revoked_total {}\n\
             # HELP felix_auth_principals_key_withdrawn_total Live principals ended because the key that verified their token left the key set.\n\
             # TYPE felix_auth_principals_key_withdrawn_total counter\nfelix_auth_principals_key_withdrawn_total {}",
            self.expired.load(Ordering::Relaxed),
            self.revoked.load(Ordering::Relaxed),
            self.key_withdrawn.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_control_planes_are_refused_in_production_unless_loopback() {
        for ok in [
            "https://cp.example",
            "http://127.0.0.1:8443",
            "http://localhost:1/x",
            "http://[::1]:80",
        ] {
            assert!(check_url(ok, true).is_ok(), "{ok}");
        }
        for bad in [
            "http://cp.example",
            "http://10.0.0.1:80",
            "ftp://x",
            "cp.example",
            "http://127.0.0.1:80@cp.evil.example/",
            "http://[::1]@evil/",
            "https://user:pw@cp.example",
        ] {
            assert!(check_url(bad, true).is_err(), "{bad}");
        }
        assert!(
            check_url("http://127.0.0.1@evil", false).is_err(),
            "in dev too"
        );
        assert!(
            check_url("http://cp.example", false).is_ok(),
            "dev allows it"
        );
    }

    #[test]
    fn jwt_mode_needs_an_issuer_and_readable_keys() {
        let mut cfg = AuthConfig {
            controlplane_url: Some("http://127.0.0.1:1".into()),
            ..AuthConfig::default()
        };
        assert!(JwtAuth::from_config(&cfg, true).is_err(), "no issuer");
        cfg.issuer = Some("cp".into());
        assert!(
            JwtAuth::from_config(&cfg, false).is_ok(),
            "dev: no read token needed"
        );
        let e = JwtAuth::from_config(&cfg, true).unwrap_err();
        assert!(e.0.contains("controlplane_token_file"), "{}", e.0);

        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("felix-jwt-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "secret-read-token\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        cfg.controlplane_token_file = Some(file.clone());
        let e = JwtAuth::from_config(&cfg, true).unwrap_err();
        assert!(e.0.contains("other users"), "{}", e.0);
        assert!(!e.0.contains("secret-read-token"), "{}", e.0);
        assert!(JwtAuth::from_config(&cfg, false).is_ok(), "dev warns only");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let auth = JwtAuth::from_config(&cfg, true).unwrap();
        assert!(!format!("{auth:?}").contains("secret-read-token"));
        std::fs::write(&file, "\n  \n").unwrap();
        let e = JwtAuth::from_config(&cfg, true).unwrap_err();
        assert!(e.0.contains("holds no token"), "{}", e.0);
        std::fs::write(&file, "secret-read-token\n").unwrap();
        cfg.controlplane_ca_file = Some(file.clone());
        let e = JwtAuth::from_config(&cfg, true).unwrap_err();
        assert!(e.0.contains("no certificate"), "{}", e.0);
        cfg.controlplane_ca_file = None;
        let _ = std::fs::remove_dir_all(&dir);
        cfg.jwt_keys_file = Some("/nonexistent/jwks.json".into());
        assert!(
            JwtAuth::from_config(&cfg, true).is_err(),
            "unreadable keys file"
        );
    }
}
