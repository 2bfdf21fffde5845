//! Edge cases of queue.rs that a full `cargo mutants` run showed no test could see (see
//! mutants/report.md): each test fails on the planted change named in its comment.

use super::*;

/// `MAX_DELAY` is one year: a longer lease is capped to exactly a year, a shorter one (100
/// days, longer than any of the caps a wrong constant gives) is honoured exactly.
#[test]
fn leases_and_nack_delays_are_capped_at_exactly_one_year() {
    const YEAR: Duration = Duration::from_secs(31_536_000);
    let log = log_with(2);
    let t = Instant::now();
    let capped = ConsumerGroup::new(
        GroupConfig {
            ack_timeout: Duration::MAX,
            ..cfg()
        },
        0,
    );
    let ds = pull(&capped, &log, 1, t);
    assert_eq!(
        ds[0].lease_deadline,
        t + YEAR,
        "Duration::MAX is capped at a year"
    );
    assert_eq!(capped.extend(&[0], Duration::MAX, t), 1);
    assert_eq!(capped.next_wakeup(), Some(t + YEAR), "extend is capped too");
    capped.nack(&[0], Duration::MAX, t);
    assert_eq!(capped.next_wakeup(), Some(t + YEAR), "and a nack delay");

    let hundred_days = Duration::from_secs(100 * 24 * 60 * 60);
    let long = ConsumerGroup::new(
        GroupConfig {
            ack_timeout: hundred_days,
            ..cfg()
        },
        0,
    );
    let ds = pull(&long, &log, 1, t);
    assert_eq!(
        ds[0].lease_deadline,
        t + hundred_days,
        "under the cap: exact"
    );
}

/// The dead-letter reasons are wire strings (`dead_letters` replies): stable.
#[test]
fn dead_reasons_have_their_stable_wire_names() {
    assert_eq!(DeadReason::MaxDeliveries.as_str(), "max_deliveries");
    assert_eq!(DeadReason::Rejected.as_str(), "rejected");
}

#[test]
fn config_returns_the_knobs_the_group_was_built_with() {
    let c = GroupConfig {
        ack_timeout: ms(1234),
        max_deliveries: 7,
        dead_letter_max: 8,
        max_in_flight: 9,
    };
    assert_ne!(c, GroupConfig::default());
    assert_eq!(ConsumerGroup::new(c.clone(), 0).config(), &c);
}

/// A read that finds retention moved past the cursor but returns no record (everything the
/// group had not read is gone, nothing new yet) still counts the loss and moves the cursor,
/// so the next read asks for what exists instead of the removed range again.
#[test]
fn a_gap_with_no_record_after_it_is_counted_and_skipped_at_once() {
    let g = ConsumerGroup::new(cfg(), 2);
    let t = Instant::now();
    let ds = g.pull(10, t, |from, _| {
        assert_eq!(from, 2);
        ReadResult {
            records: Vec::new(),
            first_available: 7,
            next_offset: 7,
        }
    });
    assert!(ds.is_empty());
    let s = g.stats();
    assert_eq!(
        (s.lost, s.cursor),
        (5, 7),
        "offsets 2..7 were removed unread"
    );
    let mut asked = None;
    g.pull(10, t, |from, _| {
        asked = Some(from);
        ReadResult {
            records: vec![(7, Bytes::from("x"))],
            first_available: 7,
            next_offset: 8,
        }
    });
    assert_eq!(asked, Some(7));
    assert_eq!(g.stats().lost, 5, "nothing more was lost");
}

/// The group does not trust its reader: a record below the cursor (a repeat) is never handed
/// out twice, and a hole between two records is counted as lost like a retention gap.
#[test]
fn repeated_records_are_dropped_and_holes_counted_as_lost() {
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    let ds = g.pull(10, t, |_, _| ReadResult {
        records: vec![
            (0, Bytes::from("a")),
            (0, Bytes::from("a again")),
            (3, Bytes::from("d")),
            (1, Bytes::from("b late")),
            (4, Bytes::from("e")),
        ],
        first_available: 0,
        next_offset: 5,
    });
    assert_eq!(offsets(&ds), vec![0, 3, 4]);
    assert_eq!(ds[0].payload, Bytes::from("a"));
    let s = g.stats();
    assert_eq!((s.lost, s.cursor), (2, 5), "offsets 1 and 2 were skipped");
}

/// Whether an enabled `Notified` has been woken, without waiting.
fn is_woken(n: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::future::Future::poll(n, &mut cx).is_ready()
}

/// A waiter blocked only by `max_in_flight` is woken by the ack that frees room, and not by
/// an ack that leaves the group full (an unknown offset) or one that frees room nobody
/// lacked (the group was not full).
#[test]
fn an_ack_wakes_waiters_only_when_it_frees_room_under_max_in_flight() {
    let log = log_with(3);
    let g = ConsumerGroup::new(
        GroupConfig {
            max_in_flight: 2,
            ..cfg()
        },
        0,
    );
    let t = Instant::now();
    assert_eq!(offsets(&pull(&g, &log, 1, t)), vec![0]);
    let mut not_full = std::pin::pin!(g.notify().notified());
    not_full.as_mut().enable();
    assert_eq!(g.ack(&[0], t), 1);
    assert!(!is_woken(not_full.as_mut()), "the group was not full");

    assert_eq!(offsets(&pull(&g, &log, 2, t)), vec![1, 2]);
    let mut full = std::pin::pin!(g.notify().notified());
    full.as_mut().enable();
    assert_eq!(g.ack(&[7], t), 0);
    assert!(
        !is_woken(full.as_mut()),
        "still full after an unknown offset"
    );
    assert_eq!(g.ack(&[1], t), 1);
    assert!(
        is_woken(full.as_mut()),
        "the ack freed room under max_in_flight"
    );
}

/// A nack wakes waiters only when it makes a message deliverable now: not with a delay, not
/// for an offset the group does not hold, not when the message was dead-lettered instead.
#[test]
fn a_nack_wakes_waiters_only_when_a_message_is_deliverable_now() {
    let log = log_with(3);
    let g = ConsumerGroup::new(
        GroupConfig {
            max_deliveries: 1,
            ..cfg()
        },
        0,
    );
    let t = Instant::now();
    assert_eq!(offsets(&pull(&g, &log, 3, t)), vec![0, 1, 2]);

    let mut n = std::pin::pin!(g.notify().notified());
    n.as_mut().enable();
    // max_deliveries 1: a nacked message has no delivery left and is dead-lettered.
    assert_eq!(g.nack(&[0], ms(0), t), 1);
    assert_eq!(g.stats().dead_letters, 1);
    assert!(!is_woken(n.as_mut()), "dead-lettered, nothing to deliver");

    let g = ConsumerGroup::new(cfg(), 0);
    assert_eq!(offsets(&pull(&g, &log, 3, t)), vec![0, 1, 2]);
    let mut n = std::pin::pin!(g.notify().notified());
    n.as_mut().enable();
    assert_eq!(g.nack(&[0], ms(100), t), 1);
    assert!(!is_woken(n.as_mut()), "deliverable only in 100 ms");
    assert_eq!(g.nack(&[9], ms(0), t), 0);
    assert!(!is_woken(n.as_mut()), "an unknown offset changes nothing");
    assert_eq!(g.nack(&[1], ms(0), t), 1);
    assert!(is_woken(n.as_mut()), "deliverable now");
}

/// A redrive that moves nothing (no such dead letter, or an empty list) wakes nobody; one
/// that moves a message does.
#[test]
fn a_redrive_wakes_waiters_only_when_it_moved_something() {
    let log = log_with(1);
    let g = ConsumerGroup::new(cfg(), 0);
    let t = Instant::now();
    pull(&g, &log, 1, t);
    let mut n = std::pin::pin!(g.notify().notified());
    n.as_mut().enable();
    assert_eq!(g.redrive(None), 0);
    assert_eq!(g.reject(&[0], t), 1);
    assert_eq!(g.redrive(Some(&[5])), 0);
    assert!(!is_woken(n.as_mut()), "nothing was redriven");
    assert_eq!(g.redrive(Some(&[0])), 1);
    assert!(is_woken(n.as_mut()));
}

/// The group's Debug output (logs) names its knobs and counters but no payload.
#[test]
fn debug_shows_config_and_stats_but_no_payload() {
    let mut log = MemoryLog::new(Retention::default());
    log.append(&[Bytes::from("secret-payload")], 0).unwrap();
    let g = ConsumerGroup::new(cfg(), 0);
    pull(&g, &log, 1, Instant::now());
    let s = format!("{g:?}");
    assert!(s.starts_with("ConsumerGroup"), "{s}");
    assert!(s.contains("max_in_flight: 100"), "{s}");
    assert!(s.contains("in_flight: 1"), "{s}");
    assert!(!s.contains("secret"), "{s}");
}

/// `dead_letter_max = 0` keeps no dead letters: each one is counted as dead-lettered and as
/// dropped at once. (Kills `+=` → `-=`/`*=` on `dead_letters_dropped` in that branch.)
#[test]
fn with_no_room_for_dead_letters_each_is_counted_as_dropped() {
    let log = log_with(3);
    let g = ConsumerGroup::new(
        GroupConfig {
            dead_letter_max: 0,
            max_deliveries: 1,
            ..cfg()
        },
        0,
    );
    let t = Instant::now();
    pull(&g, &log, 3, t);
    assert_eq!(g.reject(&[0, 1], t), 2);
    assert_eq!(g.nack(&[2], ms(0), t), 1, "last delivery: dead-lettered");
    assert!(g.dead_letters(10).is_empty());
    let s = g.stats();
    assert_eq!(
        (s.dead_lettered, s.dead_letters_dropped, s.dead_letters),
        (3, 3, 0)
    );
}
