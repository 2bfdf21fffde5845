//! Echo round-trip latency over felix-transport on loopback.
//!
//! One process, two threads, each with its own current-thread Tokio runtime
//! (like two separate processes, minus the process boundary): a server that
//! echoes 64-byte messages on one long-lived bidi stream, and a client that
//! does WARMUP untimed round trips followed by ROUNDS timed ones. Each knob
//! variant gets fresh endpoints, so variants do not influence each other.
//!
//! ```text
//! cargo run --release -p felix-transport --example rtt            # all variants
//! cargo run --release -p felix-transport --example rtt -- default # just one
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use felix_transport::{
    client_endpoint_for, server_endpoint, ClientOptions, ClientTls, ServerTls, TransportConfig,
};
use hdrhistogram::Histogram;

const MSG: usize = 64;
const WARMUP: usize = 2_000;
const ROUNDS: usize = 20_000;
const MIB: u64 = 1024 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn variants() -> Vec<(&'static str, TransportConfig)> {
    let d = TransportConfig::default();
    vec![
        ("default", d.clone()),
        (
            "big-windows",
            TransportConfig {
                stream_receive_window: 16 * MIB,
                receive_window: 64 * MIB,
                send_window: 64 * MIB,
                ..d.clone()
            },
        ),
        (
            "quinn-initial-rtt",
            // quinn's own default, to see what the 1 ms default buys.
            TransportConfig {
                initial_rtt_us: 333_000,
                ..d.clone()
            },
        ),
        (
            "os-socket-buffers",
            TransportConfig {
                socket_send_buffer_bytes: None,
                socket_recv_buffer_bytes: None,
                ..d
            },
        ),
    ]
}

struct Report {
    connect: Duration,
    first_rtt: Duration,
    hist: Histogram<u64>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn serve(cfg: TransportConfig, ready: mpsc::Sender<(SocketAddr, PathBuf)>) -> Result<(), BoxError> {
    runtime().block_on(async move {
        let dir = std::env::temp_dir().join(format!("felix-rtt-{}", std::process::id()));
        let ca = dir.join("ca.pem");
        let endpoint =
            server_endpoint("127.0.0.1:0".parse()?, ServerTls::generate_dev(&ca)?, &cfg)?;
        ready.send((endpoint.local_addr()?, ca))?;
        let conn = endpoint.accept().await.ok_or("endpoint closed")?.await?;
        let (mut send, mut recv) = conn.accept_bi().await?;
        let mut buf = [0u8; MSG];
        // The client finishing its stream ends the loop with an error from
        // read_exact; that is the normal way out.
        while recv.read_exact(&mut buf).await.is_ok() {
            send.write_all(&buf).await?;
        }
        let _ = send.finish();
        conn.closed().await;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    })
}

fn measure(cfg: TransportConfig, addr: SocketAddr, ca: PathBuf) -> Result<Report, BoxError> {
    runtime().block_on(async move {
        let opts = ClientOptions {
            transport: cfg,
            ..ClientOptions::new(ClientTls::CaFile(ca))
        };
        let endpoint = client_endpoint_for(addr, &opts)?;
        let t0 = Instant::now();
        let conn = endpoint.connect(addr, &opts.server_name)?.await?;
        let connect = t0.elapsed();

        let (mut send, mut recv) = conn.open_bi().await?;
        let out = [0x5au8; MSG];
        let mut back = [0u8; MSG];
        let t1 = Instant::now();
        send.write_all(&out).await?;
        recv.read_exact(&mut back).await?;
        let first_rtt = t1.elapsed();

        for _ in 0..WARMUP {
            send.write_all(&out).await?;
            recv.read_exact(&mut back).await?;
        }
        let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            send.write_all(&out).await?;
            recv.read_exact(&mut back).await?;
            hist.record(t.elapsed().as_nanos() as u64)?;
        }
        send.finish()?;
        conn.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        Ok(Report {
            connect,
            first_rtt,
            hist,
        })
    })
}

fn run(cfg: TransportConfig) -> Result<Report, BoxError> {
    let (tx, rx) = mpsc::channel();
    let server_cfg = cfg.clone();
    let server = std::thread::spawn(move || serve(server_cfg, tx));
    let (addr, ca) = rx.recv().map_err(|_| "server failed to start")?;
    let client = std::thread::spawn(move || measure(cfg, addr, ca));
    let report = client.join().map_err(|_| "client panicked")??;
    server.join().map_err(|_| "server panicked")??;
    Ok(report)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

fn main() -> Result<(), BoxError> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "{MSG}-byte echo, {WARMUP} warm-up + {ROUNDS} timed round trips, one bidi stream, loopback"
    );
    println!(
        "{:<20} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "variant", "connect", "first", "p50", "p99", "p999", "mean", "max"
    );
    // The first connection in a process pays one-off costs (lazy statics,
    // page faults, cold caches) that would otherwise be charged to whichever
    // variant happens to run first.
    run(TransportConfig::default())?;
    for (name, cfg) in variants() {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let r = run(cfg)?;
        let h = &r.hist;
        println!(
            "{:<20} {:>8.0}µs {:>8.0}µs {:>6.1}µs {:>6.1}µs {:>6.1}µs {:>6.1}µs {:>7.0}µs",
            name,
            r.connect.as_secs_f64() * 1e6,
            r.first_rtt.as_secs_f64() * 1e6,
            us(h.value_at_quantile(0.50)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            h.mean() / 1_000.0,
            us(h.max()),
        );
    }
    Ok(())
}
