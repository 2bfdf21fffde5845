//! Reading a token's times without verifying it, for a client that schedules its refresh.
//!
//! A client never verifies a Felix token (it has no keys and needs none: the broker does);
//! it only needs to know when the token stops working, to fetch a fresh one in time. The
//! result is a scheduling hint, never an authorization decision: nothing read here is trusted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::Deserialize;

use crate::token::{TokenError, MAX_TOKEN_BYTES};

/// The times of an unverified JWT, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnverifiedTimes {
    /// `exp`: when the token stops being accepted.
    pub exp: u64,
    /// `iat`, if present.
    pub iat: Option<u64>,
}

#[derive(Deserialize)]
struct Times {
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
}

/// The `exp` (and `iat`) of a JWT, read from its payload WITHOUT checking the signature.
/// Errors for anything that is not a three-part JWT with a JSON payload carrying a numeric
/// `exp` (an opaque token has no readable lifetime: refresh it on an interval instead).
pub fn unverified_times(token: &str) -> Result<UnverifiedTimes, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let json = B64
        .decode(payload)
        .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
    let t: Times = serde_json::from_slice(&json)
        .map_err(|_| TokenError::Malformed("payload has no numeric exp"))?;
    Ok(UnverifiedTimes {
        exp: t.exp,
        iat: t.iat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.c2ln", B64.encode(payload))
    }

    #[test]
    fn reads_exp_and_iat_of_a_signed_token() {
        let key = crate::SigningKey::generate("k1");
        let claims = crate::Claims {
            iss: "cp".into(),
            aud: "felix".into(),
            sub: "alice".into(),
            tenant: "acme".into(),
            region: "eu".into(),
            perms: vec![],
            iat: 1_000,
            nbf: 1_000,
            exp: 1_300,
            jti: "j".into(),
        };
        let token = key.sign(&claims).unwrap();
        assert_eq!(
            unverified_times(&token).unwrap(),
            UnverifiedTimes {
                exp: 1_300,
                iat: Some(1_000)
            }
        );
    }

    #[test]
    fn iat_is_optional_exp_is_not() {
        assert_eq!(
            unverified_times(&jwt(r#"{"exp":5}"#)).unwrap(),
            UnverifiedTimes { exp: 5, iat: None }
        );
        assert!(unverified_times(&jwt(r#"{"iat":5}"#)).is_err());
        assert!(unverified_times(&jwt(r#"{"exp":"5"}"#)).is_err());
    }

    #[test]
    fn opaque_and_oversized_tokens_are_refused() {
        assert!(unverified_times("opaque-static-token").is_err());
        assert!(unverified_times("a.b.c.d").is_err());
        assert!(unverified_times("a.!!!.c").is_err());
        let big = jwt(&format!(
            r#"{{"exp":1,"pad":"{}"}}"#,
            "x".repeat(MAX_TOKEN_BYTES)
        ));
        assert_eq!(unverified_times(&big), Err(TokenError::TooLarge));
    }
}
