use std::time::Duration;

use futures::FutureExt;
use tokio::time::timeout;

use super::*;
use crate::log::MemoryLog;

const DEADLINE: Duration = Duration::from_secs(10);

fn stream_with(name: &str, retention: Retention, block_timeout: Duration) -> Arc<Stream> {
    let config = StreamConfig {
        retention,
        block_timeout,
        ..StreamConfig::default()
    };
    Stream::new(name.into(), config, Box::new(MemoryLog::new(retention)))
}

fn stream(name: &str) -> Arc<Stream> {
    stream_with(name, Retention::default(), Duration::from_secs(1))
}

fn payloads(range: Range<u64>) -> Vec<Bytes> {
    range.map(|i| Bytes::from(i.to_string())).collect()
}

fn publish_ok(s: &Stream, range: Range<u64>) -> Range<u64> {
    let p = s.publish(&payloads(range)).unwrap();
    assert!(p.backpressure.is_none());
    p.offsets
}

fn drain(sub: &Subscriber) -> Vec<Event> {
    let mut out = Vec::new();
    while sub
        .try_next_batch(&mut out, usize::MAX, usize::MAX)
        .unwrap()
        > 0
    {}
    out
}

fn offsets(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.offset).collect()
}

#[test]
fn fanout_preserves_log_order_for_every_subscriber() {
    let s = stream("orders");
    let a = Subscriber::new(1, 1000, FullPolicy::Disconnect);
    let b = Subscriber::new(2, 1000, FullPolicy::Block);
    s.subscribe(&a, Start::Latest);
    s.subscribe(&b, Start::Latest);
    assert_eq!(publish_ok(&s, 0..3), 0..3);
    assert_eq!(publish_ok(&s, 3..4), 3..4);
    assert_eq!(publish_ok(&s, 4..10), 4..10);
    for sub in [&a, &b] {
        let got = drain(sub);
        assert_eq!(offsets(&got), (0..10).collect::<Vec<_>>());
        for e in &got {
            assert_eq!(e.payload, Bytes::from(e.offset.to_string()));
            assert_eq!(&*e.stream, "orders");
        }
    }
}

#[test]
fn event_clones_share_payload_and_stream_name() {
    let s = stream("orders");
    let a = Subscriber::new(1, 10, FullPolicy::Disconnect);
    let b = Subscriber::new(2, 10, FullPolicy::Disconnect);
    s.subscribe(&a, Start::Latest);
    s.subscribe(&b, Start::Latest);
    let _ = s.publish(&[Bytes::from(vec![7u8; 64])]);
    let (ea, eb) = (drain(&a).remove(0), drain(&b).remove(0));
    assert_eq!(ea.payload.as_ptr(), eb.payload.as_ptr());
    assert!(Arc::ptr_eq(&ea.stream, &eb.stream) && Arc::ptr_eq(&ea.stream, s.name()));
}

#[test]
fn drop_newest_discards_incoming_events_when_full() {
    let s = stream("orders");
    let sub = Subscriber::new(1, 3, FullPolicy::DropNewest);
    s.subscribe(&sub, Start::Latest);
    publish_ok(&s, 0..5);
    assert_eq!(sub.queued(), 3);
    assert_eq!(sub.dropped(), 2);
    assert_eq!(offsets(&drain(&sub)), vec![0, 1, 2]);
    publish_ok(&s, 5..6);
    assert_eq!(offsets(&drain(&sub)), vec![5]);
    assert_eq!(s.stats().dropped, 2);
}

#[test]
fn drop_oldest_really_drops_the_oldest() {
    let s = stream("orders");
    let sub = Subscriber::new(1, 3, FullPolicy::DropOldest);
    s.subscribe(&sub, Start::Latest);
    publish_ok(&s, 0..2);
    publish_ok(&s, 2..5);
    assert_eq!(sub.queued(), 3);
    assert_eq!(sub.dropped(), 2);
    let got = drain(&sub);
    assert_eq!(offsets(&got), vec![2, 3, 4]);
    assert_eq!(got[0].payload, Bytes::from("2"));
    assert_eq!(s.stats().dropped, 2);
}

#[tokio::test]
async fn disconnect_closes_only_the_slow_subscriber() {
    let s = stream("orders");
    let slow = Subscriber::new(1, 2, FullPolicy::Disconnect);
    let fast = Subscriber::new(2, 100, FullPolicy::Disconnect);
    s.subscribe(&slow, Start::Latest);
    s.subscribe(&fast, Start::Latest);
    publish_ok(&s, 0..2);
    assert_eq!(slow.is_closed(), None);
    publish_ok(&s, 2..3);
    assert_eq!(slow.is_closed(), Some(CloseReason::SlowConsumer));
    assert_eq!(
        slow.queued(),
        0,
        "a disconnected subscriber's queue is freed"
    );
    let mut out = Vec::new();
    assert_eq!(
        slow.next_batch(&mut out, 10, usize::MAX).await,
        Err(CloseReason::SlowConsumer)
    );
    assert!(out.is_empty());
    assert_eq!(fast.is_closed(), None);
    assert_eq!(offsets(&drain(&fast)), vec![0, 1, 2]);
    let stats = s.stats();
    assert_eq!((stats.subscribers, stats.disconnected), (1, 1));
}

#[tokio::test]
async fn block_queues_over_capacity_and_hands_out_backpressure() {
    let s = stream("orders");
    let sub = Subscriber::new(1, 2, FullPolicy::Block);
    s.subscribe(&sub, Start::Latest);
    let p = s.publish(&payloads(0..1)).unwrap();
    assert!(p.backpressure.is_none(), "below capacity: no backpressure");
    let p = s.publish(&payloads(1..4)).unwrap();
    let bp = p.backpressure.expect("over capacity: backpressure");
    assert_eq!(bp.subscriber_ids().collect::<Vec<_>>(), vec![1]);
    assert_eq!(sub.queued(), 4, "Block still queues the events");
    assert_eq!(sub.dropped(), 0);
    drop(bp);
    assert_eq!(offsets(&drain(&sub)), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn block_backpressure_releases_when_subscriber_drains() {
    let s = stream("orders");
    let blocked = Subscriber::new(1, 2, FullPolicy::Block);
    let other = Subscriber::new(2, 2, FullPolicy::DropOldest);
    s.subscribe(&blocked, Start::Latest);
    s.subscribe(&other, Start::Latest);
    let bp = s
        .publish(&payloads(0..2))
        .unwrap()
        .backpressure
        .expect("at capacity");
    let mut wait = Box::pin(bp.wait());
    assert!(futures::poll!(&mut wait).is_pending());
    let mut out = Vec::new();
    assert_eq!(blocked.try_next_batch(&mut out, 1, usize::MAX), Ok(1));
    timeout(DEADLINE, wait)
        .await
        .expect("backpressure released after the subscriber drained below capacity");
    assert_eq!(blocked.is_closed(), None);
    assert_eq!(other.is_closed(), None);
}

#[tokio::test]
async fn block_backpressure_releases_when_subscriber_closes() {
    let s = stream("orders");
    let sub = Subscriber::new(1, 1, FullPolicy::Block);
    s.subscribe(&sub, Start::Latest);
    let bp = s
        .publish(&payloads(0..1))
        .unwrap()
        .backpressure
        .expect("at capacity");
    let mut wait = Box::pin(bp.wait());
    assert!(futures::poll!(&mut wait).is_pending());
    sub.close(CloseReason::Unsubscribed);
    timeout(DEADLINE, wait).await.expect("released on close");
    assert_eq!(sub.is_closed(), Some(CloseReason::Unsubscribed));
}

#[tokio::test]
async fn block_timeout_disconnects_stalled_subscriber() {
    let s = stream_with("orders", Retention::default(), Duration::from_millis(30));
    let stalled = Subscriber::new(1, 1, FullPolicy::Block);
    let healthy = Subscriber::new(2, 100, FullPolicy::Block);
    s.subscribe(&stalled, Start::Latest);
    s.subscribe(&healthy, Start::Latest);
    let p = s.publish(&payloads(0..1)).unwrap();
    assert_eq!(p.offsets, 0..1, "the publish is accepted");
    let bp = p.backpressure.expect("stalled subscriber is full");
    assert_eq!(bp.subscriber_ids().collect::<Vec<_>>(), vec![1]);
    timeout(DEADLINE, bp.wait())
        .await
        .expect("block_timeout bounds the wait");
    assert_eq!(stalled.is_closed(), Some(CloseReason::SlowConsumer));
    assert_eq!(stalled.queued(), 0);
    // The next publish detaches it and no longer blocks.
    assert_eq!(publish_ok(&s, 1..2), 1..2);
    assert_eq!(s.subscriber_count(), 1);
    assert_eq!(offsets(&drain(&healthy)), vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_does_not_affect_other_subscribers() {
    const N: u64 = 20_000;
    for policy in [
        FullPolicy::DropOldest,
        FullPolicy::DropNewest,
        FullPolicy::Disconnect,
    ] {
        let s = stream_with(
            "orders",
            Retention {
                max_records: 64,
                max_bytes: 1 << 20,
            },
            Duration::from_secs(1),
        );
        let stalled = Subscriber::new(1, 8, policy);
        let fast = Subscriber::new(2, 1024, FullPolicy::Block);
        s.subscribe(&stalled, Start::Latest);
        s.subscribe(&fast, Start::Latest);
        let consumer = {
            let fast = fast.clone();
            tokio::spawn(async move {
                let (mut out, mut seen) = (Vec::new(), 0u64);
                while seen < N {
                    out.clear();
                    fast.next_batch(&mut out, 64, usize::MAX).await.unwrap();
                    for e in &out {
                        assert_eq!(e.offset, seen, "fast subscriber in order, nothing lost");
                        seen += 1;
                    }
                }
            })
        };
        let mut max_stalled = 0;
        for i in (0..N).step_by(10) {
            let p = s.publish(&payloads(i..i + 10)).unwrap();
            if let Some(bp) = p.backpressure {
                timeout(DEADLINE, bp.wait()).await.unwrap();
            }
            max_stalled = max_stalled.max(stalled.queued());
        }
        timeout(DEADLINE, consumer).await.unwrap().unwrap();
        assert!(
            max_stalled <= 8,
            "{policy}: stalled queue bounded ({max_stalled})"
        );
        assert_eq!(fast.is_closed(), None, "{policy}");
        match policy {
            FullPolicy::Disconnect => {
                assert_eq!(stalled.is_closed(), Some(CloseReason::SlowConsumer));
                assert_eq!(stalled.queued(), 0);
            }
            _ => {
                assert_eq!(stalled.queued(), 8, "{policy}: stays at capacity");
                assert_eq!(stalled.dropped(), N - 8, "{policy}");
            }
        }
    }
}

#[test]
fn replay_from_earliest_delivers_retained_history_then_live() {
    let s = stream("orders");
    publish_ok(&s, 0..5);
    let sub = Subscriber::new(1, 100, FullPolicy::Disconnect);
    let info = s.subscribe(&sub, Start::Earliest);
    assert_eq!(
        info,
        SubscribeInfo {
            start_offset: 0,
            gap: None
        }
    );
    publish_ok(&s, 5..7);
    assert_eq!(offsets(&drain(&sub)), (0..7).collect::<Vec<_>>());
}

#[test]
fn replay_from_offset_starts_at_that_offset() {
    let s = stream("orders");
    publish_ok(&s, 0..5);
    let sub = Subscriber::new(1, 100, FullPolicy::Disconnect);
    let info = s.subscribe(&sub, Start::Offset(3));
    assert_eq!(
        info,
        SubscribeInfo {
            start_offset: 3,
            gap: None
        }
    );
    publish_ok(&s, 5..6);
    assert_eq!(offsets(&drain(&sub)), vec![3, 4, 5]);
}

#[test]
fn replay_from_evicted_offset_reports_gap() {
    let retention = Retention {
        max_records: 3,
        max_bytes: 1 << 20,
    };
    let s = stream_with("orders", retention, Duration::from_secs(1));
    publish_ok(&s, 0..10);
    let sub = Subscriber::new(1, 100, FullPolicy::Disconnect);
    let info = s.subscribe(&sub, Start::Offset(2));
    assert_eq!(info.start_offset, 7);
    assert_eq!(info.gap, Some(2..7));
    assert_eq!(offsets(&drain(&sub)), vec![7, 8, 9]);
    let earliest = Subscriber::new(2, 100, FullPolicy::Disconnect);
    assert_eq!(s.subscribe(&earliest, Start::Earliest).gap, None);
}

#[test]
fn latest_and_future_offsets_start_at_the_end() {
    let s = stream("orders");
    publish_ok(&s, 0..5);
    let latest = Subscriber::new(1, 100, FullPolicy::Disconnect);
    let future = Subscriber::new(2, 100, FullPolicy::Disconnect);
    assert_eq!(s.subscribe(&latest, Start::Latest).start_offset, 5);
    assert_eq!(s.subscribe(&future, Start::Offset(99)).start_offset, 5);
    publish_ok(&s, 5..6);
    assert_eq!(offsets(&drain(&latest)), vec![5]);
    assert_eq!(offsets(&drain(&future)), vec![5]);
}

#[test]
fn replay_is_not_subject_to_full_policies() {
    let s = stream("orders");
    publish_ok(&s, 0..10);
    let disconnect = Subscriber::new(1, 2, FullPolicy::Disconnect);
    let drop_newest = Subscriber::new(2, 2, FullPolicy::DropNewest);
    let block = Subscriber::new(3, 2, FullPolicy::Block);
    for sub in [&disconnect, &drop_newest, &block] {
        s.subscribe(sub, Start::Earliest);
        assert_eq!(sub.queued(), 10, "replay exceeds capacity");
    }
    // One live record fits the capacity left for live records.
    let p = s.publish(&payloads(10..11)).unwrap();
    assert!(p.backpressure.is_none());
    for sub in [&disconnect, &drop_newest, &block] {
        assert_eq!(sub.is_closed(), None);
        assert_eq!(sub.dropped(), 0);
        assert_eq!(offsets(&drain(sub)), (0..11).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_under_concurrent_publishing_loses_and_duplicates_nothing() {
    const N: u64 = 30_000;
    let retention = Retention {
        max_records: N as usize,
        max_bytes: 1 << 30,
    };
    let s = stream_with("orders", retention, Duration::from_secs(1));
    let publisher = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                let n = 7.min(N - i);
                let _ = s.publish(&payloads(i..i + n));
                i += n;
            }
        })
    };
    let starts = [
        Start::Latest,
        Start::Earliest,
        Start::Offset(0),
        Start::Latest,
        Start::Offset(u64::MAX),
    ];
    let mut subs = Vec::new();
    let deadline = std::time::Instant::now() + DEADLINE;
    for (k, start) in starts.into_iter().enumerate() {
        // Subscribe at spread-out points while the publisher runs.
        while s.next_offset() < (k as u64 + 1) * N / 8 && !publisher.is_finished() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        let start = match start {
            Start::Offset(0) => Start::Offset(s.next_offset().saturating_sub(5)),
            other => other,
        };
        let sub = Subscriber::new(k as u64, N as usize, FullPolicy::DropNewest);
        let info = s.subscribe(&sub, start);
        subs.push((sub, info));
    }
    publisher.join().unwrap();
    for (sub, info) in subs {
        assert_eq!(info.gap, None);
        let got = offsets(&drain(&sub));
        assert_eq!(sub.dropped(), 0);
        assert_eq!(
            got,
            (info.start_offset..N).collect::<Vec<_>>(),
            "subscriber {} starting at {}",
            sub.id(),
            info.start_offset
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscriber_on_two_streams_gets_both_streams_in_order() {
    const N: u64 = 10_000;
    let a = stream("orders.eu");
    let b = stream("orders.us");
    let sub = Subscriber::new(1, 256, FullPolicy::Block);
    a.subscribe(&sub, Start::Latest);
    b.subscribe(&sub, Start::Latest);
    let publishers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|s| {
            tokio::spawn(async move {
                for i in (0..N).step_by(5) {
                    if let Some(bp) = s.publish(&payloads(i..i + 5)).unwrap().backpressure {
                        bp.wait().await;
                    }
                }
            })
        })
        .collect();
    let (mut next_eu, mut next_us) = (0u64, 0u64);
    let mut out = Vec::new();
    while next_eu < N || next_us < N {
        out.clear();
        timeout(DEADLINE, sub.next_batch(&mut out, 100, usize::MAX))
            .await
            .expect("events keep arriving")
            .expect("not closed");
        for e in &out {
            let next = match &*e.stream {
                "orders.eu" => &mut next_eu,
                "orders.us" => &mut next_us,
                other => panic!("unexpected stream {other}"),
            };
            assert_eq!(e.offset, *next, "{} in order", e.stream);
            assert_eq!(e.payload, Bytes::from(e.offset.to_string()));
            *next += 1;
        }
    }
    for p in publishers {
        timeout(DEADLINE, p).await.unwrap().unwrap();
    }
    assert_eq!(sub.is_closed(), None);
    assert_eq!(sub.queued(), 0);
}

#[tokio::test]
async fn next_batch_waits_for_a_publish() {
    let s = stream("orders");
    let sub = Subscriber::new(1, 10, FullPolicy::Disconnect);
    s.subscribe(&sub, Start::Latest);
    let waiter = {
        let sub = sub.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            sub.next_batch(&mut out, 10, usize::MAX).await.map(|_| out)
        })
    };
    tokio::task::yield_now().await;
    publish_ok(&s, 0..2);
    let got = timeout(DEADLINE, waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(offsets(&got), vec![0, 1]);
}

#[test]
fn batches_respect_max_events_and_max_bytes_but_return_at_least_one() {
    let s = stream("orders");
    let sub = Subscriber::new(1, 10, FullPolicy::Disconnect);
    s.subscribe(&sub, Start::Latest);
    let _ = s.publish(&[
        Bytes::from(vec![0u8; 10]),
        Bytes::from(vec![1u8; 10]),
        Bytes::from(vec![2u8; 10]),
        Bytes::from(vec![3u8; 10]),
    ]);
    let mut out = Vec::new();
    assert_eq!(
        sub.try_next_batch(&mut out, 100, 5),
        Ok(1),
        "oversized: one"
    );
    assert_eq!(sub.try_next_batch(&mut out, 100, 20), Ok(2), "bytes cap");
    assert_eq!(sub.try_next_batch(&mut out, 0, 100), Ok(1), "at least one");
    assert_eq!(sub.try_next_batch(&mut out, 100, 100), Ok(0));
    assert_eq!(offsets(&out), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn close_returns_the_reason_immediately_and_discards_pending() {
    let s = stream("orders");
    let sub = Subscriber::new(1, 10, FullPolicy::Disconnect);
    s.subscribe(&sub, Start::Latest);
    publish_ok(&s, 0..3);
    sub.close(CloseReason::Shutdown);
    sub.close(CloseReason::Unsubscribed);
    assert_eq!(
        sub.is_closed(),
        Some(CloseReason::Shutdown),
        "first reason wins"
    );
    assert_eq!(sub.queued(), 0);
    let mut out = Vec::new();
    assert_eq!(
        sub.next_batch(&mut out, 10, usize::MAX).await,
        Err(CloseReason::Shutdown)
    );
    assert!(out.is_empty());
    publish_ok(&s, 3..4);
    assert_eq!(s.subscriber_count(), 0, "closed subscribers are detached");
}

#[tokio::test]
async fn close_wakes_a_waiting_consumer() {
    let sub = Subscriber::new(1, 10, FullPolicy::Disconnect);
    let waiter = {
        let sub = sub.clone();
        tokio::spawn(async move { sub.next_batch(&mut Vec::new(), 10, usize::MAX).await })
    };
    tokio::task::yield_now().await;
    sub.close(CloseReason::StreamDeleted);
    let res = timeout(DEADLINE, waiter).await.unwrap().unwrap();
    assert_eq!(res, Err(CloseReason::StreamDeleted));
}

#[test]
fn unsubscribe_detaches_without_closing() {
    let s = stream("orders");
    let sub = Subscriber::new(7, 10, FullPolicy::Disconnect);
    s.subscribe(&sub, Start::Latest);
    s.subscribe(&sub, Start::Latest);
    assert_eq!(
        s.subscriber_count(),
        1,
        "re-subscribing replaces the attachment"
    );
    assert!(s.unsubscribe(7));
    assert!(!s.unsubscribe(7));
    publish_ok(&s, 0..1);
    assert_eq!(sub.queued(), 0);
    assert_eq!(sub.is_closed(), None);
}

#[tokio::test]
async fn append_notify_wakes_waiters_after_publish() {
    let s = stream("orders");
    let notified = s.append_notify().notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    assert!(notified.as_mut().now_or_never().is_none());
    publish_ok(&s, 0..1);
    timeout(DEADLINE, notified)
        .await
        .expect("notified after append");
    let r = s.read(0, 10);
    assert_eq!(r.records, vec![(0, Bytes::from("0"))]);
    assert_eq!((s.first_offset(), s.next_offset()), (0, 1));
}

#[test]
fn stats_count_records_publishes_drops_and_subscribers() {
    let s = stream("orders");
    let sub = Subscriber::new(1, 1, FullPolicy::DropNewest);
    s.subscribe(&sub, Start::Latest);
    publish_ok(&s, 0..3);
    let p = s.publish(&[]).unwrap();
    assert_eq!(p.offsets, 3..3);
    let stats = s.stats();
    assert_eq!(
        stats,
        StreamStats {
            records: 3,
            bytes: 3,
            subscribers: 1,
            published: 3,
            dropped: 2,
            disconnected: 0,
            first_offset: 0,
            next_offset: 3,
        }
    );
}

#[test]
fn policy_and_reason_names_are_snake_case() {
    for p in [
        FullPolicy::Block,
        FullPolicy::DropNewest,
        FullPolicy::DropOldest,
        FullPolicy::Disconnect,
    ] {
        assert_eq!(p.to_string().parse::<FullPolicy>(), Ok(p));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, format!("\"{p}\""));
        assert_eq!(serde_json::from_str::<FullPolicy>(&json).unwrap(), p);
    }
    assert_eq!("Drop-Oldest".parse(), Ok(FullPolicy::DropOldest));
    let err = "lossy".parse::<FullPolicy>().unwrap_err().to_string();
    assert!(
        err.contains("lossy") && err.contains("drop_oldest"),
        "{err}"
    );
    assert_eq!(CloseReason::SlowConsumer.code(), "slow_consumer");
    assert_eq!(CloseReason::StreamDeleted.to_string(), "stream_deleted");
    assert_eq!(
        serde_json::to_string(&CloseReason::Unsubscribed).unwrap(),
        "\"unsubscribed\""
    );
}

// ---- Byte bound of subscriber queues and the broker-wide budget (issue 13). ----

fn kib(n: usize) -> Vec<Bytes> {
    (0..n).map(|_| Bytes::from(vec![0u8; 1024])).collect()
}

/// A subscriber of 1,000 messages but 4 KiB: the byte bound is the one reached.
fn byte_bounded(id: u64, policy: FullPolicy, budget: Option<Arc<MemoryBudget>>) -> Arc<Subscriber> {
    Subscriber::bounded(id, 1000, 4 * 1024, policy, budget)
}

use crate::budget::MemoryBudget;

#[test]
fn byte_bound_drop_newest_keeps_the_first_bytes_worth() {
    let s = stream("big");
    let sub = byte_bounded(1, FullPolicy::DropNewest, None);
    s.subscribe(&sub, Start::Latest);
    let _ = s.publish(&kib(10)).unwrap();
    assert_eq!(sub.queued(), 4, "4 x 1 KiB fill the 4 KiB bound");
    assert_eq!(sub.queued_bytes(), 4096);
    assert_eq!(sub.dropped(), 6);
    assert_eq!(offsets(&drain(&sub)), vec![0, 1, 2, 3]);
}

#[test]
fn byte_bound_drop_oldest_keeps_the_last_bytes_worth() {
    let s = stream("big");
    let sub = byte_bounded(1, FullPolicy::DropOldest, None);
    s.subscribe(&sub, Start::Latest);
    let _ = s.publish(&kib(10)).unwrap();
    assert_eq!(sub.queued_bytes(), 4096);
    assert_eq!(sub.dropped(), 6);
    assert_eq!(offsets(&drain(&sub)), vec![6, 7, 8, 9]);
    // One payload larger than the whole bound still goes to an empty queue, alone.
    let _ = s.publish(&[Bytes::from(vec![1u8; 10_000])]).unwrap();
    assert_eq!(sub.queued(), 1);
}

#[test]
fn byte_bound_disconnect_closes_the_subscriber() {
    let s = stream("big");
    let sub = byte_bounded(1, FullPolicy::Disconnect, None);
    let other = Subscriber::new(2, 1000, FullPolicy::Disconnect);
    s.subscribe(&sub, Start::Latest);
    s.subscribe(&other, Start::Latest);
    let _ = s.publish(&kib(5)).unwrap();
    assert_eq!(sub.is_closed(), Some(CloseReason::SlowConsumer));
    assert_eq!(sub.queued_bytes(), 0, "closing frees the queue");
    assert_eq!(
        other.is_closed(),
        None,
        "a count-bounded subscriber takes 5 KiB"
    );
    assert_eq!(other.queued(), 5);
}

#[tokio::test]
async fn byte_bound_block_hands_out_backpressure_until_drained() {
    let s = stream("big");
    let sub = byte_bounded(1, FullPolicy::Block, None);
    s.subscribe(&sub, Start::Latest);
    assert!(s.publish(&kib(3)).unwrap().backpressure.is_none());
    let bp = s
        .publish(&kib(1))
        .unwrap()
        .backpressure
        .expect("4 KiB reached: backpressure although 4 << 1000 messages");
    let mut wait = Box::pin(bp.wait());
    assert!(futures::poll!(&mut wait).is_pending());
    let mut out = Vec::new();
    assert_eq!(sub.try_next_batch(&mut out, 1, usize::MAX), Ok(1));
    timeout(DEADLINE, wait)
        .await
        .expect("released below the byte bound");
    assert_eq!(sub.is_closed(), None);
}

#[test]
fn subscriber_bytes_reserve_from_the_budget_and_are_released() {
    let budget = MemoryBudget::new(3 * 1024);
    let s = stream("big");
    let a = Subscriber::bounded(
        1,
        1000,
        usize::MAX,
        FullPolicy::DropNewest,
        Some(budget.clone()),
    );
    s.subscribe(&a, Start::Latest);
    let _ = s.publish(&kib(5)).unwrap();
    assert_eq!(
        a.queued(),
        3,
        "the budget, not the queue's own bounds, stopped it"
    );
    assert_eq!(a.dropped(), 2);
    assert_eq!(budget.used(), 3 * 1024);
    let mut out = Vec::new();
    assert_eq!(a.try_next_batch(&mut out, 1, usize::MAX), Ok(1));
    assert_eq!(budget.used(), 2 * 1024, "consuming releases");
    let b = Subscriber::bounded(
        2,
        1000,
        usize::MAX,
        FullPolicy::DropOldest,
        Some(budget.clone()),
    );
    s.subscribe(&b, Start::Latest);
    let _ = s.publish(&kib(1)).unwrap();
    assert_eq!(budget.used(), 3 * 1024, "a took the last KiB");
    assert_eq!(
        b.dropped(),
        1,
        "b's policy applied when the budget was full"
    );
    a.close(CloseReason::Unsubscribed);
    assert_eq!(budget.used(), 0, "closing releases");
    let _ = s.publish(&kib(1)).unwrap();
    assert_eq!(b.queued_bytes(), 1024);
    assert_eq!(budget.used(), 1024);
    drop(s);
    drop(b);
    assert_eq!(budget.used(), 0, "dropping releases");
}
