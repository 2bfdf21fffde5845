//! mTLS identities bound to tenants: which tenants a client certificate may act in.
//!
//! With `[[mtls.identities]]` entries configured, every stream's `auth` must satisfy both
//! credentials: the token (or static token, or dev mode) opens the tenant as usual, **and** the
//! connection's verified certificate identity (`felix_transport::peer_identity`: first URI
//! SAN such as a SPIFFE id, else first DNS SAN) must be bound to that tenant. A stream of an
//! unbound identity, or of a connection without a certificate (`tls_client_auth =
//! "optional"`), is refused `unauthorized` like a bad token (counted towards
//! `limits.max_auth_failures_per_connection`, audited). A stolen token is then useless without
//! the workload's certificate, and a certificate of one tenant's workload never acts in another
//! tenant.
//!
//! ```toml
//! tls_client_auth = "required"
//! tls_client_ca = "/etc/felix/client-ca.pem"
//! [[mtls.identities]]
//! identity = "spiffe://example.org/ns/payments/sa/billing"   # exact
//! tenants = ["acme"]
//! [[mtls.identities]]
//! identity = "spiffe://example.org/ns/globex/*"              # every id under the prefix
//! tenants = ["globex"]
//! ```
//!
//! **Certificate-only principals**: an entry with `grants` (the token grammar, `felix-auth`)
//! also lets a stream of that identity authenticate **without a token** for one of its tenants:
//! the principal is the identity (`sub` in the audit log) with exactly those grants, no expiry
//! (revoke by rotating the client CA; keep certificates short-lived). A stream that sends a
//! token is checked as above, whatever the entry's grants.
//!
//! An identity ending in `/*` matches every identity that starts with what precedes the `*`
//! (a path prefix: `spiffe://example.org/ns/globex/*` matches `.../ns/globex/sa/x`, not
//! `.../ns/globex-evil/...`). Without entries, identities are only audited (the default).

use serde::{Deserialize, Serialize};

/// The `[mtls]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtlsConfig {
    /// Certificate identities and the tenants each may act in. Non-empty: every stream's
    /// tenant must be bound to its connection's certificate identity. Default empty (no
    /// binding; identities are audited only).
    pub identities: Vec<IdentityBinding>,
}

/// One binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityBinding {
    /// A certificate identity (URI or DNS SAN), exactly, or a prefix ending in `/*`.
    pub identity: String,
    /// Tenants this identity may act in.
    pub tenants: Vec<String>,
    /// What a stream of this identity may do when it authenticates without a token (empty:
    /// a token is required).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<felix_auth::Grant>,
}

impl IdentityBinding {
    fn matches(&self, id: &str) -> bool {
        match self.identity.strip_suffix('*') {
            Some(prefix) if prefix.ends_with('/') => id.starts_with(prefix),
            _ => self.identity == id,
        }
    }

    /// How specific a match is: an exact identity beats any prefix, a longer prefix a
    /// shorter one.
    fn specificity(&self) -> (bool, usize) {
        (!self.identity.ends_with("/*"), self.identity.len())
    }
}

impl MtlsConfig {
    /// Whether tenants are bound to certificate identities.
    pub fn binds(&self) -> bool {
        !self.identities.is_empty()
    }

    /// Checks the section against the listener's client-auth mode.
    pub fn validate(&self, client_auth: felix_transport::ClientAuth) -> Result<(), String> {
        if !self.binds() {
            return Ok(());
        }
        if client_auth == felix_transport::ClientAuth::Off {
            return Err(
                "mtls.identities binds tenants to client certificates: set tls_client_auth to \
                 \"required\" (or \"optional\") and tls_client_ca"
                    .into(),
            );
        }
        for b in &self.identities {
            if b.identity.is_empty() || b.tenants.is_empty() {
                return Err("each mtls.identities entry needs an identity and tenants".into());
            }
            if b.identity.contains('*') && !b.identity.ends_with("/*") {
                return Err(format!(
                    "mtls.identities {:?}: '*' only as a final path segment (\"PREFIX/*\")",
                    b.identity
                ));
            }
            if !b.grants.is_empty() {
                felix_auth::Permissions::compile(&b.grants)
                    .map_err(|e| format!("mtls.identities {:?}: grants: {e}", b.identity))?;
            }
            for t in &b.tenants {
                crate::names::validate_tenant(t)
                    .map_err(|e| format!("mtls.identities {:?}: tenant: {e}", b.identity))?;
            }
        }
        Ok(())
    }

    /// The certificate-only principal of a token-less `auth` for `tenant`. The most specific
    /// entry matching the identity decides (exact beats prefix, longer prefix beats shorter;
    /// among equals the first): it must list the tenant and have grants. So an exact entry
    /// without grants (the operator's "this one needs a token") is not overruled by a broad
    /// prefix entry with grants, whatever their order in the file.
    pub fn certificate_principal(
        &self,
        identity: Option<&str>,
        tenant: &str,
    ) -> Option<super::Principal> {
        let id = identity?;
        let mut best: Option<&IdentityBinding> = None;
        for b in self.identities.iter().filter(|b| b.matches(id)) {
            if best.is_none_or(|x| b.specificity() > x.specificity()) {
                best = Some(b);
            }
        }
        let b = best?;
        if b.grants.is_empty() || !b.tenants.iter().any(|t| t == tenant) {
            return None;
        }
        // Checked at start (validate); per `auth`, like a token's grants.
        let perms = felix_auth::Permissions::compile(&b.grants).ok()?;
        Some(super::Principal {
            tenant: tenant.to_owned(),
            subject: Some(id.to_owned()),
            perms: std::sync::Arc::new(perms),
            expires_at: None,
            issued_at: None,
            jti: None,
            kid: None,
        })
    }

    /// `Ok` when a stream of a connection with certificate identity `identity` may act in
    /// `tenant`; else the reason (for an `unauthorized` answer).
    pub fn check(&self, identity: Option<&str>, tenant: &str) -> Result<(), String> {
        if !self.binds() {
            return Ok(());
        }
        let Some(id) = identity else {
            return Err(format!(
                "tenant {tenant} requires a client certificate bound to it (mtls.identities); \
                 this connection presented none"
            ));
        };
        let bound = self
            .identities
            .iter()
            .any(|b| b.matches(id) && b.tenants.iter().any(|t| t == tenant));
        if bound {
            Ok(())
        } else {
            Err(format!(
                "client certificate identity {id:?} is not bound to tenant {tenant} \
                 (mtls.identities)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_auth::Action;
    use felix_transport::ClientAuth;

    fn cfg() -> MtlsConfig {
        MtlsConfig {
            identities: vec![
                IdentityBinding {
                    identity: "spiffe://ex.org/ns/acme/sa/billing".into(),
                    tenants: vec!["acme".into()],
                    grants: vec![],
                },
                IdentityBinding {
                    identity: "spiffe://ex.org/ns/globex/*".into(),
                    tenants: vec!["globex".into(), "shared".into()],
                    grants: vec![felix_auth::Grant {
                        actions: vec!["subscribe".into()],
                        resources: vec!["feeds/>".into()],
                    }],
                },
            ],
        }
    }

    #[test]
    fn identities_open_only_their_tenants() {
        let c = cfg();
        assert!(c
            .check(Some("spiffe://ex.org/ns/acme/sa/billing"), "acme")
            .is_ok());
        assert!(c
            .check(Some("spiffe://ex.org/ns/acme/sa/billing"), "globex")
            .is_err());
        assert!(c
            .check(Some("spiffe://ex.org/ns/acme/sa/billing2"), "acme")
            .is_err());
        assert!(c
            .check(Some("spiffe://ex.org/ns/globex/sa/x"), "shared")
            .is_ok());
        assert!(
            c.check(Some("spiffe://ex.org/ns/globex-evil/sa/x"), "globex")
                .is_err(),
            "a prefix is a path prefix"
        );
        let e = c.check(None, "acme").unwrap_err();
        assert!(e.contains("presented none"), "{e}");
        assert!(
            MtlsConfig::default().check(None, "acme").is_ok(),
            "off by default"
        );
    }

    #[test]
    fn bindings_need_client_certificates_and_sane_patterns() {
        assert!(cfg().validate(ClientAuth::Off).is_err());
        assert!(cfg().validate(ClientAuth::Required).is_ok());
        let mut c = cfg();
        c.identities[0].identity = "spiffe://ex.org/ns/a*".into();
        assert!(c.validate(ClientAuth::Required).is_err());
        let mut c = cfg();
        c.identities[0].tenants = vec!["a/b".into()];
        assert!(c.validate(ClientAuth::Required).is_err());
        assert!(MtlsConfig::default().validate(ClientAuth::Off).is_ok());
        let mut c = cfg();
        c.identities[1].grants[0].resources = vec!["no-slash".into()];
        assert!(
            c.validate(ClientAuth::Required).is_err(),
            "grants outside the grammar"
        );
    }

    /// The most specific matching entry decides, not the first: an exact entry without grants
    /// vetoes the token-less access a broader prefix entry listed before it would give, and a
    /// longer prefix beats a shorter one. On the old code the first match (the broad prefix)
    /// won in both cases.
    #[test]
    fn the_most_specific_entry_decides_certificate_only_access() {
        let grant = |ns: &str| {
            vec![felix_auth::Grant {
                actions: vec!["subscribe".into()],
                resources: vec![format!("{ns}/>")],
            }]
        };
        let entry = |identity: &str, grants| IdentityBinding {
            identity: identity.into(),
            tenants: vec!["acme".into()],
            grants,
        };
        let c = MtlsConfig {
            identities: vec![
                entry("spiffe://ex.org/ns/acme/*", grant("broad")),
                entry("spiffe://ex.org/ns/acme/sa/billing", vec![]),
                entry("spiffe://ex.org/ns/acme/sa/*", grant("narrow")),
            ],
        };
        assert!(
            c.certificate_principal(Some("spiffe://ex.org/ns/acme/sa/billing"), "acme")
                .is_none(),
            "the exact entry without grants vetoes"
        );
        let p = c
            .certificate_principal(Some("spiffe://ex.org/ns/acme/sa/feed"), "acme")
            .unwrap();
        assert!(p.perms.allows(Action::Subscribe, "narrow", "s"));
        assert!(!p.perms.allows(Action::Subscribe, "broad", "s"));
        let p = c
            .certificate_principal(Some("spiffe://ex.org/ns/acme/other"), "acme")
            .unwrap();
        assert!(p.perms.allows(Action::Subscribe, "broad", "s"));
    }

    #[test]
    fn only_entries_with_grants_make_certificate_principals() {
        let c = cfg();
        let p = c
            .certificate_principal(Some("spiffe://ex.org/ns/globex/sa/feed"), "shared")
            .expect("entry with grants");
        assert_eq!(
            p.subject.as_deref(),
            Some("spiffe://ex.org/ns/globex/sa/feed")
        );
        assert!(p
            .perms
            .allows(felix_auth::Action::Subscribe, "feeds", "a.b"));
        assert!(!p.perms.allows(felix_auth::Action::Publish, "feeds", "a.b"));
        assert!(c
            .certificate_principal(Some("spiffe://ex.org/ns/globex/sa/feed"), "acme")
            .is_none());
        assert!(
            c.certificate_principal(Some("spiffe://ex.org/ns/acme/sa/billing"), "acme")
                .is_none(),
            "no grants: a token is required"
        );
        assert!(c.certificate_principal(None, "shared").is_none());
    }
}
