//! Memory figures: the resident set of a fresh server process idle, holding 10,000
//! subscriptions (each to its own topic, over 4 connections), and holding 1,000,000 cache
//! keys of 100 B. One fresh server per figure, so no figure inherits another's heap.

use std::time::Duration;

use felix_client::{Client, Start};
use futures::StreamExt;

use super::measure::Trial;
use super::reqs::{fill, Kv, NAMESPACE};
use super::servers::{rss_mib, ServerSpec};
use super::{Env, Sys};
use crate::procs::BoxError;

/// What the server holds when its RSS is read.
#[derive(Clone, Copy, Debug)]
pub enum Holding {
    Idle,
    Subscriptions(usize),
    Keys(usize),
}

/// Starts a fresh server of `sys`, brings it to `holding`, and reads its RSS (MiB) once
/// it has settled. `per_item_bytes` is (RSS − idle RSS) / items where `idle_mib` is given.
pub async fn measure(
    sys: Sys,
    spec: &ServerSpec,
    holding: Holding,
    idle_mib: Option<f64>,
) -> Result<Trial, BoxError> {
    // A private Env with only this system's server running.
    let env = Env::start(spec, &[sys]).await?;
    let pid = env.pid(sys);
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let started = std::time::Instant::now();
    let items = match holding {
        Holding::Idle => 0,
        Holding::Subscriptions(n) => {
            subscribe_many(sys, &env, n, &mut keep).await?;
            n
        }
        Holding::Keys(n) => {
            let kv = Kv::connect(sys, &env, "mem").await?;
            fill(&kv, n, 100, 256).await?;
            keep.push(Box::new(kv));
            n
        }
    };
    let setup = started.elapsed();
    crate::progress(&format!(
        "memory {}: {holding:?} ready in {setup:.1?}",
        sys.name()
    ));
    // Let allocator and background work settle before reading.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = rss_mib(pid).ok_or("could not read the server's RSS")?;
    let mut t = Trial {
        throughput: if items > 0 {
            items as f64 / setup.as_secs_f64().max(1e-9)
        } else {
            0.0
        },
        samples: 1,
        ..Default::default()
    }
    .with("rss_mib", rss);
    if let (Some(idle), true) = (idle_mib, items > 0) {
        t = t.with(
            "bytes_per_item",
            (rss - idle) * 1024.0 * 1024.0 / items as f64,
        );
    }
    drop(keep);
    env.close().await;
    Ok(t)
}

async fn subscribe_many(
    sys: Sys,
    env: &Env,
    n: usize,
    keep: &mut Vec<Box<dyn std::any::Any>>,
) -> Result<(), BoxError> {
    const CONNS: usize = 4;
    match sys {
        Sys::Felix => {
            for c in 0..CONNS {
                let client = Client::connect(env.felix_config()).await?;
                let topics: Vec<String> = (c..n).step_by(CONNS).map(|i| format!("t{i}")).collect();
                // 64 subscribe requests in flight per connection.
                let subs: Vec<_> = futures::stream::iter(topics.iter())
                    .map(|t| client.subscribe(NAMESPACE, t, Start::Latest))
                    .buffer_unordered(64)
                    .collect()
                    .await;
                for s in subs {
                    keep.push(Box::new(s?));
                }
                keep.push(Box::new(client));
            }
        }
        Sys::Nats => {
            for c in 0..CONNS {
                let client = async_nats::connect(env.nats_addr().to_string()).await?;
                for i in (c..n).step_by(CONNS) {
                    keep.push(Box::new(client.subscribe(format!("t{i}")).await?));
                }
                client.flush().await?;
                keep.push(Box::new(client));
            }
        }
        Sys::Valkey => {
            let client = redis::Client::open(format!("redis://{}/", env.valkey_addr()))?;
            for c in 0..CONNS {
                let mut ps = client.get_async_pubsub().await?;
                for i in (c..n).step_by(CONNS) {
                    ps.subscribe(format!("t{i}")).await?;
                }
                keep.push(Box::new(ps));
            }
        }
        other => return Err(format!("{other:?} has no subscriptions").into()),
    }
    Ok(())
}
