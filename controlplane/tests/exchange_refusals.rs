//! Token exchange refusals end to end: revocation against old subject tokens, one uniform
//! answer for untrusted tokens, oversized tokens, qualified subjects, defective tokens.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// A subject revocation outlives the subject tokens issued before it: once the old drop time
/// (before + Felix token lifetime + skew) has passed, an ID token stolen before the revocation
/// is still refused; a fresh login afterwards works.
#[test]
fn a_subject_token_issued_before_a_revocation_is_refused_after_the_old_drop_time() {
    let issuer = Issuer::start(accounts());
    let cp = Cp::start(&[
        "--token-lifetime-s",
        "1",
        "--clock-skew-s",
        "0",
        "--broker-leeway-s",
        "0",
        "--max-subject-token-age-s",
        "60",
    ]);
    setup_tenant(&cp, "acme", &issuer.url);
    let stolen = issuer.id_token("alice", "felix-test");
    assert_eq!(cp.exchange_id_token(&stolen, None).0, 200);
    let revoked_at = now_s();
    let (s, v) = cp.send(
        "POST",
        "/v1/revocations",
        json!({"tenant": "acme", "sub": "test:alice"}),
    );
    assert_eq!(s, 201, "{v}");
    let before = v["subjects"][0]["before"].as_u64().unwrap();
    // The old code dropped the entry at before + lifetime + skew = before + 1.
    wait_until("the old drop time to pass", Duration::from_secs(20), || {
        now_s() > before + 2
    });
    let (s, v) = cp.exchange_id_token(&stolen, None);
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );
    let (_, list) = cp.get("/v1/revocations");
    assert_eq!(list["subjects"][0]["sub"], "test:alice", "{list}");
    // A login after the revocation (iat >= before) is not revoked.
    assert!(now_s() >= revoked_at + 2);
    let fresh = issuer.id_token("alice", "felix-test");
    let (s, v) = cp.exchange_id_token(&fresh, None);
    assert_eq!(s, 200, "{v}");
}

/// Before the signature verified, every refusal reads the same: a forged token naming a real
/// tenant and one naming no tenant get byte-identical answers, as does an unknown issuer.
#[test]
fn untrusted_subject_tokens_get_one_uniform_answer() {
    let issuer = Issuer::start(accounts());
    let cp = Cp::start(&[]);
    setup_tenant(&cp, "acme", &issuer.url);
    let alice = issuer.id_token("alice", "felix-test");
    // Same header and claims, signature of other bytes: a forgery.
    let mut parts: Vec<&str> = alice.split('.').collect();
    let other = issuer.id_token("bob", "felix-test");
    let bob_sig = other.split('.').nth(2).unwrap().to_string();
    parts[2] = &bob_sig;
    let forged = parts.join(".");
    let body = |token: &str, aud: &str| {
        let f = format!(
            "grant_type={}&subject_token={}&subject_token_type={}&audience={}",
            urlencode("urn:ietf:params:oauth:grant-type:token-exchange"),
            urlencode(token),
            urlencode("urn:ietf:params:oauth:token-type:id_token"),
            aud
        );
        let head = format!(
            "POST /oauth/token HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{f}",
            cp.addr,
            f.len()
        );
        let (raw, _) = raw_exchange(&cp.addr, head.as_bytes(), Duration::from_secs(30));
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        (
            head.split(' ').nth(1).unwrap().to_string(),
            body.to_string(),
        )
    };
    let acme = body(&forged, "acme");
    let ghost = body(&forged, "nonexistent");
    assert_eq!(acme.0, "400");
    assert!(acme.1.contains("invalid_grant"), "{}", acme.1);
    assert_eq!(acme, ghost, "a real and a made-up tenant read the same");
    // A genuine token naming a tenant that does not trust its issuer: the same answer.
    assert_eq!(body(&alice, "nonexistent"), acme);
    // A token of an issuer no tenant trusts: the same answer.
    let stranger = Issuer::start(accounts());
    let foreign = stranger.id_token("alice", "felix-test");
    assert_eq!(body(&foreign, "acme"), acme);
    // And the genuine token for its tenant works.
    assert_eq!(body(&alice, "acme").0, "200");
}

/// A role whose grants cannot fit in a token is refused when stored; roles that together make
/// a token over `MAX_TOKEN_BYTES` get a clear `access_denied` instead of a token brokers refuse.
#[test]
fn tokens_over_the_brokers_limit_are_never_issued() {
    let issuer = Issuer::start(accounts());
    let cp = Cp::start(&[]);
    setup_tenant(&cp, "acme", &issuer.url);
    let role = |tag: &str, n: usize| {
        let resources: Vec<String> = (0..n)
            .map(|i| format!("ns/{tag}{i}.{}", "x".repeat(170)))
            .collect();
        json!({"grants": [{"actions": ["subscribe"], "resources": resources}]})
    };
    let (s, v) = cp.send("PUT", "/v1/tenants/acme/roles/huge", role("h", 64));
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    assert!(
        v["error_description"].as_str().unwrap().contains("bytes"),
        "{v}"
    );
    // Each fits alone; together they do not.
    cp.put_ok("/v1/tenants/acme/roles/big1", role("a", 40));
    cp.put_ok("/v1/tenants/acme/roles/big2", role("b", 40));
    cp.put_ok(
        "/v1/tenants/acme/issuers/test",
        json!({
            "issuer": issuer.url,
            "audiences": ["felix-test"],
            "rules": [
                {"claim": "groups", "equals": "payments-admins", "roles": ["big1", "big2"]},
                {"claim": "sub", "equals": "bob", "roles": ["big1"]}
            ]
        }),
    );
    let alice = issuer.id_token("alice", "felix-test");
    let (s, v) = cp.exchange_id_token(&alice, None);
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );
    assert!(
        v["error_description"].as_str().unwrap().contains("16384"),
        "{v}"
    );
    // One big role alone: a token under the limit, which a broker's verifier reads.
    let bob = issuer.id_token("bob", "felix-test");
    let (s, v) = cp.exchange_id_token(&bob, None);
    assert_eq!(s, 200, "{v}");
    let token = v["access_token"].as_str().unwrap();
    assert!(token.len() <= felix_auth::token::MAX_TOKEN_BYTES);
    assert!(verify(&cp, token).is_ok());
}

/// Two issuers of one tenant with a user of the same `sub` are two principals: the Felix `sub`
/// is qualified by the issuer entry, so revoking one does not touch the other.
#[test]
fn the_same_oidc_sub_from_two_issuers_is_two_principals() {
    let corp = Issuer::start(accounts());
    let partner = Issuer::start(accounts());
    let cp = Cp::start(&[]);
    setup_tenant(&cp, "acme", &corp.url);
    cp.put_ok(
        "/v1/tenants/acme/issuers/partner",
        json!({
            "issuer": partner.url,
            "audiences": ["felix-test"],
            "rules": [{"claim": "groups", "equals": "payments-admins", "roles": ["admin"]}]
        }),
    );
    let sub_of = |token: &str| {
        let (s, v) = cp.exchange_id_token(token, None);
        assert_eq!(s, 200, "{v}");
        verify(&cp, v["access_token"].as_str().unwrap())
            .unwrap()
            .sub
    };
    let from_corp = corp.id_token("alice", "felix-test");
    let from_partner = partner.id_token("alice", "felix-test");
    assert_eq!(sub_of(&from_corp), "test:alice");
    assert_eq!(sub_of(&from_partner), "partner:alice");
    let (s, v) = cp.send(
        "POST",
        "/v1/revocations",
        json!({"tenant": "acme", "sub": "partner:alice"}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        cp.exchange_id_token(&from_partner, None).1["error"],
        "access_denied"
    );
    assert_eq!(
        sub_of(&from_corp),
        "test:alice",
        "the other alice is untouched"
    );
}

/// Defective subject tokens end to end, each with exactly one defect, signed by an issuer
/// registered like any other. They come from `tests/oidc/crafted-issuer.mjs` (keys of its own)
/// because the real issuer never signs such tokens; its good tokens are the positive controls.
#[test]
fn defective_subject_tokens_are_refused_end_to_end() {
    let crafted = CraftedIssuer::start("felix-test");
    let cp = Cp::start(&[]);
    setup_tenant(&cp, "acme", &crafted.url);
    for good in ["good_rs256", "good_es256", "multi_aud_our_azp"] {
        let (s, v) = cp.exchange_id_token(crafted.token(good), None);
        assert_eq!(s, 200, "{good}: {v}");
    }
    for bad in [
        "hs256_with_rsa_public_key",
        "unknown_kid",
        "ps256_on_rs256_key",
        "es256_der_signature",
        "crit_header",
        "future_nbf",
        "missing_exp",
        "missing_iat",
        "logout_typ",
        "multi_aud_foreign_azp",
    ] {
        let (s, v) = cp.exchange_id_token(crafted.token(bad), None);
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{bad}: {v}"
        );
    }
    // Still healthy afterwards.
    assert_eq!(
        cp.exchange_id_token(crafted.token("good_es256"), None).0,
        200
    );
}
