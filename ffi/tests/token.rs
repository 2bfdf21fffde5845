//! Token options through the C ABI: a C callback supplies the token (called on a library
//! thread, its user data released exactly once), a failing callback is
//! `FELIX_STATUS_UNAUTHORIZED`, and a half-given client certificate is refused. Against a real
//! dev broker process (which accepts any token).

mod common;

use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use felix_ffi::*;

fn b(s: &[u8]) -> FelixBytes {
    FelixBytes {
        ptr: s.as_ptr(),
        len: s.len(),
    }
}

/// What the callbacks below count, passed as user data.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    freed: AtomicU64,
}

unsafe extern "C" fn good_token(
    user_data: *mut c_void,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    let counts = &*(user_data as *const Counts);
    counts.calls.fetch_add(1, Ordering::SeqCst);
    let token = b"token-from-c";
    assert!(cap >= token.len());
    ptr::copy_nonoverlapping(token.as_ptr(), out, token.len());
    *out_len = token.len();
    0
}

unsafe extern "C" fn failing_token(
    user_data: *mut c_void,
    _out: *mut u8,
    _cap: usize,
    _out_len: *mut usize,
) -> i32 {
    let counts = &*(user_data as *const Counts);
    counts.calls.fetch_add(1, Ordering::SeqCst);
    FelixStatus::Unavailable as i32
}

/// Returns a value that is no `FelixStatus` (a C enum could not hold it without undefined
/// behaviour; the `int32_t` return type makes it a defined, refused answer).
unsafe extern "C" fn out_of_range_token(
    user_data: *mut c_void,
    _out: *mut u8,
    _cap: usize,
    _out_len: *mut usize,
) -> i32 {
    let counts = &*(user_data as *const Counts);
    counts.calls.fetch_add(1, Ordering::SeqCst);
    1234
}

unsafe extern "C" fn count_free(user_data: *mut c_void) {
    let counts = &*(user_data as *const Counts);
    counts.freed.fetch_add(1, Ordering::SeqCst);
}

unsafe fn options(addr: &[u8], ca: &[u8]) -> FelixConnectOptions {
    let mut o: FelixConnectOptions = std::mem::zeroed();
    felix_connect_options_init(&mut o);
    // The options borrow `addr`; the caller keeps it alive across the call.
    let a = Box::leak(Box::new(b(addr)));
    o.addresses = a;
    o.addresses_len = 1;
    o.ca_file = b(ca);
    o.tenant = b(b"acme");
    o
}

#[test]
fn a_c_token_callback_is_called_and_its_user_data_released_once() {
    let dir = std::env::temp_dir().join(format!("felix-ffi-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_broker, addr) = common::start_broker(&dir);
    let ca = dir.join("ca.pem").to_str().unwrap().as_bytes().to_vec();
    let counts = Box::leak(Box::new(Counts::default()));
    let user_data = counts as *mut Counts as *mut c_void;
    unsafe {
        // A working callback: connect, ping, free.
        let mut o = options(addr.as_bytes(), &ca);
        o.token_callback = Some(good_token);
        o.token_user_data = user_data;
        o.token_user_data_free = Some(count_free);
        let (mut c, mut err) = (ptr::null_mut(), ptr::null_mut());
        let st = felix_client_connect(&o, &mut c, &mut err);
        assert_eq!(st, FelixStatus::Ok);
        assert_eq!(counts.calls.load(Ordering::SeqCst), 1);
        let st = felix_client_ping(c, ptr::null_mut(), &mut err);
        assert_eq!(st, FelixStatus::Ok);
        assert_eq!(counts.freed.load(Ordering::SeqCst), 0, "freed while in use");
        felix_client_free(c);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while counts.freed.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "user data never released"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }

        // A failing callback: unauthorized, with the callback's status in the message; the
        // user data is released too.
        let mut o = options(addr.as_bytes(), &ca);
        o.token_callback = Some(failing_token);
        o.token_user_data = user_data;
        o.token_user_data_free = Some(count_free);
        let st = felix_client_connect(&o, &mut c, &mut err);
        assert_eq!(st, FelixStatus::Unauthorized);
        assert!(c.is_null());
        let msg = CStr::from_ptr((*err).message).to_str().unwrap().to_owned();
        assert!(msg.contains("unavailable"), "{msg}");
        felix_error_free(err);
        assert_eq!(counts.freed.load(Ordering::SeqCst), 2);

        // A status that is no FelixStatus: the fetch fails, saying so.
        let mut o = options(addr.as_bytes(), &ca);
        o.token_callback = Some(out_of_range_token);
        o.token_user_data = user_data;
        o.token_user_data_free = Some(count_free);
        let st = felix_client_connect(&o, &mut c, &mut err);
        assert_eq!(st, FelixStatus::Unauthorized);
        assert!(c.is_null());
        let msg = CStr::from_ptr((*err).message).to_str().unwrap().to_owned();
        assert!(msg.contains("1234, which is not a FelixStatus"), "{msg}");
        felix_error_free(err);
        assert_eq!(counts.freed.load(Ordering::SeqCst), 3);

        // Invalid options after the callback: still released exactly once.
        let mut o = options(addr.as_bytes(), &ca);
        o.token_callback = Some(good_token);
        o.token_user_data = user_data;
        o.token_user_data_free = Some(count_free);
        o.client_cert_file = b(b"/nonexistent/cert.pem");
        let mut err = ptr::null_mut();
        let st = felix_client_connect(&o, &mut c, &mut err);
        assert_eq!(st, FelixStatus::InvalidArgument);
        let msg = CStr::from_ptr((*err).message).to_str().unwrap().to_owned();
        assert!(msg.contains("go together"), "{msg}");
        felix_error_free(err);
        assert_eq!(counts.freed.load(Ordering::SeqCst), 4);
    }
}

/// `token_exchange_ca_file` reaches the exchange: without `token_exchange_url` it is refused;
/// with one, a missing CA file fails the connect with `FELIX_STATUS_INVALID_ARGUMENT` naming
/// the file (before anything is sent to the control plane).
#[test]
fn the_exchange_ca_file_option_is_checked() {
    unsafe {
        let mut o = options(b"127.0.0.1:1", b"/nonexistent/ca.pem");
        o.token_exchange_ca_file = b(b"/nonexistent/cp-ca.pem");
        let (mut c, mut err) = (ptr::null_mut(), ptr::null_mut());
        let st = felix_client_connect(&o, &mut c, &mut err);
        assert_eq!(st, FelixStatus::InvalidArgument);
        let msg = CStr::from_ptr((*err).message).to_str().unwrap().to_owned();
        assert!(msg.contains("token_exchange_ca_file needs"), "{msg}");
        felix_error_free(err);

        o.token_exchange_url = b(b"https://127.0.0.1:1");
        o.subject_token = b(b"oidc-token");
        o.insecure_dev = true; // no broker CA to read: the exchange is what fails
        let st = felix_client_connect(&o, &mut c, &mut err);
        assert_eq!(st, FelixStatus::InvalidArgument);
        assert!(c.is_null());
        let msg = CStr::from_ptr((*err).message).to_str().unwrap().to_owned();
        assert!(msg.contains("/nonexistent/cp-ca.pem"), "{msg}");
        felix_error_free(err);
    }
}
