//! What a Felix JWT says, what the control plane publishes of its keys, and the revocation
//! feed brokers poll. All are plain serde types: the JSON shapes are the contract.

use serde::{Deserialize, Serialize};

use crate::perms::Grant;

/// The claims of a Felix JWT (the header carries `alg: EdDSA`, `typ: JWT` and the `kid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who issued it: the control plane's issuer identifier.
    pub iss: String,
    /// Who it is for: the brokers' audience (default `felix`).
    pub aud: String,
    /// The principal (the OIDC subject it was exchanged for, or a service name).
    pub sub: String,
    /// The one tenant the token acts in.
    pub tenant: String,
    /// The one region whose brokers accept it: a token never crosses a sovereignty boundary.
    pub region: String,
    /// What the token may do inside its tenant.
    #[serde(default)]
    pub perms: Vec<Grant>,
    /// Issued at (seconds since the Unix epoch).
    pub iat: u64,
    /// Not before (seconds since the Unix epoch).
    pub nbf: u64,
    /// Expires at (seconds since the Unix epoch).
    pub exp: u64,
    /// Unique token id, the handle of a revocation.
    pub jti: String,
}

/// One public key of the control plane (RFC 7517/8037: an `OKP` key on `Ed25519`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// Key id, matched against a token's header `kid`.
    pub kid: String,
    /// `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JSON Web Key Set, as served at `/.well-known/jwks.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys; during a rotation both the new and the previous key are here.
    pub keys: Vec<Jwk>,
}

/// A revoked token, kept in the feed until it would have expired anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedJti {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`. A broker accepts a token until `exp` plus its leeway, so the
    /// control plane keeps the entry in the feed until `exp + broker_leeway_s` (at least the
    /// brokers' `leeway_s`); a broker applies the list it receives as a whole.
    pub exp: u64,
}

/// A revoked principal: every token of `sub` in `tenant` issued before `before` is refused.
/// Tokens issued later (after the principal is re-enabled upstream) are accepted again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSubject {
    /// Tenant of the principal.
    pub tenant: String,
    /// The principal.
    pub sub: String,
    /// Tokens with `iat` before this (seconds since the Unix epoch) are revoked.
    pub before: u64,
}

/// The revocation feed (`GET /v1/revocations` on the control plane).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// Changes whenever the list does, so a poller can tell it has nothing new.
    pub revision: u64,
    /// Random identifier of the control plane's store, made with the store. `revision` is
    /// that store's counter: it restarts when the store is recreated or restored, and a
    /// poller compares revisions only between lists of the same store (empty: not sent).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub store_id: String,
    /// Revoked tokens.
    #[serde(default)]
    pub jtis: Vec<RevokedJti>,
    /// Revoked principals.
    #[serde(default)]
    pub subjects: Vec<RevokedSubject>,
}

impl RevocationList {
    /// Whether the list revokes a token with these claims.
    pub fn revokes(&self, c: &Claims) -> bool {
        self.revokes_token(&c.tenant, &c.sub, c.iat, &c.jti)
    }

    /// [`RevocationList::revokes`] for a token known only by the claims a verifier keeps of
    /// it (the broker keeps these, not the whole claims, for each live principal).
    pub fn revokes_token(&self, tenant: &str, sub: &str, iat: u64, jti: &str) -> bool {
        self.jtis.iter().any(|r| r.jti == jti)
            || self
                .subjects
                .iter()
                .any(|r| r.tenant == tenant && r.sub == sub && iat < r.before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, iat: u64, jti: &str) -> Claims {
        Claims {
            iss: "cp".into(),
            aud: "felix".into(),
            sub: sub.into(),
            tenant: "acme".into(),
            region: "eu".into(),
            perms: vec![],
            iat,
            nbf: iat,
            exp: iat + 300,
            jti: jti.into(),
        }
    }

    #[test]
    fn revocation_by_jti_and_by_subject_before_a_time() {
        let list = RevocationList {
            revision: 3,
            store_id: String::new(),
            jtis: vec![RevokedJti {
                jti: "j1".into(),
                exp: 99,
            }],
            subjects: vec![RevokedSubject {
                tenant: "acme".into(),
                sub: "mallory".into(),
                before: 1000,
            }],
        };
        assert!(list.revokes(&claims("alice", 10, "j1")));
        assert!(!list.revokes(&claims("alice", 10, "j2")));
        assert!(list.revokes(&claims("mallory", 999, "j3")));
        assert!(
            !list.revokes(&claims("mallory", 1000, "j4")),
            "issued after revocation"
        );
        let mut other = claims("mallory", 10, "j5");
        other.tenant = "globex".into();
        assert!(!list.revokes(&other), "same subject name in another tenant");
        assert!(list.revokes_token("acme", "mallory", 999, "x"));
        assert!(!list.revokes_token("acme", "mallory", 1000, "x"));
        assert!(list.revokes_token("globex", "bob", 1, "j1"));
    }

    #[test]
    fn json_shapes_are_the_contract() {
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"OKP","crv":"Ed25519","x":"abc","kid":"k1","alg":"EdDSA","use":"sig"}"#,
        )
        .unwrap();
        assert_eq!(jwk.use_.as_deref(), Some("sig"));
        let back = serde_json::to_value(&jwk).unwrap();
        assert_eq!(back["use"], "sig");
        let list: RevocationList = serde_json::from_str(r#"{"revision":1}"#).unwrap();
        assert!(list.jtis.is_empty() && list.subjects.is_empty());
    }
}
