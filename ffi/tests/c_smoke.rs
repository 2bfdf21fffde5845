//! Compiles `examples/c/smoke.c` against the static library with `cc` and runs it against a
//! real broker process (`target/<profile>/felix-broker`, or `FELIX_BROKER_BIN`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `target/<profile>`, from this test binary's path (`target/<profile>/deps/c_smoke-*`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo_build(package: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace()).args(["build", "-p", package]);
    if profile_dir().ends_with("release") {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().unwrap().success(),
        "cargo build -p {package} failed"
    );
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a broker and waits until it serves.
fn start_broker(dir: &Path) -> (Broker, String) {
    let bin = std::env::var_os("FELIX_BROKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("felix-broker"));
    if !bin.exists() {
        cargo_build("felix-broker");
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(&bin)
        .args(["--listen", &addr, "--no-metrics", "--dev-ca-path"])
        .arg(dir.join("ca.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("felix broker serving") {
                let _ = tx.send(());
            }
        }
    });
    let broker = Broker(child);
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the broker did not start serving within 20 s");
    (broker, addr)
}

#[test]
fn c_smoke_program_runs_against_a_real_broker() {
    let dir = std::env::temp_dir().join(format!("felix-ffi-c-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lib = profile_dir().join("libfelix_ffi.a");
    if !lib.exists() {
        cargo_build("felix-ffi");
    }
    let exe = dir.join("smoke");
    let root = workspace();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(root.join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(root.join("examples/c/smoke.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm"])
        .status()
        .expect("cc not found");
    assert!(status.success(), "compiling examples/c/smoke.c failed");

    let (_broker, addr) = start_broker(&dir);
    let out = Command::new(&exe)
        .arg(&addr)
        .arg(dir.join("ca.pem"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "smoke failed\n{stdout}\n{stderr}");
    for want in [
        "cache get: present=1 value=hello cache",
        "event: m1 offset=0",
        "event: m3 offset=2",
        "pulled: 3",
        "acked: 3",
        "empty cache name: invalid_argument retryable=0",
        "smoke ok",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
