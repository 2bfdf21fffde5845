//! The client core's direct calls (`DirectCall`: sent at once, outcome by callback, deadline
//! kept by the stream's sweeper) over real QUIC: get/put/delete round trips started from a
//! runtime task and from a plain thread, argument and condition failures, and, with the
//! broker process frozen, a deadline that fires, a cancel, a close and a lost connection, each
//! ending the call exactly once.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use felix_client::{
    CacheValue, ClientConfig, DirectCall, Error, ErrorCode, PutCondition, Result, Tls,
};
use felix_transport::TransportConfig;
use tokio::runtime::Handle;

const NS: &str = "ns";

/// Starts `call` and returns where its one outcome arrives (a second one would be a bug the
/// receiver's later `try_recv` catches).
fn start<T: Send + 'static>(rt: &Handle, call: DirectCall<T>) -> mpsc::Receiver<Result<T>> {
    let (tx, rx) = mpsc::channel();
    call.start(rt, move |r| tx.send(r).expect("receiver alive"));
    rx
}

/// Waits for a direct call's outcome without blocking the runtime that produces it.
async fn outcome<T: Send + 'static>(rx: mpsc::Receiver<Result<T>>, what: &str) -> Result<T> {
    let what = what.to_owned();
    within(10, &what.clone(), async move {
        tokio::task::spawn_blocking(move || {
            let r = rx.recv().expect("the callback ran");
            assert!(rx.try_recv().is_err(), "{what}: a second outcome");
            r
        })
        .await
        .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_get_put_delete_round_trip_from_a_task_and_from_a_plain_thread() {
    let b = TestBroker::start("direct-basic").await;
    let c = b.client().await;
    let rt = Handle::current();
    let put = c
        .cache_put_direct(NS, "c", "k", "one".into(), None, PutCondition::Always)
        .expect("connected")
        .unwrap();
    let v1 = outcome(start(&rt, put), "put").await.unwrap();
    // The async API sees what the direct call wrote, and the other way round.
    let got = c.cache_get(NS, "c", "k").await.unwrap().expect("present");
    assert_eq!((got.value.as_ref(), got.version), (&b"one"[..], v1));
    let v2 = c.cache_put(NS, "c", "k", "two".into(), None).await.unwrap();
    let get = c
        .cache_get_direct(NS, "c", "k")
        .expect("connected")
        .unwrap();
    let got = outcome(start(&rt, get), "get").await.unwrap();
    assert_eq!(
        got,
        Some(CacheValue {
            value: "two".into(),
            version: v2
        })
    );
    // From a thread that is not the runtime's: the runtime still sends and reads.
    let (c2, rt2) = (c.clone(), rt.clone());
    let from_thread = std::thread::spawn(move || {
        let get = c2.cache_get_direct(NS, "c", "missing").unwrap().unwrap();
        start(&rt2, get)
    })
    .join()
    .unwrap();
    assert_eq!(
        outcome(from_thread, "get from a thread").await.unwrap(),
        None
    );
    // Conditions and deletes report as the async calls do.
    let again = c
        .cache_put_direct(NS, "c", "k", "x".into(), None, PutCondition::IfAbsent)
        .unwrap()
        .unwrap();
    let err = outcome(start(&rt, again), "put-if-absent")
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    let del = c.cache_delete_direct(NS, "c", "k").unwrap().unwrap();
    assert!(outcome(start(&rt, del), "delete").await.unwrap());
    let del = c.cache_delete_direct(NS, "c", "k").unwrap().unwrap();
    assert!(!outcome(start(&rt, del), "delete again").await.unwrap());
    // Bad arguments fail before anything is sent.
    let zero_ttl = c.cache_put_direct(
        NS,
        "c",
        "k",
        "v".into(),
        Some(Duration::ZERO),
        PutCondition::Always,
    );
    assert!(matches!(zero_ttl, Some(Err(Error::InvalidArgument(_)))));
    let huge = vec![0u8; 64 << 20];
    let too_big = c.cache_put_direct(NS, "c", "k", huge.into(), None, PutCondition::Always);
    assert!(matches!(too_big, Some(Err(Error::FrameTooLarge { .. }))));
    // A closed client has no connection to send on.
    c.close();
    assert!(c.cache_get_direct(NS, "c", "k").is_none());
}

fn config(p: &BrokerProcess, request_timeout: Duration) -> ClientConfig {
    ClientConfig {
        addresses: vec![p.addr.to_string()],
        tls: Tls::CaFile(p.ca.clone()),
        tenant: "t1".into(),
        request_timeout,
        transport: TransportConfig {
            keep_alive_interval_ms: Some(200),
            idle_timeout_ms: 1_000,
            ..TransportConfig::default()
        },
        ..ClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_direct_calls_end_by_deadline_cancel_close_or_connection_loss() {
    let mut p = BrokerProcess::spawn(scratch("direct-frozen"), free_udp_port());
    let short = connect_retrying(config(&p, Duration::from_millis(300))).await;
    let long = connect_retrying(config(&p, Duration::from_secs(30))).await;
    let closing = connect_retrying(config(&p, Duration::from_secs(30))).await;
    let rt = Handle::current();
    // Answered while the broker runs: the connections are up.
    let get = short.cache_get_direct(NS, "c", "k").unwrap().unwrap();
    assert_eq!(outcome(start(&rt, get), "warm-up get").await.unwrap(), None);
    p.signal("-STOP");

    // The sweeper fails an unanswered call at its deadline, not before.
    let started = Instant::now();
    let get = short.cache_get_direct(NS, "c", "k").unwrap().unwrap();
    let err = outcome(start(&rt, get), "overdue get").await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // Cancel ends it at once, on the cancelling thread, and only once.
    let get = long.cache_get_direct(NS, "c", "k").unwrap().unwrap();
    let handle = get.handle();
    let rx = start(&rt, get);
    assert!(handle.cancel());
    assert!(matches!(rx.try_recv(), Ok(Err(Error::Cancelled))));
    assert!(!handle.cancel(), "a second cancel finds nothing");

    // Closing the client ends its calls in flight with `closed`.
    let get = closing.cache_get_direct(NS, "c", "k").unwrap().unwrap();
    let on_close = start(&rt, get);
    closing.close();
    let err = outcome(on_close, "get when closed").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Closed, "{err}");

    // A broker that dies leaves the call to the connection's idle timeout: a retryable loss.
    let get = long.cache_get_direct(NS, "c", "k").unwrap().unwrap();
    let lost = start(&rt, get);
    p.kill();
    let err = outcome(lost, "get when the broker died").await.unwrap_err();
    assert!(matches!(err, Error::ConnectionLost(_)), "{err}");
    assert!(err.code().retryable(), "{err}");
}
