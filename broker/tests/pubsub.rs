//! Pub/sub over real QUIC: ordering, fanout, wildcards, offsets and full-queue policies.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use felix_client::{AckMode, Error, ErrorCode, FullPolicy, Start, StreamSettings};
use futures::StreamExt;

#[tokio::test]
async fn events_arrive_in_publish_order() {
    let b = TestBroker::start("order").await;
    let c = b.client().await;
    let mut sub = c.subscribe("ns", "orders", Start::Latest).await.unwrap();
    for i in 0..500u32 {
        c.publish("ns", "orders", Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    for i in 0..500u32 {
        let ev = within(5, "event", sub.next()).await.unwrap().unwrap();
        assert_eq!(ev.payload.as_ref(), i.to_be_bytes());
        assert_eq!(ev.offset, Some(i as u64));
        assert_eq!(&*ev.stream, "orders");
    }
}

#[tokio::test]
async fn unacked_publishes_keep_their_order() {
    // Several connections and request streams: unacked publishes to one stream must still
    // take one path (they used to be spread round robin and could overtake each other).
    let b = TestBroker::start("order-noack").await;
    let mut cfg = b.client_config();
    cfg.connections = 3;
    cfg.streams_per_connection = 4;
    let c = felix_client::Client::connect(cfg).await.unwrap();
    let sub_client = b.client().await;
    let mut sub = sub_client
        .subscribe("ns", "noack", Start::Latest)
        .await
        .unwrap();
    let mut expected = Vec::new();
    for batch in 0..300u32 {
        let payloads: Vec<Bytes> = (0..8u32)
            .map(|j| Bytes::from((batch * 8 + j).to_be_bytes().to_vec()))
            .collect();
        c.publish_batch("ns", "noack", &payloads, AckMode::None)
            .await
            .unwrap();
        expected.extend(payloads);
    }
    for want in expected {
        let ev = within(5, "event", sub.next()).await.unwrap().unwrap();
        assert_eq!(ev.payload, want);
    }
}

#[tokio::test]
async fn fanout_reaches_every_subscriber() {
    let b = TestBroker::start("fanout").await;
    let c = b.client().await;
    let mut subs = Vec::new();
    for _ in 0..100 {
        subs.push(c.subscribe("ns", "fan", Start::Latest).await.unwrap());
    }
    let batch: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![i])).collect();
    c.publish_batch("ns", "fan", &batch, AckMode::PerBatch)
        .await
        .unwrap();
    for sub in subs.iter_mut() {
        for i in 0..10u8 {
            let ev = within(10, "fanout event", sub.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(ev.payload.as_ref(), &[i]);
        }
    }
}

#[tokio::test]
async fn wildcard_subscription_receives_matching_streams_only() {
    let b = TestBroker::start("wild").await;
    let c = b.client().await;
    let mut star = c.subscribe("ns", "orders.*", Start::Latest).await.unwrap();
    let mut tail = c.subscribe("ns", "orders.>", Start::Latest).await.unwrap();
    c.publish("ns", "orders.eu", "a".into()).await.unwrap();
    c.publish("ns", "orders.eu.paris", "b".into())
        .await
        .unwrap();
    c.publish("ns", "payments.eu", "x".into()).await.unwrap();
    c.publish("ns", "orders.us", "c".into()).await.unwrap();
    let e1 = within(5, "star 1", star.next()).await.unwrap().unwrap();
    let e2 = within(5, "star 2", star.next()).await.unwrap().unwrap();
    assert_eq!((&*e1.stream, e1.payload.as_ref()), ("orders.eu", &b"a"[..]));
    assert_eq!((&*e2.stream, e2.payload.as_ref()), ("orders.us", &b"c"[..]));
    let got: Vec<_> = tail
        .by_ref()
        .take(3)
        .map(|e| e.unwrap().payload)
        .collect()
        .await;
    assert_eq!(
        got,
        vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]
    );
    assert!(
        star.try_next().is_none(),
        "orders.* must not match orders.eu.paris"
    );
}

#[tokio::test]
async fn subscribe_from_earliest_and_offset_replays_the_log() {
    let b = TestBroker::start("replay").await;
    let c = b.client().await;
    for i in 0..5u8 {
        c.publish("ns", "hist", Bytes::from(vec![i])).await.unwrap();
    }
    let mut all = c.subscribe("ns", "hist", Start::Earliest).await.unwrap();
    let mut from3 = c.subscribe("ns", "hist", Start::Offset(3)).await.unwrap();
    for i in 0..5u8 {
        assert_eq!(
            within(5, "replay", all.next())
                .await
                .unwrap()
                .unwrap()
                .payload
                .as_ref(),
            &[i]
        );
    }
    let ev = within(5, "offset 3", from3.next()).await.unwrap().unwrap();
    assert_eq!(ev.offset, Some(3));
}

#[tokio::test]
async fn invalid_stream_name_is_invalid_argument() {
    let b = TestBroker::start("names").await;
    let c = b.client().await;
    let err = c.publish("ns", "bad name!", "x".into()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    let err = c.subscribe("ns", "..", Start::Latest).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    // The connection keeps working after the rejected requests.
    c.publish("ns", "good", "x".into()).await.unwrap();
}

async fn slow_and_fast(
    policy: FullPolicy,
    name: &str,
) -> (
    felix_client::Subscription,
    felix_client::Subscription,
    felix_client::Client,
    TestBroker,
) {
    let b = TestBroker::start(name).await;
    let c = b.client().await;
    let settings = StreamSettings {
        subscriber_buffer: Some(1024),
        full_policy: Some(policy),
        ..Default::default()
    };
    c.create_stream("ns", "s", settings).await.unwrap();
    let slow = c.subscribe("ns", "s", Start::Latest).await.unwrap();
    let fast = c.subscribe("ns", "s", Start::Latest).await.unwrap();
    (slow, fast, c, b)
}

#[tokio::test]
async fn slow_subscriber_does_not_delay_others() {
    // The slow subscriber never reads; the fast one must still get everything, in order.
    for policy in [
        FullPolicy::DropOldest,
        FullPolicy::DropNewest,
        FullPolicy::Disconnect,
    ] {
        let (_slow, mut fast, c, _b) = slow_and_fast(policy, "isolation").await;
        let payload = Bytes::from(vec![7u8; 1024]);
        let n = 20_000u64;
        let reader = tokio::spawn(async move {
            for i in 0..n {
                let ev = within(20, "fast subscriber event", fast.next())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(ev.offset, Some(i));
            }
        });
        for chunk in 0..(n / 100) {
            let batch = vec![payload.clone(); 100];
            c.publish_batch("ns", "s", &batch, AckMode::PerBatch)
                .await
                .unwrap_or_else(|e| panic!("{policy:?} chunk {chunk}: {e}"));
        }
        within(30, "fast subscriber to finish", reader)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn disconnect_policy_ends_only_the_slow_subscriber() {
    let (mut slow, mut fast, c, _b) = slow_and_fast(FullPolicy::Disconnect, "disconnect").await;
    let payload = Bytes::from(vec![1u8; 4096]);
    let reader = tokio::spawn(async move {
        for _ in 0..4_000 {
            within(20, "fast event", fast.next())
                .await
                .unwrap()
                .unwrap();
        }
    });
    for _ in 0..40 {
        c.publish_batch("ns", "s", &vec![payload.clone(); 100], AckMode::PerBatch)
            .await
            .unwrap();
    }
    within(30, "fast reader", reader).await.unwrap();
    // The slow one sees some events, then the slow-consumer error.
    let mut saw_error = None;
    while let Some(item) = within(20, "slow subscriber end", slow.next()).await {
        if let Err(e) = item {
            saw_error = Some(e);
            break;
        }
    }
    let err = saw_error.expect("slow subscriber must be told why it ended");
    assert!(matches!(err, Error::SlowConsumer(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::SlowConsumer);
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest_events() {
    let (mut slow, _fast, c, _b) = slow_and_fast(FullPolicy::DropOldest, "dropold").await;
    // Fill far past the buffer while the slow subscriber does not read.
    for _ in 0..50 {
        c.publish_batch(
            "ns",
            "s",
            &vec![Bytes::from(vec![0u8; 8192]); 100],
            AckMode::PerBatch,
        )
        .await
        .unwrap();
    }
    c.publish("ns", "s", "last".into()).await.unwrap();
    // Reading now: whatever survived ends with the newest event; offsets jump where events were dropped.
    let mut last = None;
    let mut prev = None;
    let mut jumped = false;
    while last
        .as_ref()
        .map(|e: &felix_client::Event| e.payload.as_ref() != b"last")
        .unwrap_or(true)
    {
        let ev = within(10, "slow event", slow.next())
            .await
            .unwrap()
            .unwrap();
        if let (Some(p), Some(o)) = (prev, ev.offset) {
            jumped |= o > p + 1;
        }
        prev = ev.offset;
        last = Some(ev);
    }
    assert_eq!(last.unwrap().offset, Some(5000));
    assert!(
        jumped,
        "drop_oldest must have dropped some events for the slow subscriber"
    );
}

#[tokio::test]
async fn block_policy_backpressures_the_publisher() {
    let (mut slow, _fast, c, _b) = slow_and_fast(FullPolicy::Block, "block").await;
    drop(_fast);
    // With block, nothing is dropped: the publisher waits for the reader instead.
    let publisher = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..200u32 {
                c.publish_batch(
                    "ns",
                    "s",
                    &[
                        Bytes::from(vec![0u8; 16 * 1024]),
                        Bytes::from(i.to_be_bytes().to_vec()),
                    ],
                    AckMode::PerBatch,
                )
                .await
                .unwrap();
            }
        })
    };
    let mut expected = 0u64;
    while expected < 400 {
        let ev = within(20, "blocked event", slow.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev.offset, Some(expected), "block must not drop");
        expected += 1;
    }
    within(20, "publisher", publisher).await.unwrap();
}

#[tokio::test]
async fn oversized_publish_is_frame_too_large() {
    let mut cfg = test_config("frame");
    cfg.limits.max_frame_bytes = 64 * 1024;
    let b = TestBroker::with_config(cfg).await;
    let c = b.client().await;
    let err = c
        .publish("ns", "s", Bytes::from(vec![0u8; 128 * 1024]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::FrameTooLarge, "{err}");
    c.publish("ns", "s", Bytes::from(vec![0u8; 1024]))
        .await
        .unwrap();
}

#[tokio::test]
async fn ping_measures_a_round_trip() {
    let b = TestBroker::start("ping").await;
    let c = b.client().await;
    let rtt = c.ping().await.unwrap();
    assert!(rtt < Duration::from_secs(5));
}
