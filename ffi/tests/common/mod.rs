//! A real broker process for the FFI tests (`target/<profile>/felix-broker`, or
//! `FELIX_BROKER_BIN`).

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[allow(unused_imports)] // each test binary uses a different part
pub use felix_test_support::{cargo_build, profile_dir, workspace};

pub struct Broker(Child);

impl Broker {
    /// Sends `sig` (`-STOP`, `-CONT`) to the broker: a stopped broker keeps its connections
    /// but answers nothing.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig}");
    }
}

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
pub fn start_broker(dir: &Path) -> (Broker, String) {
    start_broker_with(dir, &[])
}

/// [`start_broker`] with extra command-line arguments.
pub fn start_broker_with(dir: &Path, extra: &[&str]) -> (Broker, String) {
    // Without an explicit binary, always ask cargo: it rebuilds a broker older than its
    // sources and does nothing when it is fresh. Building only a missing binary ran a stale
    // broker after every broker change when these tests were invoked directly
    // (`cargo test -p felix-ffi` does not build another package's binary).
    let bin = felix_test_support::workspace_bin("felix-broker", "felix-broker", "FELIX_BROKER_BIN");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(&bin)
        .args(["--listen", &addr, "--no-metrics", "--dev-ca-path"])
        .arg(dir.join("ca.pem"))
        .args(extra)
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
