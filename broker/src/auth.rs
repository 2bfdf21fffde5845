//! The one place where a token is checked.
//!
//! Every client-opened stream starts with `auth`; the broker hands the tenant and token to an
//! [`Authenticator`] and keeps the returned [`Principal`] for the stream. Every request then
//! passes through [`Authenticator::authorize`]. Dev mode ([`DevAuth`]) accepts anything and
//! says so in the log; the security work plugs real verification and permissions in here.

use felix_wire::ErrorCode;

/// Who a stream acts as, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Tenant the credentials are valid for.
    pub tenant: String,
    /// Subject (user or service) named by the token, if any.
    pub subject: Option<String>,
}

/// What a request wants to do, for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish to a stream.
    Publish,
    /// Subscribe to a stream or pattern.
    Subscribe,
    /// Consume from a group (pull, ack, nack, dead letters).
    Consume,
    /// Read a cache.
    CacheRead,
    /// Write a cache.
    CacheWrite,
    /// Create streams, caches and groups.
    Admin,
}

/// Verifies credentials and permissions.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks the `auth` frame of a stream.
    fn authenticate(&self, tenant: &str, token: Option<&str>) -> Result<Principal, AuthError>;
    /// Checks one request against the stream's principal.
    fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        tenant: &str,
        namespace: &str,
        resource: &str,
    ) -> Result<(), AuthError>;
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

/// Dev mode: any token (or none) for any tenant. Still refuses a request for another tenant
/// than the stream authenticated as, so tenant isolation is exercised even in development.
#[derive(Debug, Default)]
pub struct DevAuth;

impl Authenticator for DevAuth {
    fn authenticate(&self, tenant: &str, _token: Option<&str>) -> Result<Principal, AuthError> {
        crate::names::validate_tenant(tenant)
            .map_err(|e| AuthError::Unauthorized(format!("tenant: {e}")))?;
        Ok(Principal {
            tenant: tenant.to_owned(),
            subject: None,
        })
    }

    fn authorize(
        &self,
        principal: &Principal,
        _action: Action,
        tenant: &str,
        _namespace: &str,
        _resource: &str,
    ) -> Result<(), AuthError> {
        if principal.tenant != tenant {
            return Err(AuthError::Forbidden(format!(
                "stream authenticated for tenant {:?}, request names {:?}",
                principal.tenant, tenant
            )));
        }
        Ok(())
    }
}

/// Shared-secret mode: a token must equal one of a configured list. A stop-gap until the
/// security work brings signed tokens, and what tests use to exercise `unauthorized`.
#[derive(Debug)]
pub struct StaticTokenAuth {
    tokens: Vec<String>,
}

impl StaticTokenAuth {
    /// Accepts exactly these tokens.
    pub fn new(tokens: Vec<String>) -> Self {
        Self { tokens }
    }
}

impl Authenticator for StaticTokenAuth {
    fn authenticate(&self, tenant: &str, token: Option<&str>) -> Result<Principal, AuthError> {
        let principal = DevAuth.authenticate(tenant, token)?;
        match token {
            Some(t)
                if self
                    .tokens
                    .iter()
                    .any(|k| constant_time_eq(k.as_bytes(), t.as_bytes())) =>
            {
                Ok(principal)
            }
            Some(_) => Err(AuthError::Unauthorized("invalid token".into())),
            None => Err(AuthError::Unauthorized("token required".into())),
        }
    }

    fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        tenant: &str,
        namespace: &str,
        resource: &str,
    ) -> Result<(), AuthError> {
        DevAuth.authorize(principal, action, tenant, namespace, resource)
    }
}

/// Compares without an early exit, so response timing does not reveal a token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
