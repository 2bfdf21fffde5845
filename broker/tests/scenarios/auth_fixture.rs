//! The JWT fixture of the auth scenarios (`tests/scenarios/auth/`): `principals.json` is the
//! source; `tokens.json` (one Felix JWT per principal) and `jwks.json` (the public key) are
//! generated from it with `signing-key.pem`, a key that signs nothing but these fixtures.
//! Ed25519 signatures are deterministic, so the check regenerates and compares, like the C
//! header's. Regenerate with
//!
//! ```sh
//! FELIX_REGEN_AUTH_FIXTURE=1 cargo test -p felix-broker --test scenarios auth_fixture
//! ```
//!
//! Scenario files carry the tokens literally (every runner reads them as plain `token`s);
//! the check also makes sure each JWT in a scenario is one of `tokens.json`.

use std::collections::BTreeMap;

use felix_auth::{Claims, Grant, Jwks, SigningKey};

use super::*;

/// The `iss` every fixture token has, and the scenarios' JWT broker requires.
pub(crate) const ISSUER: &str = "felix-scenarios";
const KID: &str = "scenarios-1";
/// 2026-01-01T00:00:00Z.
const IAT: u64 = 1_767_225_600;
/// 2100-01-01T00:00:00Z.
const EXP: u64 = 4_102_444_800;

pub(crate) fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/auth")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_default()
}

/// `tokens.json` and `jwks.json` as `principals.json` and the key make them.
fn generate() -> (String, String) {
    let pem = read("signing-key.pem");
    let key = SigningKey::from_pkcs8_pem(KID, &pem).expect("tests/scenarios/auth/signing-key.pem");
    let doc: Value = serde_json::from_str(&read("principals.json")).expect("principals.json");
    let principals = doc["principals"].as_object().expect("a principals object");
    let mut tokens = BTreeMap::new();
    for (name, p) in principals {
        let perms: Vec<Grant> =
            serde_json::from_value(p["perms"].clone()).expect("perms of a principal");
        let claims = Claims {
            iss: ISSUER.into(),
            aud: "felix".into(),
            sub: name.clone(),
            tenant: p["tenant"].as_str().expect("tenant").into(),
            region: p["region"].as_str().unwrap_or("local").into(),
            perms,
            iat: IAT,
            nbf: IAT,
            exp: p["exp"].as_u64().unwrap_or(EXP),
            jti: format!("scenario-{name}"),
        };
        tokens.insert(name.clone(), key.sign(&claims).expect("signs"));
    }
    let tokens = serde_json::to_string_pretty(&serde_json::json!({ "tokens": tokens })).unwrap();
    let jwks = serde_json::to_string_pretty(&Jwks {
        keys: vec![key.public_jwk()],
    })
    .unwrap();
    (tokens + "\n", jwks + "\n")
}

#[test]
fn auth_fixture_is_up_to_date() {
    if std::env::var_os("FELIX_REGEN_AUTH_FIXTURE").is_some() {
        let key_path = dir().join("signing-key.pem");
        if !key_path.exists() {
            std::fs::write(&key_path, SigningKey::generate(KID).to_pkcs8_pem()).unwrap();
        }
        let (tokens, jwks) = generate();
        std::fs::write(dir().join("tokens.json"), tokens).unwrap();
        std::fs::write(dir().join("jwks.json"), jwks).unwrap();
        return;
    }
    let (tokens, jwks) = generate();
    assert!(
        read("tokens.json") == tokens && read("jwks.json") == jwks,
        "tests/scenarios/auth/tokens.json or jwks.json is out of date with principals.json: \
         regenerate with FELIX_REGEN_AUTH_FIXTURE=1 cargo test -p felix-broker --test scenarios \
         auth_fixture, and update the tokens in the scenario files"
    );
    // Every JWT a scenario presents is a fixture token (or a deliberately broken one, which
    // then is no JWT of the fixture key and says so in a comment).
    let known: Value = serde_json::from_str(&tokens).unwrap();
    let known: Vec<&str> = known["tokens"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios");
    for path in scenario_files(&scenarios) {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for step in doc["steps"].as_array().into_iter().flatten() {
            let Some(t) = step["token"].as_str() else {
                continue;
            };
            if t.starts_with("eyJ") && !known.contains(&t) && step.get("comment").is_none() {
                panic!(
                    "{}: a token that is not in auth/tokens.json (stale?) and no comment saying why",
                    path.display()
                );
            }
        }
    }
}
