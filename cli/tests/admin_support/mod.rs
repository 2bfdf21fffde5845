//! Real parts for `cli/tests/admin.rs`: the `felix-controlplane` process, `felix` runs with a
//! deadline, and a hostile loopback HTTP server.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const FELIX: &str = env!("CARGO_BIN_EXE_felix");
/// Longest any single `felix` invocation may take.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// The production control plane's admin token.
pub const TOKEN: &str = "cli-test-admin-token-5f1e2d3c4b5a6978";

/// The control-plane binary of this checkout, built now (never a stale one).
fn controlplane_bin() -> PathBuf {
    felix_test_support::workspace_bin(
        "felix-controlplane",
        "felix-controlplane",
        "FELIX_CONTROLPLANE_BIN",
    )
}

/// A running control plane; killed on drop.
pub struct Cp {
    child: Child,
    pub url: String,
}

impl Cp {
    pub fn start(args: &[&str]) -> Cp {
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
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("--json output {:?} does not parse: {e}", self.stdout))
    }
}

/// Runs `felix` with a clean environment for the admin options plus `env`, with a deadline.
pub fn felix(args: &[&str], env: &[(&str, &str)]) -> Run {
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
pub fn admin(cp: &str, args: &[&str]) -> Run {
    let mut all = vec!["admin", "--controlplane", cp];
    all.extend_from_slice(args);
    felix(&all, &[])
}

pub fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A loopback HTTP server answering every request with `head` and then `body_len` bytes of
/// `x` (a hostile or misconfigured server, not a control plane).
pub fn serve_fixed(head: String, body_len: usize) -> String {
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
