//! Cache-get latency and throughput of the Rust client core, the baseline the Go bench
//! (`bindings/go/bench`) compares against. Runs on a current-thread runtime, like the FFI's
//! default. Prints one JSON object per concurrency level.
//!
//! ```sh
//! cargo run --release -p felix-ffi --example rust_cache_bench -- ADDR CA_PEM OPS 1,32
//! ```

use std::time::{Duration, Instant};

use felix_client::{Client, ClientConfig, Tls};
use hdrhistogram::Histogram;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let ca = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "/tmp/felix-dev/ca.pem".into());
    let ops: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let levels: Vec<usize> = args
        .get(4)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 32]);
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
        for &c in &levels {
            run(&client, c, ops / 10).await; // warm-up
            let (hist, elapsed) = run(&client, c, ops).await;
            println!(
                "{{\"concurrency\":{c},\"ops\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"ops_per_sec\":{:.0}}}",
                hist.len(),
                hist.value_at_quantile(0.5) as f64 / 1000.0,
                hist.value_at_quantile(0.99) as f64 / 1000.0,
                hist.len() as f64 / elapsed.as_secs_f64()
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
