//! Request/reply figures: the two floors (raw quinn and raw TCP echo round trips) and cache
//! get/put against Felix's cache, Valkey GET/SET and NATS KV, all through [`measure`].

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use felix_client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use super::measure::{closed_loop, open_loop, Trial};
use super::Sys;
use crate::echo::EchoConn;
use crate::procs::BoxError;

/// Raw quinn echo round trips of `size` bytes on one long-lived stream.
pub async fn quic_echo(
    addr: SocketAddr,
    ca: PathBuf,
    size: usize,
    warm: usize,
    ops: usize,
) -> Result<Trial, BoxError> {
    let conn = EchoConn::connect(addr, ca).await?;
    let runner = Mutex::new(conn.runner(size).await?);
    let t = closed_loop(1, warm, ops, |_| async {
        runner.lock().await.round(1, None).await
    })
    .await?;
    drop(runner);
    conn.close().await;
    Ok(t)
}

/// Raw TCP echo round trips of `size` bytes (Nagle off), the floor under NATS and Valkey.
pub async fn tcp_echo(
    addr: SocketAddr,
    size: usize,
    warm: usize,
    ops: usize,
) -> Result<Trial, BoxError> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let s = Mutex::new((s, vec![0x5au8; size], vec![0u8; size]));
    closed_loop(1, warm, ops, |_| async {
        let mut g = s.lock().await;
        let (s, out, back) = &mut *g;
        s.write_all(out).await?;
        s.read_exact(back).await?;
        Ok(())
    })
    .await
}

/// One key/value client of any system.
pub enum Kv {
    Felix(Client, String),
    Valkey(redis::aio::MultiplexedConnection),
    Nats(Box<async_nats::jetstream::kv::Store>),
}

pub const NAMESPACE: &str = "bench";

impl Kv {
    /// A client of `sys` on its own connection, with a fresh cache/bucket named `name`.
    pub async fn connect(sys: Sys, env: &super::Env, name: &str) -> Result<Self, BoxError> {
        Ok(match sys {
            Sys::Felix => {
                let c = Client::connect(env.felix_config()).await?;
                c.create_cache(NAMESPACE, name, Some(1 << 30), None).await?;
                Kv::Felix(c, name.to_owned())
            }
            Sys::Valkey => {
                let client = redis::Client::open(format!("redis://{}/", env.valkey_addr()))?;
                Kv::Valkey(client.get_multiplexed_async_connection().await?)
            }
            Sys::Nats => {
                let c = async_nats::connect(env.nats_addr().to_string()).await?;
                let js = async_nats::jetstream::new(c);
                let store = js
                    .create_key_value(async_nats::jetstream::kv::Config {
                        bucket: name.to_owned(),
                        history: 1,
                        storage: async_nats::jetstream::stream::StorageType::Memory,
                        ..Default::default()
                    })
                    .await?;
                Kv::Nats(Box::new(store))
            }
            other => return Err(format!("{other:?} has no cache").into()),
        })
    }

    /// Reads `key`; the length of its value (an error when missing: every key is loaded).
    pub async fn get(&self, key: &str) -> Result<usize, BoxError> {
        let v = match self {
            Kv::Felix(c, cache) => c
                .cache_get(NAMESPACE, cache, key)
                .await?
                .map(|v| v.value.len()),
            Kv::Valkey(c) => {
                let mut c = c.clone();
                let v: Option<Vec<u8>> = redis::AsyncCommands::get(&mut c, key).await?;
                v.map(|v| v.len())
            }
            Kv::Nats(s) => s.get(key).await?.map(|v| v.len()),
        };
        v.ok_or_else(|| format!("key {key} missing").into())
    }

    pub async fn put(&self, key: &str, value: Bytes) -> Result<(), BoxError> {
        match self {
            Kv::Felix(c, cache) => {
                c.cache_put(NAMESPACE, cache, key, value, None).await?;
            }
            Kv::Valkey(c) => {
                let mut c = c.clone();
                let _: () = redis::AsyncCommands::set(&mut c, key, value.as_ref()).await?;
            }
            Kv::Nats(s) => {
                s.put(key, value).await?;
            }
        }
        Ok(())
    }

    pub async fn close(self) {
        if let Kv::Felix(c, _) = self {
            c.close();
        }
    }
}

/// How one cache figure drives the store.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// Closed loop with this many workers.
    Closed(usize),
    /// Open loop at this many operations per second.
    Open(u64),
}

/// Gets (or puts) over `keys` keys holding `value` bytes each, loaded beforehand.
#[allow(clippy::too_many_arguments)]
pub async fn cache(
    sys: Sys,
    env: &super::Env,
    put: bool,
    keys: usize,
    value: usize,
    load: Load,
    warm: usize,
    ops: usize,
) -> Result<Trial, BoxError> {
    let name = format!("c{value}");
    let kv = Kv::connect(sys, env, &name).await?;
    let keys: Vec<String> = (0..keys).map(|i| format!("key-{i:05}")).collect();
    let v = Bytes::from(vec![0x42u8; value]);
    // Load every key (64 writes in flight).
    closed_loop(64, 0, keys.len(), |i| kv.put(&keys[i], v.clone())).await?;
    let op = |i: usize| {
        let k = &keys[(i * 7919) % keys.len()];
        let kv = &kv;
        let v = v.clone();
        async move {
            if put {
                kv.put(k, v).await
            } else {
                let n = kv.get(k).await?;
                if n != value {
                    return Err(format!("value of {n} bytes, expected {value}").into());
                }
                Ok(())
            }
        }
    };
    let t = match load {
        Load::Closed(c) => closed_loop(c, warm, ops, op).await?,
        Load::Open(rate) => open_loop(rate, warm, ops, 10_000, op).await?,
    };
    kv.close().await;
    Ok(t)
}

/// Loads `n` keys of `value` bytes with `concurrency` writes in flight (for the memory
/// figures); returns the achieved writes per second.
pub async fn fill(kv: &Kv, n: usize, value: usize, concurrency: usize) -> Result<f64, BoxError> {
    let v = Bytes::from(vec![0x42u8; value]);
    let t = std::time::Instant::now();
    closed_loop(concurrency, 0, n, |i| {
        kv.put_owned(format!("k{i:08}"), v.clone())
    })
    .await?;
    Ok(n as f64 / t.elapsed().as_secs_f64().max(1e-9))
}

impl Kv {
    async fn put_owned(&self, key: String, value: Bytes) -> Result<(), BoxError> {
        self.put(&key, value).await
    }
}
