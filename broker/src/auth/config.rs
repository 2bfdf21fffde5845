//! The `[auth]` section of the broker configuration: JWT mode.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// JWT mode settings (`[auth]` in the TOML file, `FELIX_*` variables, flags). JWT mode is on
/// when `jwt_keys_file` or `controlplane_url` is set; it excludes static tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A JWKS JSON file of the Felix signing keys (`{"keys":[...]}`), for a broker without a
    /// control plane, or as the keys to start with before the feed answers.
    pub jwt_keys_file: Option<PathBuf>,
    /// The control plane's base URL (`https://cp.example:8443`): the broker polls
    /// `/.well-known/jwks.json` and `/v1/revocations` there. `http://` is refused in
    /// production unless the host is a loopback address.
    pub controlplane_url: Option<String>,
    /// A file holding the control plane's broker read token (first non-empty line), sent as
    /// `Authorization: Bearer` on every feed request: a production control plane answers the
    /// revocation feed only to it. Required in production with `controlplane_url`; refused
    /// there when other users can read it.
    pub controlplane_token_file: Option<PathBuf>,
    /// PEM CA certificates to trust for an `https://` control plane with a private CA
    /// (instead of the public web roots).
    pub controlplane_ca_file: Option<PathBuf>,
    /// Required `iss` of every token (the control plane's issuer identifier). Required in
    /// JWT mode.
    pub issuer: Option<String>,
    /// Required `aud` of every token. Default `felix`.
    pub audience: String,
    /// This broker's region: a token for another region is refused. Default `local`.
    pub region: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 60.
    pub leeway_s: u64,
    /// How often the control-plane feed is polled. Default 2000. A revocation reaches live
    /// connections within this plus about a second.
    pub feed_interval_ms: u64,
    /// Deadline of one feed request (connect, send, receive). Default 5000.
    pub feed_timeout_ms: u64,
    /// Largest feed response body read (each of the two documents); a larger one counts as a
    /// failed poll and the last good copy stays in force. Default 4 MiB (about 20 000
    /// revoked tokens).
    pub feed_max_response_bytes: u64,
    /// The longest lifetime a Felix token can have (set it at least to the control plane's
    /// longest). A revoked `jti` whose entry in the feed has no `exp` is kept this long (plus
    /// `leeway_s`) after it was seen, even when a later list leaves it out. Default 86400
    /// (24 h).
    pub max_token_lifetime_s: u64,
}

/// Default of [`AuthConfig::max_token_lifetime_s`].
pub const DEFAULT_MAX_TOKEN_LIFETIME_S: u64 = 86_400;

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_keys_file: None,
            controlplane_url: None,
            controlplane_token_file: None,
            controlplane_ca_file: None,
            issuer: None,
            audience: "felix".into(),
            region: "local".into(),
            leeway_s: 60,
            feed_interval_ms: 2_000,
            feed_timeout_ms: 5_000,
            feed_max_response_bytes: 4 * 1024 * 1024,
            max_token_lifetime_s: DEFAULT_MAX_TOKEN_LIFETIME_S,
        }
    }
}

impl AuthConfig {
    /// Whether JWT mode is configured.
    pub fn jwt_mode(&self) -> bool {
        self.jwt_keys_file.is_some() || self.controlplane_url.is_some()
    }
}
