//! A subscription resumes after its connection was lost while the broker kept running (same
//! process, same log, same epoch): the reconnect tests only restart the broker, the new-epoch
//! path, where the log starts over. Here the broker process is paused (SIGSTOP) past the
//! subscriber's idle timeout, so the subscriber's connection dies while the broker keeps
//! its state; then it is resumed (SIGCONT) and the subscriber must carry on from the offset
//! after the last event it delivered: no duplicate, no loss, and an exact `Gap` when the
//! stream's retention moved past that offset meanwhile.
//!
//! The schedule: the subscriber has a 600 ms idle timeout, a 300 ms connect timeout and a
//! first reconnect delay of 3 to 6 s; the publisher keeps the default 30 s idle timeout, so
//! its connection outlives the pause. The pause lasts 2.5 s: the subscriber's connection
//! dies at about 0.6 s, its first reconnect attempt fails by about 0.9 s, and its next one
//! comes no earlier than 3.9 s, well after the broker is back (2.5 s) and after the
//! publisher's records, sent during the pause and queued in the broker's socket ahead of
//! anything from the subscriber's new connection, are in the log.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use felix_client::{AckMode, Client, ClientConfig, Gap, Start, StreamSettings, Subscription, Tls};
use felix_transport::TransportConfig;

const NS: &str = "ns";
const PAUSE: Duration = Duration::from_millis(2500);

fn base_config(p: &BrokerProcess) -> ClientConfig {
    ClientConfig {
        addresses: vec![p.addr.to_string()],
        tls: Tls::CaFile(p.ca.clone()),
        tenant: "t1".into(),
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    }
}

/// The subscriber: notices a silent broker after 600 ms and reconnects slowly.
fn subscriber_config(p: &BrokerProcess) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_millis(300),
        reconnect_initial: Duration::from_secs(6),
        reconnect_max: Duration::from_secs(6),
        transport: TransportConfig {
            idle_timeout_ms: 600,
            keep_alive_interval_ms: Some(150),
            ..TransportConfig::default()
        },
        ..base_config(p)
    }
}

async fn next(sub: &mut Subscription, what: &str) -> (Option<u64>, Bytes) {
    let ev = within(20, what, sub.next())
        .await
        .unwrap_or_else(|| panic!("{what}: subscription ended"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    (ev.offset, ev.payload)
}

fn ev(offset: u64, payload: String) -> (Option<u64>, Bytes) {
    (Some(offset), Bytes::from(payload))
}

fn batch(prefix: &str, n: u64) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("{prefix}{i}")))
        .collect()
}

struct Setup {
    broker: BrokerProcess,
    publisher: Client,
    /// Kept alive: dropping the client would end the subscription.
    _subscriber: Client,
    sub: Subscription,
}

/// A broker process, a stream with `max_records`, a subscriber that has read `a0..a2`
/// (offsets 0..=2).
async fn setup(name: &str, max_records: Option<u64>) -> Setup {
    let broker = BrokerProcess::spawn(scratch(name), free_udp_port());
    let publisher = connect_retrying(base_config(&broker)).await;
    let subscriber = connect_retrying(subscriber_config(&broker)).await;
    let settings = StreamSettings {
        max_records,
        ..StreamSettings::default()
    };
    publisher.create_stream(NS, "s", settings).await.unwrap();
    let mut sub = subscriber.subscribe(NS, "s", Start::Latest).await.unwrap();
    publisher
        .publish_batch(NS, "s", &batch("a", 3), AckMode::PerBatch)
        .await
        .unwrap();
    for i in 0..3 {
        assert_eq!(next(&mut sub, "before").await, ev(i, format!("a{i}")));
    }
    Setup {
        broker,
        publisher,
        _subscriber: subscriber,
        sub,
    }
}

/// Pauses the broker for [`PAUSE`] while the publisher publishes `payloads` (the publish is
/// answered once the broker runs again); returns after the publish was acknowledged.
async fn pause_and_publish(s: &Setup, payloads: Vec<Bytes>) {
    s.broker.signal("-STOP");
    let publisher = s.publisher.clone();
    let publish = tokio::spawn(async move {
        publisher
            .publish_batch(NS, "s", &payloads, AckMode::PerBatch)
            .await
    });
    // The fault's duration, not a wait for a condition: the broker is silent this long.
    tokio::time::sleep(PAUSE).await;
    s.broker.signal("-CONT");
    within(20, "publish during the pause", publish)
        .await
        .unwrap()
        .expect("the publish sent during the pause succeeds once the broker runs again");
}

/// No retention pressure: after the lost connection, the subscriber gets exactly the
/// records it had not delivered, once each, then the live ones, and records no gap.
#[tokio::test]
async fn resume_after_a_lost_connection_delivers_each_record_once() {
    let mut s = setup("resume-once", None).await;
    pause_and_publish(&s, batch("b", 5)).await;
    // b0..b4 are offsets 3..=7: the next event is offset 3, not 2 again.
    for i in 0..5 {
        assert_eq!(
            next(&mut s.sub, "after the pause").await,
            ev(3 + i, format!("b{i}")),
            "resumed at the wrong offset (a duplicate or a loss)"
        );
    }
    s.publisher.publish(NS, "s", "c0".into()).await.unwrap();
    assert_eq!(next(&mut s.sub, "live").await, ev(8, "c0".into()));
    assert_eq!(s.sub.take_gaps(), vec![], "nothing was lost");
    let extra = s.sub.try_next().map(|e| e.map(|e| e.offset));
    assert!(extra.is_none(), "unexpected {extra:?}");
}

/// Retention moved on: with `max_records` 4, ten records published while the subscriber was
/// away leave offsets 9..=12; the subscriber resumes there and records exactly the gap
/// `[3, 9)`.
#[tokio::test]
async fn resume_after_retention_moved_on_records_the_exact_gap() {
    let mut s = setup("resume-gap", Some(4)).await;
    pause_and_publish(&s, batch("b", 10)).await;
    // b6..b9 are offsets 9..=12, the four the stream still holds.
    for i in 6..10 {
        assert_eq!(
            next(&mut s.sub, "after the pause").await,
            ev(3 + i, format!("b{i}")),
        );
    }
    let gaps: Vec<(String, u64, u64, bool)> = s
        .sub
        .take_gaps()
        .into_iter()
        .map(|g: Gap| (g.stream, g.from, g.to, g.reset))
        .collect();
    assert_eq!(
        gaps,
        vec![("s".to_string(), 3, 9, false)],
        "the records evicted while the subscriber was away (same log: no reset)"
    );
    s.publisher.publish(NS, "s", "c0".into()).await.unwrap();
    assert_eq!(next(&mut s.sub, "live").await, ev(13, "c0".into()));
    assert_eq!(s.sub.take_gaps(), vec![]);
}
