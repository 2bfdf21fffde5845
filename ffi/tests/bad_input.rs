//! Bad input through the C ABI gives a clear status and error, never a crash.

use std::ffi::CStr;
use std::ptr;

use felix_ffi::*;

fn b(s: &[u8]) -> FelixBytes {
    FelixBytes {
        ptr: s.as_ptr(),
        len: s.len(),
    }
}

/// Takes the error out, checks its code and that it has a message, frees it.
unsafe fn expect(status: FelixStatus, err: *mut FelixError, want: FelixStatus) -> String {
    assert_eq!(status, want);
    assert!(!err.is_null(), "no error object for {status:?}");
    let e = &*err;
    assert_eq!(e.code, want);
    let msg = CStr::from_ptr(e.message).to_str().unwrap().to_owned();
    assert_eq!(msg.len(), e.message_len);
    felix_error_free(err);
    msg
}

#[test]
fn version_and_status_names() {
    assert_eq!(felix_abi_version(), FELIX_ABI_VERSION);
    let v = unsafe { CStr::from_ptr(felix_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    let name = |s: i32| {
        unsafe { CStr::from_ptr(felix_status_name(s)) }
            .to_str()
            .unwrap()
    };
    assert_eq!(name(FelixStatus::Ok as i32), "ok");
    assert_eq!(name(FelixStatus::NotFound as i32), "not_found");
    assert_eq!(name(FelixStatus::FrameTooLarge as i32), "frame_too_large");
    // Any integer is defined: one that is no status has a name saying so.
    assert_eq!(name(-1), "unknown");
    assert_eq!(name(1234), "unknown");
}

#[test]
fn null_handles_and_pointers_are_invalid_argument() {
    unsafe {
        let mut err = ptr::null_mut();
        let mut out = ptr::null_mut();
        let st = felix_cache_get(ptr::null(), b(b"ns"), b(b"c"), b(b"k"), &mut out, &mut err);
        assert!(expect(st, err, FelixStatus::InvalidArgument).contains("client is NULL"));
        let st = felix_client_connect(ptr::null(), ptr::null_mut(), &mut err);
        expect(st, err, FelixStatus::InvalidArgument);
        let bad = FelixBytes {
            ptr: ptr::null(),
            len: 5,
        };
        let mut o: FelixConnectOptions = std::mem::zeroed();
        felix_connect_options_init(&mut o);
        o.token = bad;
        let mut c = ptr::null_mut();
        let st = felix_client_connect(&o, &mut c, &mut err);
        assert!(expect(st, err, FelixStatus::InvalidArgument).contains("token is NULL"));
        assert!(c.is_null());
        // A NULL error out-param is fine: the status alone is returned.
        let st = felix_subscription_try_next(ptr::null(), 1, &mut out, ptr::null_mut());
        assert_eq!(st, FelixStatus::InvalidArgument);
        // Every free accepts NULL.
        felix_client_free(ptr::null_mut());
        felix_subscription_free(ptr::null_mut());
        felix_consumer_free(ptr::null_mut());
        felix_publisher_free(ptr::null_mut());
        felix_completion_queue_free(ptr::null_mut());
        felix_result_free(ptr::null_mut());
        felix_error_free(ptr::null_mut());
        felix_client_close(ptr::null());
        assert!(felix_result_take_client(ptr::null_mut()).is_null());
    }
}

#[test]
fn invalid_utf8_and_empty_names_are_rejected_before_any_io() {
    unsafe {
        let mut o: FelixConnectOptions = std::mem::zeroed();
        felix_connect_options_init(&mut o);
        let addr = b(b"\xff\xfe:5000");
        o.addresses = &addr;
        o.addresses_len = 1;
        let mut c = ptr::null_mut();
        let mut err = ptr::null_mut();
        let st = felix_client_connect(&o, &mut c, &mut err);
        assert!(expect(st, err, FelixStatus::InvalidArgument).contains("UTF-8"));
        let empty = b(b"");
        o.addresses = &empty;
        let st = felix_client_connect(&o, &mut c, &mut err);
        assert!(expect(st, err, FelixStatus::InvalidArgument).contains("must not be empty"));
    }
}

#[test]
fn completion_queue_edge_cases() {
    unsafe {
        let q = felix_completion_queue_new();
        let mut buf: [FelixCompletion; 4] = std::mem::zeroed();
        let mut n = 99usize;
        let st = felix_completion_queue_wait(q, buf.as_mut_ptr(), 4, 0, &mut n, ptr::null_mut());
        assert_eq!((st, n), (FelixStatus::Ok, 0));
        assert_eq!(felix_completion_queue_cancel(q, 12345), FelixStatus::Ok);
        // A failed start delivers no completion: its error comes back at once.
        let mut err = ptr::null_mut();
        let st = felix_cache_get_start(ptr::null(), b(b"n"), b(b"c"), b(b"k"), q, 1, &mut err);
        expect(st, err, FelixStatus::InvalidArgument);
        let st = felix_client_ping_start(ptr::null(), ptr::null(), 1, &mut err);
        expect(st, err, FelixStatus::InvalidArgument);
        let st = felix_completion_queue_wait(q, buf.as_mut_ptr(), 4, 10, &mut n, ptr::null_mut());
        assert_eq!((st, n), (FelixStatus::Ok, 0));
        // A connect to nowhere completes (with an error) through the queue.
        let mut o: FelixConnectOptions = std::mem::zeroed();
        felix_connect_options_init(&mut o);
        let addr = b(b"127.0.0.1:0");
        o.addresses = &addr;
        o.addresses_len = 1;
        o.connect_timeout_ms = 500;
        assert_eq!(
            felix_client_connect_start(&o, q, 7, ptr::null_mut()),
            FelixStatus::Ok
        );
        let st = felix_completion_queue_wait(q, buf.as_mut_ptr(), 4, 5000, &mut n, ptr::null_mut());
        assert_eq!((st, n, buf[0].token), (FelixStatus::Ok, 1, 7));
        assert_ne!(buf[0].status, FelixStatus::Ok);
        assert!(buf[0].result.is_null());
        felix_error_free(buf[0].error);
        // A poll takes what is ready and never sleeps; it checks its arguments as a wait does.
        let st = felix_completion_queue_poll(q, buf.as_mut_ptr(), 4, &mut n, ptr::null_mut());
        assert_eq!((st, n), (FelixStatus::Ok, 0));
        let st = felix_completion_queue_poll(q, ptr::null_mut(), 4, &mut n, &mut err);
        expect(st, err, FelixStatus::InvalidArgument);
        let st = felix_completion_queue_poll(q, buf.as_mut_ptr(), 0, &mut n, &mut err);
        expect(st, err, FelixStatus::InvalidArgument);
        let st = felix_completion_queue_poll(ptr::null(), buf.as_mut_ptr(), 4, &mut n, &mut err);
        expect(st, err, FelixStatus::InvalidArgument);
        let deferred = felix_completion_queue_new_deferred();
        let st = felix_completion_queue_poll(deferred, buf.as_mut_ptr(), 4, &mut n, &mut err);
        expect(st, err, FelixStatus::InvalidArgument);
        felix_completion_queue_free(deferred);
        felix_completion_queue_free(q);
    }
}
