//! Signing and verifying Felix JWTs.
//!
//! Felix tokens have exactly one algorithm, EdDSA over Ed25519 (RFC 8037), done here with
//! `ring` directly rather than through a general JWT library: the verifier never reads an
//! algorithm choice from the token (the header's `alg` must be the literal `EdDSA`), so
//! `alg: none`, HMAC-with-the-public-key and every other algorithm confusion are refused by
//! construction, and the broker carries no RSA/HMAC code it does not use. Time is an argument,
//! so expiry is tested without waiting.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::Deserialize;

use crate::claims::{Claims, Jwk, Jwks};
use crate::perms::Permissions;

/// Longest token a verifier reads; longer ones are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a key could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a PKCS#8 PEM Ed25519 private key.
    #[error("not an Ed25519 PKCS#8 private key: {0}")]
    BadPrivateKey(String),
    /// A JWK that is not an Ed25519 public key.
    #[error("unusable key {kid:?}: {reason}")]
    BadPublicKey {
        /// The key's id.
        kid: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Claims that cannot be serialized (never for [`Claims`]).
    #[error("cannot encode claims: {0}")]
    Encode(String),
}

/// Why a token was refused. Every variant maps to the wire code `unauthorized`; the variant
/// is for logs and the audit trail (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Header `alg` other than `EdDSA` (including `none` and HMAC).
    #[error("algorithm {0:?} is not accepted (only EdDSA)")]
    Algorithm(String),
    /// Header `kid` absent or not among the current keys.
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `exp` passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` is not the configured audience.
    #[error("wrong audience")]
    Audience,
    /// `region` is not this broker's region.
    #[error("token for region {0:?}")]
    Region(String),
    /// Claims missing, of the wrong type, or with permissions outside the grammar.
    #[error("bad claims: {0}")]
    Claims(String),
}

/// The control plane's private key: signs Felix JWTs.
pub struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the system's secure random source.
    pub fn generate(kid: &str) -> SigningKey {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("the system random source works");
        Self::from_pkcs8_der(kid, doc.as_ref()).expect("ring reads its own keys")
    }

    /// Reads a key from PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8_der(kid: &str, der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        Ok(SigningKey {
            kid: kid.to_owned(),
            pkcs8: der.to_vec(),
            pair,
        })
    }

    /// Reads a `-----BEGIN PRIVATE KEY-----` PEM file's text.
    pub fn from_pkcs8_pem(kid: &str, pem: &str) -> Result<SigningKey, KeyError> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END PRIVATE KEY-----")
            .collect();
        if body.is_empty() {
            return Err(KeyError::BadPrivateKey("no PRIVATE KEY block".into()));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        Self::from_pkcs8_der(kid, &der)
    }

    /// The key as PKCS#8 PEM, for a file the caller creates with mode 0600.
    pub fn to_pkcs8_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.pkcs8);
        let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        out
    }

    /// The key id written in each token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, for the JWKS.
    pub fn public_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: B64.encode(self.pair.public_key().as_ref()),
            kid: self.kid.clone(),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }

    /// Signs claims into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let header = serde_json::to_vec(&header).map_err(|e| KeyError::Encode(e.to_string()))?;
        let body = serde_json::to_vec(claims).map_err(|e| KeyError::Encode(e.to_string()))?;
        let mut token = B64.encode(header);
        token.push('.');
        token.push_str(&B64.encode(body));
        let sig = self.pair.sign(token.as_bytes());
        token.push('.');
        token.push_str(&B64.encode(sig.as_ref()));
        Ok(token)
    }
}

/// What a verifier expects of every token besides a good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Required `region`: this broker's.
    pub region: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    /// RFC 7515 4.1.11: a verifier must refuse extensions it does not understand; Felix
    /// tokens use none.
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Verifies Felix JWTs against a key set. Cheap to clone the keys into; swap it whole when
/// the control plane publishes new keys.
#[derive(Debug, Clone)]
pub struct Verifier {
    cfg: VerifierConfig,
    keys: HashMap<String, Vec<u8>>,
}

impl Verifier {
    /// A verifier for `keys`. Keys that are not Ed25519 are left out (see
    /// [`Verifier::with_keys`] to learn which).
    pub fn new(cfg: VerifierConfig, keys: Jwks) -> Verifier {
        Self::with_keys(cfg, keys).0
    }

    /// A verifier for `keys`, and the keys it could not use with the reason.
    pub fn with_keys(cfg: VerifierConfig, keys: Jwks) -> (Verifier, Vec<KeyError>) {
        let mut out = HashMap::new();
        let mut errors = Vec::new();
        for k in keys.keys {
            match public_key(&k) {
                Ok(bytes) => {
                    out.insert(k.kid, bytes);
                }
                Err(reason) => errors.push(KeyError::BadPublicKey { kid: k.kid, reason }),
            }
        }
        (Verifier { cfg, keys: out }, errors)
    }

    /// The expectations this verifier checks.
    pub fn config(&self) -> &VerifierConfig {
        &self.cfg
    }

    /// How many usable keys it holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies a compact JWT at time `now_s` (seconds since the Unix epoch): size, shape,
    /// `alg`, `kid`, signature, then `iss`, `aud`, `region`, `nbf`, `exp` and the grammar of
    /// `perms`. The tenant is the caller's to compare with the one the client asked for.
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let header = B64
            .decode(h)
            .map_err(|_| TokenError::Malformed("header is not base64url"))?;
        let header: Header = serde_json::from_slice(&header)
            .map_err(|_| TokenError::Malformed("header is not a JSON object with alg"))?;
        if header.alg != "EdDSA" {
            return Err(TokenError::Algorithm(header.alg.chars().take(32).collect()));
        }
        if header.typ.as_deref().is_some_and(|t| t != "JWT") {
            return Err(TokenError::Malformed("header typ is not JWT"));
        }
        if header.crit.is_some() {
            return Err(TokenError::Malformed("header has crit extensions"));
        }
        let kid = header.kid.unwrap_or_default();
        let Some(key) = self.keys.get(&kid) else {
            return Err(TokenError::UnknownKey(kid.chars().take(64).collect()));
        };
        let sig = B64
            .decode(s)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let signed = &token[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(&ED25519, key)
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| TokenError::Signature)?;
        // Only signed bytes are parsed past this point.
        let body = B64
            .decode(c)
            .map_err(|_| TokenError::Malformed("claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&body)
            .map_err(|e| TokenError::Claims(e.to_string().chars().take(200).collect()))?;
        if claims.iss != self.cfg.issuer {
            return Err(TokenError::Issuer);
        }
        if claims.aud != self.cfg.audience {
            return Err(TokenError::Audience);
        }
        if claims.region != self.cfg.region {
            return Err(TokenError::Region(claims.region.chars().take(64).collect()));
        }
        if claims.nbf > now_s.saturating_add(self.cfg.leeway_s) {
            return Err(TokenError::NotYetValid);
        }
        if claims.exp.saturating_add(self.cfg.leeway_s) <= now_s {
            return Err(TokenError::Expired);
        }
        Permissions::compile(&claims.perms).map_err(|e| TokenError::Claims(e.to_string()))?;
        Ok(claims)
    }
}

fn public_key(k: &Jwk) -> Result<Vec<u8>, &'static str> {
    if k.kty != "OKP" || k.crv != "Ed25519" {
        return Err("not an OKP Ed25519 key");
    }
    if k.alg.as_deref().is_some_and(|a| a != "EdDSA") {
        return Err("alg is not EdDSA");
    }
    let x = B64.decode(&k.x).map_err(|_| "x is not base64url")?;
    if x.len() != 32 {
        return Err("x is not 32 bytes");
    }
    Ok(x)
}

#[cfg(test)]
mod tests;
