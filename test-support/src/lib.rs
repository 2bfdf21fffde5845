//! Helpers shared by tests that run the workspace's own binaries as processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// `target/<profile>` of the running test binary (`target/<profile>/deps/<test>-<hash>`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The workspace root (this crate sits one level below it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support is inside the workspace")
        .to_path_buf()
}

/// The binary `bin` of `package`, built now for this checkout and profile, so a test never
/// runs a stale one; `env_override` (e.g. `FELIX_BROKER_BIN`) names a prebuilt binary
/// instead. Each package is built at most once per test process.
pub fn workspace_bin(package: &str, bin: &str, env_override: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_override) {
        return PathBuf::from(p);
    }
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|p| p == package) {
        cargo_build(package);
        built.push(package.to_owned());
    }
    profile_dir().join(bin)
}

/// `cargo build -p package` in the workspace, in this test's profile.
pub fn cargo_build(package: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args(["build", "-q", "-p", package]);
    // The variables cargo sets for the running test must not reach the inner build: build
    // scripts such as ring's rerun when CARGO_MANIFEST_DIR and friends change, which would
    // rebuild half the dependency tree here and again at the next plain `cargo build`.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let per_package = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*k);
        if per_package {
            cmd.env_remove(&*k);
        }
    }
    if profile_dir().ends_with("release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "cargo build -p {package} failed");
}
