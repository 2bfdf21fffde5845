//! Compiles the C scenario runner (`examples/c/scenarios.c` and its two companions) against
//! the static library and libjansson, and runs it against a real broker process: first its
//! self-test (`examples/c/scenarios_selftest.json`: wrong scenarios that must each fail, and
//! one right one), then the shared wrong scenarios of `tests/scenarios/wrong/` (each must fail
//! as `failures.json` says, except the ones its `exceptions.c` excuses, with a reason), then
//! every scenario of `tests/scenarios/`.
//!
//! Ignored by default because it needs a system package (`libjansson-dev`), which a plain
//! `cargo test` does not install; `bindings/go/test.sh` (the C ABI and Go step of
//! `scripts/test`) installs it and runs this with `--ignored`.

mod common;

use std::process::Command;

use common::{cargo_build, profile_dir, start_broker, start_broker_with, workspace};

#[test]
#[ignore = "needs libjansson-dev; bindings/go/test.sh installs it and runs this test"]
fn c_scenario_runner_passes_every_scenario_and_fails_wrong_ones() {
    assert!(
        std::path::Path::new("/usr/include/jansson.h").exists(),
        "jansson.h not found: apt-get install libjansson-dev (bindings/go/test.sh does)"
    );
    let dir = std::env::temp_dir().join(format!("felix-ffi-c-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Always (a no-op when fresh): `cargo test` does not refresh the static library the C
    // runner links, so building only when it is missing ran a stale one. scripts/plant found
    // it: with FELIX_START_EARLIEST planted as latest in ffi/src, this test passed.
    cargo_build("felix-ffi");
    let lib = profile_dir().join("libfelix_ffi.a");
    let root = workspace();
    let c = root.join("examples/c");
    let exe = dir.join("scenarios");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(root.join("include"))
        .arg("-o")
        .arg(&exe)
        .args(["scenarios.c", "scenario_ops.c", "scenario_queue_cache.c"].map(|f| c.join(f)))
        .arg(&lib)
        .args(["-ljansson", "-lpthread", "-ldl", "-lm"])
        .status()
        .expect("cc not found");
    assert!(status.success(), "compiling the C scenario runner failed");

    let (_broker, addr) = start_broker(&dir);
    let scenarios = root.join("tests/scenarios");
    // The JWT-mode broker of `"broker": "jwt"` scenarios (tests/scenarios/README.md, "Brokers").
    let jwt_dir = dir.join("jwt");
    std::fs::create_dir_all(&jwt_dir).unwrap();
    let keys = scenarios.join("auth/jwks.json");
    let (_jwt_broker, jwt_addr) = start_broker_with(
        &jwt_dir,
        &[
            "--jwt-keys-file",
            keys.to_str().unwrap(),
            "--auth-issuer",
            "felix-scenarios",
            // The fixture tokens live until 2100 (tests/scenarios/auth/principals.json).
            "--auth-max-token-lifetime-s",
            "4000000000",
        ],
    );
    let run = |extra: Option<std::path::PathBuf>| {
        let mut cmd = Command::new(&exe);
        cmd.arg(&addr).arg(dir.join("ca.pem")).arg(&scenarios);
        cmd.env_remove("FELIX_SCENARIOS");
        cmd.env("FELIX_JWT_BROKER", &jwt_addr)
            .env("FELIX_JWT_BROKER_CA", jwt_dir.join("ca.pem"));
        if let Some(e) = extra {
            cmd.arg(e);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{stdout}");
        (out.status.success(), format!("{stdout}\n{stderr}"))
    };

    let (ok, out) = run(Some(c.join("scenarios_selftest.json")));
    assert!(ok, "the C runner misjudged its self-test:\n{out}");
    assert!(out.contains("0 misjudged"), "{out}");

    // The shared self-check of every runner: tests/scenarios/wrong/ and its failures.json
    // (exceptions.c lists, with reasons, the files the C ABI cannot see as wrong).
    let (ok, out) = run(Some(scenarios.join("wrong")));
    assert!(
        ok,
        "the C runner misjudged the shared wrong scenarios:\n{out}"
    );
    assert!(out.contains(", 0 misjudged"), "{out}");

    let files = std::fs::read_dir(&scenarios)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(".json") && n != "schema.json"
        })
        .count();
    let (ok, out) = run(None);
    assert!(ok, "C scenario runner failed:\n{out}");
    let summary = format!("{files} scenarios: {files} passed, 0 failed");
    assert!(out.contains(&summary), "missing {summary:?} in\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
