//! Durable streams end to end: a clean restart of a real broker process brings a durable
//! stream back (same epoch, same offsets, every record) while an ephemeral stream on the same
//! broker is gone as before; a durable log that cannot write answers the publish with code
//! `storage` and the request fails alone; a broker without a data directory refuses durable
//! streams with `invalid_argument`.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::durable::{data_dir, Node, Raw, NS, TENANT};
use common::*;
use felix_client::ErrorCode;
use felix_wire::Message;

const CONFIG: &str = r#"
[stream_defaults]
durability = "durable"
fsync = "always"
"#;

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn records(node: &Node, stream: &str) -> Option<f64> {
    let text = node.metrics().await;
    metric(
        &text,
        &format!("felix_stream_records{{stream=\"{TENANT}/{NS}/{stream}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_durable_streams_and_drops_ephemeral_ones() {
    let scratch = scratch("restart");
    let data = data_dir("restart");
    let config = scratch.join("broker.toml");
    std::fs::write(&config, CONFIG).unwrap();

    let mut node = Node::spawn(&scratch, &data, &config);
    node.wait_ready(30).await;
    let mut raw = Raw::connect(&node).await.unwrap();
    assert!(
        matches!(
            raw.create_stream("temp.s", "ephemeral").await,
            Message::Ok { .. }
        ),
        "an explicit ephemeral stream on a durable-by-default broker"
    );
    // Sequential publishes (one in flight) on each class: the ack's cost per class.
    let (mut durable_rtt, mut ephemeral_rtt) = (Vec::new(), Vec::new());
    for i in 0..200u64 {
        let t0 = Instant::now();
        let off = raw
            .publish_one("keep.s", Bytes::from(format!("k{i}")))
            .await
            .unwrap();
        durable_rtt.push(t0.elapsed());
        assert_eq!(off, i, "offsets of the durable stream");
        let t0 = Instant::now();
        raw.publish_one("temp.s", Bytes::from(format!("t{i}")))
            .await
            .unwrap();
        ephemeral_rtt.push(t0.elapsed());
    }
    let (before_epoch, _) = Raw::connect(&node)
        .await
        .unwrap()
        .read_from_earliest("keep.s", 200, 20)
        .await;
    drop(raw);
    assert!(node.stop(30).success(), "clean exit on SIGTERM");

    let mut node = Node::spawn(&scratch, &data, &config);
    let ready = node.wait_ready(30).await;
    assert_eq!(
        records(&node, "temp.s").await,
        None,
        "the ephemeral stream did not survive the restart"
    );
    assert_eq!(records(&node, "keep.s").await, Some(200.0));
    let (epoch, got) = Raw::connect(&node)
        .await
        .unwrap()
        .read_from_earliest("keep.s", 200, 20)
        .await;
    assert_eq!(epoch, before_epoch, "a durable stream keeps its epoch");
    let want: Vec<(u64, Bytes)> = (0..200)
        .map(|i| (i, Bytes::from(format!("k{i}"))))
        .collect();
    assert_eq!(got, want, "every record, at its offset, once");
    // Appends go on after the last offset.
    let mut raw = Raw::connect(&node).await.unwrap();
    assert_eq!(
        raw.publish_one("keep.s", Bytes::from_static(b"after"))
            .await
            .unwrap(),
        200
    );
    println!(
        "durable restart: sequential publish p50 always {:?} vs ephemeral {:?}; \
         restart to /ready {ready:?}",
        p50(durable_rtt),
        p50(ephemeral_rtt)
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_log_that_cannot_write_answers_storage_and_the_request_fails_alone() {
    let data = data_dir("closed");
    let mut cfg = test_config("closed");
    cfg.storage.data_dir = Some(data.clone());
    let b = TestBroker::with_config(cfg).await;
    let c = b.client().await;
    let mut raw = common::durable::Raw::connect_at(b.addr(), &b.ca)
        .await
        .unwrap();
    assert!(matches!(
        raw.create_stream("d.s", "durable").await,
        Message::Ok { .. }
    ));
    c.publish(NS, "d.s", Bytes::from_static(b"one"))
        .await
        .unwrap();
    // Closing the logs under the broker: every later durable append is refused.
    b.broker.shared().registry.close_durable();
    let err = c
        .publish(NS, "d.s", Bytes::from_static(b"two"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Storage, "{err}");
    assert!(err.to_string().contains("closed"), "{err}");
    // On the wire, `retryable` is the cause's: a closed log needs an operator.
    raw.write(&Raw::publish("d.s", Bytes::from_static(b"three"), 9))
        .await
        .unwrap();
    match raw.read().await.unwrap() {
        Message::PublishError {
            request_id: 9,
            code,
            retryable,
            ..
        } => {
            assert_eq!(code.as_deref(), Some("storage"));
            assert_eq!(retryable, Some(false));
        }
        other => panic!("expected publish_error, got {other:?}"),
    }
    // The connection and other streams are unaffected.
    c.publish(NS, "e.s", Bytes::from_static(b"fine"))
        .await
        .unwrap();
    let m = scrape_metrics(b.broker.metrics_addr().unwrap()).await;
    assert_eq!(metric(&m, "felix_storage_errors_total"), Some(2.0));
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_broker_without_a_data_dir_refuses_durable_streams() {
    let b = TestBroker::start("nodata").await;
    let mut raw = common::durable::Raw::connect_at(b.addr(), &b.ca)
        .await
        .unwrap();
    match raw.create_stream("d.s", "durable").await {
        Message::Error { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("invalid_argument"));
            assert!(message.contains("storage.data_dir"), "{message}");
        }
        other => panic!("expected invalid_argument, got {other:?}"),
    }
    assert!(matches!(
        raw.create_stream("e.s", "ephemeral").await,
        Message::Ok { .. }
    ));
}

#[tokio::test]
async fn live_subscribers_of_a_durable_stream_get_every_record_once_in_order() {
    let data = data_dir("live");
    let mut cfg = test_config("live");
    cfg.storage.data_dir = Some(data.clone());
    cfg.stream_defaults.durability = felix_broker::config::DurabilityClass::Durable;
    let b = TestBroker::with_config(cfg).await;
    let c = b.client().await;
    let mut sub = c
        .subscribe(NS, "live.s", felix_client::Start::Latest)
        .await
        .unwrap();
    // Concurrent publishers share fsyncs; each publish's records reach subscribers once its
    // ticket resolved, whichever publisher's ticket resolves first.
    let publishers: Vec<_> = (0..4u64)
        .map(|p| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..50u64 {
                    c.publish(NS, "live.s", Bytes::from(format!("{p}:{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 200 {
        let e = within(
            10,
            "a durable record reaches the live subscriber",
            sub.next(),
        )
        .await
        .expect("subscription open")
        .unwrap();
        got.push((e.offset.unwrap(), e.payload));
    }
    let offsets: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        offsets,
        (0..200).collect::<Vec<_>>(),
        "each offset once, in order"
    );
    let mut per: std::collections::HashMap<String, u64> = Default::default();
    for (_, payload) in &got {
        let s = std::str::from_utf8(payload).unwrap();
        let (p, i) = s.split_once(':').unwrap();
        let i: u64 = i.parse().unwrap();
        let next = per.entry(p.to_owned()).or_insert(0);
        assert_eq!(i, *next, "publisher {p}'s records in its order");
        *next += 1;
    }
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_durable_streams_memory_is_charged_to_the_budget_and_bounded_by_its_tail() {
    let data = data_dir("tail");
    let mut cfg = test_config("tail");
    cfg.storage.data_dir = Some(data.clone());
    cfg.storage.tail_cache_bytes = 64 * 1024;
    let b = TestBroker::with_config(cfg).await;
    let mut raw = Raw::connect_at(b.addr(), &b.ca).await.unwrap();
    assert!(matches!(
        raw.create_stream("tail.s", "durable").await,
        Message::Ok { .. }
    ));
    let memory = &b.broker.shared().memory;
    let before = memory.used();
    for i in 0..100u8 {
        raw.publish_one("tail.s", Bytes::from(vec![i; 10 * 1024]))
            .await
            .unwrap();
    }
    let held = memory.used() - before;
    // 1 MB went through; the log keeps (and is charged for) about its 64 KiB tail, plus one
    // record and its frame buffer.
    assert!(
        (50 * 1024..=128 * 1024).contains(&held),
        "charged {held} bytes for a 64 KiB tail"
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// `felix-broker check` on the data directory a real broker wrote: clean after a clean stop,
/// refused (exit 3) while a broker holds the directory, damage found (exit 1) after one flipped
/// bit in the segment, and `--repair` leaves a directory a second check calls clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_clean_locked_and_damaged_data_dirs() {
    let scratch = scratch("check");
    let data = data_dir("check");
    let config = scratch.join("broker.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let check = |extra: &[&str]| {
        let out = std::process::Command::new(common::process::broker_bin())
            .arg("check")
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .output()
            .expect("run felix-broker check");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };

    let mut node = Node::spawn(&scratch, &data, &config);
    node.wait_ready(30).await;
    let mut raw = Raw::connect(&node).await.unwrap();
    for i in 0..50u64 {
        let payload = Bytes::from(format!("record {i:04} {}", "x".repeat(200)));
        assert_eq!(raw.publish_one("checked.s", payload).await.unwrap(), i);
    }
    drop(raw);
    let (code, text) = check(&[]);
    assert_eq!(code, Some(3), "a running broker holds the lock: {text}");
    assert!(node.stop(30).success(), "clean exit on SIGTERM");

    let (code, text) = check(&[]);
    assert_eq!(code, Some(0), "clean after a clean stop: {text}");
    let stream = format!("{TENANT}/{NS}/checked.s");
    assert!(
        text.contains("checked.s"),
        "the report names the log: {text}"
    );
    let (code, text) = check(&["--stream", &stream, "--json"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.trim_start().starts_with('{'), "JSON lines: {text}");
    let (code, text) = check(&["--stream", "../../etc"]);
    assert_eq!(
        code,
        Some(2),
        "a --stream outside the data directory: {text}"
    );

    // One bit in the middle of the segment (inside a record of a frame that was fsynced and
    // closed cleanly): corruption, never a torn tail.
    let dir = data.join("streams").join(TENANT).join(NS).join("checked.s");
    let seg = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let (code, text) = check(&[]);
    assert_eq!(code, Some(1), "damage found: {text}");
    let (code, text) = check(&["--repair"]);
    assert_eq!(code, Some(0), "repair fixes it: {text}");
    let (code, text) = check(&[]);
    assert_eq!(code, Some(0), "a second check is clean: {text}");
    assert!(
        data.join("lost+found").exists(),
        "what followed the damage was kept in lost+found/"
    );
}
