//! Resource bounds (issue 13): caps on client-set bounds, per-tenant resource counts,
//! request-size limits, and the broker-wide memory budget proved on a real broker process
//! (RSS from /proc/PID/status). Each bound fails only the request or tenant past it.

mod common;
mod v1;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use felix_client::{AckMode, Client, ClientConfig, ErrorCode, GroupSettings, StreamSettings, Tls};
use serde_json::json;

const NS: &str = "ns";

fn client_for(b: &TestBroker, tenant: &str) -> ClientConfig {
    ClientConfig {
        tenant: tenant.into(),
        ..b.client_config()
    }
}

fn assert_refused(e: &felix_client::Error, code: ErrorCode, names: &str) {
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().contains(names), "{e} should name {names}");
}

#[tokio::test]
async fn client_set_bounds_above_the_broker_caps_are_refused_naming_the_cap() {
    let b = TestBroker::start("caps").await;
    let c = b.client().await;
    let limits = felix_broker::config::Limits::default();
    let huge = |f: fn(&mut StreamSettings)| {
        let mut s = StreamSettings::default();
        f(&mut s);
        s
    };
    let cases: [(StreamSettings, &str); 3] = [
        (huge(|s| s.max_bytes = Some(u64::MAX)), "max_stream_bytes"),
        (
            huge(|s| s.max_records = Some(u64::MAX)),
            "max_stream_records",
        ),
        (
            huge(|s| s.subscriber_buffer = Some(u32::MAX)),
            "max_subscriber_buffer",
        ),
    ];
    for (i, (settings, cap)) in cases.into_iter().enumerate() {
        let e = c
            .create_stream(NS, &format!("s{i}"), settings)
            .await
            .expect_err("a bound above the broker's cap is refused");
        assert_refused(&e, ErrorCode::InvalidArgument, cap);
    }
    let e = c
        .create_cache(NS, "c", Some(u64::MAX), None)
        .await
        .expect_err("a cache budget above the cap is refused");
    assert_refused(&e, ErrorCode::InvalidArgument, "max_stream_bytes");
    // Exactly at the caps is accepted, and the connection served the refusals alone.
    let at_caps = StreamSettings {
        max_bytes: Some(limits.max_stream_bytes as u64),
        max_records: Some(limits.max_stream_records as u64),
        subscriber_buffer: Some(limits.max_subscriber_buffer as u32),
        ..StreamSettings::default()
    };
    c.create_stream(NS, "at-caps", at_caps).await.unwrap();
    c.create_cache(NS, "c", Some(limits.max_stream_bytes as u64), None)
        .await
        .unwrap();
    c.publish(NS, "at-caps", Bytes::from_static(b"x"))
        .await
        .unwrap();
}

#[tokio::test]
async fn per_tenant_resource_limit_refuses_only_that_tenant() {
    let mut cfg = test_config("per-tenant");
    cfg.limits.max_resources_per_tenant = 4;
    let b = TestBroker::with_config(cfg).await;
    let greedy = Client::connect(client_for(&b, "greedy")).await.unwrap();
    let polite = Client::connect(client_for(&b, "polite")).await.unwrap();
    for i in 0..3 {
        greedy
            .create_stream(NS, &format!("s{i}"), StreamSettings::default())
            .await
            .unwrap();
    }
    greedy.create_cache(NS, "c0", None, None).await.unwrap();
    let e = greedy
        .create_stream(NS, "s3", StreamSettings::default())
        .await
        .expect_err("the tenant's fifth resource is refused");
    assert_refused(&e, ErrorCode::Overloaded, "max_resources_per_tenant");
    let e = greedy
        .create_cache(NS, "c1", None, None)
        .await
        .expect_err("caches count too");
    assert_refused(&e, ErrorCode::Overloaded, "max_resources_per_tenant");
    let e = greedy
        .publish_batch(NS, "auto", &[Bytes::from_static(b"x")], AckMode::PerBatch)
        .await
        .expect_err("creation on first use counts too");
    assert_eq!(e.code(), ErrorCode::Overloaded, "{e:?}");
    // The tenant's existing resources keep working; another tenant is unaffected.
    greedy
        .publish(NS, "s0", Bytes::from_static(b"still works"))
        .await
        .unwrap();
    for i in 0..4 {
        polite
            .create_stream(NS, &format!("s{i}"), StreamSettings::default())
            .await
            .unwrap();
    }
    let text = scrape_metrics(b.broker.metrics_addr().unwrap()).await;
    assert_eq!(
        metric(&text, "felix_tenant_resource_refusals_total"),
        Some(3.0)
    );
}

#[tokio::test]
async fn oversized_offset_and_key_lists_fail_alone_naming_their_limit() {
    let mut cfg = test_config("request-size");
    cfg.limits.max_offsets_per_request = 100;
    cfg.limits.max_keys_per_request = 10;
    let b = TestBroker::with_config(cfg).await;
    let c = b.client().await;
    let batch: Vec<Bytes> = (0..5).map(|i| Bytes::from(format!("m{i}"))).collect();
    c.publish_batch(NS, "jobs", &batch, AckMode::PerBatch)
        .await
        .unwrap();
    let settings = GroupSettings {
        from_latest: false,
        ack_timeout: None,
        max_deliveries: None,
    };
    c.create_group(NS, "jobs", "g", settings).await.unwrap();
    let consumer = c.consumer(NS, "jobs", "g");
    let got = consumer.pull(5, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.len(), 5);
    let too_many: Vec<u64> = (0..101).collect();
    let e = consumer.ack(&too_many).await.expect_err("101 offsets");
    assert_refused(&e, ErrorCode::InvalidArgument, "max_offsets_per_request");
    let e = consumer
        .nack(&too_many, Duration::ZERO)
        .await
        .expect_err("101 offsets");
    assert_refused(&e, ErrorCode::InvalidArgument, "max_offsets_per_request");
    let e = consumer
        .extend(&too_many, Duration::from_secs(1))
        .await
        .expect_err("101 offsets");
    assert_refused(&e, ErrorCode::InvalidArgument, "max_offsets_per_request");
    let e = consumer
        .discard(Some(&too_many))
        .await
        .expect_err("101 offsets");
    assert_refused(&e, ErrorCode::InvalidArgument, "max_offsets_per_request");
    // The refused acks changed nothing; a list at the limit goes through.
    let at_limit: Vec<u64> = (0..100).collect();
    assert_eq!(consumer.ack(&at_limit).await.unwrap(), 5);

    c.cache_put(NS, "c", "k0", Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    let keys: Vec<String> = (0..11).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let e = c.cache_get_many(NS, "c", &refs).await.expect_err("11 keys");
    assert_refused(&e, ErrorCode::InvalidArgument, "max_keys_per_request");
    let got = c.cache_get_many(NS, "c", &refs[..10]).await.unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(got[0].as_ref().map(|v| &v.value[..]), Some(&b"v"[..]));
    let text = scrape_metrics(b.broker.metrics_addr().unwrap()).await;
    assert_eq!(metric(&text, "felix_request_too_large_total"), Some(5.0));
}

// ---- The memory budget on a real broker process. ----

/// A broker process started from a TOML file, with its metrics endpoint.
struct Proc {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    ca: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_tcp_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn spawn_with_toml(dir: &Path, extra: &str) -> Proc {
    let addr = free_udp_port();
    let metrics = free_tcp_port();
    let ca = dir.join("ca.pem");
    let path = dir.join("felix.toml");
    let toml = format!(
        "listen = \"{addr}\"\nmetrics_listen = \"{metrics}\"\ndev_ca_path = {:?}\n{extra}",
        ca.display().to_string()
    );
    std::fs::write(&path, toml).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_felix-broker"))
        .arg("--config")
        .arg(&path)
        .env("FELIX_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn felix-broker");
    wait_for_ca(&ca);
    Proc {
        child,
        addr,
        metrics,
        ca,
    }
}

/// (VmRSS, VmHWM) of `pid` in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_keeps_rss_near_the_limit_and_other_tenants_keep_reading() {
    const BUDGET: u64 = 48 * MIB;
    let dir = scratch("memory-budget");
    // Per-stream retention of 512 MiB: only the broker-wide budget can stop the hoarder.
    let p = spawn_with_toml(
        &dir,
        &format!(
            "[limits]\nmax_memory_bytes = {BUDGET}\n\
             [stream_defaults]\nmax_bytes = {}\nmax_records = 1000000\n",
            512 * MIB
        ),
    );
    let pid = p.child.id();
    let cfg = |tenant: &str| ClientConfig {
        addresses: vec![p.addr.to_string()],
        tls: Tls::CaFile(p.ca.clone()),
        tenant: tenant.into(),
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let calm = connect_retrying(cfg("calm")).await;
    let greedy = connect_retrying(cfg("greedy")).await;
    let (_, hwm_idle) = rss(pid);

    // The calm tenant stores a little before the attack.
    calm.cache_put(NS, "c", "k", Bytes::from(vec![7u8; 1024]), None)
        .await
        .unwrap();
    let batch: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("job{i}"))).collect();
    calm.publish_batch(NS, "jobs", &batch, AckMode::PerBatch)
        .await
        .unwrap();

    // The greedy tenant: a stream with a 1 MiB log and a subscriber that never reads (its
    // queue of 4,096 messages would hold 256 MiB of 64 KiB payloads without a byte bound)...
    let firehose = StreamSettings {
        max_bytes: Some(MIB),
        ..StreamSettings::default()
    };
    greedy
        .create_stream(NS, "firehose", firehose)
        .await
        .unwrap();
    let raw = v1::Client::connect(p.addr, &p.ca).await;
    let _never_reads = raw
        .subscribe(
            &v1::plain_auth("greedy"),
            &json!({"type": "subscribe", "tenant_id": "greedy", "namespace": NS, "stream": "firehose"}),
        )
        .await;
    // ... and four hoarding streams, 64 MiB each: 384 MiB attempted in all.
    let (mut accepted, mut overloaded) = (0u64, 0u64);
    for i in 0..384u64 {
        let stream = match i % 3 {
            0 => "firehose".to_owned(),
            _ => format!("hoard-{}", i % 4),
        };
        let payloads: Vec<Bytes> = (0..16)
            .map(|_| Bytes::from(vec![i as u8; 64 * 1024]))
            .collect();
        match greedy
            .publish_batch(NS, &stream, &payloads, AckMode::PerBatch)
            .await
        {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::Overloaded, "{e:?}");
                assert!(e.message().contains("max_memory_bytes"), "{e}");
                overloaded += 1;
            }
        }
    }
    let (rss_after, hwm) = rss(pid);
    eprintln!(
        "memory budget {} MiB: accepted {accepted} MiB, refused {overloaded} MiB; \
         RSS idle peak {} MiB, after {} MiB, peak {} MiB",
        BUDGET / MIB,
        hwm_idle / MIB,
        rss_after / MIB,
        hwm / MIB
    );
    assert!(
        overloaded > 0,
        "384 MiB into a 48 MiB budget must be refused"
    );
    assert!(accepted > 0, "writes within the budget are accepted");
    // RSS stays near the budget: the budget plus the idle broker plus generous slack for
    // frames in flight and allocator slack (without the budget: ~400 MiB).
    let bound = BUDGET + hwm_idle + 64 * MIB;
    assert!(
        hwm < bound,
        "peak RSS {} MiB over {} MiB",
        hwm / MIB,
        bound / MIB
    );

    // Other tenants' reads keep working with the budget full.
    let v = calm.cache_get(NS, "c", "k").await.unwrap().expect("kept");
    assert_eq!(v.value.len(), 1024);
    let settings = GroupSettings {
        from_latest: false,
        ack_timeout: None,
        max_deliveries: None,
    };
    calm.create_group(NS, "jobs", "g", settings).await.unwrap();
    let got = calm
        .consumer(NS, "jobs", "g")
        .pull(10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.len(), 10);

    let text = scrape_metrics(p.metrics).await;
    let used = metric(&text, "felix_memory_used_bytes").expect("used gauge");
    assert_eq!(
        metric(&text, "felix_memory_limit_bytes"),
        Some(BUDGET as f64)
    );
    assert!(used > 0.0 && used <= BUDGET as f64, "used {used}");
    assert!(metric(&text, "felix_memory_refused_total").unwrap() >= overloaded as f64);
}

/// Not a test: measures how much heavy requests from one client stall another's pings (p99),
/// for the figures in docs/limits-resources.md. Run with
/// `cargo test -p felix-broker --test resources -- --ignored --nocapture stall_probe`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn stall_probe() {
    let dir = scratch("stall-probe");
    let p = spawn_with_toml(
        &dir,
        "[limits]\nmax_resources_per_tenant = 1000000\nmax_frame_bytes = 33554432\n\
         max_partial_frame_bytes_per_connection = 33554432\n\
         max_inflight_bytes_per_connection = 134217728\n",
    );
    let cfg = |tenant: &str| ClientConfig {
        addresses: vec![p.addr.to_string()],
        tls: Tls::CaFile(p.ca.clone()),
        tenant: tenant.into(),
        request_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    };
    let calm = connect_retrying(cfg("calm")).await;
    let heavy = connect_retrying(cfg("heavy")).await;
    let pings = |calm: Client| async move {
        let mut lat = Vec::new();
        for _ in 0..1000 {
            lat.push(calm.ping().await.unwrap());
        }
        lat.sort();
        (lat[lat.len() * 99 / 100], lat[lat.len() - 1])
    };
    let (p99, max) = pings(calm.clone()).await;
    eprintln!("idle: p99 {p99:?} max {max:?}");

    // queue_ack with 1.4 M offsets.
    heavy
        .publish(NS, "jobs", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let offsets: Vec<u64> = (0..1_400_000).collect();
    let c = heavy.consumer(NS, "jobs", "g");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = tokio::spawn(async move {
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            if let Err(e) = c.ack(&offsets).await {
                assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
            }
        }
    });
    let (p99, max) = pings(calm.clone()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.await.unwrap();
    eprintln!("queue_ack 1.4M offsets: p99 {p99:?} max {max:?}");

    // cache_get_many with 200k keys.
    let keys: Vec<String> = (0..200_000).map(|i| format!("k{i}")).collect();
    let hv = heavy.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = tokio::spawn(async move {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            if let Err(e) = hv.cache_get_many(NS, "c", &refs).await {
                assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
            }
        }
    });
    let (p99, max) = pings(calm.clone()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.await.unwrap();
    eprintln!("cache_get_many 200k keys: p99 {p99:?} max {max:?}");

    // /metrics with 50k streams.
    for i in 0..50_000 {
        heavy
            .publish_batch(
                NS,
                &format!("s{i}"),
                &[Bytes::from_static(b"x")],
                AckMode::None,
            )
            .await
            .unwrap();
    }
    heavy.ping().await.unwrap();
    let metrics = p.metrics;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = tokio::spawn(async move {
        let mut n = 0;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let text = scrape_metrics(metrics).await;
            n += 1;
            if n == 1 {
                eprintln!("metrics body {} bytes", text.len());
            }
        }
    });
    let (p99, max) = pings(calm.clone()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.await.unwrap();
    eprintln!("/metrics with 50k streams: p99 {p99:?} max {max:?}");
}
