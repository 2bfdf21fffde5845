//! End-to-end tests of `felix admin` against a real `felix-controlplane` process (dev mode on
//! an ephemeral loopback port, or production mode with HTTPS, a data directory and an admin
//! token file). The control plane is built with cargo (`cargo test -p felix-cli` does not
//! build another package's binary) unless `FELIX_CONTROLPLANE_BIN` names one. Every process
//! has a deadline and is killed if it overruns; nothing sleeps before asserting.

mod admin_support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use admin_support::{admin, felix, names, serve_fixed, Cp, TOKEN};
use serde_json::Value;
#[test]
fn tenant_role_issuer_lifecycle_with_text_and_json_output() {
    let cp = Cp::start(&[]);
    let u = cp.url.as_str();

    let r = admin(
        u,
        &["tenant", "create", "acme", "--description", "Acme Inc"],
    )
    .ok();
    assert!(r.stdout.contains("created tenant acme"), "{}", r.stdout);
    admin(u, &["namespace", "create", "acme", "orders"]).ok();
    let r = admin(
        u,
        &[
            "role",
            "set",
            "acme",
            "orders-rw",
            "--grant",
            "publish,subscribe:orders/>",
            "--grant",
            "cache.read:*/sessions.*",
        ],
    )
    .ok();
    assert!(r.stdout.contains("created role orders-rw"), "{}", r.stdout);
    admin(
        u,
        &[
            "issuer",
            "set",
            "acme",
            "corp",
            "--url",
            "http://127.0.0.1:9/realms/acme",
            "--audience",
            "felix",
            "--rule",
            "groups=payments-admins:orders-rw",
            "--rule",
            "sub=system:serviceaccount:shop:orders:orders-rw",
        ],
    )
    .ok();
    admin(
        u,
        &[
            "stream",
            "define",
            "acme",
            "orders",
            "payments.eu",
            "--max-records",
            "1000",
            "--durability",
            "always",
        ],
    )
    .ok();
    admin(
        u,
        &[
            "group",
            "define",
            "acme",
            "orders",
            "workers",
            "--stream",
            "payments.eu",
            "--start",
            "earliest",
        ],
    )
    .ok();

    // Text lists show what was made.
    let r = admin(u, &["tenant", "list"]).ok();
    assert!(r.stdout.starts_with("NAME"), "{}", r.stdout);
    assert!(
        r.stdout.contains("acme") && r.stdout.contains("Acme Inc"),
        "{}",
        r.stdout
    );
    let r = admin(u, &["role", "list", "acme"]).ok();
    assert!(
        r.stdout.contains("orders-rw") && r.stdout.contains("orders/>"),
        "{}",
        r.stdout
    );

    // JSON output parses and carries the stored documents.
    let tenants = admin(u, &["tenant", "list", "--json"]).ok().json();
    assert_eq!(names(&tenants), ["acme"]);
    let roles = admin(u, &["--json", "role", "list", "acme"]).ok().json();
    assert_eq!(names(&roles), ["orders-rw"]);
    assert_eq!(
        roles["items"][0]["grants"][0],
        serde_json::json!({"actions": ["publish", "subscribe"], "resources": ["orders/>"]})
    );
    let issuer = admin(u, &["issuer", "get", "acme", "corp", "--json"])
        .ok()
        .json();
    assert_eq!(issuer["audiences"], serde_json::json!(["felix"]));
    assert_eq!(
        issuer["rules"][1]["equals"],
        "system:serviceaccount:shop:orders"
    );
    let stream = admin(
        u,
        &["stream", "get", "acme", "orders", "payments.eu", "--json"],
    )
    .ok()
    .json();
    assert_eq!(stream["max_records"], 1000);
    assert_eq!(stream["durability"], "always");
    let groups = admin(u, &["group", "list", "acme", "orders", "--json"])
        .ok()
        .json();
    assert_eq!(groups["items"][0]["stream"], "payments.eu");

    // If-Match: a stale revision is a conflict (exit 1), the current one succeeds.
    let rev = admin(u, &["tenant", "get", "acme", "--json"]).ok().json()["revision"]
        .as_u64()
        .unwrap();
    let r = admin(
        u,
        &[
            "tenant",
            "create",
            "acme",
            "--if-match",
            &(rev + 100).to_string(),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("error[conflict]"), "{}", r.stderr);
    let r = admin(
        u,
        &["tenant", "create", "acme", "--if-match", &rev.to_string()],
    )
    .ok();
    assert!(r.stdout.contains("updated tenant acme"), "{}", r.stdout);

    // Delete everything, children first; the tenant is gone afterwards.
    admin(u, &["group", "delete", "acme", "orders", "workers"]).ok();
    admin(u, &["stream", "delete", "acme", "orders", "payments.eu"]).ok();
    admin(u, &["namespace", "delete", "acme", "orders"]).ok();
    admin(u, &["issuer", "delete", "acme", "corp"]).ok();
    let r = admin(u, &["role", "delete", "acme", "orders-rw", "--json"]).ok();
    assert_eq!(r.json()["deleted"], "role");
    let r = admin(u, &["tenant", "delete", "acme"]).ok();
    assert!(r.stdout.contains("deleted tenant acme"), "{}", r.stdout);
    let tenants = admin(u, &["tenant", "list", "--json"]).ok().json();
    assert!(names(&tenants).is_empty(), "{tenants}");
    let r = admin(u, &["tenant", "get", "acme"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("error[not_found]"), "{}", r.stderr);
}

#[test]
fn bad_grant_is_refused_locally_before_any_request() {
    // Nothing listens on port 1: a request would fail with exit 3, not 2.
    let r = admin(
        "http://127.0.0.1:1",
        &["role", "set", "acme", "x", "--grant", "publsh:orders/>"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("error[usage]"), "{}", r.stderr);
    assert!(
        r.stderr.contains("publsh:orders/>"),
        "names the grant: {}",
        r.stderr
    );
    assert!(r.stderr.contains("unknown action"), "{}", r.stderr);

    // Against a real control plane: refused with 2 and the store did not change.
    let cp = Cp::start(&[]);
    let u = cp.url.as_str();
    admin(u, &["tenant", "create", "acme"]).ok();
    let before = admin(u, &["tenant", "list", "--json"]).ok().json()["revision"].clone();
    for bad in ["publish:orders/a.>.b", "publish", "publish:", "*:ns/**"] {
        let r = admin(u, &["role", "set", "acme", "x", "--grant", bad]);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains(bad), "{bad}: {}", r.stderr);
    }
    let r = admin(
        u,
        &[
            "issuer",
            "set",
            "acme",
            "c",
            "--url",
            "http://127.0.0.1:9",
            "--audience",
            "felix",
            "--rule",
            "groups:admin",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("groups:admin"), "{}", r.stderr);
    let after = admin(u, &["tenant", "list", "--json"]).ok().json()["revision"].clone();
    assert_eq!(before, after, "a refused grant reached the store");
}

#[test]
fn server_refusals_exit_1_with_the_description_and_unreachable_exits_3() {
    let cp = Cp::start(&[]);
    let url = cp.url.clone();
    let u = url.as_str();
    admin(u, &["tenant", "create", "acme"]).ok();
    admin(u, &["namespace", "create", "acme", "orders"]).ok();

    let r = admin(u, &["tenant", "delete", "acme"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("error[conflict]: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("namespaces"),
        "the description: {}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    // The server's own validation (a name it refuses) is a refusal too: exit 1.
    let r = admin(u, &["namespace", "create", "acme", "bad name!"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("error[invalid_argument]"), "{}", r.stderr);

    // A group over an undefined stream.
    let r = admin(
        u,
        &["group", "define", "acme", "orders", "g", "--stream", "nope"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("error[conflict]"), "{}", r.stderr);

    drop(cp);
    let r = admin(u, &["tenant", "list"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("error[unavailable]"), "{}", r.stderr);
}

#[test]
fn production_control_plane_needs_the_admin_token_which_is_never_shown() {
    let root = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (c, k) = (root.path().join("cert.pem"), root.path().join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let token_file = root.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wrong_file = root.path().join("wrong-token");
    std::fs::write(&wrong_file, "wrong-token-0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&wrong_file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let (cs, ks, ds, ts, ws) = (p(&c), p(&k), p(&data), p(&token_file), p(&wrong_file));
    let cp = Cp::start(&[
        "--production",
        "--tls-cert",
        &cs,
        "--tls-key",
        &ks,
        "--data-dir",
        &ds,
        "--admin-token-file",
        &ts,
    ]);
    let u = cp.url.as_str();
    assert!(u.starts_with("https://"), "{u}");
    let base = ["admin", "--controlplane", u, "--ca-file", &cs];
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        let r = felix(&a, env);
        assert!(
            !r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN),
            "the token leaked: {} {}",
            r.stdout,
            r.stderr
        );
        assert!(!r.stderr.contains("wrong-token-0123"), "{}", r.stderr);
        r
    };

    // The right token file: works over HTTPS with the private CA.
    let r = run(
        &["--admin-token-file", &ts, "tenant", "create", "acme"],
        &[],
    )
    .ok();
    assert!(r.stdout.contains("created tenant acme"), "{}", r.stdout);
    let list = run(
        &["--admin-token-file", &ts, "tenant", "list", "--json"],
        &[],
    )
    .ok()
    .json();
    assert_eq!(names(&list), ["acme"]);
    // The token from the environment works too.
    run(&["tenant", "get", "acme"], &[("FELIX_ADMIN_TOKEN", TOKEN)]).ok();
    // The file wins over the environment.
    run(
        &["--admin-token-file", &ts, "tenant", "get", "acme"],
        &[("FELIX_ADMIN_TOKEN", "wrong-token-0123456789abcdef")],
    )
    .ok();

    // Wrong token, or none: the server refuses with unauthorized, exit 1.
    for (extra, env) in [
        (vec!["--admin-token-file", ws.as_str()], vec![]),
        (
            vec![],
            vec![("FELIX_ADMIN_TOKEN", "wrong-token-0123456789abcdef")],
        ),
        (vec![], vec![]),
    ] {
        let mut a = extra.clone();
        a.extend(["tenant", "list"]);
        let r = run(&a, &env);
        assert_eq!(r.code, 1, "{extra:?} {env:?}: {}", r.stderr);
        assert!(r.stderr.contains("error[unauthorized]"), "{}", r.stderr);
    }
    // The world-readable token file was pointed out.
    let r = run(&["--admin-token-file", &ws, "tenant", "list"], &[]);
    assert!(
        r.stderr.contains("readable by group or others"),
        "{}",
        r.stderr
    );

    // A missing token file is a usage error naming the file.
    let r = run(
        &["--admin-token-file", "/nonexistent/token", "tenant", "list"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("/nonexistent/token"), "{}", r.stderr);

    // Without the private CA the certificate is not trusted: nothing is sent, exit 3.
    let r = felix(
        &[
            "admin",
            "--controlplane",
            u,
            "--admin-token-file",
            &ts,
            "tenant",
            "list",
        ],
        &[],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);

    // There is no flag taking the token, and help never shows it (even when it is set).
    for help in [
        vec!["admin", "--help"],
        vec!["admin", "tenant", "create", "--help"],
        vec!["admin", "role", "set", "--help"],
    ] {
        let r = felix(&help, &[("FELIX_ADMIN_TOKEN", TOKEN)]).ok();
        assert!(!r.stdout.contains(TOKEN), "{help:?} shows the token");
        assert!(r.stdout.contains("--admin-token-file"), "{help:?}");
    }
    let r = felix(&["admin", "--admin-token", TOKEN, "tenant", "list"], &[]);
    assert_eq!(r.code, 2, "a token flag must not exist");
    assert!(!r.stderr.contains(TOKEN), "{}", r.stderr);
}

#[test]
fn redirects_are_not_followed_and_answers_are_bounded() {
    // A redirect would carry the bearer token to another host: it is reported, not followed.
    let u = serve_fixed(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/v1/tenants\r\n\
         Content-Length: 0\r\n\r\n"
            .into(),
        0,
    );
    let r = felix(
        &["admin", "--controlplane", &u, "tenant", "list"],
        &[("FELIX_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("error[http_307]"), "{}", r.stderr);
    assert!(!r.stderr.contains(TOKEN), "{}", r.stderr);

    // An error answer that is not the API's JSON: the status is reported, exit 1.
    let body = "<html>bad gateway</html>";
    let u = serve_fixed(
        format!(
            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        0,
    );
    let r = admin(&u, &["tenant", "list"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("error[http_502]") && r.stderr.contains("bad gateway"),
        "{}",
        r.stderr
    );

    // A 9 MiB answer is cut at 8 MiB and refused.
    let big = 9 * 1024 * 1024;
    let u = serve_fixed(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {big}\r\n\r\n"
        ),
        big,
    );
    let r = admin(&u, &["tenant", "list"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("error[response_too_large]"),
        "{}",
        r.stderr
    );
}

#[test]
fn quotas_key_rotation_and_revocations() {
    let cp = Cp::start(&[]);
    let u = cp.url.as_str();
    admin(u, &["tenant", "create", "acme"]).ok();

    admin(
        u,
        &[
            "quota",
            "set",
            "acme",
            "--max-connections",
            "5",
            "--queue-depth",
            "100",
        ],
    )
    .ok();
    let q = admin(u, &["quota", "get", "acme", "--json"]).ok().json();
    assert_eq!(
        (q["max_connections"].as_u64(), q["queue_depth"].as_u64()),
        (Some(5), Some(100))
    );
    let r = admin(u, &["quota", "get", "acme"]).ok();
    assert!(r.stdout.contains("max_connections: 5"), "{}", r.stdout);

    let before = admin(u, &["keys", "list", "--json"]).ok().json();
    let old: Vec<Value> = before["keys"].as_array().unwrap().clone();
    assert_eq!(old.len(), 1, "{before}");
    let r = admin(u, &["keys", "rotate"]).ok();
    assert!(r.stdout.starts_with("rotated: "), "{}", r.stdout);
    let after = admin(u, &["keys", "list", "--json"]).ok().json();
    let keys = after["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{after}");
    let retired = keys.iter().find(|k| k["kid"] == old[0]["kid"]).unwrap();
    assert!(
        retired["retired_s"].is_u64(),
        "the old key is retired: {after}"
    );
    // The new key is published ahead of use; deleting it cancels that rotation, and an
    // immediate rotation then switches at once.
    let pending = keys.iter().find(|k| k["kid"] != old[0]["kid"]).unwrap();
    let pending = pending["kid"].as_str().unwrap().to_owned();
    let r = admin(u, &["keys", "delete", &pending]).ok();
    assert!(
        r.stdout.contains(&format!("deleted key {pending}")),
        "{}",
        r.stdout
    );
    let listed = admin(u, &["keys", "list", "--json"]).ok().json();
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != pending.as_str()),
        "{listed}"
    );
    let r = admin(u, &["keys", "rotate", "--immediate"]).ok();
    assert!(r.stdout.starts_with("rotated: "), "{}", r.stdout);
    assert_eq!(admin(u, &["keys", "delete", "no-such-kid"]).code, 1);

    let r = admin(u, &["revoke", "--subject", "acme/alice", "--json"])
        .ok()
        .json();
    assert_eq!(r["subjects"][0]["sub"], "alice");
    let r = admin(
        u,
        &["revoke", "--jti", "j-1", "--exp", "99999999999", "--json"],
    )
    .ok()
    .json();
    assert_eq!(r["jtis"][0]["jti"], "j-1");
    // Neither or a malformed subject: usage.
    assert_eq!(admin(u, &["revoke"]).code, 2);
    assert_eq!(admin(u, &["revoke", "--subject", "alice"]).code, 2);
    assert_eq!(
        admin(u, &["revoke", "--jti", "a", "--subject", "t/s"]).code,
        2
    );
}
