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
    // The JWKS is public; the revocation feed and definitions need a read credential, and
    // the broker read token is one (it cannot write: above).
    cp.admin = None;
    assert_eq!(cp.jwks().keys.len(), 1);
    assert_eq!(cp.get("/v1/revocations").0, 401);
    cp.admin = Some("broker-read-token-0123456789".into());
    let (s, v) = cp.get("/v1/revocations");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["jtis"], json!([]), "the refused writes left nothing");
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

/// Dev mode never serves its open admin API on a network address by accident, answers only
/// loopback Host names on loopback (DNS rebinding), and admin writes must be JSON (a
/// cross-site simple POST cannot rotate keys or revoke).
#[test]
fn dev_mode_stays_local_and_refuses_cross_site_writes() {
    let bin = env!("CARGO_BIN_EXE_felix-controlplane");
    let out = Command::new(bin)
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("FELIX_CP_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("insecure-dev-expose"));
    // With an admin token (or the loud flag) it starts.
    for (env, flag) in [
        (Some("dev-admin-token-0123456789"), None),
        (None, Some("--insecure-dev-expose")),
    ] {
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", "0.0.0.0:0"])
            .args(flag)
            .env_remove("FELIX_CP_ADMIN_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if let Some(t) = env {
            cmd.env("FELIX_CP_ADMIN_TOKEN", t);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(line.contains("\"listen\""), "{env:?} {flag:?}: {line:?}");
    }

    let cp = Cp::start(&[]);
    let get = |host: &str| {
        let (raw, _) = raw_exchange(
            &cp.addr,
            format!("GET /v1/tenants HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            std::time::Duration::from_secs(30),
        );
        raw.split(' ').nth(1).unwrap_or("").to_string()
    };
    assert_eq!(get("evil.example"), "403", "a rebound name");
    assert_eq!(
        get(&format!(
            "evil.example:{}",
            cp.addr.rsplit(':').next().unwrap()
        )),
        "403"
    );
    assert_eq!(get(&cp.addr), "200");
    assert_eq!(get("localhost"), "200");
    // A cross-site form can POST text/plain or urlencoded, never application/json.
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let (s, v, _) = cp.req("POST", "/v1/keys/rotate", Some(ct), b"", &[]);
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_argument")),
            "{ct}"
        );
        let (s, _, _) = cp.req("POST", "/v1/revocations", Some(ct), b"jti=abcd", &[]);
        assert_eq!(s, 400, "{ct}");
    }
    let (s, _, _) = cp.req("POST", "/v1/keys/rotate", None, b"", &[]);
    assert_eq!(s, 400, "no content type");
    assert_eq!(
        cp.get("/v1/keys").1["keys"].as_array().unwrap().len(),
        1,
        "not rotated"
    );
    assert_eq!(
        cp.get("/v1/revocations").1["jtis"],
        json!([]),
        "not revoked"
    );
}

/// Clients that send their headers and then trickle (or stall) their body lose their slot at
/// the whole-request deadline, and a new client is served.
#[test]
fn clients_stalling_mid_body_are_cut_at_the_request_deadline() {
    let cp = Cp::start(&[
        "--max-connections",
        "4",
        "--request-timeout-ms",
        "1500",
        "--header-timeout-ms",
        "60000",
    ]);
    let partial = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=",
        cp.addr
    );
    let stalled: Vec<_> = (0..4)
        .map(|_| {
            let (addr, bytes) = (cp.addr.clone(), partial.clone());
            std::thread::spawn(move || {
                raw_exchange(&addr, bytes.as_bytes(), std::time::Duration::from_secs(40))
            })
        })
        .collect();
    for t in stalled {
        let (answer, took) = t.join().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{answer:?} after {took:?}"
        );
        assert!(answer.contains("request_timeout"), "{answer}");
        assert!(
            took >= std::time::Duration::from_millis(1000)
                && took < std::time::Duration::from_secs(30),
            "closed at the deadline, not at once nor never: {took:?}"
        );
    }
    wait_until(
        "a new client to be served",
        std::time::Duration::from_secs(20),
        || cp.req("GET", "/live", None, b"", &[]).0 == 200,
    );
    assert!(
        cp.metrics_text()
            .contains("felix_cp_requests_timed_out_total 4"),
        "{}",
        cp.metrics_text()
    );
}

/// One peer IP cannot take every slot; revocation long polls have their own small budget.
#[test]
fn one_peer_ip_and_long_polls_get_a_bounded_share() {
    use std::io::Read;
    let cp = Cp::start(&[
        "--max-connections",
        "8",
        "--max-connections-per-ip",
        "2",
        "--header-timeout-ms",
        "60000",
    ]);
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(&cp.addr).unwrap())
        .collect();
    wait_until(
        "the third connection from this IP to be closed at once",
        std::time::Duration::from_secs(20),
        || {
            let mut s = std::net::TcpStream::connect(&cp.addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Ok(n) => n == 0,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        },
    );
    drop(idle);
    wait_until(
        "the slots to be free",
        std::time::Duration::from_secs(20),
        || cp.req("GET", "/live", None, b"", &[]).0 == 200,
    );
    assert!(!cp
        .metrics_text()
        .contains("felix_cp_connections_refused_total{reason=\"per_ip\"} 0"));

    // 8 connections: at most 4 long polls.
    let cp = Cp::start(&["--max-connections", "8", "--max-connections-per-ip", "8"]);
    let rev = cp.get("/v1/revocations").1["revision"].as_u64().unwrap();
    let polls: Vec<_> = (0..4)
        .map(|_| {
            let addr = cp.addr.clone();
            std::thread::spawn(move || loop {
                // The probe below may hold a slot for a moment: retry until admitted.
                let r = Cp::attach(&addr).req(
                    "GET",
                    &format!("/v1/revocations?after={rev}&wait_s=25"),
                    None,
                    b"",
                    &[],
                );
                if r.0 != 503 {
                    return r;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            })
        })
        .collect();
    let mut refused = None;
    wait_until(
        "a fifth long poll to be refused",
        std::time::Duration::from_secs(20),
        || {
            let (s, v, head) = cp.req(
                "GET",
                &format!("/v1/revocations?after={rev}&wait_s=1"),
                None,
                b"",
                &[],
            );
            let hit = s == 503;
            if hit {
                refused = Some((v, head));
            }
            hit
        },
    );
    let (v, head) = refused.unwrap();
    assert_eq!(v["error"], "overloaded");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    // Plain reads still work meanwhile, and a change wakes the pollers.
    let (s, v) = cp.send("POST", "/v1/revocations", json!({"jti": "abcd"}));
    assert_eq!(s, 201, "{v}");
    for p in polls {
        let (s, v, _) = p.join().unwrap();
        assert_eq!(s, 200);
        assert_eq!(v["jtis"][0]["jti"], "abcd");
    }
}

/// A tenant trusts an issuer URL under one name only, even when two PUTs race (the check and
/// the write are one transaction); changing or deleting an entry frees its URL.
#[test]
fn an_issuer_url_is_unique_per_tenant_even_under_concurrent_puts() {
    // A durable store: its fsync widens the window between a check and its commit.
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(root.path());
    let cp = Cp::start(&["--data-dir", dir.to_str().unwrap()]);
    cp.put_ok("/v1/tenants/acme", json!({}));
    let body = |url: &str| json!({"issuer": url, "audiences": ["felix"]});
    for round in 0..20 {
        let url = format!("https://idp{round}.example.com");
        let racers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let (addr, path, b) = (
                    cp.addr.clone(),
                    format!("/v1/tenants/acme/issuers/{name}{round}"),
                    body(&url).to_string(),
                );
                std::thread::spawn(move || {
                    Cp::attach(&addr)
                        .req("PUT", &path, Some("application/json"), b.as_bytes(), &[])
                        .0
                })
            })
            .collect();
        let codes: Vec<u16> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            codes.iter().filter(|c| **c == 201).count(),
            1,
            "round {round}: {codes:?}"
        );
        assert!(codes.contains(&409), "round {round}: {codes:?}");
    }
    let items = cp.get("/v1/tenants/acme/issuers").1["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(items, 20);
    // Moving an entry to another URL frees the old one; deleting frees its URL too.
    cp.put_ok(
        "/v1/tenants/acme/issuers/x",
        body("https://old.example.com"),
    );
    assert_eq!(
        cp.send(
            "PUT",
            "/v1/tenants/acme/issuers/y",
            body("https://old.example.com")
        )
        .0,
        409
    );
    cp.put_ok(
        "/v1/tenants/acme/issuers/x",
        body("https://new.example.com"),
    );
    cp.put_ok(
        "/v1/tenants/acme/issuers/y",
        body("https://old.example.com"),
    );
    assert_eq!(
        cp.send("DELETE", "/v1/tenants/acme/issuers/x", json!(null))
            .0,
        204
    );
    cp.put_ok(
        "/v1/tenants/acme/issuers/z",
        body("https://new.example.com"),
    );
}
