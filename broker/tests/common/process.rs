//! Broker processes with a configuration file, and their memory as the kernel sees it.

use std::path::PathBuf;

use super::{free_udp_port, scratch, BrokerProcess};

/// The broker binary: `FELIX_BROKER_BIN` when set (to measure another build, e.g. the one
/// before a change), else the one cargo built for these tests.
pub fn broker_bin() -> PathBuf {
    std::env::var_os("FELIX_BROKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_felix-broker")))
}

/// Starts `felix-broker --config <file>` with `toml` as the file (e.g. a `[limits]` table) on
/// a free port, with the HTTP endpoint off, and waits until it has written its CA.
pub fn spawn_with_config(name: &str, toml: &str) -> BrokerProcess {
    let dir = scratch(name);
    let addr = free_udp_port();
    let ca = dir.join("ca.pem");
    let config = dir.join("broker.toml");
    std::fs::write(&config, toml).expect("write the broker config");
    let child = super::broker_command(addr, &ca)
        .arg("--config")
        .arg(&config)
        .spawn()
        .expect("spawn felix-broker");
    super::wait_for_ca(&ca);
    BrokerProcess {
        child,
        addr,
        ca,
        dir,
    }
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Mebibytes, for messages.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
