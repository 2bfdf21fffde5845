//! End-to-end tests of `felix admin` against a real `felix-controlplane` process (dev mode on
//! an ephemeral loopback port, or production mode with HTTPS, a data directory and an admin
//! token file). The control plane is built with cargo (`cargo test -p felix-cli` does not
//! build another package's binary) unless `FELIX_CONTROLPLANE_BIN` names one. Every process
//! has a deadline and is killed if it overruns; nothing sleeps before asserting.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const FELIX: &str = env!("CARGO_BIN_EXE_felix");
/// Longest any single `felix` invocation may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// The production control plane's admin token.
const TOKEN: &str = "cli-test-admin-token-5f1e2d3c4b5a6978";

/// `target/<profile>`, from this test binary's path (`target/<profile>/deps/admin-*`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// The control-plane binary, rebuilt by cargo when its sources changed.
fn controlplane_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FELIX_CONTROLPLANE_BIN") {
        return PathBuf::from(p);
    }
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["build", "-p", "felix-controlplane"]);
        // The variables cargo sets for this test binary must not reach the inner build: some
        // build scripts (ring) rerun when CARGO_MANIFEST_DIR changes, so they would rebuild
        // half the dependency tree here and again at the next plain `cargo build`.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*k)
            {
                cmd.env_remove(&*k);
            }
        }
        if profile_dir().ends_with("release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().unwrap().success(),
            "cargo build -p felix-controlplane failed"
        );
    });
    profile_dir().join("felix-controlplane")
}

/// A running control plane; killed on drop.
struct Cp {
    child: Child,
    url: String,
}

impl Cp {
    fn start(args: &[&str]) -> Cp {
        let mut child = Command::new(controlplane_bin())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("FELIX_CP_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("felix-controlplane starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the control plane prints its address within 60 s");
        let v: Value = serde_json::from_str(&line).expect("its first line is JSON");
        let scheme = if v["tls"] == true { "https" } else { "http" };
        let port = v["listen"].as_str().unwrap().rsplit(':').next().unwrap();
        // HTTPS: the test certificate names localhost.
        let host = if scheme == "https" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        Cp {
            child,
            url: format!("{scheme}://{host}:{port}"),
        }
    }
}

impl Drop for Cp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one `felix` run printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("--json output {:?} does not parse: {e}", self.stdout))
    }
}

/// Runs `felix` with a clean environment for the admin options plus `env`, with a deadline.
fn felix(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(FELIX);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in [
        "FELIX_ADMIN_TOKEN",
        "FELIX_ADMIN_TOKEN_FILE",
        "FELIX_CONTROLPLANE_URL",
        "FELIX_CONTROLPLANE_CA",
        "FELIX_JSON",
        "FELIX_TIMEOUT",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("felix runs");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("felix {args:?} ran over {DEADLINE:?}");
        }
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `felix admin --controlplane URL ARGS...`.
fn admin(cp: &str, args: &[&str]) -> Run {
    let mut all = vec!["admin", "--controlplane", cp];
    all.extend_from_slice(args);
    felix(&all, &[])
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

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

/// A loopback HTTP server answering every request with `head` and then `body_len` bytes of
/// `x` (a hostile or misconfigured server, not a control plane).
fn serve_fixed(head: String, body_len: usize) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let head = head.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = c.write_all(head.as_bytes());
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = body_len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if c.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    format!("http://{addr}")
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
