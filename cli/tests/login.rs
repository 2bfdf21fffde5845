//! `felix login` against a real HTTP token endpoint on loopback: the RFC 8693 request, the
//! cache written 0600 without the token ever on stdout, an OAuth error as `unauthorized`, and
//! later commands using the cached token (an expired one is refused before connecting).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use felix_broker::{Broker, BrokerConfig};

const FELIX: &str = env!("CARGO_BIN_EXE_felix");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("felix-login-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWT-shaped token expiring at `exp` (the CLI reads `exp`; it never verifies).
fn jwt(exp: u64) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"EdDSA"}"#),
        b64(&format!(r#"{{"sub":"alice","tenant":"acme","exp":{exp}}}"#))
    )
}

/// Answers every request with `status`/`body`, recording request bodies.
fn token_endpoint(status: u16, body: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut r = BufReader::new(&mut stream);
            let (mut line, mut len) = (String::new(), 0usize);
            r.read_line(&mut line).unwrap();
            let first = line.trim_end().to_owned();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line.trim_end().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut b = vec![0; len];
            r.read_exact(&mut b).unwrap();
            s.lock()
                .unwrap()
                .push(format!("{first}\n{}", String::from_utf8(b).unwrap()));
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body.as_bytes()).unwrap();
        }
    });
    (url, seen)
}

fn felix(cache: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(FELIX)
        .args(args)
        .env("FELIX_TOKEN_CACHE", cache)
        .env_remove("FELIX_TOKEN")
        .env_remove("FELIX_TENANT")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn login_exchanges_and_caches_the_token_privately() {
    let dir = scratch("ok");
    let token = jwt(now_s() + 600);
    let (url, seen) = token_endpoint(
        200,
        format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":600}}"#),
    );
    std::fs::write(dir.join("id_token"), "oidc-id-token\n").unwrap();
    let cache = dir.join("cfg/felix/token");
    let id = dir.join("id_token");
    let (code, stdout, stderr) = felix(
        &cache,
        &[
            "login",
            "--controlplane",
            &url,
            "--tenant",
            "acme",
            "--subject-token-file",
            id.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("acme"), "{stdout}");
    assert!(
        !stdout.contains(&token) && !stderr.contains(&token),
        "the token was printed"
    );
    let req = seen.lock().unwrap()[0].clone();
    assert!(req.starts_with("POST /oauth/token "), "{req}");
    assert!(
        req.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"),
        "{req}"
    );
    assert!(req.contains("subject_token=oidc-id-token"), "{req}");
    assert!(req.contains("audience=acme"), "{req}");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "cache mode {mode:o}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["token"], token.as_str());
    assert!(v["expires_at"].as_u64().unwrap() > now_s());
}

#[test]
fn a_refused_exchange_is_unauthorized_and_caches_nothing() {
    let dir = scratch("refused");
    let (url, _) = token_endpoint(
        400,
        r#"{"error":"invalid_grant","error_description":"token expired"}"#.into(),
    );
    std::fs::write(dir.join("id_token"), "oidc").unwrap();
    let cache = dir.join("token");
    let id = dir.join("id_token");
    let (code, _, stderr) = felix(
        &cache,
        &[
            "login",
            "--controlplane",
            &url,
            "--tenant",
            "acme",
            "--subject-token-file",
            id.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.starts_with("error[unauthorized]") && stderr.contains("token expired"),
        "{stderr}"
    );
    assert!(!cache.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_commands_use_the_cached_token_unless_told_otherwise() {
    let dir = scratch("use");
    let ca = dir.join("ca.pem");
    let broker = Broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: None,
        dev_ca_path: ca.clone(),
        shutdown_grace_ms: 500,
        ..BrokerConfig::default()
    })
    .await
    .unwrap();
    let addr = broker.local_addr().to_string();
    let cache = dir.join("token");
    let ping = |extra: &'static [&'static str]| {
        let (cache, addr, ca) = (cache.clone(), addr.clone(), ca.clone());
        tokio::task::spawn_blocking(move || {
            let mut args = vec![
                "--addr",
                &addr,
                "--ca",
                ca.to_str().unwrap(),
                "--timeout",
                "5000",
                "ping",
            ];
            args.extend_from_slice(extra);
            felix(&cache, &args)
        })
    };
    // A valid cached login (the dev broker accepts any token): used, the command succeeds.
    let write = |exp: u64| {
        std::fs::write(
            &cache,
            format!(
                r#"{{"tenant":"acme","token":"{}","expires_at":{exp}}}"#,
                jwt(exp)
            ),
        )
        .unwrap()
    };
    write(now_s() + 600);
    let (code, out, err) = ping(&[]).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    // An expired one is refused before connecting...
    write(now_s() - 10);
    let (code, _, err) = ping(&[]).await.unwrap();
    assert_eq!(code, 4, "{err}");
    assert!(
        err.starts_with("error[unauthorized]") && err.contains("felix login"),
        "{err}"
    );
    // ...unless a token is given, or another tenant is named: then the cache is not used.
    let (code, _, err) = ping(&["--token", "explicit"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ping(&["--tenant", "globex"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    broker.shutdown().await;
}
