//! The durable path of a stream (`docs/storage.md` 4.5) over a log whose tickets the test
//! resolves: records are neither delivered nor readable before their ticket resolved and
//! `make_visible` ran, then they are, once each, in log order.

use std::time::Duration;

use futures::FutureExt;

use super::*;
use crate::log::fake::FakeDurableLog;
use crate::log::StorageError;

fn durable(name: &str) -> (Arc<Stream>, Arc<crate::log::fake::FakeSync>) {
    let (log, sync) = FakeDurableLog::new(Retention::default());
    let config = StreamConfig {
        block_timeout: Duration::from_secs(1),
        ..StreamConfig::default()
    };
    (Stream::new(name.into(), config, Box::new(log)), sync)
}

fn p(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn drain(sub: &Subscriber) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    while sub
        .try_next_batch(&mut out, usize::MAX, usize::MAX)
        .unwrap()
        > 0
    {}
    out.into_iter().map(|e| (e.offset, e.payload)).collect()
}

#[test]
fn records_are_seen_only_after_their_ticket_resolved_and_in_log_order() {
    let (s, sync) = durable("d");
    assert_eq!(
        s.durability(),
        Durability::Durable(crate::log::FsyncPolicy::Always)
    );
    let live = Subscriber::new(1, 100, FullPolicy::Disconnect);
    s.subscribe(&live, Start::Latest);
    let a = s.publish(&[p("a0"), p("a1")]).unwrap();
    let b = s.publish(&[p("b0")]).unwrap();
    assert_eq!((a.offsets.clone(), b.offsets.clone()), (0..2, 2..3));
    let (ta, tb) = (a.ticket.expect("durable"), b.ticket.expect("durable"));
    // Appended but not durable: nobody sees it.
    assert!(drain(&live).is_empty(), "no fanout before the ticket");
    assert_eq!(s.next_offset(), 0, "readers see nothing yet");
    assert!(s.read(0, 10).records.is_empty(), "groups read nothing yet");
    assert!(
        ta.wait().now_or_never().is_none(),
        "the ticket waits for the sync"
    );
    // One sync covers both publishes (group commit); the later publisher runs first.
    sync.sync_to(3);
    assert_eq!(tb.wait().now_or_never(), Some(Ok(())));
    let v = s.make_visible(b.offsets.end);
    assert_eq!(v.fanout, 1);
    assert_eq!(s.make_visible(a.offsets.end).fanout, 0, "already visible");
    assert_eq!(
        drain(&live),
        vec![(0, p("a0")), (1, p("a1")), (2, p("b0"))],
        "each record once, in log order"
    );
    assert_eq!(s.next_offset(), 3);
    assert_eq!(s.read(0, 10).records.len(), 3);
}

#[test]
fn a_subscriber_that_arrives_between_append_and_sync_misses_nothing_and_sees_nothing_twice() {
    let (s, sync) = durable("d");
    let first = s.publish(&[p("x")]).unwrap();
    sync.sync_to(1);
    let _ = s.make_visible(first.offsets.end);
    let second = s.publish(&[p("y")]).unwrap();
    // Attached while `y` is pending: the replay from earliest stops at the visible end, `y`
    // arrives by fanout once visible.
    let sub = Subscriber::new(2, 100, FullPolicy::Disconnect);
    let info = s.subscribe(&sub, Start::Earliest);
    assert_eq!(info.start_offset, 0);
    assert_eq!(drain(&sub), vec![(0, p("x"))]);
    let late = Subscriber::new(3, 100, FullPolicy::Disconnect);
    assert_eq!(s.subscribe(&late, Start::Latest).start_offset, 1);
    sync.sync_to(2);
    let _ = s.make_visible(second.offsets.end);
    assert_eq!(drain(&sub), vec![(1, p("y"))]);
    assert_eq!(drain(&late), vec![(1, p("y"))]);
}

#[test]
fn a_refused_or_failed_durable_append_is_never_seen() {
    let (s, sync) = durable("d");
    let sub = Subscriber::new(1, 100, FullPolicy::Disconnect);
    s.subscribe(&sub, Start::Latest);
    let full = StorageError::DiskFull { free: 1, min: 2 };
    sync.refuse(Some(full.clone()));
    match s.publish(&[p("no")]) {
        Err(AppendError::Storage(e)) => assert_eq!(e, full),
        other => panic!("expected a storage refusal, got {other:?}"),
    }
    assert_eq!(s.stats().next_offset, 0, "a refused append appends nothing");
    sync.refuse(None);
    let t = s.publish(&[p("lost")]).unwrap().ticket.unwrap();
    sync.fail_pending(StorageError::SyncTimeout);
    assert_eq!(
        t.wait().now_or_never(),
        Some(Err(StorageError::SyncTimeout))
    );
    assert!(drain(&sub).is_empty(), "a failed write is never delivered");
    assert_eq!(s.next_offset(), 0);
}
