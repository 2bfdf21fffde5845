//! Control plane configuration: defaults, then a TOML file (`--config`), then `FELIX_CP_*`
//! environment variables, then flags (see `main.rs`). Secrets are never settings: the admin
//! token comes from a 0600 file or from `FELIX_CP_ADMIN_TOKEN`, read once and removed.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the control plane is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpConfig {
    /// HTTP(S) listen address. Default 127.0.0.1:7700.
    pub listen: SocketAddr,
    /// Dev mode (default): plain HTTP allowed, in-memory store without `data_dir`, admin API
    /// open without an admin token, http issuers on loopback. `--production` sets it false and
    /// then TLS, `data_dir` and an admin token are required.
    pub dev: bool,
    /// Directory of the durable store (mode 0700). None in dev: state kept in memory.
    pub data_dir: Option<PathBuf>,
    /// Replace the store's identifier at start (`--new-store-id`, once, after restoring the
    /// store from a backup): brokers compare revocation revisions only within one store id,
    /// and a restored store's revision went back. Default false.
    pub renew_store_id: bool,
    /// PEM certificate chain for HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    pub tls_key: Option<PathBuf>,
    /// File holding admin bearer tokens, one per line, mode 0600.
    pub admin_token_file: Option<PathBuf>,
    /// File holding broker read tokens, one per line, mode 0600: they may read the
    /// revocation feed, keys and definitions (`GET /v1/...`) but never write.
    pub broker_token_file: Option<PathBuf>,
    /// Dev mode only: serve the (possibly open) API on a non-loopback `listen` address. Without
    /// it, dev mode refuses a non-loopback address unless an admin token is configured: an
    /// open admin API on the network lets anyone mint tokens and read the signing keys' uses.
    pub insecure_dev_expose: bool,
    /// `iss` of the Felix tokens issued (brokers check it).
    pub issuer: String,
    /// `aud` of the Felix tokens issued (brokers check it).
    pub audience: String,
    /// `region` of the Felix tokens issued: a broker refuses tokens of another region.
    pub region: String,
    /// Lifetime of an issued Felix token, seconds. Default 300: short, because a token is a
    /// bearer credential and refresh is cheap.
    pub token_lifetime_s: u64,
    /// Clock skew tolerated on subject tokens' `exp` / `nbf`, seconds. Default 60.
    pub clock_skew_s: u64,
    /// The leeway brokers allow on Felix tokens' `exp` (at least the brokers' `leeway_s`),
    /// seconds. Default 60. A broker accepts a token until `exp + leeway`, so jti
    /// revocations are listed until then, subject revocations at least `token_lifetime_s +
    /// broker_leeway_s` after `before`, and a rotated-out key stays published as long.
    pub broker_leeway_s: u64,
    /// Oldest subject token the exchange accepts: `now - iat` above it is refused
    /// (`invalid_grant`; `iat` is required), seconds. Default 86400. Also how long a subject
    /// revocation is kept at least (`before + max_subject_token_age_s + clock_skew_s`), so
    /// a subject token stolen before the revocation can never be exchanged again.
    pub max_subject_token_age_s: u64,
    /// How long a rotated-out signing key stays published, seconds. None = token lifetime +
    /// broker leeway (the least that keeps every token it signed verifiable); never less.
    pub key_overlap_s: Option<u64>,
    /// How long `POST /v1/keys/rotate` publishes the next key in the JWKS before it starts
    /// signing, seconds. Default 10; must be at least the brokers' JWKS poll interval, so
    /// every broker knows the key before the first token it signs. `?immediate=true` skips it
    /// (emergencies: brokers then refuse new tokens until they re-poll).
    pub key_propagation_s: u64,
    /// Largest request body accepted, bytes. Default 65536; larger bodies get 413
    /// `request_too_large`. Bounds what one request makes the control plane parse and hold.
    pub max_body_bytes: usize,
    /// Concurrent HTTP connections. Default 1024; more are closed at once (counted in
    /// `felix_cp_connections_refused_total`), so idle or slow clients cannot exhaust the
    /// process's descriptors and memory.
    pub max_connections: usize,
    /// Concurrent HTTP connections from one peer IP address. Default 64; more are closed at
    /// once (counted in `felix_cp_connections_refused_total{reason="per_ip"}`), so one host
    /// cannot take every slot.
    pub max_connections_per_ip: usize,
    /// Time a client has for its TLS handshake and for each request's headers, milliseconds.
    /// Default 10000; past it the connection is closed (slow-loris clients do not hold slots).
    pub header_timeout_ms: u64,
    /// Whole-request deadline: headers done to response ready, including reading the body,
    /// milliseconds. Default 15000 (long polls get `max_long_poll_s` on top). Past it the
    /// client gets 408 `request_timeout` and the connection is closed, so a client trickling
    /// its body cannot hold a slot.
    pub request_timeout_ms: u64,
    /// Concurrent revocation long polls (`GET /v1/revocations?after=`). Default 256; the
    /// budget used is at most half of `max_connections`, so pollers cannot take every slot.
    /// Past it a poll is answered 503 `overloaded` with `Retry-After: 1`.
    pub max_long_polls: usize,
    /// Longest a `GET /v1/revocations?after=REV&wait_s=N` long poll waits for a change,
    /// seconds. Default 30; a larger `wait_s` is cut to it (the answer is then the unchanged
    /// list). Bounds how long a poller holds a connection slot.
    pub max_long_poll_s: u64,
    /// Largest subject token accepted by the exchange, bytes. Default 16384 (real ID tokens
    /// are a few KiB); larger gets `invalid_request`.
    pub max_subject_token_bytes: usize,
    /// Outbound requests to OIDC issuers (discovery, JWKS).
    pub oidc: OidcClientConfig,
    /// Log format: `text` or `json`.
    pub log_format: String,
}

/// Bounds of the control plane's own HTTP client, used for issuers' discovery and JWKS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcClientConfig {
    /// Whole-request timeout (connect, TLS, response), milliseconds. Default 5000; past it the
    /// exchange answers `temporarily_unavailable`.
    pub timeout_ms: u64,
    /// Largest discovery or JWKS response read, bytes. Default 262144; larger is an error.
    pub max_response_bytes: usize,
    /// Least time between two JWKS fetches for one issuer triggered by an unknown `kid`,
    /// seconds. Default 30: an attacker sending random `kid`s cannot make us hammer the issuer.
    pub min_refetch_interval_s: u64,
    /// How long fetched keys are trusted before a refresh, seconds. Default 3600.
    pub jwks_ttl_s: u64,
    /// Longest cached keys are still used while refreshes keep failing, seconds since the last
    /// successful fetch. Default 86400; past it the exchange answers `temporarily_unavailable`
    /// (an issuer we cannot reach for a day may have revoked those keys).
    pub max_stale_s: u64,
    /// First back-off after a failed fetch, milliseconds; doubles on each further failure up
    /// to `min_refetch_interval_s`. Default 1000. While backing off, exchanges needing a
    /// fetch answer `temporarily_unavailable` without asking the issuer.
    pub failure_backoff_ms: u64,
    /// Extra CA certificates (PEM) trusted for issuers, besides the system roots: e.g. a
    /// Kubernetes cluster's CA for its ServiceAccount issuer.
    pub ca_file: Option<PathBuf>,
}

impl Default for OidcClientConfig {
    fn default() -> Self {
        OidcClientConfig {
            timeout_ms: 5000,
            max_response_bytes: 256 * 1024,
            min_refetch_interval_s: 30,
            jwks_ttl_s: 3600,
            max_stale_s: 86400,
            failure_backoff_ms: 1000,
            ca_file: None,
        }
    }
}

impl Default for CpConfig {
    fn default() -> Self {
        CpConfig {
            listen: "127.0.0.1:7700".parse().expect("literal"),
            dev: true,
            data_dir: None,
            renew_store_id: false,
            tls_cert: None,
            tls_key: None,
            admin_token_file: None,
            broker_token_file: None,
            insecure_dev_expose: false,
            issuer: "felix-controlplane".into(),
            audience: "felix".into(),
            region: "local".into(),
            token_lifetime_s: 300,
            clock_skew_s: 60,
            broker_leeway_s: 60,
            max_subject_token_age_s: 86400,
            key_overlap_s: None,
            key_propagation_s: 10,
            max_body_bytes: 64 * 1024,
            max_subject_token_bytes: 16 * 1024,
            max_long_poll_s: 30,
            max_connections: 1024,
            max_connections_per_ip: 64,
            header_timeout_ms: 10_000,
            request_timeout_ms: 15_000,
            max_long_polls: 256,
            oidc: OidcClientConfig::default(),
            log_format: "text".into(),
        }
    }
}

/// An invalid configuration.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl CpConfig {
    /// Parses a TOML file.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ConfigError(e.to_string()))
    }

    /// How long a rotated-out key stays published.
    pub fn key_overlap_s(&self) -> u64 {
        let least = self.token_lifetime_s + self.broker_leeway_s;
        self.key_overlap_s.unwrap_or(least).max(least)
    }

    /// The long-poll budget actually used: never more than half the connection slots.
    pub fn long_poll_budget(&self) -> usize {
        self.max_long_polls.min(self.max_connections / 2).max(1)
    }

    /// Longest after issue a Felix token is accepted by a broker: lifetime + broker leeway.
    pub fn max_token_s(&self) -> u64 {
        self.token_lifetime_s + self.broker_leeway_s
    }

    /// Checks the settings against each other. `admin_tokens` is how many admin tokens were
    /// found (file and environment).
    pub fn validate(&self, admin_tokens: usize) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_string()));
        if self.dev
            && !self.listen.ip().is_loopback()
            && admin_tokens == 0
            && !self.insecure_dev_expose
        {
            return bad(
                "dev mode without an admin token serves an open admin API: listen on a \
                 loopback address, configure an admin token, or pass \
                 --insecure-dev-expose if you really mean it",
            );
        }
        if self.broker_leeway_s > 3600 || self.max_subject_token_age_s == 0 {
            return bad(
                "broker_leeway_s must be at most 3600 and max_subject_token_age_s positive",
            );
        }
        if self.key_propagation_s > 3600 {
            return bad("key_propagation_s must be at most 3600");
        }
        if self.max_connections_per_ip == 0
            || self.request_timeout_ms == 0
            || self.max_long_polls == 0
        {
            return bad(
                "max_connections_per_ip, request_timeout_ms and max_long_polls must be positive",
            );
        }
        if self.token_lifetime_s == 0 || self.token_lifetime_s > 24 * 3600 {
            return bad("token_lifetime_s must be 1..=86400");
        }
        if self.clock_skew_s > 600 {
            return bad("clock_skew_s must be at most 600");
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes must be at least 1024");
        }
        if self.max_subject_token_bytes < 1024 {
            return bad("max_subject_token_bytes must be at least 1024");
        }
        if self.issuer.is_empty() || self.audience.is_empty() || self.region.is_empty() {
            return bad("issuer, audience and region must not be empty");
        }
        if self.max_connections == 0 || self.header_timeout_ms == 0 {
            return bad("max_connections and header_timeout_ms must be positive");
        }
        if self.oidc.timeout_ms == 0 || self.oidc.max_response_bytes == 0 {
            return bad("oidc.timeout_ms and oidc.max_response_bytes must be positive");
        }
        if self.log_format != "text" && self.log_format != "json" {
            return bad("log_format must be text or json");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together");
        }
        if !self.dev {
            if self.tls_cert.is_none() {
                return bad("production mode needs tls_cert and tls_key (HTTPS)");
            }
            if self.data_dir.is_none() {
                return bad("production mode needs data_dir (a durable store)");
            }
            if admin_tokens == 0 {
                return bad(
                    "production mode needs an admin token (admin_token_file, mode 0600, or the \
                     FELIX_CP_ADMIN_TOKEN environment variable)",
                );
            }
        }
        Ok(())
    }
}

/// Reads admin (or broker read) tokens from a file that only its owner can read: one token
/// per line, blank lines and `#` comments ignored.
pub fn read_admin_token_file(path: &std::path::Path) -> Result<Vec<String>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError(format!(
            "{} has mode {:o}: admin tokens must be readable by their owner only (chmod 600)",
            path.display(),
            mode & 0o777
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if tokens.iter().any(|t| t.len() < 16) {
        return Err(ConfigError(format!(
            "{}: admin tokens must be at least 16 characters",
            path.display()
        )));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_dev_and_production_refuses_each_missing_piece() {
        let cfg: CpConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, CpConfig::default());
        assert!(cfg.validate(0).is_ok());
        assert_eq!(cfg.key_overlap_s(), 360);
        let mut p = CpConfig {
            dev: false,
            ..CpConfig::default()
        };
        assert!(p.validate(1).unwrap_err().0.contains("tls_cert"));
        p.tls_cert = Some("c".into());
        p.tls_key = Some("k".into());
        assert!(p.validate(1).unwrap_err().0.contains("data_dir"));
        p.data_dir = Some("d".into());
        assert!(p.validate(0).unwrap_err().0.contains("admin token"));
        assert!(p.validate(1).is_ok());
        // Dev mode on a routable address: only with an admin token or the loud flag.
        let mut d = CpConfig {
            listen: "0.0.0.0:0".parse().unwrap(),
            ..CpConfig::default()
        };
        assert!(d.validate(0).unwrap_err().0.contains("insecure-dev-expose"));
        assert!(d.validate(1).is_ok());
        d.insecure_dev_expose = true;
        assert!(d.validate(0).is_ok());
        assert!(toml::from_str::<CpConfig>("lisen = \"x\"").is_err());
    }

    #[test]
    fn overlap_is_never_shorter_than_a_token_can_live() {
        let cfg = CpConfig {
            key_overlap_s: Some(10),
            ..CpConfig::default()
        };
        assert_eq!(cfg.key_overlap_s(), 360);
        let cfg = CpConfig {
            key_overlap_s: Some(1000),
            ..CpConfig::default()
        };
        assert_eq!(cfg.key_overlap_s(), 1000);
    }

    #[test]
    fn admin_token_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin");
        std::fs::write(&p, "# admins\n0123456789abcdef0123\n\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_admin_token_file(&p).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_admin_token_file(&p).unwrap(),
            vec!["0123456789abcdef0123"]
        );
    }
}
