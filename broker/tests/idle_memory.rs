//! What idle connections cost a broker process, and that the memory comes back when they
//! close (`VmRSS` of a real broker process; `docs/limits-read-path.md`).

mod common;
mod v1;

use std::time::Duration;

use common::process::{mib, rss_bytes, spawn_with_config};
use common::*;

const T: &str = "t1";

/// Connections measured, each with the 40 request streams one v1 client opens at connect.
const CONNECTIONS: usize = 200;
const STREAMS: usize = 40;

async fn idle_client(
    addr: std::net::SocketAddr,
    ca: std::path::PathBuf,
) -> (v1::Client, Vec<v1::Stream>) {
    let c = v1::Client::connect(addr, &ca).await;
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        streams.push(c.request_stream(T).await);
    }
    (c, streams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_little_and_their_memory_comes_back() {
    let broker = spawn_with_config("idle-memory", "");
    let pid = broker.child.id();
    wait_for_handshake(broker.addr, 20).await;
    // Warm up once (lazy statics, first allocations of every kind) before the baseline.
    let warm = within(
        20,
        "warm-up client",
        idle_client(broker.addr, broker.ca.clone()),
    )
    .await;
    warm.0.conn.close(0u32.into(), b"warm");
    drop(warm);
    // Baseline once the warm-up connection is gone and its memory trimmed.
    let mut base = rss_bytes(pid);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        base = base.min(rss_bytes(pid));
    }

    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS / 20 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            set.spawn(idle_client(broker.addr, broker.ca.clone()));
        }
        while let Some(c) = set.join_next().await {
            clients.push(c.unwrap());
        }
    }
    let open = rss_bytes(pid);
    let per_conn = open.saturating_sub(base) / CONNECTIONS as u64;
    eprintln!(
        "{CONNECTIONS} idle connections x {STREAMS} streams: RSS {:.1} MiB -> {:.1} MiB, \
         {} KiB per connection",
        mib(base),
        mib(open),
        per_conn / 1024
    );
    // The old broker: ~470 KiB per connection in a debug build (quinn's tables for 4096
    // client-opened unidirectional streams nobody opens, and every idle stream's task
    // carrying an inline request-handling future); now ~240 KiB.
    assert!(
        per_conn < 360 * 1024,
        "an idle connection costs {} KiB",
        per_conn / 1024
    );
    for (c, _) in &clients {
        c.conn.close(0u32.into(), b"done");
    }
    drop(clients);
    // The memory comes back (the old broker kept all of it).
    let back = base + (open - base) / 4;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = rss_bytes(pid);
        if now <= back {
            eprintln!("after close: RSS {:.1} MiB", mib(now));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "RSS still {:.1} MiB 30 s after the connections closed (base {:.1} MiB, open {:.1} MiB)",
            mib(now),
            mib(base),
            mib(open)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
