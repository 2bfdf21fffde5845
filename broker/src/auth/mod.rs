//! The one place where a token is checked.
//!
//! Every client-opened stream starts with `auth`; the broker hands the tenant and token to an
//! [`Authenticator`] and binds the returned [`Principal`] to the connection's
//! [`PrincipalCell`] for that (tenant, subject). Every request then passes through
//! [`PrincipalCell::authorize`]: the tenant check, then the principal's compiled permissions
//! (`felix_auth::Permissions`, a few comparisons, no allocation).
//!
//! Modes:
//! * [`DevAuth`] (`dev.rs`): anyone, every permission; production refuses it.
//! * [`StaticTokenAuth`] (`static_tokens.rs`): shared secrets bound to tenants, every
//!   permission inside the tenant.
//! * [`JwtAuth`] (`jwt.rs`): Felix JWTs (EdDSA) verified locally against keys from a JWKS file
//!   and/or the control plane's feed ([`feed`]), with the token's permissions, expiry, refresh
//!   and revocation ([`cell`]).

pub mod cell;
mod config;
mod dev;
pub mod feed;
mod jwt;
pub mod mtls;
pub mod revocations;
mod static_tokens;

use std::sync::{Arc, LazyLock};

use felix_wire::ErrorCode;

pub use cell::{until_withdrawn, CellState, Cells, PrincipalCell};
pub use config::AuthConfig;
pub use dev::DevAuth;
pub use felix_auth::{Action, Permissions};
pub use jwt::{unverified_kid, JwtAuth};
// The control-plane read token and CA, read the same way for the definitions feed (`defs`).
pub(crate) use jwt::{control_plane_agent, read_ca, read_feed_token};
pub use static_tokens::{StaticTokenAuth, TokenConfigError, TokenEntry};

/// Who a stream acts as, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Tenant the credentials are valid for.
    pub tenant: String,
    /// Subject (user or service) named by the token, if any.
    pub subject: Option<String>,
    /// What the principal may do inside its tenant, compiled once per `auth`.
    pub perms: Arc<Permissions>,
    /// When the credentials stop being valid (seconds since the Unix epoch, the token's
    /// `exp`); `None` for credentials that do not expire (static tokens, dev mode).
    pub expires_at: Option<u64>,
    /// When the token was issued (its `iat`), for revocations of a subject "before" a time.
    pub issued_at: Option<u64>,
    /// The token's id (`jti`), the handle of a revocation.
    pub jti: Option<String>,
    /// The id of the signing key that verified the token (`kid`): when the key set no
    /// longer holds it, the principal ends ("signing key withdrawn").
    pub kid: Option<String>,
}

impl Principal {
    /// Whether `other` carries the same credentials (the same token, as far as the broker
    /// keeps it): putting it in force would change nothing.
    pub fn same_credentials(&self, other: &Principal) -> bool {
        self.jti == other.jti
            && self.kid == other.kid
            && self.expires_at == other.expires_at
            && self.issued_at == other.issued_at
            && (Arc::ptr_eq(&self.perms, &other.perms) || self.perms == other.perms)
    }

    /// A principal with every permission in `tenant` and no expiry (dev mode, static tokens).
    pub fn unrestricted(tenant: String, subject: Option<String>) -> Self {
        Self {
            tenant,
            subject,
            perms: ALL.clone(),
            expires_at: None,
            issued_at: None,
            jti: None,
            kid: None,
        }
    }
}

/// One shared compiled "everything" (dev mode would otherwise allocate it per stream).
static ALL: LazyLock<Arc<Permissions>> = LazyLock::new(|| Arc::new(Permissions::all()));

/// What a request names: one resource, or (wildcard subscriptions) a whole namespace.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// `namespace/name`.
    Exact(&'a str),
    /// Some resource of the namespace: the check at wildcard subscribe time (each stream the
    /// pattern matches is then checked as [`Resource::Exact`]).
    SomeIn,
}

/// Verifies credentials and permissions.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks the `auth` frame of a stream (or a `reauth`'s token).
    fn authenticate(&self, tenant: &str, token: Option<&str>) -> Result<Principal, AuthError>;

    /// Checks one request against the principal: its tenant, then its permissions.
    /// Allocation-free unless it refuses.
    fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        tenant: &str,
        namespace: &str,
        resource: Resource<'_>,
    ) -> Result<(), AuthError> {
        if principal.tenant != tenant {
            return Err(AuthError::Forbidden(format!(
                "stream authenticated for tenant {:?}, request names {:?}",
                principal.tenant, tenant
            )));
        }
        let allowed = match resource {
            Resource::Exact(name) => principal.perms.allows(action, namespace, name),
            Resource::SomeIn => principal.perms.allows_some_in(action, namespace),
        };
        if allowed {
            return Ok(());
        }
        Err(AuthError::Forbidden(match resource {
            Resource::Exact(name) => format!("{action} on {namespace}/{name} is not granted"),
            Resource::SomeIn => format!("{action} on nothing in namespace {namespace} is granted"),
        }))
    }

    /// Whether any credentials (or none) are accepted: true only for dev mode, which a
    /// production broker refuses to run with.
    fn accepts_anyone(&self) -> bool {
        false
    }

    /// Whether a live principal's token has been revoked since it was accepted.
    fn revoked(&self, _principal: &Principal) -> bool {
        false
    }

    /// Whether the key that verified a live principal's token has left the key set (a
    /// rotation ended, or the key was deleted at the control plane).
    fn key_withdrawn(&self, _principal: &Principal) -> bool {
        false
    }

    /// Seconds of clock skew tolerated past a token's `exp`.
    fn leeway_s(&self) -> u64 {
        0
    }

    /// Ticks whenever revocations (or keys) change, so live principals can be re-checked;
    /// `None` when they never do.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// A task to run for the broker's life (the control-plane feed), if any.
    fn background(&self) -> Option<futures::future::BoxFuture<'static, ()>> {
        None
    }

    /// Readiness details (`/ready`): `None` when there is nothing to report.
    fn status(&self) -> Option<AuthStatus> {
        None
    }

    /// Told when a live principal's token expired unrefreshed, was revoked or lost its
    /// signing key (for metrics); `reason` is one of the `ENDED_*` reasons.
    fn principal_ended(&self, _reason: &str) {}

    /// Appends this authenticator's Prometheus metrics.
    fn render_metrics(&self, _out: &mut String) {}
}

/// What an authenticator says about its readiness.
#[derive(Debug, Clone)]
pub struct AuthStatus {
    /// Whether tokens can be verified at all (false before the first keys arrive).
    pub can_verify: bool,
    /// Details for the `/ready` body.
    pub details: serde_json::Value,
}

/// Why credentials or a request were refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Missing or invalid credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Valid credentials that do not grant the action.
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl AuthError {
    /// Stable wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Unauthorized(_) => ErrorCode::Unauthorized,
            AuthError::Forbidden(_) => ErrorCode::Forbidden,
        }
    }
}

/// Why a live principal ended: its token expired unrefreshed.
pub const ENDED_EXPIRED: &str = "token expired";
/// Why a live principal ended: the revocation feed covers its token.
pub const ENDED_REVOKED: &str = "token revoked";
/// Why a live principal ended: the key that verified its token left the key set.
pub const ENDED_KEY_WITHDRAWN: &str = "signing key withdrawn";
/// Why one subscription or parked pull ended while its principal lives on: a refresh (or a
/// new `auth` of the same principal) put a token in force that does not grant it.
pub const PERMISSION_WITHDRAWN: &str = "permission withdrawn by refresh";

/// Seconds since the Unix epoch, now.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The authenticator a configuration asks for: JWT mode when `auth.jwt_keys_file` or
/// `auth.controlplane_url` is set; else configured tokens (the file, then the
/// `FELIX_AUTH_TOKENS` list given as `env_tokens`) when there are any; otherwise dev mode's
/// accept-anyone, which production refuses.
pub fn from_config(
    cfg: &crate::BrokerConfig,
    env_tokens: Option<&str>,
) -> Result<Box<dyn Authenticator>, TokenConfigError> {
    let env_tokens = env_tokens.filter(|l| !l.trim().is_empty());
    if cfg.auth.jwt_mode() {
        if cfg.auth_tokens_file.is_some() || env_tokens.is_some() {
            return Err(TokenConfigError(
                "JWT mode (auth.jwt_keys_file / auth.controlplane_url) and static tokens \
                 (auth_tokens_file / FELIX_AUTH_TOKENS) are exclusive: configure one"
                    .into(),
            ));
        }
        return Ok(Box::new(JwtAuth::from_config(&cfg.auth, !cfg.dev)?));
    }
    let mut entries = Vec::new();
    if let Some(path) = &cfg.auth_tokens_file {
        entries.extend(StaticTokenAuth::read_file(path, !cfg.dev)?);
        if entries.is_empty() {
            return Err(TokenConfigError(format!(
                "{} holds no token",
                path.display()
            )));
        }
    }
    if let Some(list) = env_tokens {
        entries.extend(
            StaticTokenAuth::parse_list(list)
                .map_err(|e| TokenConfigError(format!("FELIX_AUTH_TOKENS: {}", e.0)))?,
        );
    }
    if entries.is_empty() {
        if !cfg.dev {
            return Err(TokenConfigError(
                "production mode refuses to start without an auth configuration: set \
                 auth_tokens_file (--auth-tokens-file) or FELIX_AUTH_TOKENS, or JWT mode \
                 (auth.jwt_keys_file / auth.controlplane_url)"
                    .into(),
            ));
        }
        return Ok(Box::new(DevAuth));
    }
    Ok(Box::new(StaticTokenAuth::new(entries)?))
}
