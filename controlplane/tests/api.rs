//! The control plane as a process: durable state across restarts, production mode's
//! requirements, admin authentication over HTTPS, resource validation and bounds.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use common::*;
use serde_json::json;

#[test]
fn data_survives_a_restart_and_a_torn_temp_file_is_ignored() {
    let issuer = Issuer::start(accounts());
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(root.path());
    let dir_arg = dir.to_str().unwrap();
    let cp = Cp::start(&["--data-dir", dir_arg]);
    setup_tenant(&cp, "acme", &issuer.url);
    cp.put_ok(
        "/v1/tenants/acme/namespaces/ns/streams/orders.eu",
        json!({"max_records": 1000, "durability": "always"}),
    );
    cp.put_ok("/v1/tenants/acme/quotas", json!({"max_connections": 10}));
    let alice = issuer.id_token("alice", "felix-test");
    let (s, v) = cp.exchange_id_token(&alice, None);
    assert_eq!(s, 200, "{v}");
    let before_restart = v["access_token"].as_str().unwrap().to_string();
    let kids = cp.jwks().keys;
    cp.stop();

    let state = dir.join("state.json");
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // What a crash in the middle of a commit leaves behind.
    std::fs::write(
        dir.join("state.json.tmp.999"),
        b"{\"format\":1,\"revision\":1000,\"ent",
    )
    .unwrap();

    let cp = Cp::start(&["--data-dir", dir_arg]);
    let (s, v) = cp.get("/v1/tenants/acme/namespaces/ns/streams/orders.eu");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["max_records"], 1000);
    assert_eq!(v["durability"], "always");
    assert_eq!(cp.get("/v1/tenants/acme/quotas").1["max_connections"], 10);
    assert_eq!(
        cp.get("/v1/tenants/acme/roles").1["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(cp.jwks().keys, kids, "the signing key survives");
    assert!(
        verify(&cp, &before_restart).is_ok(),
        "tokens issued before the restart still verify"
    );
    let (s, v) = cp.exchange_id_token(&alice, None);
    assert_eq!(s, 200, "{v}");
    assert!(!dir.join("state.json.tmp.999").exists());
}

#[test]
fn definitions_are_validated_and_errors_are_stable_json() {
    let cp = Cp::start(&["--max-body-bytes", "2048"]);
    cp.put_ok("/v1/tenants/acme", json!({"description": "Acme"}));
    assert_eq!(
        cp.send("PUT", "/v1/tenants/acme", json!({"description": "Acme"}))
            .0,
        200,
        "replace is 200"
    );
    let cases = [
        ("/v1/tenants/a.b", json!({}), 400, "invalid_argument"),
        (
            "/v1/tenants/acme/namespaces/ns",
            json!({"nope": 1}),
            400,
            "invalid_argument",
        ),
        (
            "/v1/tenants/ghost/namespaces/ns",
            json!({}),
            404,
            "not_found",
        ),
        (
            "/v1/tenants/acme/namespaces/ns/streams/s",
            json!({}),
            404,
            "not_found",
        ),
        (
            "/v1/tenants/acme/roles/r",
            json!({"grants": [{"actions": ["fly"], "resources": ["ns/x"]}]}),
            400,
            "invalid_argument",
        ),
        (
            "/v1/tenants/acme/issuers/i",
            json!({"issuer": "http://203.0.113.7", "audiences": ["a"]}),
            400,
            "invalid_argument",
        ),
        (
            "/v1/tenants/acme/issuers/i",
            json!({"issuer": "https://idp.example.com", "audiences": []}),
            400,
            "invalid_argument",
        ),
    ];
    for (path, body, status, code) in cases {
        let (s, v) = cp.send("PUT", path, body.clone());
        assert_eq!(
            (s, v["error"].as_str()),
            (status, Some(code)),
            "{path} {body}: {v}"
        );
        assert!(v["error_description"].is_string());
    }
    cp.put_ok("/v1/tenants/acme/namespaces/ns", json!({}));
    let (s, v) = cp.send(
        "PUT",
        "/v1/tenants/acme/namespaces/ns/groups/g",
        json!({"stream": "orders"}),
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (409, Some("conflict")),
        "group on an undefined stream: {v}"
    );
    cp.put_ok(
        "/v1/tenants/acme/namespaces/ns/streams/orders",
        json!({"full_policy": "drop_oldest"}),
    );
    let g = cp.put_ok(
        "/v1/tenants/acme/namespaces/ns/groups/g",
        json!({"stream": "orders", "max_deliveries": 5}),
    );
    // Optimistic concurrency with If-Match.
    let rev = g["revision"].as_u64().unwrap().to_string();
    let (s, _, _) = cp.req(
        "PUT",
        "/v1/tenants/acme/namespaces/ns/groups/g",
        Some("application/json"),
        br#"{"stream":"orders"}"#,
        &[("If-Match", "1")],
    );
    assert_eq!(s, 409, "stale If-Match");
    let (s, _, _) = cp.req(
        "PUT",
        "/v1/tenants/acme/namespaces/ns/groups/g",
        Some("application/json"),
        br#"{"stream":"orders"}"#,
        &[("If-Match", &rev)],
    );
    assert_eq!(s, 200, "current If-Match");
    // A parent with children cannot go; children first.
    assert_eq!(
        cp.send("DELETE", "/v1/tenants/acme/namespaces/ns", json!({}))
            .0,
        409
    );
    for p in [
        "namespaces/ns/groups/g",
        "namespaces/ns/streams/orders",
        "namespaces/ns",
    ] {
        let (s, v, _) = cp.req("DELETE", &format!("/v1/tenants/acme/{p}"), None, b"", &[]);
        assert_eq!(s, 204, "{p}: {v}");
    }
    assert_eq!(cp.get("/v1/tenants/acme/namespaces").1["items"], json!([]));
    // Bounds and content types.
    let big = json!({"description": "x".repeat(4096)});
    let (s, v) = cp.send("PUT", "/v1/tenants/acme", big);
    assert_eq!(
        (s, v["error"].as_str()),
        (413, Some("request_too_large")),
        "{v}"
    );
    let (s, v, _) = cp.req("PUT", "/v1/tenants/acme", Some("text/plain"), b"{}", &[]);
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_argument")));
    let (s, v) = cp.get("/v1/nothing/here");
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));
    assert_eq!(cp.get("/v1/tenants").1["items"][0]["description"], "Acme");
}

fn tls_files(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    Arc<rustls::ClientConfig>,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let c = dir.join("cert.pem");
    let k = dir.join("key.pem");
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    (c, k, Arc::new(cfg))
}

#[test]
fn production_refuses_unsafe_setups_and_requires_the_admin_token_over_https() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(root.path());
    let (cert, key, client) = tls_files(root.path());
    let token_file = root.path().join("admin");
    std::fs::write(&token_file, "prod-admin-token-0123456789\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bin = env!("CARGO_BIN_EXE_felix-controlplane");
    let (c, k, d, t) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        dir.to_str().unwrap(),
        token_file.to_str().unwrap(),
    );
    let refused = |args: &[&str], needle: &str| {
        let out = Command::new(bin)
            .args(["--production", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("FELIX_CP_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    refused(&["--data-dir", d, "--admin-token-file", t], "tls_cert");
    refused(
        &["--tls-cert", c, "--tls-key", k, "--admin-token-file", t],
        "data_dir",
    );
    refused(
        &["--tls-cert", c, "--tls-key", k, "--data-dir", d],
        "admin token",
    );
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(
        &[
            "--tls-cert",
            c,
            "--tls-key",
            k,
            "--data-dir",
            d,
            "--admin-token-file",
            t,
        ],
        "chmod 600",
    );
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut cp = Cp::start_with(CpOptions {
        args: [
            "--production",
            "--tls-cert",
            c,
            "--tls-key",
            k,
            "--data-dir",
            d,
            "--admin-token-file",
            t,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        env: vec![
            (
                "FELIX_CP_ADMIN_TOKEN",
                "env-admin-token-0123456789".to_string(),
            ),
            (
                "FELIX_CP_BROKER_TOKEN",
                "broker-read-token-0123456789".to_string(),
            ),
        ],
        tls_ca: Some(client),
        admin: None,
    });
    let (s, v) = cp.get("/v1/tenants");
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("unauthorized")),
        "no token"
    );
    cp.admin = Some("wrong-token-0123456789".into());
    assert_eq!(cp.get("/v1/tenants").0, 401, "wrong token");
    cp.admin = Some("prod-admin-token-0123456789".into());
    assert_eq!(cp.get("/v1/tenants").0, 200, "file token");
    cp.admin = Some("env-admin-token-0123456789".into());
    assert_eq!(cp.get("/v1/tenants").0, 200, "env token");
    // Production refuses plain-http issuers, even on loopback.
    let (s, v) = cp.send("PUT", "/v1/tenants/acme", json!({}));
    assert_eq!(s, 201, "{v}");
    let (s, v) = cp.send(
        "PUT",
        "/v1/tenants/acme/issuers/i",
        json!({"issuer": "http://127.0.0.1:1", "audiences": ["a"]}),
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    // Writes without a token or with a wrong one: 401, nothing changes.
    for who in [
        None,
        Some("wrong-token-0123456789"),
        Some("broker-read-token-0123456789"),
    ] {
        cp.admin = who.map(str::to_string);
        for (path, body) in [
            ("/v1/revocations", json!({"jti": "abcd"})),
            ("/v1/keys/rotate", json!({})),
        ] {
            let (s, v) = cp.send("POST", path, body);
            assert_eq!(
                (s, v["error"].as_str()),
                (401, Some("unauthorized")),
                "{who:?} {path}"
            );
        }
    }
    // Authentication comes first: no token and a non-JSON body is still 401.
    cp.admin = None;
    let (s, v, _) = cp.req("POST", "/v1/keys/rotate", Some("text/plain"), b"", &[]);
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    // The JWKS is public; the revocation feed and definitions need a read credential, and
    // the broker read token is one (it cannot write: above).
    cp.admin = None;
    assert_eq!(cp.jwks().keys.len(), 1);
    assert_eq!(cp.get("/v1/revocations").0, 401);
    cp.admin = Some("broker-read-token-0123456789".into());
    let (s, v) = cp.get("/v1/revocations");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["jtis"], json!([]), "the refused writes left nothing");
    assert_eq!(cp.get("/v1/broker/definitions").0, 200);
    // Nothing else of the admin API: 403 (it is a known credential, for other reads). On the
    // old code the broker read token read every admin GET (tenants, issuers, keys).
    for path in ["/v1/tenants", "/v1/tenants/acme", "/v1/keys"] {
        let (s, v) = cp.get(path);
        assert_eq!(
            (s, v["error"].as_str()),
            (403, Some("forbidden")),
            "{path} {v}"
        );
    }
    cp.admin = Some("env-admin-token-0123456789".into());
    assert_eq!(cp.get("/v1/tenants").0, 200);
    assert_eq!(cp.get("/v1/keys").1["keys"].as_array().unwrap().len(), 1);
    assert!(
        !cp.log_text().contains("env-admin-token") && !cp.log_text().contains("broker-read-token"),
        "tokens are never logged"
    );
}

#[test]
fn settings_layer_file_then_environment_then_flags() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("cp.toml");
    std::fs::write(&file, "region = \"from-file\"\naudience = \"from-file\"\ntoken_lifetime_s = 100\n[oidc]\njwks_ttl_s = 77\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_felix-controlplane"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--token-lifetime-s",
            "200",
            "--print-config",
        ])
        .env("FELIX_CP_REGION", "from-env")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["region"].as_str(), Some("from-env"), "env over file");
    assert_eq!(
        cfg["audience"].as_str(),
        Some("from-file"),
        "file over default"
    );
    assert_eq!(
        cfg["token_lifetime_s"].as_integer(),
        Some(200),
        "flag over file"
    );
    assert_eq!(cfg["oidc"]["jwks_ttl_s"].as_integer(), Some(77));
    assert_eq!(cfg["listen"].as_str(), Some("127.0.0.1:7700"), "default");
    std::fs::write(&file, "regoin = \"typo\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_felix-controlplane"))
        .args(["--config", file.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "unknown keys are refused");
}

#[test]
fn connections_are_bounded_and_clients_that_send_nothing_are_cut_off() {
    use std::io::Read;
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("cp.toml");
    std::fs::write(&file, "max_connections = 2\nheader_timeout_ms = 5000\n").unwrap();
    let cp = Cp::start(&["--config", file.to_str().unwrap()]);
    let idle: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&cp.addr).unwrap())
        .collect();
    // Both slots are held by clients that send nothing: a third connection is closed unanswered.
    let (s, _, _) = cp.req("GET", "/live", None, b"", &[]);
    assert_eq!(s, 0, "refused without an answer");
    // The idle clients are cut off after the header timeout...
    for mut c in idle {
        c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(c.read(&mut buf).unwrap_or(0), 0, "closed by the server");
    }
    // ...which frees their slots.
    wait_until(
        "a slot to be free again",
        std::time::Duration::from_secs(20),
        || cp.req("GET", "/live", None, b"", &[]).0 == 200,
    );
    assert!(
        cp.metrics_text()
            .contains("felix_cp_connections_refused_total{reason=\"total\"} 1"),
        "{}",
        cp.metrics_text()
    );
}

#[test]
fn every_acknowledged_write_survives_a_kill_9_mid_stream() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(root.path());
    let dir_arg = dir.to_str().unwrap();
    let cp = Cp::start(&["--data-dir", dir_arg]);
    cp.put_ok("/v1/tenants/acme", json!({}));
    // Writes acknowledged one after the other from another thread, while the process is
    // killed without warning.
    let addr = cp.addr.clone();
    let acked = Arc::new(std::sync::atomic::AtomicI64::new(-1));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let client = Cp::attach(&addr);
            for i in 0..100_000i64 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let (s, _, _) = client.req(
                    "PUT",
                    &format!("/v1/tenants/acme/namespaces/n{i}"),
                    Some("application/json"),
                    b"{}",
                    &[],
                );
                if s != 201 {
                    break;
                }
                acked.store(i, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    wait_until(
        "some writes acknowledged",
        std::time::Duration::from_secs(30),
        || acked.load(std::sync::atomic::Ordering::SeqCst) >= 30,
    );
    cp.kill_9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let last = acked.load(std::sync::atomic::Ordering::SeqCst);

    let cp = Cp::start(&["--data-dir", dir_arg]);
    let (s, v) = cp.get("/v1/tenants/acme/namespaces");
    assert_eq!(s, 200, "{v}");
    let names: std::collections::HashSet<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    for i in 0..=last {
        assert!(
            names.contains(&format!("n{i}")),
            "acknowledged write n{i} lost (last acknowledged n{last})"
        );
    }
    // At most the one write in flight at the kill is there beyond the acknowledged ones.
    assert!(
        names.len() as i64 <= last + 2,
        "{} names, last acknowledged n{last}",
        names.len()
    );
}
