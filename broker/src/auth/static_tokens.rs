//! Shared-secret mode: static tokens bound to tenants.

use std::collections::HashMap;
use std::path::Path;

use super::{AuthError, Authenticator, DevAuth, Principal};

/// Shared-secret mode: each token is bound to the tenant (or tenants) it was issued for, and
/// opens only that tenant. A stop-gap until signed tokens (the identity work), and what tests
/// use to exercise `unauthorized`.
///
/// Tokens are kept only as SHA-256 digests: a lookup hashes the presented token, so neither
/// the comparison's timing nor a memory dump reveals a token. Entries come from a token file
/// ([`StaticTokenAuth::from_file`]) or the `FELIX_AUTH_TOKENS` environment variable
/// ([`StaticTokenAuth::parse_list`]); never from the command line, where every local user could
/// read them in `/proc/PID/cmdline`.
#[derive(Debug)]
pub struct StaticTokenAuth {
    by_digest: HashMap<[u8; 32], Vec<TokenGrant>>,
}

/// What one token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenGrant {
    tenant: String,
    subject: Option<String>,
}

/// One `tenant`/`token` pair, as configured.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    /// The tenant the token opens.
    pub tenant: String,
    /// The token itself (or, with `sha256:`, its digest in hex).
    pub token: String,
    /// Who the token stands for (logged and used as the principal's subject).
    pub subject: Option<String>,
}

/// A token configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("auth tokens: {0}")]
pub struct TokenConfigError(pub String);

impl StaticTokenAuth {
    /// Accepts exactly these (tenant, token) pairs. Fails on an empty list, an invalid tenant
    /// name, an empty token or a malformed `sha256:` digest.
    pub fn new(entries: Vec<TokenEntry>) -> Result<Self, TokenConfigError> {
        if entries.is_empty() {
            return Err(TokenConfigError("no tokens configured".into()));
        }
        let mut by_digest: HashMap<[u8; 32], Vec<TokenGrant>> = HashMap::new();
        for e in entries {
            crate::names::validate_tenant(&e.tenant)
                .map_err(|err| TokenConfigError(format!("tenant {:?}: {err}", e.tenant)))?;
            let digest = match e.token.strip_prefix("sha256:") {
                Some(hex) => parse_digest(hex).ok_or_else(|| {
                    TokenConfigError(format!(
                        "tenant {:?}: sha256: needs 64 hex digits",
                        e.tenant
                    ))
                })?,
                None if e.token.is_empty() => {
                    return Err(TokenConfigError(format!(
                        "tenant {:?}: empty token",
                        e.tenant
                    )))
                }
                None => digest(e.token.as_bytes()),
            };
            let grant = TokenGrant {
                tenant: e.tenant,
                subject: e.subject,
            };
            let grants = by_digest.entry(digest).or_default();
            if !grants.contains(&grant) {
                grants.push(grant);
            }
        }
        Ok(Self { by_digest })
    }

    /// Parses `TENANT:TOKEN` pairs separated by commas (the `FELIX_AUTH_TOKENS` form). A token
    /// without its tenant is refused: an unbound token is exactly the hole this closes.
    pub fn parse_list(list: &str) -> Result<Vec<TokenEntry>, TokenConfigError> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, item)| match item.split_once(':') {
                Some((tenant, token)) if !tenant.is_empty() && !token.is_empty() => {
                    Ok(TokenEntry {
                        tenant: tenant.to_owned(),
                        token: token.to_owned(),
                        subject: None,
                    })
                }
                _ => Err(TokenConfigError(format!(
                    "entry {} is not TENANT:TOKEN (every token must name the tenant it opens)",
                    i + 1
                ))),
            })
            .collect()
    }

    /// Parses a token file: one `TENANT TOKEN [SUBJECT]` per line, separated by white space;
    /// `#` starts a comment. `TOKEN` may be `sha256:HEX`, the digest of the token, so the
    /// file need not hold the secret itself.
    pub fn parse_file(text: &str) -> Result<Vec<TokenEntry>, TokenConfigError> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            // `#` starts a comment at the start of a line or after white space only: a token
            // may contain `#` (cutting it there would silently accept a shorter token).
            let line = if line.trim_start().starts_with('#') {
                ""
            } else {
                line.split_once(" #")
                    .or_else(|| line.split_once("\t#"))
                    .map_or(line, |(l, _)| l)
                    .trim()
            };
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(tenant), Some(token)) = (words.next(), words.next()) else {
                return Err(TokenConfigError(format!(
                    "line {}: expected TENANT TOKEN [SUBJECT]",
                    n + 1
                )));
            };
            let subject = words.next().map(str::to_owned);
            if words.next().is_some() {
                return Err(TokenConfigError(format!(
                    "line {}: expected TENANT TOKEN [SUBJECT]",
                    n + 1
                )));
            }
            out.push(TokenEntry {
                tenant: tenant.to_owned(),
                token: token.to_owned(),
                subject,
            });
        }
        Ok(out)
    }

    /// Reads a token file. The file holds secrets: one that other users can read (or write) is
    /// refused when `strict` (production) and warned about otherwise.
    pub fn read_file(path: &Path, strict: bool) -> Result<Vec<TokenEntry>, TokenConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |e: std::io::Error| TokenConfigError(format!("{}: {e}", path.display()));
        let meta = std::fs::metadata(path).map_err(err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let msg = format!(
                "{} is accessible to other users (mode {mode:o}); run chmod 600 on it",
                path.display()
            );
            if strict {
                return Err(TokenConfigError(msg));
            }
            tracing::warn!("{msg}");
        }
        let text = std::fs::read_to_string(path).map_err(err)?;
        Self::parse_file(&text)
            .map_err(|e| TokenConfigError(format!("{}: {}", path.display(), e.0)))
    }
}

impl Authenticator for StaticTokenAuth {
    fn authenticate(&self, tenant: &str, token: Option<&str>) -> Result<Principal, AuthError> {
        let principal = DevAuth.authenticate(tenant, token)?;
        let Some(token) = token else {
            return Err(AuthError::Unauthorized("token required".into()));
        };
        // One answer for an unknown token and for a token of another tenant, so a guess never
        // learns that it hit some other tenant's token.
        let grant = self
            .by_digest
            .get(&digest(token.as_bytes()))
            .and_then(|grants| grants.iter().find(|g| g.tenant == principal.tenant))
            .ok_or_else(|| AuthError::Unauthorized("invalid token for this tenant".into()))?;
        Ok(Principal::unrestricted(
            principal.tenant,
            grant.subject.clone(),
        ))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_wire::ErrorCode;

    fn auth(list: &str) -> StaticTokenAuth {
        StaticTokenAuth::new(StaticTokenAuth::parse_list(list).unwrap()).unwrap()
    }

    #[test]
    fn a_token_opens_only_the_tenant_it_is_bound_to() {
        let a = auth("acme:tok-a, globex:tok-g");
        assert_eq!(
            a.authenticate("acme", Some("tok-a")).unwrap().tenant,
            "acme"
        );
        assert_eq!(
            a.authenticate("globex", Some("tok-g")).unwrap().tenant,
            "globex"
        );
        // The hole this closes: a valid token sent with another tenant's id.
        for (tenant, token) in [("globex", "tok-a"), ("acme", "tok-g")] {
            let e = a.authenticate(tenant, Some(token)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::Unauthorized, "{tenant}/{token}");
        }
        // Unknown, empty and missing tokens get the same answer as another tenant's token.
        let other = a
            .authenticate("globex", Some("tok-a"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            a.authenticate("acme", Some("nope"))
                .unwrap_err()
                .to_string(),
            other
        );
        assert!(a.authenticate("acme", Some("")).is_err());
        assert!(a.authenticate("acme", None).is_err());
    }

    #[test]
    fn one_token_may_be_bound_to_several_tenants_and_carries_its_subject() {
        let entries = StaticTokenAuth::parse_file(
            "# tenant token subject\nacme shared svc-a\n\nglobex shared   # no subject\n  # indented\ninitech a#b\n",
        )
        .unwrap();
        let a = StaticTokenAuth::new(entries).unwrap();
        let p = a.authenticate("acme", Some("shared")).unwrap();
        assert_eq!(p.subject.as_deref(), Some("svc-a"));
        assert_eq!(
            a.authenticate("globex", Some("shared")).unwrap().subject,
            None
        );
        assert!(a.authenticate("initech", Some("shared")).is_err());
        // A `#` inside a token is part of it, not a comment.
        assert!(a.authenticate("initech", Some("a#b")).is_ok());
        assert!(a.authenticate("initech", Some("a")).is_err());
    }

    #[test]
    fn a_file_may_hold_digests_instead_of_tokens() {
        let hex: String = digest(b"s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let a = StaticTokenAuth::new(
            StaticTokenAuth::parse_file(&format!("acme sha256:{hex}\n")).unwrap(),
        )
        .unwrap();
        assert!(a.authenticate("acme", Some("s3cret")).is_ok());
        assert!(a
            .authenticate("acme", Some(&format!("sha256:{hex}")))
            .is_err());
        let bad = StaticTokenAuth::parse_file("acme sha256:abcd\n").unwrap();
        assert!(StaticTokenAuth::new(bad).is_err());
    }

    #[test]
    fn unbound_and_malformed_configurations_are_refused() {
        for list in ["justatoken", "acme:", ":tok", "acme:tok,bare"] {
            assert!(StaticTokenAuth::parse_list(list).is_err(), "{list}");
        }
        assert!(StaticTokenAuth::new(vec![]).is_err(), "no tokens at all");
        assert!(StaticTokenAuth::parse_file("acme\n").is_err(), "no token");
        assert!(StaticTokenAuth::parse_file("acme t s extra\n").is_err());
        let bad_tenant = StaticTokenAuth::parse_list("no/slash:tok").unwrap();
        assert!(StaticTokenAuth::new(bad_tenant).is_err());
        assert!(!auth("acme:t").accepts_anyone());
        assert!(DevAuth.accepts_anyone());
    }

    #[test]
    fn a_token_file_readable_by_others_is_refused_in_production() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("felix-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, "acme tok\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = StaticTokenAuth::read_file(&path, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert_eq!(StaticTokenAuth::read_file(&path, false).unwrap().len(), 1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(StaticTokenAuth::read_file(&path, true).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
