//! `POST /oauth/token`: RFC 8693 token exchange of an OIDC token (ID token or JWT access
//! token) from a tenant's trusted issuer for a Felix JWT.
//!
//! Steps: parse the form → read the subject token's `iss` (unverified) → the tenant(s) that
//! trust that issuer → the issuer's key for the token's `kid` and `alg` → the signature →
//! only then the tenant (`audience` = tenant name picks one) → `iss`, `aud`/`azp`,
//! `exp`/`nbf`/`iat` with skew and `max_subject_token_age_s` → the tenant's claim rules →
//! roles → the union of their grants → subject revocation (`iat < before`) → a Felix JWT
//! signed with the current key. Every refusal before the signature verified is one uniform
//! `invalid_grant` (no tenant or issuer enumeration).

pub mod fetch;
pub mod issuers;
pub mod jwt;

use std::collections::{BTreeSet, HashMap};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use felix_auth::{Claims, Grant, Permissions};
use serde_json::Value;

use crate::api::AppState;
use crate::error::error_body;
use crate::model::{ClaimRule, Role, TrustedIssuer};

/// RFC 8693's grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TT_ID: &str = "urn:ietf:params:oauth:token-type:id_token";
const TT_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const TT_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An OAuth error answer (RFC 6749 5.2). The description never contains the token.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// `invalid_request`, `unsupported_grant_type`, `invalid_grant`, `invalid_target`,
    /// `access_denied`, `temporarily_unavailable` or `server_error`.
    pub code: &'static str,
    /// For humans.
    pub description: String,
}

/// The one answer for a subject token that is not (yet) known to be genuine: unknown or
/// untrusted issuer, no such key, bad signature, or an `audience` tenant that does not trust
/// it. Deliberately the same words for all (no tenant or issuer enumeration).
const UNTRUSTED: &str = "the subject token is not accepted (untrusted issuer, unknown key, bad signature or wrong audience)";

fn oauth(code: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        code,
        description: description.into(),
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match self.code {
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut r = (status, Json(error_body(self.code, &self.description))).into_response();
        r.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        r
    }
}

fn internal(e: crate::error::ApiError) -> OAuthError {
    oauth("server_error", e.to_string())
}

/// The roles a token's claims earn under `rules`.
pub fn roles_for(claims: &Value, rules: &[ClaimRule]) -> BTreeSet<String> {
    let mut roles = BTreeSet::new();
    for r in rules {
        let hit = match claims.get(&r.claim) {
            Some(Value::String(s)) => *s == r.equals,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(r.equals.as_str())),
            Some(Value::Bool(b)) => b.to_string() == r.equals,
            Some(Value::Number(n)) => n.to_string() == r.equals,
            _ => false,
        };
        if hit {
            roles.extend(r.roles.iter().cloned());
        }
    }
    roles
}

/// Parses the form, refusing duplicated parameters (RFC 6749 3.2).
fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err(oauth(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| oauth("invalid_request", "the form is not valid urlencoded"))?;
    let mut out = HashMap::new();
    for (k, v) in pairs {
        if out.insert(k.clone(), v).is_some() {
            return Err(oauth(
                "invalid_request",
                format!("parameter {k} given twice"),
            ));
        }
    }
    Ok(out)
}

/// The token endpoint.
pub async fn token(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    now_s: u64,
) -> Result<Value, OAuthError> {
    let f = form(headers, body)?;
    let grant_type = f
        .get("grant_type")
        .ok_or_else(|| oauth("invalid_request", "grant_type is required"))?;
    if grant_type != GRANT_TYPE {
        return Err(oauth(
            "unsupported_grant_type",
            format!("only {GRANT_TYPE} is supported"),
        ));
    }
    let subject = f
        .get("subject_token")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| oauth("invalid_request", "subject_token is required"))?;
    match f.get("subject_token_type").map(String::as_str) {
        Some(TT_ID | TT_JWT | TT_ACCESS) => {}
        Some(_) => {
            return Err(oauth(
                "invalid_request",
                "subject_token_type must be the id_token, jwt or access_token type",
            ))
        }
        None => return Err(oauth("invalid_request", "subject_token_type is required")),
    }
    let issued_type = match f.get("requested_token_type").map(String::as_str) {
        None | Some(TT_ACCESS) => TT_ACCESS,
        Some(TT_JWT) => TT_JWT,
        Some(_) => {
            return Err(oauth(
                "invalid_request",
                "requested_token_type: only the access_token or jwt type can be issued",
            ))
        }
    };
    if f.contains_key("actor_token") {
        return Err(oauth(
            "invalid_request",
            "delegation (actor_token) is not supported",
        ));
    }
    if subject.len() > st.cfg.max_subject_token_bytes {
        return Err(oauth(
            "invalid_request",
            format!(
                "subject_token is over {} bytes",
                st.cfg.max_subject_token_bytes
            ),
        ));
    }
    let unverified = jwt::parse(subject).map_err(|e| oauth("invalid_grant", e.to_string()))?;
    // Until the signature verified, every refusal is the same answer: the description must
    // not tell an anonymous caller whether a tenant exists or which issuer it trusts.
    let untrusted = |why: &str| {
        tracing::info!(reason = %why, "token exchange refused (untrusted subject token)");
        oauth("invalid_grant", UNTRUSTED)
    };
    let iss = unverified
        .claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| untrusted("the subject token has no iss"))?
        .to_string();

    // The tenants that trust this issuer. Only those issuers' keys are ever fetched, so a
    // made-up `iss` never makes us fetch anything.
    let (_, all) = st
        .store
        .list("issuers/")
        .await
        .map_err(|e| internal(e.into()))?;
    // (tenant, issuer entry name, entry)
    let mut candidates: Vec<(String, String, TrustedIssuer)> = Vec::new();
    for (key, v) in all {
        let Ok(ti) = serde_json::from_value::<TrustedIssuer>(v.value) else {
            continue;
        };
        if ti.issuer == iss {
            let (tenant, entry) = key["issuers/".len()..].split_once('/').unwrap_or(("", ""));
            candidates.push((tenant.to_string(), entry.to_string(), ti));
        }
    }
    if candidates.is_empty() {
        return Err(untrusted("no tenant trusts the subject token's issuer"));
    }
    // The issuer URL passes the same check as when it was stored: a plain-http issuer stored
    // by a dev-mode control plane is never used by a production one.
    if let Err(e) = crate::model::check_issuer_url(&iss, st.cfg.dev) {
        return Err(untrusted(&format!("stored issuer refused: {e}")));
    }

    let key = st
        .issuer_keys
        .key(&iss, unverified.kid.as_deref(), unverified.alg)
        .await
        .map_err(|e| match e {
            issuers::KeyLookupError::Unavailable(m) => {
                tracing::warn!(issuer = %iss, error = %m, "issuer keys unavailable");
                oauth(
                    "temporarily_unavailable",
                    "the issuer's keys could not be fetched; try again",
                )
            }
            other => untrusted(&other.to_string()),
        })?;
    jwt::verify_signature(&unverified, &key).map_err(|e| untrusted(&e.to_string()))?;

    // Signed by the issuer: from here on the caller holds a genuine token of it.
    let (tenant, entry, trusted) = match f.get("audience") {
        Some(aud) => candidates
            .into_iter()
            .find(|(t, _, _)| t == aud)
            .ok_or_else(|| untrusted("the audience tenant does not trust this issuer"))?,
        None if candidates.len() == 1 => candidates.pop().expect("one"),
        None => {
            return Err(oauth(
                "invalid_target",
                "several tenants trust this issuer: name one with audience=TENANT",
            ))
        }
    };
    let want = jwt::Expect {
        issuer: &trusted.issuer,
        audiences: &trusted.audiences,
        skew_s: st.cfg.clock_skew_s,
        max_age_s: st.cfg.max_subject_token_age_s,
    };
    let claims = jwt::check_claims(&unverified, &want, now_s).map_err(|e| {
        tracing::info!(%tenant, issuer = %iss, reason = %e, "token exchange refused");
        oauth("invalid_grant", e.to_string())
    })?;
    let oidc_sub = claims["sub"].as_str().expect("verify checks sub");
    // Qualified by the issuer entry: two issuers of one tenant may both have a user "alice",
    // and they must not share a principal (grants, revocations, audit).
    let sub = format!("{entry}:{oidc_sub}");
    let iat = claims["iat"].as_u64().expect("check_claims checks iat");

    let roles = roles_for(&claims, &trusted.rules);
    let mut grants: Vec<Grant> = Vec::new();
    for role in &roles {
        match st
            .store
            .get(&format!("roles/{tenant}/{role}"))
            .await
            .map_err(|e| internal(e.into()))?
        {
            Some(v) => {
                let r: Role = serde_json::from_value(v.value)
                    .map_err(|e| oauth("server_error", format!("role {role} unreadable: {e}")))?;
                for g in r.grants {
                    if !grants.contains(&g) {
                        grants.push(g);
                    }
                }
            }
            None => tracing::warn!(%tenant, %role, "a claim rule names a role that does not exist"),
        }
    }
    if grants.is_empty() {
        tracing::info!(%tenant, %sub, "token exchange refused: no role matches");
        return Err(oauth(
            "access_denied",
            format!("no role of tenant {tenant} is granted to this identity"),
        ));
    }
    Permissions::compile(&grants).map_err(|e| {
        oauth(
            "access_denied",
            format!("the roles' grants together are not valid: {e}"),
        )
    })?;
    // A subject revocation covers the OIDC tokens issued before it too: otherwise a stolen
    // ID token would mint fresh Felix tokens (with a later iat) right through it.
    if let Some(before) = st
        .revocations
        .subject_revoked_before(&tenant, &sub, now_s)
        .await
        .map_err(internal)?
    {
        if iat < before {
            tracing::info!(%tenant, %sub, iat, before, "token exchange refused: revoked subject");
            return Err(oauth(
                "access_denied",
                "this identity was revoked after the subject token was issued; log in again",
            ));
        }
    }

    let felix = Claims {
        iss: st.cfg.issuer.clone(),
        aud: st.cfg.audience.clone(),
        sub: sub.clone(),
        tenant: tenant.clone(),
        region: st.cfg.region.clone(),
        perms: grants,
        iat: now_s,
        nbf: now_s,
        exp: now_s + st.cfg.token_lifetime_s,
        jti: format!("{:032x}", rand::random::<u128>()),
    };
    let signer = st.keys.current(now_s).await.map_err(internal)?;
    let token = signer
        .sign(&felix)
        .map_err(|e| oauth("server_error", e.to_string()))?;
    // Brokers refuse longer tokens unread: issuing one would only fail later, at login.
    if token.len() > felix_auth::token::MAX_TOKEN_BYTES {
        tracing::info!(%tenant, %sub, bytes = token.len(), roles = ?roles, "token exchange refused: token too large");
        return Err(oauth(
            "access_denied",
            format!(
                "the grants of this identity's roles make a token of {} bytes, over the {} bytes \
                 brokers accept: give it fewer or narrower roles",
                token.len(),
                felix_auth::token::MAX_TOKEN_BYTES
            ),
        ));
    }
    tracing::info!(
        audit = "token_exchange",
        %tenant, %sub, issuer = %iss, roles = ?roles, jti = %felix.jti, kid = %signer.kid(),
        "issued a Felix token"
    );
    Ok(serde_json::json!({
        "access_token": token,
        "issued_token_type": issued_type,
        "token_type": "Bearer",
        "expires_in": st.cfg.token_lifetime_s,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_strings_arrays_and_sub() {
        let rules = vec![
            ClaimRule {
                claim: "groups".into(),
                equals: "payments-admins".into(),
                roles: vec!["admin".into()],
            },
            ClaimRule {
                claim: "sub".into(),
                equals: "bob".into(),
                roles: vec!["reader".into()],
            },
            ClaimRule {
                claim: "email_verified".into(),
                equals: "true".into(),
                roles: vec!["verified".into()],
            },
        ];
        let c = serde_json::json!({"sub": "alice", "groups": ["staff", "payments-admins"], "email_verified": true});
        assert_eq!(
            roles_for(&c, &rules),
            ["admin", "verified"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        let c = serde_json::json!({"sub": "bob", "groups": "payments-admins-x"});
        assert_eq!(
            roles_for(&c, &rules),
            ["reader"].iter().map(|s| s.to_string()).collect()
        );
    }

    #[test]
    fn the_form_must_be_urlencoded_without_duplicates() {
        let mut h = HeaderMap::new();
        assert_eq!(form(&h, b"a=b").unwrap_err().code, "invalid_request");
        h.insert(
            axum::http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert_eq!(form(&h, b"a=b&c=d%20e").unwrap()["c"], "d e");
        assert_eq!(form(&h, b"a=b&a=c").unwrap_err().code, "invalid_request");
    }
}
