//! End to end: a real OIDC issuer (oidc-provider) issues real ID tokens through its
//! authorization-code flow; a real `felix-controlplane` process exchanges them for Felix JWTs,
//! which verify with `felix_auth::Verifier` and the published JWKS.

mod common;

use std::time::Duration;

use common::*;
use felix_auth::{Action, Grant, Permissions};
use serde_json::json;

#[test]
fn exchange_maps_claims_to_roles_and_the_felix_token_verifies_with_the_published_jwks() {
    let issuer = Issuer::start(accounts());
    let cp = Cp::start(&[]);
    setup_tenant(&cp, "acme", &issuer.url);

    let alice = issuer.id_token("alice", "felix-test");
    let (s, v) = cp.exchange_id_token(&alice, None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(v["expires_in"], 300);
    let token = v["access_token"].as_str().unwrap();
    let claims = verify(&cp, token).expect("the Felix token verifies with the published JWKS");
    assert_eq!(claims.tenant, "acme");
    assert_eq!(claims.sub, "test:alice", "qualified by the issuer entry");
    assert_eq!(claims.region, "local");
    assert_eq!(claims.exp - claims.iat, 300);
    assert_eq!(
        claims.perms,
        vec![Grant {
            actions: vec!["*".into()],
            resources: vec![">".into()]
        }],
        "groups: payments-admins → admin"
    );

    // bob: no admin group, but the sub rule gives him reader.
    let bob = issuer.id_token("bob", "felix-test");
    let (s, v) = cp.exchange_id_token(&bob, None);
    assert_eq!(s, 200, "{v}");
    let claims = verify(&cp, v["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.sub, "test:bob");
    let perms = Permissions::compile(&claims.perms).unwrap();
    assert!(perms.allows(Action::Subscribe, "ns", "orders.eu"));
    assert!(!perms.allows(Action::Publish, "ns", "orders.eu"));
    assert!(!perms.allows(Action::Subscribe, "other", "orders.eu"));

    // Every allowlisted algorithm the issuer signs with.
    for client in ["felix-es256", "felix-eddsa", "felix-ps256"] {
        let t = issuer.id_token("alice", client);
        let (s, v) = cp.exchange_id_token(&t, None);
        assert_eq!(s, 200, "{client}: {v}");
        assert_eq!(
            verify(&cp, v["access_token"].as_str().unwrap())
                .unwrap()
                .sub,
            "test:alice"
        );
    }
    // Two exchanges never share a jti.
    let (_, a) = cp.exchange_id_token(&alice, None);
    let (_, b) = cp.exchange_id_token(&alice, None);
    let ja = verify(&cp, a["access_token"].as_str().unwrap())
        .unwrap()
        .jti;
    let jb = verify(&cp, b["access_token"].as_str().unwrap())
        .unwrap()
        .jti;
    assert_ne!(ja, jb);
}

#[test]
fn bad_exchanges_get_their_oauth_error_and_never_echo_the_token() {
    let issuer = Issuer::start(accounts());
    let stranger = Issuer::start(accounts());
    let cp = Cp::start(&["--clock-skew-s", "0"]);
    setup_tenant(&cp, "acme", &issuer.url);
    let alice = issuer.id_token("alice", "felix-test");
    let grant = "urn:ietf:params:oauth:grant-type:token-exchange";
    let id_type = "urn:ietf:params:oauth:token-type:id_token";

    let expect = |(s, v): (u16, serde_json::Value), code: &str, what: &str| {
        assert_eq!(s, 400, "{what}: {v}");
        assert_eq!(v["error"], code, "{what}: {v}");
        assert!(v["error_description"].is_string(), "{what}");
        assert!(
            !v.to_string().contains(&alice[..40]),
            "{what}: the token is echoed"
        );
    };

    // Wrong grant type, missing pieces.
    let (s, v, _) = cp.exchange(&[
        ("grant_type", "password"),
        ("subject_token", &alice),
        ("subject_token_type", id_type),
    ]);
    expect((s, v), "unsupported_grant_type", "password grant");
    let (s, v, _) = cp.exchange(&[("grant_type", grant), ("subject_token_type", id_type)]);
    expect((s, v), "invalid_request", "no subject_token");
    let (s, v, _) = cp.exchange(&[
        ("grant_type", grant),
        ("subject_token", &alice),
        ("subject_token_type", "urn:x:saml"),
    ]);
    expect((s, v), "invalid_request", "unknown subject_token_type");

    // Oversized: a subject token over max_subject_token_bytes, a body over max_body_bytes.
    let huge = format!("{}.{}.{}", "a".repeat(10_000), "b".repeat(10_000), "c");
    expect(
        cp.exchange_id_token(&huge, None),
        "invalid_request",
        "20 KB subject token",
    );
    let (s, v, _) = cp.exchange(&[
        ("grant_type", grant),
        ("subject_token", &"x".repeat(70_000)),
        ("subject_token_type", id_type),
    ]);
    expect((s, v), "invalid_request", "70 KB body");

    // A token for another client of the issuer: wrong audience.
    let other = issuer.id_token("alice", "felix-other");
    expect(
        cp.exchange_id_token(&other, None),
        "invalid_grant",
        "wrong audience",
    );
    // A token from an issuer no tenant trusts.
    let foreign = stranger.id_token("alice", "felix-test");
    expect(
        cp.exchange_id_token(&foreign, None),
        "invalid_grant",
        "unknown issuer",
    );
    // Tampered: the payload changed after signing (alice becomes mallory).
    let parts: Vec<&str> = alice.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = "mallory".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    );
    expect(
        cp.exchange_id_token(&tampered, None),
        "invalid_grant",
        "tampered",
    );
    // alg: none with the real payload.
    let none = format!("{}.{}.", b64.encode(r#"{"alg":"none"}"#), parts[1]);
    expect(
        cp.exchange_id_token(&none, None),
        "invalid_grant",
        "alg none",
    );
    // Garbage.
    expect(
        cp.exchange_id_token("not.a.jwt", None),
        "invalid_grant",
        "garbage",
    );
    // No rule matches carol: no role.
    let carol = issuer.id_token("carol", "felix-test");
    expect(
        cp.exchange_id_token(&carol, None),
        "access_denied",
        "no matching role",
    );
    // audience naming a tenant that does not trust the issuer: the uniform answer.
    cp.put_ok("/v1/tenants/globex", json!({}));
    expect(
        cp.exchange_id_token(&alice, Some("globex")),
        "invalid_grant",
        "untrusting tenant",
    );
    // Two tenants trust the issuer: the audience must say which.
    setup_tenant(&cp, "globex", &issuer.url);
    expect(
        cp.exchange_id_token(&alice, None),
        "invalid_target",
        "ambiguous tenant",
    );
    let (s, v) = cp.exchange_id_token(&alice, Some("globex"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        verify(&cp, v["access_token"].as_str().unwrap())
            .unwrap()
            .tenant,
        "globex"
    );

    // Expired: felix-short ID tokens live 1 s and the skew is 0.
    let short = issuer.id_token("alice", "felix-short");
    wait_until(
        "the short token to be refused as expired",
        Duration::from_secs(20),
        || {
            let (s, v) = cp.exchange_id_token(&short, Some("acme"));
            s == 400
                && v["error"] == "invalid_grant"
                && v["error_description"]
                    .as_str()
                    .unwrap_or("")
                    .contains("expired")
        },
    );
    // The control plane still serves good exchanges after all of that.
    assert_eq!(cp.exchange_id_token(&alice, Some("acme")).0, 200);
    assert!(
        !cp.log_text().contains(&alice[..40]),
        "the log never holds a subject token"
    );
}

#[test]
fn rotation_keeps_old_tokens_verifiable_during_the_overlap_then_drops_the_old_key() {
    let issuer = Issuer::start(accounts());
    let cp = Cp::start(&["--key-propagation-s", "3"]);
    setup_tenant(&cp, "acme", &issuer.url);
    let alice = issuer.id_token("alice", "felix-test");
    let (_, v) = cp.exchange_id_token(&alice, None);
    let old = v["access_token"].as_str().unwrap().to_string();
    let (s, r) = cp.send("POST", "/v1/keys/rotate", json!({}));
    assert_eq!(s, 200, "{r}");
    let new_kid = r["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, kid_of(&old));
    // What a broker polling right after the rotation caches.
    let broker_cache = cp.jwks();
    let kids: Vec<String> = broker_cache.keys.iter().map(|k| k.kid.clone()).collect();
    assert!(
        kids.contains(&kid_of(&old)) && kids.contains(&new_kid),
        "{kids:?}"
    );
    assert!(
        verify(&cp, &old).is_ok(),
        "a token of the old key verifies during the overlap"
    );
    // The next key is published, not yet signing: brokers get time to fetch it.
    let (_, v) = cp.exchange_id_token(&alice, None);
    let during = v["access_token"].as_str().unwrap().to_string();
    if now_s() < r["signs_from_s"].as_u64().unwrap() {
        assert_eq!(
            kid_of(&during),
            kid_of(&old),
            "the old key signs until the switch"
        );
    }
    let mut fresh = String::new();
    wait_until(
        "the next key to start signing",
        Duration::from_secs(30),
        || {
            let (_, v) = cp.exchange_id_token(&alice, None);
            fresh = v["access_token"].as_str().unwrap().to_string();
            kid_of(&fresh) == new_kid
        },
    );
    assert!(
        verify_with(broker_cache, &fresh).is_ok(),
        "a broker that fetched the JWKS right after the rotation verifies the new key's tokens"
    );

    // With 1 s tokens and no leeway, the overlap is 1 s: the old key leaves the JWKS.
    let short = Cp::start(&[
        "--token-lifetime-s",
        "1",
        "--clock-skew-s",
        "0",
        "--broker-leeway-s",
        "0",
    ]);
    let first = short.jwks().keys[0].kid.clone();
    let (s, r) = short.send("POST", "/v1/keys/rotate?immediate=true", json!({}));
    assert_eq!(s, 200, "{r}");
    let second = r["kid"].as_str().unwrap().to_string();
    wait_until(
        "the rotated-out key to leave the JWKS",
        Duration::from_secs(20),
        || {
            let kids: Vec<String> = short.jwks().keys.into_iter().map(|k| k.kid).collect();
            kids == vec![second.clone()]
        },
    );
    assert_ne!(first, second);
    // A compromised key is dropped at once; a fresh one signs in its place.
    let (s, v) = short.send("DELETE", &format!("/v1/keys/{second}"), json!(null));
    assert_eq!(s, 200, "{v}");
    let kids: Vec<String> = short.jwks().keys.into_iter().map(|k| k.kid).collect();
    assert_eq!(kids.len(), 1);
    assert!(!kids.contains(&second));
    assert_eq!(
        short
            .send("DELETE", &format!("/v1/keys/{second}"), json!(null))
            .0,
        404
    );
}

#[test]
fn revocations_are_published_and_a_revoked_subject_cannot_exchange() {
    let issuer = Issuer::start(accounts());
    let cp = Cp::start(&[]);
    setup_tenant(&cp, "acme", &issuer.url);
    // Issued before the subject revocation below: refused by it.
    let alice = issuer.id_token("alice", "felix-test");
    let (s, v) = cp.get("/v1/revocations");
    assert_eq!(s, 200);
    assert_eq!(v["jtis"], json!([]));
    let rev0 = v["revision"].as_u64().unwrap();
    // A long poll answers as soon as the list changes.
    let addr = cp.addr.clone();
    let poll = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let (s, v, _) = Cp::attach(&addr).req(
            "GET",
            &format!("/v1/revocations?after={rev0}&wait_s=25"),
            None,
            b"",
            &[],
        );
        (s, v, t.elapsed())
    });
    let (s, v) = cp.send("POST", "/v1/revocations", json!({"jti": "0123abcd"}));
    assert_eq!(s, 201, "{v}");
    let (s, v, took) = poll.join().unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["jtis"][0]["jti"], "0123abcd", "{v}");
    assert!(
        took < Duration::from_secs(20),
        "woken by the change, not the 25 s wait ({took:?})"
    );
    // Without a change it waits wait_s, then answers the same revision.
    let current = v["revision"].as_u64().unwrap();
    let t = std::time::Instant::now();
    let (s, v) = cp.get(&format!("/v1/revocations?after={current}&wait_s=1"));
    assert_eq!((s, v["revision"].as_u64()), (200, Some(current)));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let (s, v) = cp.get("/v1/revocations?after=-1");
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_argument")));
    let (s, v) = cp.send(
        "POST",
        "/v1/revocations",
        json!({"tenant": "acme", "sub": "test:alice"}),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = cp.send("POST", "/v1/revocations", json!({"tenant": "acme"}));
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_argument")));
    let list: felix_auth::RevocationList =
        serde_json::from_value(cp.get("/v1/revocations").1).unwrap();
    assert!(list.revision > rev0);
    assert_eq!(list.jtis.len(), 1);
    assert_eq!(list.jtis[0].jti, "0123abcd");
    assert_eq!(
        (
            list.subjects[0].tenant.as_str(),
            list.subjects[0].sub.as_str()
        ),
        ("acme", "test:alice")
    );
    let (s, v) = cp.exchange_id_token(&alice, None);
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );
    let bob = issuer.id_token("bob", "felix-test");
    assert_eq!(
        cp.exchange_id_token(&bob, None).0,
        200,
        "others are unaffected"
    );
}

#[test]
fn production_exchanges_with_an_https_issuer_trusted_through_the_configured_ca() {
    let root = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (c, k) = (root.path().join("cert.pem"), root.path().join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
    let issuer = Issuer::start_tls(accounts(), &c, &k);
    assert!(
        issuer.url.starts_with("https://localhost:"),
        "{}",
        issuer.url
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let token = "https-test-admin-token-0123";
    let start = |name: &str, ca: bool| {
        let dir = data_dir(&root.path().join(name));
        let mut args: Vec<String> = [
            "--production",
            "--tls-cert",
            c.to_str().unwrap(),
            "--tls-key",
            k.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if ca {
            args.extend([
                "--oidc-ca-file".to_string(),
                c.to_str().unwrap().to_string(),
            ]);
        }
        let cp = Cp::start_with(CpOptions {
            args,
            env: vec![("FELIX_CP_ADMIN_TOKEN", token.to_string())],
            tls_ca: Some(client.clone()),
            admin: Some(token.to_string()),
        });
        setup_tenant(&cp, "acme", &issuer.url);
        cp
    };
    let alice = issuer.id_token("alice", "felix-test");

    let cp = start("with-ca", true);
    let (s, v) = cp.exchange_id_token(&alice, None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        verify(&cp, v["access_token"].as_str().unwrap())
            .unwrap()
            .sub,
        "test:alice"
    );

    // Without the CA the issuer's certificate is not trusted: its keys cannot be fetched.
    let untrusting = start("without-ca", false);
    let (s, v) = untrusting.exchange_id_token(&alice, None);
    assert_eq!(
        (s, v["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{v}"
    );
}
