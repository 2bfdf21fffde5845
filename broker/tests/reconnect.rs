//! Broker restarts and crashes, with the real `felix-broker` binary as its own process: the
//! client notices at once (the broker's stable stateless-reset key), reconnects, its calls
//! succeed again, subscriptions resume with events published after the restart, and calls
//! in flight when the broker dies fail with a retryable code instead of hanging.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use felix_client::{ClientConfig, ErrorCode, Start, Subscription, Tls};
use felix_transport::TransportConfig;

const NS: &str = "ns";

/// Client settings with short reconnect delays and deadlines.
fn client_config(p: &BrokerProcess) -> ClientConfig {
    ClientConfig {
        addresses: vec![p.addr.to_string()],
        tls: Tls::CaFile(p.ca.clone()),
        tenant: "t1".into(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        reconnect_initial: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(250),
        ..ClientConfig::default()
    }
}

/// The next event's (offset, payload).
async fn next_event(sub: &mut Subscription, what: &str, secs: u64) -> (Option<u64>, Bytes) {
    let ev = within(secs, what, sub.next())
        .await
        .unwrap_or_else(|| panic!("{what}: subscription ended"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    (ev.offset, ev.payload)
}

fn ev(offset: u64, payload: &str) -> (Option<u64>, Bytes) {
    (Some(offset), Bytes::from(payload.to_owned()))
}

/// The one gap `sub` reports is a reset of the stream `events` from old offset `from` to the
/// new log's offset 0, across two different epochs.
fn assert_reset_gap(sub: &Subscription, from: u64) {
    let gaps = sub.take_gaps();
    assert_eq!(gaps.len(), 1, "one reset gap: {gaps:?}");
    let g = &gaps[0];
    assert!(
        g.reset && g.stream == "events" && (g.from, g.to) == (from, 0),
        "{g:?}"
    );
    assert!(
        g.old_epoch.is_some() && g.new_epoch.is_some() && g.old_epoch != g.new_epoch,
        "{g:?}"
    );
}

/// How the broker comes back.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Restart {
    /// Same address and directory, so the same CA, certificate and reset key.
    KeepIdentity,
    /// Same address and reset key, but the dev CA is regenerated (its file was removed):
    /// the client must re-read the CA file to trust the new broker.
    NewCa,
}

async fn restart_scenario(mode: Restart) {
    let dir = scratch("restart");
    let p = BrokerProcess::spawn(dir.clone(), free_udp_port());
    let addr = p.addr;
    let cfg = client_config(&p);
    // `active` makes calls; `idle` only holds a subscription, so it learns about the restart
    // from its own keep-alives (every 5 s by default), not from a request of its own.
    let active = connect_retrying(cfg.clone()).await;
    let idle = connect_retrying(cfg.clone()).await;
    let mut sub_active = active.subscribe(NS, "events", Start::Latest).await.unwrap();
    let mut sub_idle = idle.subscribe(NS, "events", Start::Latest).await.unwrap();
    for i in 0..3 {
        active
            .publish(NS, "events", Bytes::from(format!("before-{i}")))
            .await
            .unwrap();
    }
    for i in 0..3 {
        let want = ev(i, &format!("before-{i}"));
        assert_eq!(next_event(&mut sub_active, "before", 5).await, want);
        assert_eq!(next_event(&mut sub_idle, "before", 5).await, want);
    }
    active
        .cache_put(NS, "c", "old", "v".into(), None)
        .await
        .unwrap();
    let ca_before = std::fs::read(&p.ca).unwrap();

    // Crash (SIGKILL: no goodbye to the clients) and restart on the same address.
    let mut p = p;
    p.kill();
    let killed_at = Instant::now();
    let _p = match mode {
        Restart::KeepIdentity => BrokerProcess::spawn_keeping_identity(dir, addr).await,
        Restart::NewCa => BrokerProcess::spawn(dir, addr),
    };
    let restarted_at = Instant::now();
    let ca_after = std::fs::read(&_p.ca).unwrap();
    assert_eq!(
        ca_before == ca_after,
        mode == Restart::KeepIdentity,
        "the restart did not produce the CA situation this scenario is about"
    );

    // (a) Calls succeed again within a deadline.
    let (_, recovered, first_err) = retry_until(10, "publish after restart", || {
        active.publish(NS, "events", "after-0".into())
    })
    .await;
    if let Some((e, _)) = &first_err {
        assert_eq!(e.code(), ErrorCode::Unavailable, "{e:?}");
    }
    let version = active
        .cache_put(NS, "c", "new", "fresh".into(), None)
        .await
        .unwrap();
    let got = active.cache_get(NS, "c", "new").await.unwrap().unwrap();
    assert_eq!((got.value.as_ref(), got.version), (&b"fresh"[..], version));
    assert_eq!(
        active.cache_get(NS, "c", "old").await.unwrap(),
        None,
        "a restarted in-memory broker has no old entries"
    );

    // (b) Both subscriptions resume with what was published after the restart. The new
    // broker's log starts again at offset 0, in a new epoch: the client must notice and
    // start again from 0, or it would skip `after-0`, and report the reset as a gap from the
    // old offset (3) before `after-0`. (The idle client resubscribes only after its
    // keep-alive met the reset.) A new log that grew past the old offset before the
    // subscriber came back is in tests/epoch_reset.rs.
    assert_eq!(
        next_event(&mut sub_active, "after-0 (active)", 10).await,
        ev(0, "after-0")
    );
    assert_reset_gap(&sub_active, 3);
    assert_eq!(
        next_event(&mut sub_idle, "after-0 (idle)", 20).await,
        ev(0, "after-0")
    );
    assert_reset_gap(&sub_idle, 3);
    let idle_resumed = restarted_at.elapsed();
    for i in 1..3 {
        active
            .publish(NS, "events", Bytes::from(format!("after-{i}")))
            .await
            .unwrap();
    }
    for i in 1..3 {
        let want = ev(i, &format!("after-{i}"));
        assert_eq!(next_event(&mut sub_active, "after (active)", 5).await, want);
        assert_eq!(next_event(&mut sub_idle, "after (idle)", 5).await, want);
    }
    assert!(sub_active.take_gaps().is_empty());
    assert!(sub_idle.take_gaps().is_empty());
    // Both keep working on the new connection.
    active
        .publish(NS, "events", "after-3".into())
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut sub_active, "live", 5).await,
        ev(3, "after-3")
    );
    assert_eq!(next_event(&mut sub_idle, "live", 5).await, ev(3, "after-3"));
    assert!(sub_active.try_next().is_none() && sub_idle.try_next().is_none());

    // (c) Detection is far below the 30 s idle timeout: the active client's first call after
    // the restart meets a stateless reset; the idle one finds out at its next keep-alive.
    eprintln!(
        "{mode:?}: broker down {:?}; active client: first error {:?}, recovered {:?} after \
         restart; idle subscriber resumed {:?} after restart",
        restarted_at - killed_at,
        first_err.as_ref().map(|(e, t)| (e.code(), *t)),
        recovered,
        idle_resumed,
    );
    if let Some((_, t)) = &first_err {
        assert!(*t < Duration::from_secs(1), "reset seen after {t:?}");
    }
    assert!(
        recovered < Duration::from_secs(3),
        "recovered after {recovered:?}"
    );
    assert!(
        idle_resumed < Duration::from_secs(12),
        "idle subscriber resumed after {idle_resumed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_recovers_after_a_restart_with_the_same_identity() {
    restart_scenario(Restart::KeepIdentity).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_recovers_after_a_restart_with_a_new_dev_ca() {
    restart_scenario(Restart::NewCa).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_flight_when_the_broker_dies_fails_unavailable() {
    let dir = scratch("inflight");
    let mut p = BrokerProcess::spawn(dir.clone(), free_udp_port());
    let addr = p.addr;
    let c = connect_retrying(client_config(&p)).await;
    let consumer = c.consumer(NS, "jobs", "g");
    // A long poll is parked on the broker: its own deadline is 2 s + 20 s away.
    let wait = Duration::from_secs(20);
    let started = Instant::now();
    let pull = {
        let consumer = consumer.clone();
        tokio::spawn(async move { consumer.pull(1, wait).await })
    };
    let clock = c.consumer(NS, "jobs", "clock");
    assert!(clock
        .pull(1, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    assert!(!pull.is_finished());
    p.kill();
    let killed_at = Instant::now();
    let _p = BrokerProcess::spawn_keeping_identity(dir, addr).await;
    let restarted_at = Instant::now();
    let err = within(15, "the in-flight pull to fail", pull)
        .await
        .unwrap()
        .expect_err("the broker holding the pull died");
    let failed_at = Instant::now();
    eprintln!(
        "in-flight pull failed {:?} after the kill ({:?} after the restart): {err}",
        failed_at - killed_at,
        failed_at.saturating_duration_since(restarted_at)
    );
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err:?}");
    assert!(err.retryable());
    assert!(
        started.elapsed() < wait,
        "the pull failed only after {:?}",
        started.elapsed()
    );
    // The next call reconnects by itself.
    let (got, _, _) = retry_until(10, "pull after restart", || {
        consumer.pull(1, Duration::ZERO)
    })
    .await;
    assert!(got.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_flight_fails_at_the_idle_timeout_when_the_broker_stays_down() {
    let mut p = BrokerProcess::spawn(scratch("down"), free_udp_port());
    let cfg = ClientConfig {
        transport: TransportConfig {
            keep_alive_interval_ms: Some(200),
            idle_timeout_ms: 1_000,
            ..TransportConfig::default()
        },
        ..client_config(&p)
    };
    let c = connect_retrying(cfg).await;
    let consumer = c.consumer(NS, "jobs", "g");
    let wait = Duration::from_secs(20);
    let pull = {
        let consumer = consumer.clone();
        tokio::spawn(async move { consumer.pull(1, wait).await })
    };
    assert!(c
        .consumer(NS, "jobs", "clock")
        .pull(1, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    p.kill();
    let killed_at = Instant::now();
    let err = within(10, "the in-flight pull to fail", pull)
        .await
        .unwrap()
        .expect_err("the broker holding the pull died");
    let failed_after = killed_at.elapsed();
    eprintln!("in-flight pull failed {failed_after:?} after the kill (no restart): {err}");
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err:?}");
    assert!(failed_after < Duration::from_secs(5));
    // With nobody listening, later calls fail within their deadline, retryably.
    let started = Instant::now();
    let err = within(10, "a call with the broker down", c.ping())
        .await
        .unwrap_err();
    assert!(err.retryable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
