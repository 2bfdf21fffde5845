//! Compiles `examples/c/smoke.c` against the static library with `cc` and runs it against a
//! real broker process (`target/<profile>/felix-broker`, or `FELIX_BROKER_BIN`).

mod common;

use std::process::Command;

use common::{cargo_build, profile_dir, start_broker, workspace};

#[test]
fn c_smoke_program_runs_against_a_real_broker() {
    let dir = std::env::temp_dir().join(format!("felix-ffi-c-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Always through cargo, which rebuilds a library older than its sources (building only
    // a missing one linked a stale library after every change).
    cargo_build("felix-ffi");
    let lib = profile_dir().join("libfelix_ffi.a");
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
