//! Verification of subject tokens (JWTs from trusted OIDC issuers), free of I/O: keys come
//! in, time is an argument.
//!
//! Only RS256, PS256, ES256 and EdDSA (Ed25519) are accepted, and a key is used only with the
//! algorithm of its own type (an RSA key never verifies an EdDSA header, a JWK that names its
//! `alg` only that one). `none` and HS* are refused before any key is looked at. Signatures
//! are checked with ring.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// Why a subject token was refused. Messages never include the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("the subject token is not a well-formed JWT")]
    Malformed,
    /// `alg` outside the allowlist.
    #[error("signing algorithm {0:?} is not accepted (RS256, PS256, ES256, EdDSA)")]
    Algorithm(String),
    /// No key of the issuer has the token's `kid`.
    #[error("the issuer has no key with the token's kid")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the subject token's signature does not verify")]
    Signature,
    /// A required claim is missing or of the wrong type.
    #[error("the subject token lacks a valid {0:?} claim")]
    MissingClaim(&'static str),
    /// `iss` is not the issuer's.
    #[error("the subject token's iss is not the trusted issuer's")]
    Issuer,
    /// No `aud` is an allowed audience.
    #[error("the subject token is meant for another audience")]
    Audience,
    /// Past `exp` (+ skew).
    #[error("the subject token has expired")]
    Expired,
    /// Before `nbf` (- skew), or `iat` in the future (beyond skew).
    #[error("the subject token is not valid yet")]
    NotYetValid,
    /// `now - iat` over `max_subject_token_age_s`.
    #[error("the subject token was issued too long ago; get a fresh one")]
    TooOld,
    /// A header `typ` that says this is not a plain JWT / JWT access token (e.g. a logout
    /// token or an encrypted one).
    #[error("the subject token's typ is not JWT or at+jwt")]
    Type,
    /// `aud` has several values and `azp` is missing or not one of ours.
    #[error("the subject token has several audiences and its azp is not an allowed audience")]
    AuthorizedParty,
}

/// The allowlisted algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    fn parse(s: &str) -> Result<Alg, JwtError> {
        match s {
            "RS256" => Ok(Alg::Rs256),
            "PS256" => Ok(Alg::Ps256),
            "ES256" => Ok(Alg::Es256),
            "EdDSA" => Ok(Alg::EdDsa),
            other => Err(JwtError::Algorithm(other.chars().take(16).collect())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// A public key from an issuer's JWKS, decoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA modulus and exponent (big-endian).
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Exponent.
        e: Vec<u8>,
    },
    /// Uncompressed P-256 point (0x04 || x || y).
    P256(Vec<u8>),
    /// Ed25519 public key.
    Ed25519(Vec<u8>),
}

/// One usable key of an issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKey {
    /// `kid`, if the JWK has one.
    pub kid: Option<String>,
    /// `alg` the JWK is restricted to, if it names one.
    pub alg: Option<String>,
    /// The key.
    pub key: PublicKey,
}

fn b64(v: &Value, field: &str) -> Option<Vec<u8>> {
    B64.decode(v.get(field)?.as_str()?).ok()
}

/// Reads the signature keys of a JWKS document; keys that are not for signatures, of an
/// unsupported type, or malformed are skipped (an issuer may publish encryption keys too).
pub fn parse_jwks(doc: &Value) -> Vec<IssuerKey> {
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .filter_map(|k| {
            let key = match (
                k.get("kty").and_then(Value::as_str)?,
                k.get("crv").and_then(Value::as_str),
            ) {
                ("RSA", _) => PublicKey::Rsa {
                    n: b64(k, "n")?,
                    e: b64(k, "e")?,
                },
                ("EC", Some("P-256")) => {
                    let (x, y) = (b64(k, "x")?, b64(k, "y")?);
                    if x.len() != 32 || y.len() != 32 {
                        return None;
                    }
                    let mut p = vec![4u8];
                    p.extend_from_slice(&x);
                    p.extend_from_slice(&y);
                    PublicKey::P256(p)
                }
                ("OKP", Some("Ed25519")) => {
                    let x = b64(k, "x")?;
                    if x.len() != 32 {
                        return None;
                    }
                    PublicKey::Ed25519(x)
                }
                _ => return None,
            };
            Some(IssuerKey {
                kid: k.get("kid").and_then(Value::as_str).map(str::to_string),
                alg: k.get("alg").and_then(Value::as_str).map(str::to_string),
                key,
            })
        })
        .collect()
}

/// A token split and decoded, not yet verified.
#[derive(Debug, Clone)]
pub struct Unverified<'a> {
    /// The allowlisted algorithm of the header.
    pub alg: Alg,
    /// Header `kid`.
    pub kid: Option<String>,
    /// The payload's claims (untrusted until [`verify`] succeeds).
    pub claims: Value,
    signed: &'a str,
    signature: Vec<u8>,
}

/// Splits a compact JWT and checks its header's algorithm against the allowlist.
pub fn parse(token: &str) -> Result<Unverified<'_>, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Value = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed)?;
    let alg = Alg::parse(alg)?;
    // `crit` names extensions the verifier must understand; we understand none.
    if header.get("crit").is_some() {
        return Err(JwtError::Malformed);
    }
    // Explicit typing (RFC 8725 3.11): only plain JWTs and JWT access tokens are subject
    // tokens; e.g. a `logout+jwt` signed by the same issuer must not log anyone in.
    match header.get("typ") {
        None => {}
        Some(Value::String(t))
            if t.eq_ignore_ascii_case("JWT")
                || t.eq_ignore_ascii_case("at+jwt")
                || t.eq_ignore_ascii_case("application/at+jwt") => {}
        Some(_) => return Err(JwtError::Type),
    }
    let claims: Value = B64
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(Value::is_object)
        .ok_or(JwtError::Malformed)?;
    let signature = B64.decode(s).map_err(|_| JwtError::Malformed)?;
    Ok(Unverified {
        alg,
        kid: header
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_string),
        claims,
        signed: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

/// Whether `key` may verify a token signed with `alg`.
pub fn key_fits(key: &IssuerKey, alg: Alg) -> bool {
    let type_ok = matches!(
        (&key.key, alg),
        (PublicKey::Rsa { .. }, Alg::Rs256 | Alg::Ps256)
            | (PublicKey::P256(_), Alg::Es256)
            | (PublicKey::Ed25519(_), Alg::EdDsa)
    );
    type_ok && key.alg.as_deref().is_none_or(|a| a == alg.name())
}

/// What the claims must satisfy.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// Exact `iss`.
    pub issuer: &'a str,
    /// At least one `aud` must be one of these.
    pub audiences: &'a [String],
    /// Tolerated clock skew, seconds.
    pub skew_s: u64,
    /// Oldest `iat` accepted: `now - iat` at most this.
    pub max_age_s: u64,
}

/// Verifies the signature with `key`, then the claims ([`check_claims`]). Returns the claims.
pub fn verify(
    t: &Unverified<'_>,
    key: &IssuerKey,
    want: &Expect<'_>,
    now_s: u64,
) -> Result<Value, JwtError> {
    verify_signature(t, key)?;
    check_claims(t, want, now_s)
}

/// Verifies only the signature with `key` (and that the key fits the algorithm).
pub fn verify_signature(t: &Unverified<'_>, key: &IssuerKey) -> Result<(), JwtError> {
    if !key_fits(key, t.alg) {
        return Err(JwtError::UnknownKey);
    }
    let msg = t.signed.as_bytes();
    let sig = t.signature.as_slice();
    let ok = match (&key.key, t.alg) {
        (PublicKey::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .is_ok(),
        (PublicKey::Rsa { n, e }, Alg::Ps256) => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PSS_2048_8192_SHA256, msg, sig)
            .is_ok(),
        (PublicKey::P256(p), Alg::Es256) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p)
                .verify(msg, sig)
                .is_ok()
        }
        (PublicKey::Ed25519(x), Alg::EdDsa) => UnparsedPublicKey::new(&signature::ED25519, x)
            .verify(msg, sig)
            .is_ok(),
        _ => false,
    };
    if !ok {
        return Err(JwtError::Signature);
    }
    Ok(())
}

/// Checks `iss`, `aud` (and `azp` with several audiences), `exp`, `nbf`, `iat` (required,
/// not older than `max_age_s`) and that `sub` is a string. Call only once the signature
/// verified. Returns the claims.
pub fn check_claims(t: &Unverified<'_>, want: &Expect<'_>, now_s: u64) -> Result<Value, JwtError> {
    let c = &t.claims;
    let iss = c
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(JwtError::MissingClaim("iss"))?;
    if iss != want.issuer {
        return Err(JwtError::Issuer);
    }
    let auds: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(JwtError::MissingClaim("aud")),
    };
    if !auds.iter().any(|a| want.audiences.iter().any(|w| w == a)) {
        return Err(JwtError::Audience);
    }
    // With several audiences, the token was obtained by `azp` (OIDC Core 3.1.3.7): it must be
    // one of ours, or a token minted for another client that merely lists us is accepted.
    if auds.len() > 1 {
        let azp = c.get("azp").and_then(Value::as_str);
        if !azp.is_some_and(|azp| want.audiences.iter().any(|w| w == azp)) {
            return Err(JwtError::AuthorizedParty);
        }
    }
    let exp = c
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(JwtError::MissingClaim("exp"))?;
    if now_s >= exp.saturating_add(want.skew_s) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = c.get("nbf") {
        let nbf = nbf.as_u64().ok_or(JwtError::MissingClaim("nbf"))?;
        if now_s.saturating_add(want.skew_s) < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    let iat = c
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(JwtError::MissingClaim("iat"))?;
    if iat > now_s.saturating_add(want.skew_s) {
        return Err(JwtError::NotYetValid);
    }
    if now_s.saturating_sub(iat) > want.max_age_s {
        return Err(JwtError::TooOld);
    }
    match c.get("sub").and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= 255 => {}
        _ => return Err(JwtError::MissingClaim("sub")),
    }
    Ok(c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn ed_token(pair: &Ed25519KeyPair, header: Value, claims: Value) -> String {
        let mut t = B64.encode(serde_json::to_vec(&header).unwrap());
        t.push('.');
        t.push_str(&B64.encode(serde_json::to_vec(&claims).unwrap()));
        let sig = pair.sign(t.as_bytes());
        t.push('.');
        t.push_str(&B64.encode(sig.as_ref()));
        t
    }

    fn setup() -> (Ed25519KeyPair, IssuerKey) {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let jwks = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": B64.encode(pair.public_key().as_ref()), "kid": "k1", "use": "sig"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0"}
        ]});
        let keys = parse_jwks(&jwks);
        assert_eq!(keys.len(), 1, "encryption and symmetric keys are skipped");
        (pair, keys[0].clone())
    }

    #[test]
    fn checks_signature_then_every_claim() {
        let (pair, key) = setup();
        let auds = vec!["felix-test".to_string()];
        let want = Expect {
            issuer: "https://idp",
            audiences: &auds,
            skew_s: 60,
            max_age_s: 3600,
        };
        let good = serde_json::json!({"iss": "https://idp", "aud": ["x", "felix-test"], "azp": "felix-test", "sub": "alice", "exp": 1000, "nbf": 500, "iat": 500});
        let h = serde_json::json!({"alg": "EdDSA", "kid": "k1"});
        let tok = ed_token(&pair, h.clone(), good.clone());
        let p = parse(&tok).unwrap();
        assert_eq!(verify(&p, &key, &want, 999).unwrap()["sub"], "alice");
        assert_eq!(
            verify(&p, &key, &want, 1059).unwrap()["sub"],
            "alice",
            "skew"
        );
        assert_eq!(verify(&p, &key, &want, 1060), Err(JwtError::Expired));
        assert_eq!(verify(&p, &key, &want, 439), Err(JwtError::NotYetValid));
        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            verify(
                &parse(&ed_token(&pair, h.clone(), c)).unwrap(),
                &key,
                &want,
                900,
            )
        };
        assert_eq!(with("iss", "https://other".into()), Err(JwtError::Issuer));
        assert_eq!(with("aud", "someone-else".into()), Err(JwtError::Audience));
        assert_eq!(with("sub", Value::Null), Err(JwtError::MissingClaim("sub")));
        assert_eq!(with("iat", Value::Null), Err(JwtError::MissingClaim("iat")));
        assert_eq!(with("iat", 961.into()), Err(JwtError::NotYetValid));
        assert_eq!(with("azp", "x".into()), Err(JwtError::AuthorizedParty));
        assert_eq!(with("azp", Value::Null), Err(JwtError::AuthorizedParty));
        let mut one = good.clone();
        one["aud"] = "felix-test".into();
        one["azp"] = Value::Null;
        assert!(verify(
            &parse(&ed_token(&pair, h.clone(), one)).unwrap(),
            &key,
            &want,
            900
        )
        .is_ok());
        // Older than max_age_s (now - iat = 400).
        let old = Expect {
            max_age_s: 399,
            ..want.clone()
        };
        assert_eq!(verify(&p, &key, &old, 900), Err(JwtError::TooOld));
        assert!(verify(&p, &key, &old, 899).is_ok());
        // Only plain JWTs and JWT access tokens.
        for (typ, ok) in [
            ("JWT", true),
            ("at+jwt", true),
            ("logout+jwt", false),
            ("JOSE+JSON", false),
        ] {
            let t = ed_token(
                &pair,
                serde_json::json!({"alg": "EdDSA", "kid": "k1", "typ": typ}),
                good.clone(),
            );
            assert_eq!(parse(&t).is_ok(), ok, "{typ}");
        }
        // Tampered payload: the signature no longer matches.
        let mut parts: Vec<String> = tok.split('.').map(str::to_string).collect();
        let mut c = good.clone();
        c["sub"] = "mallory".into();
        parts[1] = B64.encode(serde_json::to_vec(&c).unwrap());
        let tampered = parts.join(".");
        assert_eq!(
            verify(&parse(&tampered).unwrap(), &key, &want, 900),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn refuses_none_hs256_and_keys_of_another_type() {
        let (pair, key) = setup();
        let claims = serde_json::json!({"iss": "i", "aud": "a", "sub": "s", "exp": 10});
        for alg in ["none", "HS256", "RS512"] {
            let t = ed_token(&pair, serde_json::json!({"alg": alg}), claims.clone());
            assert!(matches!(parse(&t), Err(JwtError::Algorithm(_))), "{alg}");
        }
        let t = ed_token(&pair, serde_json::json!({"alg": "RS256"}), claims.clone());
        let p = parse(&t).unwrap();
        assert!(!key_fits(&key, p.alg));
        assert!(matches!(parse("a.b"), Err(JwtError::Malformed)));
        assert!(matches!(parse("!!.!!.!!"), Err(JwtError::Malformed)));
        let restricted = IssuerKey {
            alg: Some("PS256".into()),
            ..IssuerKey {
                kid: None,
                alg: None,
                key: PublicKey::Rsa {
                    n: vec![1],
                    e: vec![1],
                },
            }
        };
        assert!(key_fits(&restricted, Alg::Ps256));
        assert!(!key_fits(&restricted, Alg::Rs256));
    }
}
