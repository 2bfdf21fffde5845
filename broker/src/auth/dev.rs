//! Dev mode: any token (or none) for any tenant, with every permission.

use super::{AuthError, Authenticator, Principal};

/// Dev mode: any token (or none) for any tenant. Still refuses a request for another tenant
/// than the stream authenticated as (the trait's `authorize`), so tenant isolation is
/// exercised even in development.
#[derive(Debug, Default)]
pub struct DevAuth;

impl Authenticator for DevAuth {
    fn accepts_anyone(&self) -> bool {
        true
    }

    fn authenticate(&self, tenant: &str, _token: Option<&str>) -> Result<Principal, AuthError> {
        crate::names::validate_tenant(tenant)
            .map_err(|e| AuthError::Unauthorized(format!("tenant: {e}")))?;
        Ok(Principal::unrestricted(tenant.to_owned(), None))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Action, Resource};
    use super::*;

    #[test]
    fn dev_mode_allows_everything_in_the_own_tenant_only() {
        let p = DevAuth.authenticate("acme", None).unwrap();
        for a in Action::ALL {
            assert!(DevAuth
                .authorize(&p, a, "acme", "ns", Resource::Exact("x"))
                .is_ok());
            let e = DevAuth
                .authorize(&p, a, "globex", "ns", Resource::Exact("x"))
                .unwrap_err();
            assert_eq!(e.code(), felix_wire::ErrorCode::Forbidden);
        }
        assert!(DevAuth.authenticate("bad/tenant", None).is_err());
        assert_eq!(p.expires_at, None);
    }
}
