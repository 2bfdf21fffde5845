use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::log::{Log, MemoryLog, Retention};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg() -> GroupConfig {
    GroupConfig {
        ack_timeout: ms(1000),
        max_deliveries: 3,
        dead_letter_max: 100,
        max_in_flight: 100,
    }
}

fn log_with(n: usize) -> MemoryLog {
    let mut log = MemoryLog::new(Retention::default());
    let payloads: Vec<Bytes> = (0..n).map(|i| Bytes::from(format!("m{i}"))).collect();
    log.append(&payloads, 0).unwrap();
    log
}

fn pull(g: &ConsumerGroup, log: &MemoryLog, max: usize, now: Instant) -> Vec<Delivery> {
    g.pull(max, now, |from, n| log.read(from, n))
}

fn offsets(ds: &[Delivery]) -> Vec<u64> {
    ds.iter().map(|d| d.offset).collect()
}

fn attempts(ds: &[Delivery]) -> Vec<u32> {
    ds.iter().map(|d| d.attempt).collect()
}

#[test]
fn consumer_group_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ConsumerGroup>();
}

#[test]
fn pull_delivers_in_order_and_moves_cursor() {
    let log = log_with(5);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    let ds = pull(&g, &log, 3, t);
    assert_eq!(offsets(&ds), vec![0, 1, 2]);
    assert_eq!(ds[1].payload, Bytes::from("m1"));
    assert_eq!(attempts(&ds), vec![1, 1, 1]);
    assert!(ds.iter().all(|d| d.lease_deadline == t + ms(1000)));
    assert_eq!(g.stats().cursor, 3);
    assert_eq!(offsets(&pull(&g, &log, 10, t)), vec![3, 4]);
    let s = g.stats();
    assert_eq!((s.cursor, s.in_flight, s.delivered), (5, 5, 5));
}

#[test]
fn pull_starts_at_start_offset() {
    let log = log_with(5);
    let g = ConsumerGroup::new(cfg(), 3);
    assert_eq!(offsets(&pull(&g, &log, 10, Instant::now())), vec![3, 4]);
}

#[test]
fn two_pulls_never_hand_out_the_same_message_while_leased() {
    let log = log_with(4);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    let a = pull(&g, &log, 2, t);
    let b = pull(&g, &log, 10, t + ms(999));
    assert_eq!(offsets(&a), vec![0, 1]);
    assert_eq!(offsets(&b), vec![2, 3]);
    assert!(pull(&g, &log, 10, t + ms(999)).is_empty());
}

#[test]
fn ack_removes_message_for_good() {
    let log = log_with(2);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 10, t);
    assert_eq!(g.ack(&[0, 7], t), 1, "unknown offsets are ignored");
    assert_eq!(g.ack(&[0], t), 0, "second ack is unknown");
    let later = pull(&g, &log, 10, t + ms(5000));
    assert_eq!(offsets(&later), vec![1], "only the unacked one comes back");
    let s = g.stats();
    assert_eq!((s.acked, s.in_flight), (1, 1));
}

#[test]
fn expired_lease_is_redelivered_with_next_attempt() {
    let log = log_with(1);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 10, t);
    assert!(pull(&g, &log, 10, t + ms(999)).is_empty());
    let again = pull(&g, &log, 10, t + ms(1000));
    assert_eq!(offsets(&again), vec![0], "deadline == now has expired");
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].lease_deadline, t + ms(2000));
    assert_eq!(g.stats().redelivered, 1);
}

#[test]
fn late_ack_of_expired_lease_is_accepted_until_redelivered() {
    let log = log_with(2);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 10, t);
    assert_eq!(g.ack(&[0], t + ms(1500)), 1, "expired, nobody pulled since");
    // A pull with max 0 applies expiry without redelivering.
    assert!(pull(&g, &log, 0, t + ms(1500)).is_empty());
    assert_eq!(g.stats().pending_redelivery, 1);
    assert_eq!(
        g.ack(&[1], t + ms(1500)),
        1,
        "expired and due, not yet redelivered"
    );
    assert!(pull(&g, &log, 10, t + ms(1500)).is_empty());
    assert_eq!(g.stats().acked, 2);
}

#[test]
fn nack_with_delay_is_redelivered_only_once_the_delay_elapsed() {
    let log = log_with(1);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 10, t);
    assert_eq!(g.nack(&[0, 9], ms(300), t + ms(100)), 1);
    assert_eq!(g.stats().pending_redelivery, 1);
    assert!(pull(&g, &log, 10, t + ms(399)).is_empty());
    let again = pull(&g, &log, 10, t + ms(400));
    assert_eq!(offsets(&again), vec![0]);
    assert_eq!(again[0].attempt, 2, "attempt count kept across a nack");
    assert_eq!(g.stats().nacked, 1);
}

#[test]
fn due_redeliveries_go_out_before_new_records_in_offset_order() {
    let log = log_with(6);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 3, t);
    // Offset 2 becomes due before 0 and 1, yet due messages go out by offset.
    g.nack(&[2], ms(0), t);
    g.nack(&[1, 0], ms(10), t);
    let ds = pull(&g, &log, 4, t + ms(10));
    assert_eq!(offsets(&ds), vec![0, 1, 2, 3]);
    assert_eq!(attempts(&ds), vec![2, 2, 2, 1]);
}

#[test]
fn max_deliveries_sends_to_dead_letters_with_attempts() {
    let log = log_with(2);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    for i in 0..3 {
        let ds = pull(&g, &log, 1, t + ms(1000 * i));
        assert_eq!((ds[0].offset, ds[0].attempt), (0, i as u32 + 1));
    }
    // Third lease expires: no deliveries left, so the next pull moves on to offset 1.
    let ds = pull(&g, &log, 1, t + ms(3000));
    assert_eq!(offsets(&ds), vec![1]);
    let dead = g.dead_letters(10);
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].offset, dead[0].attempts, dead[0].reason),
        (0, 3, DeadReason::MaxDeliveries)
    );
    assert_eq!(dead[0].payload, Bytes::from("m0"));
    let s = g.stats();
    assert_eq!((s.dead_letters, s.dead_lettered, s.in_flight), (1, 1, 1));
    assert_eq!(g.ack(&[0], t + ms(3000)), 0, "dead letters cannot be acked");
}

#[test]
fn nack_on_the_last_attempt_dead_letters_at_once() {
    let log = log_with(1);
    let g = ConsumerGroup::new(
        GroupConfig {
            max_deliveries: 1,
            ..cfg()
        },
        0,
    );
    let t = Instant::now();
    pull(&g, &log, 1, t);
    assert_eq!(g.nack(&[0], ms(0), t), 1);
    assert_eq!(g.stats().pending_redelivery, 0);
    assert_eq!(g.dead_letters(10)[0].reason, DeadReason::MaxDeliveries);
}

#[test]
fn reject_dead_letters_with_reason_rejected() {
    let log = log_with(2);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 2, t);
    assert_eq!(g.reject(&[1, 5], t), 1);
    let dead = g.dead_letters(10);
    assert_eq!(
        (dead[0].offset, dead[0].attempts, dead[0].reason),
        (1, 1, DeadReason::Rejected)
    );
    assert_eq!(g.stats().rejected, 1);
    assert_eq!(g.stats().in_flight, 1);
}

#[test]
fn redrive_all_makes_dead_letters_deliverable_with_attempts_reset() {
    let log = log_with(3);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 3, t);
    g.reject(&[2, 0], t);
    assert_eq!(g.redrive(None), 2);
    assert!(g.dead_letters(10).is_empty());
    assert_eq!(g.stats().pending_redelivery, 2);
    let ds = pull(&g, &log, 10, t);
    assert_eq!(offsets(&ds), vec![0, 2]);
    assert_eq!(attempts(&ds), vec![1, 1]);
}

#[test]
fn redrive_and_discard_select_offsets() {
    let log = log_with(4);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 4, t);
    g.reject(&[0, 1, 2, 3], t);
    assert_eq!(g.redrive(Some(&[1, 9])), 1);
    assert_eq!(g.discard(Some(&[2])), 1);
    let left: Vec<u64> = g.dead_letters(10).iter().map(|d| d.offset).collect();
    assert_eq!(left, vec![0, 3]);
    assert_eq!(offsets(&pull(&g, &log, 10, t)), vec![1]);
    assert_eq!(g.discard(None), 2);
    assert_eq!(g.stats().dead_letters, 0);
}

#[test]
fn dead_letter_list_is_bounded_dropping_the_oldest() {
    let log = log_with(5);
    let g = ConsumerGroup::new(
        GroupConfig {
            dead_letter_max: 2,
            ..cfg()
        },
        0,
    );
    let t = Instant::now();
    pull(&g, &log, 5, t);
    g.reject(&[0, 1, 2], t);
    let kept: Vec<u64> = g.dead_letters(10).iter().map(|d| d.offset).collect();
    assert_eq!(kept, vec![1, 2]);
    assert_eq!(g.dead_letters(1).len(), 1);
    let s = g.stats();
    assert_eq!((s.dead_lettered, s.dead_letters_dropped), (3, 1));
}

#[test]
fn max_in_flight_caps_unacked_messages() {
    let log = log_with(10);
    let g = ConsumerGroup::new(
        GroupConfig {
            max_in_flight: 3,
            ..cfg()
        },
        0,
    );
    let t = Instant::now();
    assert_eq!(offsets(&pull(&g, &log, 10, t)), vec![0, 1, 2]);
    let mut called = false;
    let none = g.pull(10, t, |f, n| {
        called = true;
        log.read(f, n)
    });
    assert!(none.is_empty());
    assert!(!called, "the log is not read when there is no room");
    // A nacked message still counts: it is held until acked.
    g.nack(&[0], ms(100), t);
    assert!(pull(&g, &log, 10, t).is_empty());
    g.ack(&[1], t);
    assert_eq!(offsets(&pull(&g, &log, 10, t)), vec![3]);
    assert_eq!(g.stats().cursor, 4);
}

#[test]
fn retention_gap_is_skipped_and_counted_as_lost() {
    let mut log = MemoryLog::new(Retention {
        max_records: 3,
        max_bytes: 1 << 20,
    });
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    log.append(&[Bytes::from("a"), Bytes::from("b")], 0)
        .unwrap();
    assert_eq!(offsets(&pull(&g, &log, 1, t)), vec![0]);
    let more: Vec<Bytes> = (0..5).map(|_| Bytes::from("x")).collect();
    log.append(&more, 0).unwrap(); // offsets 2..7; retention keeps 4..7
    let ds = pull(&g, &log, 10, t);
    assert_eq!(offsets(&ds), vec![4, 5, 6]);
    let s = g.stats();
    assert_eq!(
        (s.lost, s.cursor),
        (3, 7),
        "offsets 1, 2 and 3 were never delivered"
    );
}

#[test]
fn extend_postpones_redelivery() {
    let log = log_with(2);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 2, t);
    assert_eq!(g.extend(&[0, 8], ms(5000), t + ms(500)), 1);
    let ds = pull(&g, &log, 10, t + ms(1000));
    assert_eq!(offsets(&ds), vec![1], "only the unextended lease expired");
    g.ack(&[1], t + ms(1000));
    assert!(pull(&g, &log, 10, t + ms(5499)).is_empty());
    assert_eq!(offsets(&pull(&g, &log, 10, t + ms(5500))), vec![0]);
}

#[test]
fn extend_ignores_messages_that_are_not_leased() {
    let log = log_with(1);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 1, t);
    g.nack(&[0], ms(100), t);
    assert_eq!(g.extend(&[0], ms(5000), t), 0);
    assert_eq!(offsets(&pull(&g, &log, 1, t + ms(100))), vec![0]);
}

#[test]
fn next_wakeup_is_the_earliest_lease_expiry_or_nack_delay() {
    let log = log_with(3);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    assert_eq!(g.next_wakeup(), None, "nothing pending");
    pull(&g, &log, 2, t);
    assert_eq!(g.next_wakeup(), Some(t + ms(1000)), "lease expiry");
    g.nack(&[0], ms(200), t + ms(10));
    assert_eq!(g.next_wakeup(), Some(t + ms(210)), "nack delay ends first");
    g.ack(&[0, 1], t + ms(20));
    assert_eq!(g.next_wakeup(), None);
    // Due but left over by a small pull: deliverable right away.
    pull(&g, &log, 1, t + ms(30));
    g.nack(&[2], ms(0), t + ms(40));
    assert!(pull(&g, &log, 0, t + ms(50)).is_empty());
    assert_eq!(g.next_wakeup(), Some(t + ms(50)));
}

#[tokio::test]
async fn nack_without_delay_and_redrive_wake_long_poll_waiters() {
    let log = log_with(1);
    let g = Arc::new(ConsumerGroup::new(cfg(), 0));
    let t = Instant::now();
    pull(&g, &log, 1, t);

    let waiter = {
        let g = Arc::clone(&g);
        tokio::spawn(async move { g.notify().notified().await })
    };
    tokio::task::yield_now().await;
    g.nack(&[0], ms(0), t);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("nack woke the waiter")
        .unwrap();

    g.reject(&[0], t);
    let notified = g.notify().notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    g.redrive(None);
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("redrive woke the waiter");
}

#[test]
fn config_deserialises_with_defaults_and_millisecond_timeout() {
    let c: GroupConfig = toml::from_str("ack_timeout_ms = 250\nmax_deliveries = 2").unwrap();
    assert_eq!(c.ack_timeout, ms(250));
    assert_eq!(c.max_deliveries, 2);
    assert_eq!(c.max_in_flight, GroupConfig::default().max_in_flight);
    assert_eq!(
        toml::from_str::<GroupConfig>("").unwrap(),
        GroupConfig::default()
    );
    assert!(toml::from_str::<GroupConfig>("ack_timeout = 1").is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Pull(usize),
    Ack(usize),
    Nack(usize, u64),
    Reject(usize),
    Extend(usize, u64),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1usize..5).prop_map(Op::Append),
        3 => (0usize..5).prop_map(Op::Pull),
        2 => any::<usize>().prop_map(Op::Ack),
        1 => (any::<usize>(), 0u64..300).prop_map(|(i, d)| Op::Nack(i, d)),
        1 => any::<usize>().prop_map(Op::Reject),
        1 => (any::<usize>(), 0u64..2000).prop_map(|(i, d)| Op::Extend(i, d)),
        2 => (0u64..700).prop_map(Op::Advance),
    ]
}

proptest! {
    /// No offset is handed out while a lease on it is live, attempts never exceed
    /// max_deliveries, the in-flight bound holds, and every record is accounted for.
    #[test]
    fn group_invariants_hold_under_random_operations(ops in prop::collection::vec(op(), 1..150)) {
        let config = GroupConfig {
            ack_timeout: ms(1000),
            max_deliveries: 3,
            dead_letter_max: 4,
            max_in_flight: 6,
        };
        let mut log = MemoryLog::new(Retention { max_records: 12, max_bytes: 1 << 20 });
        let g = ConsumerGroup::new(config.clone(), 0);
        let mut now = Instant::now();
        // Offset -> lease deadline of the consumer currently believed to hold it.
        let mut leased: HashMap<u64, Instant> = HashMap::new();
        let mut last_new = None;
        let pick = |leased: &HashMap<u64, Instant>, i: usize| -> Option<u64> {
            let mut keys: Vec<u64> = leased.keys().copied().collect();
            keys.sort_unstable();
            (!keys.is_empty()).then(|| keys[i % keys.len()])
        };
        for op in ops {
            match op {
                Op::Append(n) => {
                    let p: Vec<Bytes> = (0..n).map(|_| Bytes::from("p")).collect();
                    log.append(&p, 0).unwrap();
                }
                Op::Pull(max) => {
                    let ds = pull(&g, &log, max, now);
                    prop_assert!(ds.len() <= max);
                    for d in ds {
                        if let Some(&deadline) = leased.get(&d.offset) {
                            prop_assert!(deadline <= now, "offset {} handed out twice", d.offset);
                        }
                        prop_assert!(d.attempt >= 1 && d.attempt <= config.max_deliveries);
                        if d.attempt == 1 {
                            prop_assert!(last_new < Some(d.offset), "new records in order");
                            last_new = Some(d.offset);
                        }
                        leased.insert(d.offset, d.lease_deadline);
                    }
                }
                Op::Ack(i) => if let Some(o) = pick(&leased, i) {
                    g.ack(&[o], now);
                    leased.remove(&o);
                },
                Op::Nack(i, d) => if let Some(o) = pick(&leased, i) {
                    g.nack(&[o], ms(d), now);
                    leased.remove(&o);
                },
                Op::Reject(i) => if let Some(o) = pick(&leased, i) {
                    g.reject(&[o], now);
                    leased.remove(&o);
                },
                Op::Extend(i, d) => if let Some(o) = pick(&leased, i) {
                    if g.extend(&[o], ms(d), now) == 1 {
                        leased.insert(o, now + ms(d));
                    }
                },
                Op::Advance(d) => now += ms(d),
            }
            let s = g.stats();
            prop_assert!(s.in_flight + s.pending_redelivery <= config.max_in_flight);
            prop_assert!(s.dead_letters <= config.dead_letter_max);
            let outstanding = (s.in_flight + s.pending_redelivery) as u64;
            prop_assert_eq!(s.cursor, s.acked + outstanding + s.dead_lettered + s.lost);
        }
    }
}

/// Edge cases found by mutation testing (mutants/report.md).
mod edges;
