//! Cache-get latency and throughput of the Rust client core, the baseline the Go bench
//! (`bindings/go/bench`) compares against. Runs on a current-thread runtime, like the FFI's
//! default. Connects once, then serves rounds: reads `CONCURRENCY OPS` lines on stdin and
//! answers each with one JSON object (after a warm-up of OPS/10), so that the Go bench can
//! interleave its rounds with these on the same broker.
//!
//! ```sh
//! echo "1 20000" | cargo run --release -p felix-ffi --example rust_cache_bench -- ADDR CA_PEM
//! ```

mod common;

use common::cpu_seconds;
use std::time::{Duration, Instant};

use felix_client::{Client, ClientConfig, Tls};
use hdrhistogram::Histogram;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, ca) = common::addr_and_ca(&args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cfg = ClientConfig {
            addresses: vec![addr],
            tls: Tls::CaFile(ca.into()),
            ..Default::default()
        };
        let client = Client::connect(cfg).await.expect("connect");
        client
            .cache_put("default", "bench", "k", vec![7u8; 100].into(), None)
            .await
            .expect("put");
        // Lines are read on their own thread so that the connection stays driven between rounds.
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = lines.recv().await {
            let mut it = line.split_whitespace().map(|x| x.parse::<usize>());
            let (Some(Ok(c)), Some(Ok(ops))) = (it.next(), it.next()) else {
                panic!("expected `CONCURRENCY OPS`, got {line:?}");
            };
            run(&client, c, ops / 10).await; // warm-up
            let cpu0 = cpu_seconds();
            let (hist, elapsed) = run(&client, c, ops).await;
            let cpu = cpu_seconds() - cpu0;
            println!(
                "{{\"concurrency\":{c},\"ops\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"ops_per_sec\":{:.0},\"cpu_us_per_op\":{:.2}}}",
                hist.len(),
                hist.value_at_quantile(0.5) as f64 / 1000.0,
                hist.value_at_quantile(0.99) as f64 / 1000.0,
                hist.value_at_quantile(0.999) as f64 / 1000.0,
                hist.len() as f64 / elapsed.as_secs_f64(),
                cpu * 1e6 / hist.len() as f64
            );
        }
    });
}

async fn run(client: &Client, concurrency: usize, ops: usize) -> (Histogram<u64>, Duration) {
    let per = (ops / concurrency).max(1);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).unwrap();
                for _ in 0..per {
                    let t = Instant::now();
                    client
                        .cache_get("default", "bench", "k")
                        .await
                        .expect("get");
                    h.record(t.elapsed().as_nanos() as u64).unwrap();
                }
                h
            })
        })
        .collect();
    let mut total = Histogram::<u64>::new(3).unwrap();
    for t in tasks {
        total.add(t.await.unwrap()).unwrap();
    }
    (total, start.elapsed())
}
