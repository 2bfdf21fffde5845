//! The runtime is driven by the thread that waits (blocking calls, deferred queues) and by the
//! background thread otherwise, against a real broker process.

mod common;

use std::ptr;
use std::sync::mpsc;
use std::time::Duration;

use felix_ffi::*;

fn b(s: &[u8]) -> FelixBytes {
    FelixBytes {
        ptr: s.as_ptr(),
        len: s.len(),
    }
}

struct Client(*mut FelixClient);

// SAFETY: FelixClient is thread-safe (see the header).
unsafe impl Send for Client {}
unsafe impl Sync for Client {}

impl Drop for Client {
    fn drop(&mut self) {
        unsafe { felix_client_free(self.0) }
    }
}

fn connect(addr: &str, ca: &std::path::Path) -> Client {
    connect_with_deadline(addr, ca, 0)
}

/// A client whose requests fail after `request_timeout_ms` (0: the default).
fn connect_with_deadline(addr: &str, ca: &std::path::Path, request_timeout_ms: u32) -> Client {
    let ca = ca.to_str().unwrap().as_bytes().to_vec();
    unsafe {
        let mut o: FelixConnectOptions = std::mem::zeroed();
        felix_connect_options_init(&mut o);
        let a = b(addr.as_bytes());
        o.addresses = &a;
        o.addresses_len = 1;
        o.ca_file = b(&ca);
        o.request_timeout_ms = request_timeout_ms;
        let mut c = ptr::null_mut();
        assert_eq!(
            felix_client_connect(&o, &mut c, ptr::null_mut()),
            FelixStatus::Ok
        );
        Client(c)
    }
}

/// A broker of its own, a client of it, and the folder to remove at the end.
struct Setup {
    broker: common::Broker,
    dir: std::path::PathBuf,
    addr: String,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("felix-ffi-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (broker, addr) = common::start_broker(&dir);
        Setup { broker, dir, addr }
    }

    fn client(&self) -> Client {
        connect(&self.addr, &self.dir.join("ca.pem"))
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A subscription from the latest event of `stream`.
unsafe fn subscribe_latest(c: &Client, stream: &[u8]) -> *mut FelixSubscription {
    let mut sub = ptr::null_mut();
    let st = felix_subscribe(
        c.0,
        b(b"default"),
        b(stream),
        FelixStart::Latest as u32,
        0,
        &mut sub,
        ptr::null_mut(),
    );
    assert_eq!(st, FelixStatus::Ok);
    sub
}

fn status_of(st: FelixStatus, err: *mut FelixError) -> FelixStatus {
    unsafe { felix_error_free(err) };
    st
}

#[test]
fn deferred_queue_runs_calls_on_the_waiting_thread_and_cancels_them() {
    let setup = Setup::new("driver");
    let c = setup.client();
    unsafe {
        let q = felix_completion_queue_new_deferred();
        let mut done: FelixCompletion = std::mem::zeroed();

        // Start, then wait for it on this thread.
        let st = felix_cache_put_start(
            c.0,
            b(b"default"),
            b(b"drv"),
            b(b"k"),
            b(b"v1"),
            0,
            0,
            0,
            q,
            1,
            ptr::null_mut(),
        );
        assert_eq!(st, FelixStatus::Ok);
        let st = felix_completion_queue_wait_one(q, 1, &mut done, ptr::null_mut());
        assert_eq!(
            (st, done.token, done.status),
            (FelixStatus::Ok, 1, FelixStatus::Ok)
        );
        felix_result_free(done.result);

        // Cancelled before anyone waited: it never runs.
        let st = felix_cache_put_start(
            c.0,
            b(b"default"),
            b(b"drv"),
            b(b"k"),
            b(b"v2"),
            0,
            0,
            0,
            q,
            2,
            ptr::null_mut(),
        );
        assert_eq!(st, FelixStatus::Ok);
        assert_eq!(felix_completion_queue_cancel(q, 2), FelixStatus::Ok);
        let st = felix_completion_queue_wait_one(q, 2, &mut done, ptr::null_mut());
        assert_eq!((st, done.status), (FelixStatus::Ok, FelixStatus::Cancelled));
        felix_error_free(done.error);
        let mut r = ptr::null_mut();
        let st = felix_cache_get(
            c.0,
            b(b"default"),
            b(b"drv"),
            b(b"k"),
            &mut r,
            ptr::null_mut(),
        );
        assert_eq!(st, FelixStatus::Ok);
        let item = &*(*r).items;
        assert_eq!(
            std::slice::from_raw_parts(item.payload.ptr, item.payload.len),
            b"v1"
        );
        felix_result_free(r);

        // Cancelled from another thread while this one waits for events that never come.
        let sub = subscribe_latest(&c, b"drv-quiet");
        assert_eq!(
            felix_subscription_next_start(sub, 1, q, 3, ptr::null_mut()),
            FelixStatus::Ok
        );
        let qa = q as usize;
        let canceller = std::thread::spawn(move || {
            felix_completion_queue_cancel(qa as *const FelixCompletionQueue, 3)
        });
        let st = felix_completion_queue_wait_one(q, 3, &mut done, ptr::null_mut());
        assert_eq!((st, done.status), (FelixStatus::Ok, FelixStatus::Cancelled));
        felix_error_free(done.error);
        assert_eq!(canceller.join().unwrap(), FelixStatus::Ok);

        // Misuse is refused with a clear status.
        let mut err = ptr::null_mut();
        let st = felix_completion_queue_wait_one(q, 99, &mut done, &mut err);
        assert_eq!(status_of(st, err), FelixStatus::InvalidArgument);
        let mut buf: [FelixCompletion; 1] = std::mem::zeroed();
        let mut n = 0usize;
        let st = felix_completion_queue_wait(q, buf.as_mut_ptr(), 1, 0, &mut n, &mut err);
        assert_eq!(status_of(st, err), FelixStatus::InvalidArgument);
        let plain = felix_completion_queue_new();
        let st = felix_completion_queue_wait_one(plain, 1, &mut done, &mut err);
        assert_eq!(status_of(st, err), FelixStatus::InvalidArgument);
        felix_completion_queue_free(plain);

        // A started call left unwaited is dropped with its queue.
        assert_eq!(
            felix_subscription_next_start(sub, 1, q, 4, ptr::null_mut()),
            FelixStatus::Ok
        );
        felix_completion_queue_free(q);
        felix_subscription_free(sub);
    }
}

extern "C" fn wake(user: *mut std::ffi::c_void) {
    let tx = unsafe { &*(user as *const mpsc::SyncSender<()>) };
    let _ = tx.try_send(());
}

/// Between blocking calls made on this thread (which drive the runtime while they wait), work
/// started on a completion queue runs and events arrive while no thread is inside a blocking
/// Felix call: the background thread takes the runtime back.
#[test]
fn events_keep_flowing_when_no_caller_drives() {
    let setup = Setup::new("driver2");
    let c = setup.client();
    let publisher = setup.client();
    unsafe {
        let sub = subscribe_latest(&c, b"drv-events");
        let (tx, rx) = mpsc::sync_channel::<()>(64);
        let tx = Box::into_raw(Box::new(tx));
        let st = felix_subscription_set_wake(sub, Some(wake), tx.cast(), ptr::null_mut());
        assert_eq!(st, FelixStatus::Ok);
        let q = felix_completion_queue_new();
        for i in 0..20u8 {
            // Published through a completion queue: no thread is inside a blocking Felix call
            // while the publish runs and the event is delivered.
            let payload = [i];
            let payloads = [b(&payload)];
            let st = felix_client_publish_start(
                publisher.0,
                b(b"default"),
                b(b"drv-events"),
                payloads.as_ptr(),
                1,
                FelixAckMode::PerBatch as u32,
                q,
                u64::from(i),
                ptr::null_mut(),
            );
            assert_eq!(st, FelixStatus::Ok);
            let mut done: [FelixCompletion; 1] = std::mem::zeroed();
            let mut n = 0usize;
            let st = felix_completion_queue_wait(
                q,
                done.as_mut_ptr(),
                1,
                10_000,
                &mut n,
                ptr::null_mut(),
            );
            assert_eq!(
                (st, n, done[0].status),
                (FelixStatus::Ok, 1, FelixStatus::Ok)
            );
            felix_result_free(done[0].result);
            let mut got: *mut FelixResult = ptr::null_mut();
            while got.is_null() {
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("no event within 10 s while no caller drove the runtime");
                let st = felix_subscription_try_next(sub, 1, &mut got, ptr::null_mut());
                assert_eq!(st, FelixStatus::Ok);
            }
            let item = &*(*got).items;
            assert_eq!(*item.payload.ptr, i);
            felix_result_free(got);
            // And a blocking call on this thread in between (it drives while it waits).
            let mut r = ptr::null_mut();
            let st = felix_cache_get(
                c.0,
                b(b"default"),
                b(b"drv"),
                b(b"x"),
                &mut r,
                ptr::null_mut(),
            );
            assert_eq!(st, FelixStatus::Ok);
            felix_result_free(r);
        }
        felix_completion_queue_free(q);
        felix_subscription_set_wake(sub, None, ptr::null_mut(), ptr::null_mut());
        felix_subscription_free(sub);
        drop(Box::from_raw(tx));
    }
}

/// A burst of calls started from another thread all complete, and the queue's descriptor turns
/// readable when they do.
#[test]
fn started_calls_complete_and_signal_the_queue_fd() {
    let setup = Setup::new("driver3");
    let c = setup.client();
    unsafe {
        let q = felix_completion_queue_new();
        let mut fd = -1;
        assert_eq!(
            felix_completion_queue_fd(q, &mut fd, ptr::null_mut()),
            FelixStatus::Ok
        );
        assert!(fd >= 0);
        // SAFETY: the queue owns the descriptor; ManuallyDrop never closes it.
        let signal = std::mem::ManuallyDrop::new(
            <std::os::unix::net::UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd),
        );
        let mut byte = [0u8; 64];
        let idle = std::io::Read::read(&mut &*signal, &mut byte);
        assert_eq!(
            idle.unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "readable with nothing completed"
        );
        let get = |token: u64| {
            let st = felix_cache_get_start(
                c.0,
                b(b"default"),
                b(b"drv"),
                b(b"held"),
                q,
                token,
                ptr::null_mut(),
            );
            assert_eq!(st, FelixStatus::Ok);
        };
        let collect = |want: usize| {
            let mut buf: [FelixCompletion; 8] = std::mem::zeroed();
            let mut got = 0;
            while got < want {
                let mut n = 0usize;
                let st = felix_completion_queue_wait(
                    q,
                    buf.as_mut_ptr(),
                    8,
                    10_000,
                    &mut n,
                    ptr::null_mut(),
                );
                assert_eq!(st, FelixStatus::Ok);
                assert!(n > 0, "started calls did not complete within 10 s");
                for done in &buf[..n] {
                    assert_eq!(done.status, FelixStatus::Ok);
                    felix_result_free(done.result);
                }
                got += n;
            }
        };
        (0..8).for_each(get);
        collect(8);
        // The first completion landed in an empty queue: the descriptor has a byte to read.
        assert!(std::io::Read::read(&mut &*signal, &mut byte).unwrap() > 0);
        felix_completion_queue_free(q);
    }
}

/// Whether `key` holds a live entry, read with a blocking call.
unsafe fn present(c: &Client, key: &[u8]) -> bool {
    let mut r = ptr::null_mut();
    let st = felix_cache_get(
        c.0,
        b(b"default"),
        b(b"drv"),
        b(key),
        &mut r,
        ptr::null_mut(),
    );
    assert_eq!(st, FelixStatus::Ok);
    let found = (*(*r).items).present;
    felix_result_free(r);
    found
}

unsafe fn put_start(c: &Client, q: *const FelixCompletionQueue, key: &[u8], token: u64) {
    put_value_start(c, q, key, b"v", token);
}

unsafe fn put_value_start(
    c: &Client,
    q: *const FelixCompletionQueue,
    key: &[u8],
    value: &[u8],
    token: u64,
) {
    let st = felix_cache_put_start(
        c.0,
        b(b"default"),
        b(b"drv"),
        b(key),
        b(value),
        0,
        0,
        0,
        q,
        token,
        ptr::null_mut(),
    );
    assert_eq!(st, FelixStatus::Ok);
}

/// Waits (driving the runtime) until `want` completions have come, returning their tokens and
/// statuses.
unsafe fn collect(q: *const FelixCompletionQueue, want: usize) -> Vec<(u64, FelixStatus)> {
    let mut buf: [FelixCompletion; 16] = std::mem::zeroed();
    let mut got = Vec::new();
    while got.len() < want {
        let mut n = 0usize;
        let st =
            felix_completion_queue_wait(q, buf.as_mut_ptr(), 16, 10_000, &mut n, ptr::null_mut());
        assert_eq!(st, FelixStatus::Ok);
        assert!(n > 0, "no completion within 10 s ({} of {want})", got.len());
        for done in &buf[..n] {
            got.push((done.token, done.status));
            felix_result_free(done.result);
            felix_error_free(done.error);
        }
    }
    got
}

#[test]
fn driven_queue_starts_calls_when_a_thread_waits_and_serves_many_starters() {
    let setup = Setup::new("driver4");
    let c = setup.client();
    unsafe {
        let q = felix_completion_queue_new_driven();

        // Nobody waits: the call is held, not run.
        put_start(&c, q, b"held-1", 1);
        assert!(
            !present(&c, b"held-1"),
            "a driven call ran before anyone waited"
        );
        assert_eq!(collect(q, 1), vec![(1, FelixStatus::Ok)]);
        assert!(present(&c, b"held-1"));

        // Cancelled before a wait started it: it never runs.
        put_start(&c, q, b"held-2", 2);
        assert_eq!(felix_completion_queue_cancel(q, 2), FelixStatus::Ok);
        assert_eq!(collect(q, 1), vec![(2, FelixStatus::Cancelled)]);
        assert!(!present(&c, b"held-2"), "a cancelled driven call ran");

        // Four threads start calls while this one waits: each call starts and completes once.
        let qa = q as usize;
        let c = std::sync::Arc::new(c);
        let starters: Vec<_> = (0..4u64)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        put_start(
                            &c,
                            qa as *const _,
                            format!("m-{t}-{i}").as_bytes(),
                            100 + t * 1000 + i,
                        );
                    }
                })
            })
            .collect();
        let mut got = collect(q, 200);
        starters.into_iter().for_each(|s| s.join().unwrap());
        got.sort_by_key(|&(token, _)| token);
        let want: Vec<_> = (0..4u64)
            .flat_map(|t| (0..50u64).map(move |i| (100 + t * 1000 + i, FelixStatus::Ok)))
            .collect();
        assert_eq!(got, want);

        // A call started while the waiter sleeps on an idle queue wakes it (or, started
        // first, is found by the wait).
        for i in 0..10u64 {
            let c = c.clone();
            let starter =
                std::thread::spawn(move || put_start(&c, qa as *const _, b"late", 5000 + i));
            assert_eq!(collect(q, 1), vec![(5000 + i, FelixStatus::Ok)]);
            starter.join().unwrap();
        }

        // A poll (timeout 0) does not drive: it hands held calls to the background thread.
        put_start(&c, q, b"polled", 6000);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut buf: [FelixCompletion; 1] = std::mem::zeroed();
        loop {
            let mut n = 0usize;
            let st =
                felix_completion_queue_wait(q, buf.as_mut_ptr(), 1, 0, &mut n, ptr::null_mut());
            assert_eq!(st, FelixStatus::Ok);
            if n == 1 {
                assert_eq!((buf[0].token, buf[0].status), (6000, FelixStatus::Ok));
                felix_result_free(buf[0].result);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "a polled call never completed"
            );
            std::thread::yield_now();
        }

        // A held call is dropped with its queue.
        put_start(&c, q, b"dropped", 7000);
        felix_completion_queue_free(q);
        assert!(!present(&c, b"dropped"));
    }
}

#[test]
fn two_threads_waiting_on_one_driven_queue_share_its_calls() {
    let setup = Setup::new("driver5");
    let c = std::sync::Arc::new(setup.client());
    unsafe {
        let q = felix_completion_queue_new_driven();
        let qa = q as usize;
        let (tx, rx) = mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Each waiter hands back what it collected; together they must see every call once.
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let tx = tx.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let q = qa as *const FelixCompletionQueue;
                    let mut buf: [FelixCompletion; 16] = std::mem::zeroed();
                    let mut mine = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let mut n = 0usize;
                        let st = felix_completion_queue_wait(
                            q,
                            buf.as_mut_ptr(),
                            16,
                            50,
                            &mut n,
                            ptr::null_mut(),
                        );
                        assert_eq!(st, FelixStatus::Ok);
                        for done in &buf[..n] {
                            assert_eq!(done.status, FelixStatus::Ok);
                            felix_result_free(done.result);
                            mine.push(done.token);
                            let _ = tx.send(());
                        }
                    }
                    mine
                })
            })
            .collect();
        for i in 0..100u64 {
            put_start(&c, q, format!("two-{i}").as_bytes(), i);
        }
        for got in 0..100 {
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("only {got} of 100 calls completed within 10 s"));
        }
        // Stopped before the queue is freed: a freed queue must not be waited on again.
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut all: Vec<u64> = waiters
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        felix_completion_queue_free(q);
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}

/// A waiter that leaves a driven queue with calls still running hands them to another thread
/// waiting on it (they run inside a wait, so someone must keep polling them).
#[test]
fn a_driven_call_left_running_by_one_waiter_is_finished_by_another() {
    let setup = Setup::new("driver6");
    let c = setup.client();
    let publisher = setup.client();
    unsafe {
        let sub = subscribe_latest(&c, b"drv-handover");
        let q = felix_completion_queue_new_driven();
        assert_eq!(
            felix_subscription_next_start(sub, 1, q, 1, ptr::null_mut()),
            FelixStatus::Ok
        );
        let qa = q as usize;
        let wait = move |timeout_ms: i32| {
            std::thread::spawn(move || {
                let mut done: [FelixCompletion; 1] = std::mem::zeroed();
                let mut n = 0usize;
                let st = felix_completion_queue_wait(
                    qa as *const FelixCompletionQueue,
                    done.as_mut_ptr(),
                    1,
                    timeout_ms,
                    &mut n,
                    ptr::null_mut(),
                );
                assert_eq!(st, FelixStatus::Ok);
                if n == 0 {
                    return None;
                }
                felix_result_free(done[0].result);
                Some((done[0].token, done[0].status))
            })
        };
        // The first waiter (most likely the one to start the call) gives up while the call
        // waits for an event; the second, waiting meanwhile, must finish it.
        let first = wait(100);
        let second = wait(10_000);
        let first = first.join().unwrap();
        if first.is_none() {
            let st = felix_client_publish(
                publisher.0,
                b(b"default"),
                b(b"drv-handover"),
                b(b"e"),
                ptr::null_mut(),
            );
            assert_eq!(st, FelixStatus::Ok);
        }
        let second = second.join().unwrap();
        assert_eq!(
            first.or(second),
            Some((1, FelixStatus::Ok)),
            "the running call was never finished"
        );
        felix_completion_queue_free(q);
        felix_subscription_free(sub);
    }
}

#[test]
fn cache_calls_in_flight_end_once_by_cancel_deadline_or_queue_free() {
    // Cache gets, puts and deletes on queues other than deferred ones are direct calls (sent at
    // once, completed by callback, deadline kept by the stream's sweeper): with the broker
    // frozen, each way a call can end without a reply ends it exactly once.
    let setup = Setup::new("driver7");
    let ca = setup.dir.join("ca.pem");
    let (c, short) = (setup.client(), connect_with_deadline(&setup.addr, &ca, 300));
    unsafe {
        let q = felix_completion_queue_new();
        let driven = felix_completion_queue_new_driven();
        put_start(&c, q, b"warm", 1);
        put_start(&short, q, b"warm", 2);
        let mut warm = collect(q, 2);
        warm.sort_by_key(|&(t, _)| t);
        assert_eq!(warm, vec![(1, FelixStatus::Ok), (2, FelixStatus::Ok)]);

        // Refused before anything is sent (larger than the broker's frames): reported as the
        // call's completion, as for any other failure of a started call.
        let big = vec![0u8; 17 << 20];
        for (queue, token) in [(q, 10u64), (driven, 11)] {
            put_value_start(&c, queue, b"big", &big, token);
            assert_eq!(collect(queue, 1), vec![(token, FelixStatus::FrameTooLarge)]);
        }
        setup.broker.signal("-STOP");

        // Cancelled while in flight, on a spawned and on a driven queue.
        put_start(&c, q, b"frozen", 3);
        assert_eq!(felix_completion_queue_cancel(q, 3), FelixStatus::Ok);
        assert_eq!(collect(q, 1), vec![(3, FelixStatus::Cancelled)]);
        put_start(&c, driven, b"frozen", 4);
        let qa = driven as usize;
        let canceller = std::thread::spawn(move || {
            felix_completion_queue_cancel(qa as *const _, 4);
        });
        assert_eq!(collect(driven, 1), vec![(4, FelixStatus::Cancelled)]);
        canceller.join().unwrap();

        // Unanswered past the client's deadline.
        let t0 = std::time::Instant::now();
        put_start(&short, q, b"frozen", 5);
        assert_eq!(collect(q, 1), vec![(5, FelixStatus::Timeout)]);
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );

        // Freed with a call in flight: nothing is delivered anywhere, nothing crashes.
        put_start(&c, q, b"frozen", 6);
        felix_completion_queue_free(q);
        setup.broker.signal("-CONT");

        // No completion was left over (a second one of a token would show up here).
        put_start(&c, driven, b"after", 7);
        assert_eq!(collect(driven, 1), vec![(7, FelixStatus::Ok)]);
        let mut buf: [FelixCompletion; 4] = std::mem::zeroed();
        let mut n = 0usize;
        let st =
            felix_completion_queue_wait(driven, buf.as_mut_ptr(), 4, 0, &mut n, ptr::null_mut());
        assert_eq!((st, n), (FelixStatus::Ok, 0));
        assert!(present(&c, b"after"));
        felix_completion_queue_free(driven);
    }
}

#[test]
fn direct_calls_started_from_many_threads_at_once_keep_every_frame_whole() {
    // Four threads send 32 KiB puts on one spawned queue at once: their writes race for the
    // request streams (a stream busy or full hands the write to a task), and any torn frame
    // would fail the stream and every call on it.
    let setup = Setup::new("driver8");
    let c = std::sync::Arc::new(setup.client());
    unsafe {
        let q = felix_completion_queue_new();
        let qa = q as usize;
        let starters: Vec<_> = (0..4u64)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let value = vec![t as u8; 32 << 10];
                    for i in 0..250u64 {
                        let key = format!("w-{t}-{i}");
                        put_value_start(&c, qa as *const _, key.as_bytes(), &value, t * 1000 + i);
                    }
                })
            })
            .collect();
        let mut got = collect(q, 1000);
        starters.into_iter().for_each(|s| s.join().unwrap());
        got.sort_by_key(|&(token, _)| token);
        let want: Vec<_> = (0..4u64)
            .flat_map(|t| (0..250u64).map(move |i| (t * 1000 + i, FelixStatus::Ok)))
            .collect();
        assert_eq!(got, want);
        assert!(present(&c, b"w-0-0") && present(&c, b"w-3-249"));
        felix_completion_queue_free(q);
    }
}

#[test]
fn polls_send_held_calls_and_complete_them_without_sleeping() {
    // felix_completion_queue_poll is how a consumer hands a batch out in parts (the Go
    // dispatcher): between parts it sends the calls started meanwhile and reads what arrived,
    // one turn of the runtime, never waiting for the broker.
    let setup = Setup::new("driver9");
    let c = setup.client();
    unsafe {
        let q = felix_completion_queue_new_driven();
        let mut buf: [FelixCompletion; 8] = std::mem::zeroed();
        // Twenty held calls, completed by polls alone, each once.
        for i in 0..20u64 {
            put_start(&c, q, format!("p-{i}").as_bytes(), i);
        }
        let want: Vec<_> = (0..20u64).map(|i| (i, FelixStatus::Ok)).collect();
        assert_eq!(poll_until(q, 20), want);
        assert!(present(&c, b"p-19"));

        // With the broker frozen a poll returns at once with nothing (it does not wait for the
        // reply), and a cancel still ends the call once.
        setup.broker.signal("-STOP");
        put_start(&c, q, b"frozen", 100);
        for _ in 0..3 {
            let mut n = 9usize;
            let t0 = std::time::Instant::now();
            let st = felix_completion_queue_poll(q, buf.as_mut_ptr(), 8, &mut n, ptr::null_mut());
            assert_eq!((st, n), (FelixStatus::Ok, 0));
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "a poll waited {:?}",
                t0.elapsed()
            );
        }
        assert_eq!(felix_completion_queue_cancel(q, 100), FelixStatus::Ok);
        assert_eq!(poll_until(q, 1), vec![(100, FelixStatus::Cancelled)]);
        setup.broker.signal("-CONT");

        // Polls and waits mix: a batch started between them completes once either way.
        for i in 200..208u64 {
            put_start(&c, q, b"mixed", i);
        }
        let mut got = poll_until(q, 1);
        got.extend(collect(q, 8 - got.len()));
        got.sort_by_key(|&(t, _)| t);
        let want: Vec<_> = (200..208u64).map(|i| (i, FelixStatus::Ok)).collect();
        assert_eq!(got, want);
        felix_completion_queue_free(q);
    }
}

/// Polls `q` until `want` calls completed (10 s at most): their tokens and statuses, sorted.
unsafe fn poll_until(q: *const FelixCompletionQueue, want: usize) -> Vec<(u64, FelixStatus)> {
    let mut buf: [FelixCompletion; 8] = std::mem::zeroed();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.len() < want {
        let mut n = 0usize;
        let st = felix_completion_queue_poll(q, buf.as_mut_ptr(), 8, &mut n, ptr::null_mut());
        assert_eq!(st, FelixStatus::Ok);
        for done in &buf[..n] {
            got.push((done.token, done.status));
            felix_result_free(done.result);
            felix_error_free(done.error);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "polls completed {} of {want} calls in 10 s",
            got.len()
        );
    }
    got.sort_by_key(|&(t, _)| t);
    got
}
