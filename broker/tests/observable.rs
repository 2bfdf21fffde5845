//! End-to-end checks that can see what they claim. Each one was written against a planted
//! bug that the older end-to-end tests let through (docs/testing.md, "Planted bugs and the
//! tests that catch them"):
//!
//! - a lease expiry that only redelivers when a long poll's whole wait has run out (11.5 s
//!   instead of 1.8 s) still "redelivers": redelivery is bounded from both sides here;
//! - `drop_oldest` dropping the wrong event still ends with the newest one: here the
//!   survivors must be exactly the newest contiguous run;
//! - a put without TTL keeping the old entry's TTL passed everything: here the entry must be
//!   there after the old TTL has passed (and is checked present before).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use felix_client::{AckMode, Client, FullPolicy, GroupSettings, Start, StreamSettings};

const NS: &str = "ns";

/// A lease that ends must be redelivered to a waiting long poll about when it ends: not
/// before the lease (the message is still someone's), and not only when the poll's own wait
/// runs out (the poll must wake for the expiry). The lower bound is measured from before the
/// first pull was sent, the upper one from after its reply arrived, so both are sound
/// whatever the broker's view of the lease start.
#[tokio::test]
async fn expired_lease_reaches_a_waiting_long_poll_when_the_lease_ends() {
    let b = TestBroker::start("obs-lease").await;
    let c = b.client().await;
    let lease = Duration::from_millis(1000);
    let settings = GroupSettings {
        from_latest: false,
        ack_timeout: Some(lease),
        max_deliveries: None,
    };
    c.create_group(NS, "jobs", "g", settings).await.unwrap();
    c.publish(NS, "jobs", "job".into()).await.unwrap();
    let first = c.consumer(NS, "jobs", "g");
    let before_pull = Instant::now();
    let m = within(10, "first pull", first.pull(1, Duration::from_secs(5)))
        .await
        .unwrap();
    let after_pull = Instant::now();
    assert_eq!(
        m.iter().map(|m| (m.offset, m.attempt)).collect::<Vec<_>>(),
        vec![(0, 1)]
    );

    // Another consumer of the group long-polls with a wait far longer than the lease.
    let other = b.client().await.consumer(NS, "jobs", "g");
    let wait = Duration::from_secs(10);
    let again = within(20, "redelivery", other.pull(1, wait)).await.unwrap();
    let since_before = before_pull.elapsed();
    let since_after = after_pull.elapsed();
    assert_eq!(
        again
            .iter()
            .map(|m| (m.offset, m.attempt, m.payload.clone()))
            .collect::<Vec<_>>(),
        vec![(0, 2, Bytes::from_static(b"job"))],
        "the expired lease must be redelivered to the waiting poll"
    );
    assert!(
        since_before >= lease,
        "redelivered {since_before:?} after the pull, before its {lease:?} lease ended"
    );
    // Generous for a loaded machine, and far below the 10 s wait a poll that does not wake
    // for the expiry would sit out.
    assert!(
        since_after < lease + Duration::from_secs(3),
        "redelivered {since_after:?} after the pull: the long poll did not wake when the \
         {lease:?} lease ended"
    );
    assert_eq!(other.ack(&[0]).await.unwrap(), 1);
}

/// `drop_oldest` keeps the newest events. Its queue only ever loses events at the front and
/// gains them at the back, so what a subscriber that stopped reading gets afterwards ends
/// with a contiguous run of at least the queue's size, ending at the newest event; dropping
/// any other event than the oldest breaks that run.
#[tokio::test]
async fn drop_oldest_survivors_are_exactly_the_newest_contiguous_run() {
    let b = TestBroker::start("obs-dropold").await;
    let publisher = b.client().await;
    let capacity: u64 = 256;
    let settings = StreamSettings {
        subscriber_buffer: Some(capacity as u32),
        full_policy: Some(FullPolicy::DropOldest),
        ..Default::default()
    };
    publisher.create_stream(NS, "s", settings).await.unwrap();
    // A subscriber with a small client-side buffer that does not read while the stream
    // fills far past everything between it and the broker's queue.
    let mut cfg = b.client_config();
    cfg.subscription_buffer = 64;
    let reader = Client::connect(cfg).await.unwrap();
    let mut slow = reader.subscribe(NS, "s", Start::Latest).await.unwrap();
    let payload = Bytes::from(vec![0u8; 8192]);
    for _ in 0..20 {
        publisher
            .publish_batch(NS, "s", &vec![payload.clone(); 100], AckMode::PerBatch)
            .await
            .unwrap();
    }
    publisher.publish(NS, "s", "last".into()).await.unwrap();
    let newest = 20 * 100;

    let mut offsets = Vec::new();
    loop {
        let ev = within(10, "slow subscriber event", slow.next())
            .await
            .expect("subscription ended")
            .unwrap();
        let o = ev.offset.expect("offsets negotiated");
        if let Some(&p) = offsets.last() {
            assert!(o > p, "offset {o} after {p}: duplicate or reordered");
        }
        offsets.push(o);
        if ev.payload.as_ref() == b"last" {
            break;
        }
    }
    assert_eq!(
        *offsets.last().unwrap(),
        newest,
        "the newest event survives"
    );
    assert!(
        offsets.len() < newest as usize + 1,
        "nothing was dropped: the test did not fill the subscriber's queue"
    );
    // The tail: the newest `capacity` events, without a hole.
    let tail = &offsets[offsets.len() - capacity as usize..];
    let holes: Vec<(u64, u64)> = tail
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert_eq!(
        (tail[0], holes.as_slice()),
        (newest + 1 - capacity, &[][..]),
        "drop_oldest must keep the newest {capacity} events: the last {capacity} delivered \
         start at {} and jump over these (before, after) pairs",
        tail[0]
    );
    let extra = slow.try_next().map(|e| e.map(|e| e.offset));
    assert!(extra.is_none(), "an event after the newest: {extra:?}");
}

/// A put replaces the TTL with its own: without a TTL (and no cache default) the entry no
/// longer expires. A sentinel written after the first put, with the same TTL, tells when the
/// old TTL has certainly passed.
#[tokio::test]
async fn put_without_ttl_over_an_entry_with_ttl_makes_it_permanent() {
    let b = TestBroker::start("obs-ttl").await;
    let c = b.client().await;
    let ttl = Some(Duration::from_millis(1000));
    c.cache_put(NS, "c", "k", "with-ttl".into(), ttl)
        .await
        .unwrap();
    c.cache_put(NS, "c", "sentinel", "s".into(), ttl)
        .await
        .unwrap();
    let v2 = c
        .cache_put(NS, "c", "k", "no-ttl".into(), None)
        .await
        .unwrap();
    let got = c.cache_get(NS, "c", "k").await.unwrap().expect("present");
    assert_eq!(
        (got.value, got.version),
        (Bytes::from_static(b"no-ttl"), v2)
    );
    eventually(10, "the sentinel to expire", || async {
        c.cache_get(NS, "c", "sentinel").await.unwrap().is_none()
    })
    .await;
    let got = c.cache_get(NS, "c", "k").await.unwrap();
    assert_eq!(
        got.map(|v| (v.value, v.version)),
        Some((Bytes::from_static(b"no-ttl"), v2)),
        "the entry put without TTL expired with the old entry's TTL"
    );

    // In a cache with a default TTL, a put without TTL gets that default, not the long TTL
    // of the entry it replaces.
    c.create_cache(NS, "d", None, Some(Duration::from_millis(1000)))
        .await
        .unwrap();
    c.cache_put(NS, "d", "k", "long".into(), Some(Duration::from_secs(600)))
        .await
        .unwrap();
    c.cache_put(NS, "d", "k", "defaulted".into(), None)
        .await
        .unwrap();
    let got = c.cache_get(NS, "d", "k").await.unwrap().expect("present");
    assert_eq!(got.value, Bytes::from_static(b"defaulted"));
    eventually(10, "the defaulted entry to expire", || async {
        c.cache_get(NS, "d", "k").await.unwrap().is_none()
    })
    .await;
}
