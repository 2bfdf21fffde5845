//! A broker restart recreates an in-memory stream's log in a new epoch: a resumed
//! subscription reports that as a reset gap, in order (after the old log's events it had
//! already received, before the new log's first), and then delivers the new log from its
//! start, even when the new log grew past the old offset before the subscriber came back.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use felix_client::{ClientConfig, Start, Subscription, Tls};

const NS: &str = "ns";

fn client_config(p: &BrokerProcess) -> ClientConfig {
    let mut cfg = ClientConfig {
        addresses: vec![p.addr.to_string()],
        tls: Tls::CaFile(p.ca.clone()),
        tenant: "t1".into(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        reconnect_initial: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(250),
        ..ClientConfig::default()
    };
    // An idle subscriber learns of the restart at its next keep-alive.
    cfg.transport.keep_alive_interval_ms = Some(200);
    cfg
}

async fn next_payload(sub: &mut Subscription, what: &str) -> (Option<u64>, Bytes) {
    let ev = within(20, what, sub.next())
        .await
        .unwrap_or_else(|| panic!("{what}: subscription ended"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    (ev.offset, ev.payload)
}

fn buffered(sub: &Subscription) -> usize {
    // `Subscription { buffered: N }`: events and gaps waiting in the subscription.
    let text = format!("{sub:?}");
    let n = text
        .split("buffered: ")
        .nth(1)
        .expect("Debug shows buffered");
    n.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_reported_as_a_reset_gap_before_the_new_epoch() {
    let dir = scratch("epoch");
    let mut p = BrokerProcess::spawn(dir.clone(), free_udp_port());
    let addr = p.addr;
    let cfg = client_config(&p);
    let publisher = connect_retrying(cfg.clone()).await;
    let sub_client = connect_retrying(cfg).await;
    let mut sub = sub_client.subscribe(NS, "s", Start::Latest).await.unwrap();
    for i in 0..2 {
        publisher
            .publish(NS, "s", Bytes::from(format!("old-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        next_payload(&mut sub, "old-0").await,
        (Some(0), "old-0".into())
    );
    // `old-1` stays buffered, unread, across the restart.
    eventually(10, "old-1 buffered", || async { buffered(&sub) == 1 }).await;

    p.kill();
    let _p = BrokerProcess::spawn_keeping_identity(dir, addr).await;
    // The new log grows past the old offset (2) whether or not the subscriber is back yet.
    retry_until(10, "first publish after the restart", || {
        publisher.publish(NS, "s", "new-0".into())
    })
    .await;
    for i in 1..5 {
        publisher
            .publish(NS, "s", Bytes::from(format!("new-{i}")))
            .await
            .unwrap();
    }
    // Resubscribed: `old-1`, the gap and the five new events are all in the buffer.
    eventually(20, "the subscription resumed", || async {
        buffered(&sub) == 7
    })
    .await;

    // The old log's event comes first, and the gap is not visible before it is read.
    assert_eq!(
        next_payload(&mut sub, "old-1").await,
        (Some(1), "old-1".into())
    );
    assert!(
        sub.take_gaps().is_empty(),
        "the reset gap showed before the old log's last event was read"
    );
    // Then the new log's first event, with the reset gap before it.
    assert_eq!(
        next_payload(&mut sub, "new-0").await,
        (Some(0), "new-0".into())
    );
    let gaps = sub.take_gaps();
    assert_eq!(gaps.len(), 1, "one reset gap: {gaps:?}");
    let g = &gaps[0];
    assert!(
        g.reset && g.stream == "s" && (g.from, g.to) == (2, 0),
        "{g:?}"
    );
    assert!(
        g.old_epoch.is_some() && g.new_epoch.is_some() && g.old_epoch != g.new_epoch,
        "{g:?}"
    );
    for i in 1..5 {
        assert_eq!(
            next_payload(&mut sub, "new").await,
            (Some(i), Bytes::from(format!("new-{i}")))
        );
    }
    assert!(sub.take_gaps().is_empty());
    assert!(sub.try_next().is_none());
}
