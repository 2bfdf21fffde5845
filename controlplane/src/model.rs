//! The documents the API stores, their validation, and their keys in the store.
//!
//! Keys: `tenants/T`, `namespaces/T/NS`, `streams/T/NS/NAME`, `caches/T/NS/NAME`,
//! `groups/T/NS/NAME`, `roles/T/ROLE`, `issuers/T/NAME`, `quotas/T`, `keys/KID`,
//! `revocations/jti/JTI`, `revocations/sub/T/SUB`.

use felix_auth::Grant;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A namespace of a tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// How a stream's records are kept (see docs/storage.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// In memory only.
    #[default]
    Memory,
    /// Acked, then fsynced on an interval.
    Interval,
    /// Fsynced before the ack.
    Always,
}

/// What a stream does for a subscriber whose buffer is full (wire-protocol 7.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// The publisher waits.
    #[default]
    Block,
    /// The new message is dropped for that subscriber.
    DropNewest,
    /// The oldest buffered message is dropped.
    DropOldest,
    /// The subscriber is disconnected.
    Disconnect,
}

/// A stream definition (fields as `stream_create` in docs/wire-protocol.md 4.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDef {
    /// Retention bound in records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_records: Option<u64>,
    /// Retention bound in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Per-subscriber queue bound in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber_buffer: Option<u32>,
    /// Delivery policy when a subscriber's buffer is full.
    #[serde(default)]
    pub full_policy: FullPolicy,
    /// Durability class.
    #[serde(default)]
    pub durability: Durability,
}

/// A cache definition (`cache_create`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheDef {
    /// LRU eviction beyond this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// TTL of puts that give none, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl_ms: Option<u64>,
}

/// A queue-group definition (`group_create`), on a stream of the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDef {
    /// The stream the group consumes.
    pub stream: String,
    /// `earliest` (default), `latest` or an offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<serde_json::Value>,
    /// Lease length, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_timeout_ms: Option<u64>,
    /// Deliveries before dead-lettering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deliveries: Option<u32>,
}

/// A role: a named set of grants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// What the role allows (felix-auth's grammar).
    pub grants: Vec<Grant>,
}

/// One claim rule: when the subject token's `claim` equals (or, for an array claim, contains)
/// `equals`, the principal gets `roles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRule {
    /// Top-level claim name (`sub`, `groups`, `email`, ...).
    pub claim: String,
    /// Value to match: string claims compare equal; array claims match if an element does.
    pub equals: String,
    /// Roles granted (names of this tenant's roles).
    pub roles: Vec<String>,
}

/// An OIDC issuer a tenant trusts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The issuer URL, exactly as in its tokens' `iss` and its discovery document.
    pub issuer: String,
    /// Accepted `aud` values of subject tokens (at least one must match).
    pub audiences: Vec<String>,
    /// Claim → role rules.
    #[serde(default)]
    pub rules: Vec<ClaimRule>,
}

/// Tenant quotas, enforced by brokers (read through `GET /v1/broker/definitions`). An absent
/// field takes the broker's local `[quotas]` default; 0 is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Concurrent connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Concurrent subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_subscriptions: Option<u64>,
    /// Published bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_bytes_per_s: Option<u64>,
    /// Published messages per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_messages_per_s: Option<u64>,
    /// Cache bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// Messages waiting in queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument(m.into())
}

/// Tenant and namespace names: 1..=64 bytes of `[A-Za-z0-9_-]` (as the broker's).
pub fn check_segment(kind: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(format!(
            "{kind} name {s:?}: 1 to 64 of A-Z a-z 0-9 '_' '-'"
        )));
    }
    Ok(())
}

/// Stream, cache and group names: 1..=255 bytes of dot-separated `[A-Za-z0-9_-]` tokens.
pub fn check_resource(kind: &str, s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !ok {
        return Err(invalid(format!(
            "{kind} name {s:?}: 1 to 255 bytes of A-Z a-z 0-9 '_' '-' tokens separated by '.'"
        )));
    }
    Ok(())
}

/// Role and issuer names: 1..=64 bytes of `[A-Za-z0-9_.-]`.
pub fn check_label(kind: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(invalid(format!(
            "{kind} name {s:?}: 1 to 64 of A-Z a-z 0-9 '_' '-' '.'"
        )));
    }
    Ok(())
}

/// Largest serialized `grants` of one role, bytes: half of what a broker reads
/// (`felix_auth::token::MAX_TOKEN_BYTES`), since base64 adds a third and the token carries
/// other claims too. A role that alone cannot fit in a token is refused when stored.
pub const MAX_ROLE_GRANTS_BYTES: usize = felix_auth::token::MAX_TOKEN_BYTES / 2;

impl Role {
    /// Every grant is valid, the set compiles, and it fits in a token.
    pub fn validate(&self) -> Result<(), ApiError> {
        let size = serde_json::to_vec(&self.grants).map_or(usize::MAX, |v| v.len());
        if size > MAX_ROLE_GRANTS_BYTES {
            return Err(invalid(format!(
                "the role's grants take {size} bytes serialized; at most {MAX_ROLE_GRANTS_BYTES} \
                 (a Felix token is at most {} bytes)",
                felix_auth::token::MAX_TOKEN_BYTES
            )));
        }
        if self.grants.len() > felix_auth::perms::MAX_GRANTS {
            return Err(invalid(format!(
                "a role holds at most {} grants (a token's limit)",
                felix_auth::perms::MAX_GRANTS
            )));
        }
        for (i, g) in self.grants.iter().enumerate() {
            g.validate()
                .map_err(|e| invalid(format!("grants[{i}]: {e}")))?;
        }
        felix_auth::Permissions::compile(&self.grants)
            .map_err(|e| invalid(format!("grants: {e}")))?;
        Ok(())
    }
}

/// Whether a URL may be trusted as an issuer: https, or in dev http on a loopback host.
pub fn check_issuer_url(url: &str, dev: bool) -> Result<(), ApiError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid(format!("issuer {url:?} is not a URL")))?;
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = host_port.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    if host.is_empty() || url.contains(['?', '#']) || rest.contains('@') {
        return Err(invalid(format!(
            "issuer {url:?}: needs a host, and no query, fragment or user info"
        )));
    }
    match scheme {
        "https" => Ok(()),
        "http" if dev && matches!(host, "127.0.0.1" | "localhost" | "::1") => Ok(()),
        "http" if dev => Err(invalid(format!(
            "issuer {url:?}: plain http is allowed only on loopback, and only in dev mode"
        ))),
        _ => Err(invalid(format!(
            "issuer {url:?}: must be https (plain http is allowed only on loopback in dev mode)"
        ))),
    }
}

impl TrustedIssuer {
    /// Checks the URL, audiences and rules.
    pub fn validate(&self, dev: bool) -> Result<(), ApiError> {
        check_issuer_url(&self.issuer, dev)?;
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(invalid(
                "audiences: at least one, non-empty (tokens meant for someone else must not be accepted)",
            ));
        }
        if self.rules.len() > 256 {
            return Err(invalid("at most 256 rules"));
        }
        for r in &self.rules {
            if r.claim.is_empty() || r.roles.is_empty() {
                return Err(invalid("each rule needs a claim and at least one role"));
            }
            for role in &r.roles {
                check_label("role", role)?;
            }
        }
        Ok(())
    }
}

impl GroupDef {
    /// The stream name is valid, and `start` is `earliest`, `latest` or an offset.
    pub fn validate(&self) -> Result<(), ApiError> {
        check_resource("stream", &self.stream)?;
        match &self.start {
            None => Ok(()),
            Some(serde_json::Value::String(s)) if s == "earliest" || s == "latest" => Ok(()),
            Some(serde_json::Value::Number(n)) if n.is_u64() => Ok(()),
            Some(_) => Err(invalid("start: \"earliest\", \"latest\" or an offset")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_urls_need_https_except_loopback_in_dev() {
        assert!(check_issuer_url("https://accounts.example.com", false).is_ok());
        assert!(check_issuer_url("http://127.0.0.1:4000", true).is_ok());
        assert!(check_issuer_url("http://localhost:4000/realms/x", true).is_ok());
        assert!(check_issuer_url("http://127.0.0.1:4000", false).is_err());
        assert!(check_issuer_url("http://10.0.0.1", true).is_err());
        assert!(check_issuer_url("http://127.0.0.1.evil.com", true).is_err());
        assert!(check_issuer_url("http://u@127.0.0.1", true).is_err());
        assert!(check_issuer_url("ftp://x", true).is_err());
        assert!(check_issuer_url("https://x?y", true).is_err());
    }

    #[test]
    fn names_follow_the_broker_rules() {
        assert!(check_segment("tenant", "acme-1_x").is_ok());
        assert!(check_segment("tenant", "a.b").is_err());
        assert!(check_segment("tenant", &"a".repeat(65)).is_err());
        assert!(check_resource("stream", "orders.eu").is_ok());
        assert!(check_resource("stream", "orders..eu").is_err());
        assert!(check_resource("stream", "orders.*").is_err());
        assert!(check_label("role", "payments.admin").is_ok());
        assert!(check_label("role", "a/b").is_err());
    }

    #[test]
    fn issuers_need_an_audience_and_rules_need_roles() {
        let mut i = TrustedIssuer {
            issuer: "https://idp.example.com".into(),
            audiences: vec![],
            rules: vec![],
        };
        assert!(i.validate(false).is_err());
        i.audiences = vec!["felix".into()];
        assert!(i.validate(false).is_ok());
        i.rules = vec![ClaimRule {
            claim: "groups".into(),
            equals: "x".into(),
            roles: vec![],
        }];
        assert!(i.validate(false).is_err());
    }
}
