//! Work queues over real QUIC: consumer groups, leases, acks, nacks, lease expiry, dead
//! letters, long polls, and not_found without auto-creation.
//!
//! Time-dependent assertions never sleep: a long-poll pull with a wait is the clock (it
//! returns empty no earlier than its wait, or as soon as something is deliverable).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use felix_client::{AckMode, Client, Consumer, ErrorCode, GroupSettings, QueueMessage};

const NS: &str = "ns";

async fn publish_n(c: &Client, stream: &str, n: u32) {
    let batch: Vec<Bytes> = (0..n).map(|i| Bytes::from(format!("m{i}"))).collect();
    c.publish_batch(NS, stream, &batch, AckMode::PerBatch)
        .await
        .unwrap();
}

fn settings(ack_timeout_ms: Option<u64>, max_deliveries: Option<u32>) -> GroupSettings {
    GroupSettings {
        from_latest: false,
        ack_timeout: ack_timeout_ms.map(Duration::from_millis),
        max_deliveries,
    }
}

/// Pulls until `n` messages arrived (each pull waits up to 5 s for the first message).
async fn pull_exactly(c: &Consumer, n: usize) -> Vec<QueueMessage> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = within(10, "pull", c.pull(n as u32, Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "pull waited 5s and got nothing");
        got.extend(batch);
    }
    assert_eq!(got.len(), n, "pulled more than expected: {got:?}");
    got
}

/// A pull with a wait that must come back empty, and not before its wait passed.
async fn assert_nothing_for(c: &Consumer, wait: Duration, why: &str) {
    let start = Instant::now();
    let got = within(10, "empty pull", c.pull(10, wait)).await.unwrap();
    assert!(got.is_empty(), "{why}: got {got:?}");
    assert!(
        start.elapsed() >= wait,
        "an empty long poll returned after {:?}, before its wait {wait:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn two_consumers_in_a_group_split_messages_exactly_once() {
    let b = TestBroker::start("q-split").await;
    let (c1, c2) = (b.client().await, b.client().await);
    let n = 300u32;
    c1.create_group(NS, "jobs", "workers", settings(None, None))
        .await
        .unwrap();
    publish_n(&c1, "jobs", n).await;
    let worker = |c: Client| {
        tokio::spawn(async move {
            let consumer = c.consumer(NS, "jobs", "workers");
            let mut got = Vec::new();
            loop {
                // Everything is published already: an empty pull means nothing is left.
                let batch = within(10, "pull", consumer.pull(7, Duration::from_millis(200)))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch);
            }
        })
    };
    let (a, b2) = (worker(c1.clone()), worker(c2.clone()));
    let (a, b2) = (a.await.unwrap(), b2.await.unwrap());
    assert!(
        !a.is_empty() && !b2.is_empty(),
        "both consumers should get work: {} / {}",
        a.len(),
        b2.len()
    );
    let mut seen = BTreeSet::new();
    for m in a.iter().chain(b2.iter()) {
        assert!(seen.insert(m.offset), "offset {} delivered twice", m.offset);
        assert_eq!(m.attempt, 1);
        assert_eq!(m.payload, Bytes::from(format!("m{}", m.offset)));
        assert!(m.lease > Duration::ZERO && m.lease <= Duration::from_secs(30));
    }
    assert_eq!(seen, (0..n as u64).collect::<BTreeSet<_>>());
    // While leased, nobody in the group gets them again.
    let consumer = c2.consumer(NS, "jobs", "workers");
    assert_nothing_for(
        &consumer,
        Duration::from_millis(200),
        "all messages are leased",
    )
    .await;
    // Acks complete them; a second ack of the same offsets affects nothing.
    let offsets: Vec<u64> = seen.iter().copied().collect();
    assert_eq!(consumer.ack(&offsets).await.unwrap(), n as u64);
    assert_eq!(consumer.ack(&offsets).await.unwrap(), 0);
    assert_eq!(consumer.nack(&offsets, Duration::ZERO).await.unwrap(), 0);
}

#[tokio::test]
async fn ack_removes_and_unacked_messages_come_back_after_their_lease() {
    let b = TestBroker::start("q-ack").await;
    let c = b.client().await;
    c.create_group(NS, "acks", "g", settings(Some(300), None))
        .await
        .unwrap();
    publish_n(&c, "acks", 4).await;
    let consumer = c.consumer(NS, "acks", "g");
    let first = pull_exactly(&consumer, 4).await;
    assert_eq!(
        first.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(consumer.ack(&[0, 1]).await.unwrap(), 2);
    // Only the unacked ones come back once the 300 ms lease ends.
    let again = pull_exactly(&consumer, 2).await;
    assert_eq!(
        again
            .iter()
            .map(|m| (m.offset, m.attempt))
            .collect::<Vec<_>>(),
        vec![(2, 2), (3, 2)]
    );
    assert_eq!(consumer.ack(&[2, 3]).await.unwrap(), 2);
    // Past another lease length nothing is redelivered: acked messages are gone.
    assert_nothing_for(
        &consumer,
        Duration::from_millis(600),
        "everything was acked",
    )
    .await;
}

#[tokio::test]
async fn nack_with_delay_redelivers_after_the_delay_and_not_before() {
    let b = TestBroker::start("q-nack").await;
    let c = b.client().await;
    c.create_group(NS, "nacks", "g", settings(None, None))
        .await
        .unwrap();
    publish_n(&c, "nacks", 1).await;
    let consumer = c.consumer(NS, "nacks", "g");
    let m = pull_exactly(&consumer, 1).await.remove(0);
    assert_eq!((m.offset, m.attempt), (0, 1));
    let delay = Duration::from_millis(1500);
    let nacked_at = Instant::now();
    assert_eq!(consumer.nack(&[0], delay).await.unwrap(), 1);
    // Before the delay ends, a long poll sees nothing.
    assert_nothing_for(
        &consumer,
        Duration::from_millis(400),
        "nack delay still running",
    )
    .await;
    assert!(
        nacked_at.elapsed() < delay,
        "the empty pull must have run inside the delay (took {:?})",
        nacked_at.elapsed()
    );
    // A long poll wakes when the delay ends and gets attempt 2.
    let m = within(10, "redelivery", consumer.pull(1, Duration::from_secs(5)))
        .await
        .unwrap();
    let waited = nacked_at.elapsed();
    assert_eq!(m.len(), 1, "nacked message not redelivered within 5s");
    assert_eq!((m[0].offset, m[0].attempt), (0, 2));
    assert_eq!(m[0].payload, Bytes::from("m0"));
    assert!(waited >= delay, "redelivered after {waited:?} < {delay:?}");
    assert!(
        waited < delay + Duration::from_secs(2),
        "long poll woke late: {waited:?}"
    );
    // Nack without delay: available at once.
    assert_eq!(consumer.nack(&[0], Duration::ZERO).await.unwrap(), 1);
    let m = within(5, "immediate redelivery", consumer.pull(1, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((m[0].offset, m[0].attempt), (0, 3));
}

#[tokio::test]
async fn expired_lease_is_redelivered_with_the_next_attempt() {
    let b = TestBroker::start("q-lease").await;
    let c = b.client().await;
    c.create_group(NS, "lease", "g", settings(Some(200), None))
        .await
        .unwrap();
    publish_n(&c, "lease", 1).await;
    let consumer = c.consumer(NS, "lease", "g");
    let pulled_at = Instant::now();
    let m = pull_exactly(&consumer, 1).await.remove(0);
    assert_eq!(m.attempt, 1);
    assert!(
        m.lease <= Duration::from_millis(200) && m.lease > Duration::ZERO,
        "lease {:?}",
        m.lease
    );
    // Not acked: another consumer of the group gets it once the lease has ended.
    let other = b.client().await.consumer(NS, "lease", "g");
    let m2 = within(10, "redelivery", other.pull(1, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(m2.len(), 1, "expired lease not redelivered within 5s");
    assert_eq!((m2[0].offset, m2[0].attempt), (0, 2));
    assert!(pulled_at.elapsed() >= Duration::from_millis(200));
    assert_eq!(other.ack(&[0]).await.unwrap(), 1);
}

#[tokio::test]
async fn max_deliveries_moves_the_message_to_dead_letters() {
    let b = TestBroker::start("q-dead").await;
    let c = b.client().await;
    c.create_group(NS, "dl", "g", settings(Some(200), Some(3)))
        .await
        .unwrap();
    publish_n(&c, "dl", 2).await;
    let consumer = c.consumer(NS, "dl", "g");
    // Message 0 fails by nack, message 1 by lease expiry.
    for attempt in 1..=3u32 {
        let got = pull_exactly(&consumer, if attempt == 1 { 2 } else { 1 }).await;
        let m0 = got.iter().find(|m| m.offset == 0).expect("message 0");
        assert_eq!(m0.attempt, attempt);
        assert_eq!(consumer.nack(&[0], Duration::ZERO).await.unwrap(), 1);
        if attempt == 1 {
            assert_eq!(got.iter().find(|m| m.offset == 1).unwrap().attempt, 1);
        }
    }
    // Message 0 is dead after its third nack; message 1's leases keep expiring. The long
    // poll returns attempts 2 and 3 of message 1, then nothing once it is dead too.
    let mut attempts_of_1 = vec![1];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = within(10, "pull", consumer.pull(5, Duration::from_millis(700)))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        assert!(got.iter().all(|m| m.offset == 1), "{got:?}");
        attempts_of_1.extend(got.iter().map(|m| m.attempt));
        assert!(Instant::now() < deadline, "message 1 never died");
    }
    assert_eq!(attempts_of_1, vec![1, 2, 3]);
    let dead = consumer.dead_letters(10).await.unwrap();
    let summary: Vec<_> = dead
        .iter()
        .map(|d| (d.offset, d.attempts, d.reason.as_str(), d.payload.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, 3, "max_deliveries", Bytes::from("m0")),
            (1, 3, "max_deliveries", Bytes::from("m1")),
        ]
    );
    // Dead letters are not leased: acking them does nothing.
    assert_eq!(consumer.ack(&[0, 1]).await.unwrap(), 0);
}

#[tokio::test]
async fn dead_letters_can_be_listed_redriven_and_discarded() {
    let b = TestBroker::start("q-redrive").await;
    let c = b.client().await;
    c.create_group(NS, "rd", "g", settings(None, Some(1)))
        .await
        .unwrap();
    publish_n(&c, "rd", 3).await;
    let consumer = c.consumer(NS, "rd", "g");
    pull_exactly(&consumer, 3).await;
    assert_eq!(consumer.nack(&[0, 1, 2], Duration::ZERO).await.unwrap(), 3);
    assert_nothing_for(&consumer, Duration::from_millis(200), "all dead").await;
    let dead = consumer.dead_letters(10).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.offset).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(dead.iter().all(|d| d.attempts == 1));
    assert_eq!(consumer.dead_letters(2).await.unwrap().len(), 2, "max");
    // Redrive one: it is delivered again, as a fresh message.
    assert_eq!(consumer.redrive(Some(&[1])).await.unwrap(), 1);
    assert_eq!(consumer.redrive(Some(&[1])).await.unwrap(), 0);
    let m = pull_exactly(&consumer, 1).await.remove(0);
    assert_eq!((m.offset, m.attempt), (1, 1));
    assert_eq!(m.payload, Bytes::from("m1"));
    assert_eq!(consumer.ack(&[1]).await.unwrap(), 1);
    // Discard one, then the rest.
    assert_eq!(consumer.discard(Some(&[2])).await.unwrap(), 1);
    assert_eq!(
        consumer
            .dead_letters(10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.offset)
            .collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(consumer.discard(None).await.unwrap(), 1);
    assert!(consumer.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(consumer.redrive(None).await.unwrap(), 0);
    assert_nothing_for(&consumer, Duration::from_millis(200), "discarded for good").await;
}

#[tokio::test]
async fn extend_postpones_redelivery() {
    let b = TestBroker::start("q-extend").await;
    let c = b.client().await;
    c.create_group(NS, "ext", "g", settings(Some(300), None))
        .await
        .unwrap();
    publish_n(&c, "ext", 1).await;
    let consumer = c.consumer(NS, "ext", "g");
    pull_exactly(&consumer, 1).await;
    let extend = Duration::from_millis(1500);
    let extended_at = Instant::now();
    assert_eq!(consumer.extend(&[0], extend).await.unwrap(), 1);
    assert_eq!(consumer.extend(&[42], extend).await.unwrap(), 0, "unknown");
    // Well past the original 300 ms lease, still nothing.
    assert_nothing_for(&consumer, Duration::from_millis(700), "lease was extended").await;
    assert!(extended_at.elapsed() < extend);
    // After the extended lease, it comes back.
    let m = within(10, "redelivery", consumer.pull(1, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].offset, m[0].attempt), (0, 2));
    assert!(extended_at.elapsed() >= extend);
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_a_message_is_published() {
    let b = TestBroker::start("q-poll").await;
    let c = b.client().await;
    c.create_group(NS, "poll", "g", settings(None, None))
        .await
        .unwrap();
    let consumer = c.consumer(NS, "poll", "g");
    let started = Instant::now();
    let puller = tokio::spawn(async move {
        let r = consumer.pull(1, Duration::from_secs(10)).await;
        (r, Instant::now())
    });
    // Let the pull park: another long poll (on another group) is the clock.
    let clock = c.consumer(NS, "poll", "clock");
    assert_nothing_for(&clock, Duration::from_millis(300), "clock group").await;
    assert!(
        !puller.is_finished(),
        "the pull returned before any publish"
    );
    let publisher = b.client().await;
    let published_at = Instant::now();
    publisher.publish(NS, "poll", "wake".into()).await.unwrap();
    let (r, done_at) = within(5, "long poll", puller).await.unwrap();
    let got = r.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, Bytes::from("wake"));
    let latency = done_at - published_at;
    assert!(
        latency < Duration::from_secs(2),
        "long poll took {latency:?} after the publish"
    );
    assert!(done_at - started < Duration::from_secs(5));
}

#[tokio::test]
async fn different_groups_each_get_every_message() {
    let b = TestBroker::start("q-groups").await;
    let c = b.client().await;
    for g in ["g1", "g2"] {
        c.create_group(NS, "fan", g, settings(None, None))
            .await
            .unwrap();
    }
    publish_n(&c, "fan", 20).await;
    for g in ["g1", "g2"] {
        let consumer = c.consumer(NS, "fan", g);
        let got = pull_exactly(&consumer, 20).await;
        let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, (0..20).collect::<Vec<_>>(), "group {g}");
        assert!(got.iter().all(|m| m.attempt == 1));
        assert_eq!(consumer.ack(&offsets).await.unwrap(), 20);
    }
    // Acks in one group do not affect the other: a third group still gets everything.
    let g3 = c.consumer(NS, "fan", "g3");
    assert_eq!(pull_exactly(&g3, 20).await.len(), 20);
}

#[tokio::test]
async fn missing_group_or_stream_is_not_found_without_auto_create() {
    let b = TestBroker::with_config(test_config_no_auto_create("q-strict")).await;
    let c = b.client().await;
    let err = c
        .consumer(NS, "nostream", "g")
        .pull(1, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    c.create_stream(NS, "orders", Default::default())
        .await
        .unwrap();
    let missing = c.consumer(NS, "orders", "nogroup");
    for err in [
        missing.pull(1, Duration::ZERO).await.unwrap_err(),
        // A long poll on a missing group fails at once rather than waiting.
        within(2, "long poll", missing.pull(1, Duration::from_secs(10)))
            .await
            .unwrap_err(),
        missing.ack(&[0]).await.map(|_| ()).unwrap_err(),
        missing.dead_letters(1).await.map(|_| ()).unwrap_err(),
    ] {
        assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
        assert!(!err.retryable());
    }
    // Created explicitly, the group works.
    c.create_group(NS, "orders", "workers", settings(None, None))
        .await
        .unwrap();
    c.publish(NS, "orders", "o1".into()).await.unwrap();
    let got = pull_exactly(&c.consumer(NS, "orders", "workers"), 1).await;
    assert_eq!(got[0].payload, Bytes::from("o1"));
    // The connection kept working through the errors, and the group is still missing.
    assert_eq!(
        missing.pull(1, Duration::ZERO).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn group_created_from_latest_skips_earlier_messages() {
    let b = TestBroker::start("q-latest").await;
    let c = b.client().await;
    publish_n(&c, "late", 5).await;
    let s = GroupSettings {
        from_latest: true,
        ..Default::default()
    };
    c.create_group(NS, "late", "g", s).await.unwrap();
    let consumer = c.consumer(NS, "late", "g");
    assert_nothing_for(&consumer, Duration::from_millis(200), "only new messages").await;
    c.publish(NS, "late", "new".into()).await.unwrap();
    let m = pull_exactly(&consumer, 1).await.remove(0);
    assert_eq!((m.offset, m.payload), (5, Bytes::from("new")));
}

/// Spawns a long poll and makes sure it is parked on the broker (using another long poll as
/// the clock) before returning it.
async fn parked_pull(
    c: &Client,
    stream: &str,
    group: &str,
) -> tokio::task::JoinHandle<Vec<QueueMessage>> {
    let consumer = c.consumer(NS, stream, group);
    let h = tokio::spawn(async move {
        within(
            15,
            "parked pull",
            consumer.pull(10, Duration::from_secs(10)),
        )
        .await
        .unwrap()
    });
    let clock = c.consumer(NS, stream, "clock");
    assert_nothing_for(&clock, Duration::from_millis(300), "clock").await;
    assert!(!h.is_finished(), "the long poll returned early");
    h
}

#[tokio::test]
async fn parked_long_poll_wakes_on_redrive_and_when_an_ack_frees_room() {
    let mut cfg = test_config("q-wake");
    cfg.group_defaults.max_in_flight = 2;
    let b = TestBroker::with_config(cfg).await;
    let c = b.client().await;
    c.create_group(NS, "wake", "g", settings(None, Some(1)))
        .await
        .unwrap();
    // The clock group must exist with nothing to deliver: create it from the latest offset.
    let latest = GroupSettings {
        from_latest: true,
        ..Default::default()
    };
    publish_n(&c, "wake", 3).await;
    c.create_group(NS, "wake", "clock", latest).await.unwrap();
    let consumer = c.consumer(NS, "wake", "g");
    // max_in_flight = 2: the third message is held back while two are unacknowledged.
    let got = pull_exactly(&consumer, 2).await;
    assert_eq!(got.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![0, 1]);
    let waiting = parked_pull(&c, "wake", "g").await;
    let acked_at = Instant::now();
    assert_eq!(consumer.ack(&[0]).await.unwrap(), 1);
    let got = within(5, "woken pull", waiting).await.unwrap();
    assert_eq!(got.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![2]);
    assert!(acked_at.elapsed() < Duration::from_secs(2), "woke late");
    // Dead-letter message 1 (max_deliveries 1), park a pull, redrive: the pull wakes.
    assert_eq!(consumer.nack(&[1], Duration::ZERO).await.unwrap(), 1);
    assert_eq!(consumer.dead_letters(10).await.unwrap().len(), 1);
    assert_eq!(consumer.ack(&[2]).await.unwrap(), 1);
    let waiting = parked_pull(&c, "wake", "g").await;
    let redriven_at = Instant::now();
    assert_eq!(consumer.redrive(None).await.unwrap(), 1);
    let got = within(5, "woken pull", waiting).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|m| (m.offset, m.attempt))
            .collect::<Vec<_>>(),
        vec![(1, 1)]
    );
    assert!(redriven_at.elapsed() < Duration::from_secs(2), "woke late");
}

#[tokio::test]
async fn pull_arguments_are_checked() {
    let b = TestBroker::start("q-args").await;
    let c = b.client().await;
    let consumer = c.consumer(NS, "args", "g");
    let err = consumer.pull(0, Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    let err = consumer.pull(1_000_000, Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    let err = c
        .consumer(NS, "bad name!", "g")
        .pull(1, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    // The request stream keeps serving after rejected requests.
    assert!(consumer.pull(1, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn abandoned_long_poll_hands_its_messages_back_at_once() {
    let b = TestBroker::start("queue-orphan").await;
    let publisher = b.client().await;
    publisher
        .create_group(NS, "orphan", "g", settings(Some(60_000), None))
        .await
        .unwrap();
    // One request stream, so a ping answered after the pull proves the broker holds the pull.
    let mut cfg = b.client_config();
    cfg.streams_per_connection = 1;
    let quitter = felix_client::Client::connect(cfg).await.unwrap();
    let abandoned = {
        let consumer = quitter.consumer(NS, "orphan", "g");
        tokio::spawn(async move { consumer.pull(1, Duration::from_secs(30)).await })
    };
    within(5, "ping behind the pull", quitter.ping())
        .await
        .unwrap();
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    // The broker leases the message to the abandoned pull; the client hands it back.
    publish_n(&publisher, "orphan", 1).await;
    let worker = publisher.consumer(NS, "orphan", "g");
    let started = Instant::now();
    let got = pull_exactly(&worker, 1).await;
    assert_eq!(
        got[0].attempt, 2,
        "the message went through the abandoned pull first"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "redelivered in {:?}, i.e. not after the 60 s lease",
        started.elapsed()
    );
}

#[tokio::test]
async fn closing_the_client_ends_a_parked_long_poll_with_closed() {
    // A call already sent learns of `close` from its connection, not from a per-call
    // listener: the parked pull must still end at once, with `closed`.
    let b = TestBroker::start("close-parked").await;
    let c = b.client().await;
    let consumer = c.consumer(NS, "parked", "g");
    let pull = tokio::spawn({
        let consumer = consumer.clone();
        async move { consumer.pull(1, Duration::from_secs(30)).await }
    });
    // The group exists once the broker has taken the pull (dev mode creates it then).
    eventually(5, "the pull to reach the broker", || async {
        let snap = b.broker.shared().registry.snapshot();
        snap.groups.iter().any(|g| g.0.contains("parked"))
    })
    .await;
    c.close();
    let err = within(5, "the pull to end", pull)
        .await
        .unwrap()
        .expect_err("closed");
    assert_eq!(err.code(), ErrorCode::Closed, "{err}");
}
