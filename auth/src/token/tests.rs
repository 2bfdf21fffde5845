use super::*;
use crate::perms::Grant;

const NOW: u64 = 1_800_000_000;

fn cfg() -> VerifierConfig {
    VerifierConfig {
        issuer: "https://cp.example".into(),
        audience: "felix".into(),
        region: "eu-1".into(),
        leeway_s: 30,
    }
}

fn claims() -> Claims {
    Claims {
        iss: "https://cp.example".into(),
        aud: "felix".into(),
        sub: "alice".into(),
        tenant: "acme".into(),
        region: "eu-1".into(),
        perms: vec![Grant {
            actions: vec!["publish".into()],
            resources: vec!["payments/orders".into()],
        }],
        iat: NOW,
        nbf: NOW,
        exp: NOW + 300,
        jti: "j-1".into(),
    }
}

fn setup() -> (SigningKey, Verifier) {
    let key = SigningKey::generate("k1");
    let v = Verifier::new(
        cfg(),
        Jwks {
            keys: vec![key.public_jwk()],
        },
    );
    (key, v)
}

fn b64(v: &serde_json::Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

#[test]
fn a_signed_token_verifies_and_round_trips_its_claims() {
    let (key, v) = setup();
    let t = key.sign(&claims()).unwrap();
    assert_eq!(v.verify(&t, NOW + 10).unwrap(), claims());
    assert_eq!(v.key_count(), 1);
}

#[test]
fn expiry_and_not_before_use_the_leeway_from_both_sides() {
    let (key, v) = setup();
    let t = key.sign(&claims()).unwrap();
    // exp = NOW+300, leeway 30: valid up to NOW+329, refused from NOW+330.
    assert!(v.verify(&t, NOW + 329).is_ok());
    assert_eq!(v.verify(&t, NOW + 330), Err(TokenError::Expired));
    // nbf = NOW: accepted from NOW-30, refused before.
    assert!(v.verify(&t, NOW - 30).is_ok());
    assert_eq!(v.verify(&t, NOW - 31), Err(TokenError::NotYetValid));
}

#[test]
fn issuer_audience_and_region_must_match() {
    let (key, v) = setup();
    let mut c = claims();
    c.iss = "https://evil.example".into();
    assert_eq!(
        v.verify(&key.sign(&c).unwrap(), NOW),
        Err(TokenError::Issuer)
    );
    let mut c = claims();
    c.aud = "other".into();
    assert_eq!(
        v.verify(&key.sign(&c).unwrap(), NOW),
        Err(TokenError::Audience)
    );
    let mut c = claims();
    c.region = "us-1".into();
    assert_eq!(
        v.verify(&key.sign(&c).unwrap(), NOW),
        Err(TokenError::Region("us-1".into()))
    );
}

#[test]
fn a_key_the_verifier_does_not_hold_is_refused() {
    let (_, v) = setup();
    let other = SigningKey::generate("k1"); // same kid, other key
    assert_eq!(
        v.verify(&other.sign(&claims()).unwrap(), NOW),
        Err(TokenError::Signature)
    );
    let unknown = SigningKey::generate("k2");
    assert_eq!(
        v.verify(&unknown.sign(&claims()).unwrap(), NOW),
        Err(TokenError::UnknownKey("k2".into()))
    );
}

#[test]
fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let (key, v) = setup();
    let body = b64(&serde_json::to_value(claims()).unwrap());
    let none = format!(
        "{}.{body}.",
        b64(&serde_json::json!({"alg":"none","kid":"k1"}))
    );
    assert_eq!(
        v.verify(&none, NOW),
        Err(TokenError::Algorithm("none".into()))
    );
    // HS256 "signed" with the public key bytes as the secret: refused on alg alone.
    let input = format!(
        "{}.{body}",
        b64(&serde_json::json!({"alg":"HS256","kid":"k1"}))
    );
    let pk = B64.decode(key.public_jwk().x).unwrap();
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &pk),
        input.as_bytes(),
    );
    let hs = format!("{input}.{}", B64.encode(mac.as_ref()));
    assert_eq!(
        v.verify(&hs, NOW),
        Err(TokenError::Algorithm("HS256".into()))
    );
}

#[test]
fn a_tampered_payload_fails_the_signature() {
    let (key, v) = setup();
    let t = key.sign(&claims()).unwrap();
    let parts: Vec<&str> = t.split('.').collect();
    let mut c = claims();
    c.tenant = "globex".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_value(c).unwrap()),
        parts[2]
    );
    assert_eq!(v.verify(&forged, NOW), Err(TokenError::Signature));
    // One flipped bit of the signature.
    let mut sig = B64.decode(parts[2]).unwrap();
    sig[0] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], B64.encode(sig));
    assert_eq!(v.verify(&flipped, NOW), Err(TokenError::Signature));
}

#[test]
fn malformed_truncated_and_oversized_tokens_are_refused() {
    let (key, v) = setup();
    let t = key.sign(&claims()).unwrap();
    assert!(matches!(
        v.verify(&t[..t.len() - 5], NOW),
        Err(TokenError::Signature | TokenError::Malformed(_))
    ));
    let cut = t.rsplit_once('.').unwrap().0;
    assert!(matches!(v.verify(cut, NOW), Err(TokenError::Malformed(_))));
    assert!(matches!(v.verify("", NOW), Err(TokenError::Malformed(_))));
    assert!(matches!(
        v.verify("a.b.c.d", NOW),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        v.verify("!!!.???.***", NOW),
        Err(TokenError::Malformed(_))
    ));
    let header_not_json = format!("{}.e30.AA", B64.encode("not json"));
    assert!(matches!(
        v.verify(&header_not_json, NOW),
        Err(TokenError::Malformed(_))
    ));
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(v.verify(&huge, NOW), Err(TokenError::TooLarge));
    let at_bound = "a".repeat(MAX_TOKEN_BYTES);
    assert!(matches!(
        v.verify(&at_bound, NOW),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn a_large_valid_token_under_the_bound_verifies() {
    let (key, v) = setup();
    let mut c = claims();
    c.perms = (0..40)
        .map(|i| Grant {
            actions: vec!["publish".into()],
            resources: vec![format!("payments/orders-{i:0>200}")],
        })
        .collect();
    let t = key.sign(&c).unwrap();
    assert!(
        t.len() > 8 * 1024 && t.len() < MAX_TOKEN_BYTES,
        "{}",
        t.len()
    );
    assert_eq!(v.verify(&t, NOW).unwrap(), c);
}

#[test]
fn claims_with_bad_permissions_or_missing_fields_are_refused() {
    let (key, v) = setup();
    let mut c = claims();
    c.perms[0].resources = vec!["no-slash".into()];
    assert!(matches!(
        v.verify(&key.sign(&c).unwrap(), NOW),
        Err(TokenError::Claims(_))
    ));
    // A signed token whose claims lack `tenant`.
    let mut raw = serde_json::to_value(claims()).unwrap();
    raw.as_object_mut().unwrap().remove("tenant");
    let input = format!(
        "{}.{}",
        b64(&serde_json::json!({"alg":"EdDSA","kid":"k1"})),
        b64(&raw)
    );
    let sig = key.pair.sign(input.as_bytes());
    let t = format!("{input}.{}", B64.encode(sig.as_ref()));
    assert!(matches!(v.verify(&t, NOW), Err(TokenError::Claims(_))));
}

#[test]
fn pem_round_trip_keeps_the_key() {
    let key = SigningKey::generate("k9");
    let pem = key.to_pkcs8_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let back = SigningKey::from_pkcs8_pem("k9", &pem).unwrap();
    assert_eq!(back.kid(), "k9");
    assert_eq!(key.public_jwk().kid, "k9");
    assert_eq!(back.public_jwk(), key.public_jwk());
    assert!(SigningKey::from_pkcs8_pem("k", "junk").is_err());
    assert!(format!("{key:?}").contains("k9"));
    assert!(!format!("{key:?}").contains(&pem[30..60]));
}

#[test]
fn keys_that_are_not_ed25519_are_reported_and_left_out() {
    let good = SigningKey::generate("ok").public_jwk();
    let mut rsa = good.clone();
    rsa.kid = "rsa".into();
    rsa.kty = "RSA".into();
    let mut short = good.clone();
    short.kid = "short".into();
    short.x = B64.encode([1u8; 16]);
    let second = SigningKey::generate("ok2").public_jwk();
    let (v, errors) = Verifier::with_keys(
        cfg(),
        Jwks {
            keys: vec![good, rsa, short, second],
        },
    );
    assert_eq!(v.key_count(), 2);
    assert_eq!(errors.len(), 2);
}

#[test]
fn headers_with_another_typ_or_crit_extensions_are_refused() {
    let (key, v) = setup();
    let body = b64(&serde_json::to_value(claims()).unwrap());
    let sign = |header: serde_json::Value| {
        let input = format!("{}.{body}", b64(&header));
        let sig = key.pair.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.as_ref()))
    };
    // The same signed claims pass with the plain header and without typ...
    assert!(v
        .verify(
            &sign(serde_json::json!({"alg":"EdDSA","typ":"JWT","kid":"k1"})),
            NOW
        )
        .is_ok());
    assert!(v
        .verify(&sign(serde_json::json!({"alg":"EdDSA","kid":"k1"})), NOW)
        .is_ok());
    // ...and fail with another type or a critical extension.
    assert!(matches!(
        v.verify(
            &sign(serde_json::json!({"alg":"EdDSA","typ":"logout+jwt","kid":"k1"})),
            NOW
        ),
        Err(TokenError::Malformed(_))
    ));
    assert!(matches!(
        v.verify(
            &sign(serde_json::json!({"alg":"EdDSA","kid":"k1","crit":["exp"]})),
            NOW
        ),
        Err(TokenError::Malformed(_))
    ));
}
