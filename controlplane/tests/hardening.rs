//! The control plane's exposure bounds as a process: dev mode stays local and refuses
//! cross-site writes, slow clients lose their slot at the request deadline, one peer IP and
//! the long polls get a bounded share, issuer URLs stay unique under concurrent writes.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

/// Dev mode never serves its open admin API on a network address by accident, answers only
/// loopback Host names on loopback (DNS rebinding), and admin writes must be JSON (a
/// cross-site simple POST cannot rotate keys or revoke).
#[test]
fn dev_mode_stays_local_and_refuses_cross_site_writes() {
    let bin = env!("CARGO_BIN_EXE_felix-controlplane");
    // Spawned, not `output()`: a regression that starts serving must fail, not hang (and
    // the process is killed however the test ends).
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reaped(
        Command::new(bin)
            .args(["--listen", "0.0.0.0:0"])
            .env_remove("FELIX_CP_ADMIN_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut code = None;
    wait_until(
        "the refusal to exit",
        std::time::Duration::from_secs(20),
        || {
            code = child.0.try_wait().unwrap().map(|s| s.code());
            code.is_some()
        },
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(code, Some(Some(2)), "{err}");
    assert!(err.contains("insecure-dev-expose"), "{err}");
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
