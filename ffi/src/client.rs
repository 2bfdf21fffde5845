//! Connecting, closing, ping and resource creation.
//!
//! ```c
//! FelixConnectOptions o;
//! felix_connect_options_init(&o);
//! FelixBytes addr = {(const uint8_t*)"127.0.0.1:5000", 14};
//! o.addresses = &addr; o.addresses_len = 1;
//! o.ca_file = (FelixBytes){(const uint8_t*)"/etc/felix/ca.pem", 17};  // unset: the dev CA
//! FelixClient* c = NULL; FelixError* e = NULL;
//! if (felix_client_connect(&o, &c, &e) != FELIX_STATUS_OK) { puts(e->message); felix_error_free(e); }
//! ```

use std::ffi::c_void;
use std::path::PathBuf;
use std::ptr;
use std::time::Duration;

use felix_client::{
    Client, ClientCert, ClientConfig, FullPolicy, GroupSettings, StreamSettings, Tls,
};

use crate::bytes::{array, store, FelixBytes, FelixResult, Output};
use crate::completion::{start, FelixCompletionQueue};
use crate::error::{guard, quiet, Failure, FelixError, FelixStatus, Res};
use crate::runtime::{block, Call};
use crate::token::{FelixTokenCallback, FelixUserDataFree, TokenOptions};

/// A connected client (a pool of QUIC connections). Thread-safe: any thread may call with it
/// concurrently. Release with `felix_client_free`.
pub struct FelixClient {
    pub(crate) client: Client,
}

/// Connection settings. Initialise with `felix_connect_options_init`, then set fields; zero
/// numbers and empty strings keep the defaults. Strings are copied during the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FelixConnectOptions {
    /// Broker addresses (`host:port`), tried in order. None: `127.0.0.1:5000`.
    pub addresses: *const FelixBytes,
    /// Number of `addresses`.
    pub addresses_len: usize,
    /// TLS server name to verify (default `localhost`, the dev certificate's name).
    pub server_name: FelixBytes,
    /// Path of a CA PEM file to verify the broker with (default `/tmp/felix-dev-<uid>/ca.pem`).
    pub ca_file: FelixBytes,
    /// CA PEM contents (takes precedence over `ca_file`).
    pub ca_pem: FelixBytes,
    /// Accept any certificate. Development only: gives up server authentication.
    pub insecure_dev: bool,
    /// Bearer token (empty: none).
    pub token: FelixBytes,
    /// Tenant (default `default`).
    pub tenant: FelixBytes,
    /// QUIC connections in the pool (default 1).
    pub connections: u32,
    /// Request streams per connection (default 4).
    pub streams_per_connection: u32,
    /// Connect deadline in milliseconds (default 5000).
    pub connect_timeout_ms: u32,
    /// Deadline of every request in milliseconds (default 10000).
    pub request_timeout_ms: u32,
    /// Events buffered per subscription (default 1024).
    pub subscription_buffer: u32,
    /// A function returning a fresh token, called before connecting and again before each
    /// token expires (its JWT `exp`, or every `token_refresh_interval_ms`); NULL: `token`.
    /// With `token_exchange_url` it returns the OIDC token to exchange instead. It and its
    /// `token_user_data` must be usable from any thread.
    pub token_callback: FelixTokenCallback,
    /// Passed to `token_callback`.
    pub token_user_data: *mut c_void,
    /// Called exactly once with `token_user_data` when the library will not call
    /// `token_callback` any more (the client was freed, or connect failed), for every call to
    /// `felix_client_connect(_start)` with non-NULL options. NULL: none.
    pub token_user_data_free: FelixUserDataFree,
    /// Control plane URL (`https://...`; `http` only to loopback): exchange an OIDC token
    /// there for Felix tokens (RFC 8693, `POST {url}/oauth/token`, audience: the tenant).
    pub token_exchange_url: FelixBytes,
    /// The OIDC token to exchange (if no `token_callback`).
    pub subject_token: FelixBytes,
    /// A file holding the OIDC token, read at every exchange (e.g. a Kubernetes projected
    /// ServiceAccount token), if neither `token_callback` nor `subject_token`.
    pub subject_token_file: FelixBytes,
    /// Refresh a changing token at least this often, in milliseconds (0: only before its
    /// `exp`; an opaque token is then never refreshed).
    pub token_refresh_interval_ms: u32,
    /// PEM certificate chain offered to a broker that requires client certificates (mTLS).
    pub client_cert_file: FelixBytes,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: FelixBytes,
    /// PEM CA certificate(s) the control plane's certificate must chain to (an `https`
    /// `token_exchange_url` with a private CA); empty: the public web roots. Needs
    /// `token_exchange_url` (`FELIX_STATUS_INVALID_ARGUMENT` without it). Read at every
    /// exchange: a missing or certificate-less file fails it.
    pub token_exchange_ca_file: FelixBytes,
}

/// Fills `options` with defaults (all zero/empty). NULL is a no-op.
///
/// # Safety
/// `options` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn felix_connect_options_init(options: *mut FelixConnectOptions) {
    quiet((), || {
        if !options.is_null() {
            // SAFETY: per the contract.
            unsafe {
                options.write(FelixConnectOptions {
                    addresses: ptr::null(),
                    addresses_len: 0,
                    server_name: FelixBytes::EMPTY,
                    ca_file: FelixBytes::EMPTY,
                    ca_pem: FelixBytes::EMPTY,
                    insecure_dev: false,
                    token: FelixBytes::EMPTY,
                    tenant: FelixBytes::EMPTY,
                    connections: 0,
                    streams_per_connection: 0,
                    connect_timeout_ms: 0,
                    request_timeout_ms: 0,
                    subscription_buffer: 0,
                    token_callback: None,
                    token_user_data: ptr::null_mut(),
                    token_user_data_free: None,
                    token_exchange_url: FelixBytes::EMPTY,
                    subject_token: FelixBytes::EMPTY,
                    subject_token_file: FelixBytes::EMPTY,
                    token_refresh_interval_ms: 0,
                    client_cert_file: FelixBytes::EMPTY,
                    client_key_file: FelixBytes::EMPTY,
                    token_exchange_ca_file: FelixBytes::EMPTY,
                })
            }
        }
    })
}

/// Validates options into a core configuration.
unsafe fn config(o: *const FelixConnectOptions) -> Res<ClientConfig> {
    if o.is_null() {
        return Err(Failure::invalid("options is NULL"));
    }
    // SAFETY: per the caller's contract.
    let o = unsafe { &*o };
    // First, before anything can fail: it owns the user data from here on.
    let tokens = TokenOptions::new(o.token_callback, o.token_user_data, o.token_user_data_free);
    let mut c = ClientConfig::default();
    // SAFETY (all blocks below): the caller's strings are valid for their lengths.
    let addrs = unsafe { array(o.addresses, o.addresses_len, "addresses") }?;
    if !addrs.is_empty() {
        c.addresses = addrs
            .iter()
            .map(|a| unsafe { a.name("address") })
            .collect::<Res<_>>()?;
    }
    let server = unsafe { o.server_name.text("server_name") }?;
    if !server.is_empty() {
        c.server_name = server;
    }
    let ca_pem = unsafe { o.ca_pem.slice("ca_pem") }?;
    let ca_file = unsafe { o.ca_file.text("ca_file") }?;
    if o.insecure_dev {
        c.tls = Tls::InsecureDev;
    } else if !ca_pem.is_empty() {
        c.tls = Tls::CaPem(ca_pem.to_vec());
    } else if !ca_file.is_empty() {
        c.tls = Tls::CaFile(PathBuf::from(ca_file));
    }
    let token = unsafe { o.token.text("token") }?;
    if !token.is_empty() {
        c.token = Some(token);
    }
    // SAFETY (all four): the caller's strings are valid for their lengths.
    let (url, subject, subject_file, exchange_ca) = unsafe {
        (
            o.token_exchange_url.text("token_exchange_url")?,
            o.subject_token.text("subject_token")?,
            o.subject_token_file.text("subject_token_file")?,
            o.token_exchange_ca_file.text("token_exchange_ca_file")?,
        )
    };
    c.token_source = tokens.source(url, subject, subject_file, exchange_ca)?;
    if o.token_refresh_interval_ms > 0 {
        c.token_refresh.interval = Some(Duration::from_millis(o.token_refresh_interval_ms.into()));
    }
    // SAFETY: as above.
    let (cert, key) = unsafe {
        (
            o.client_cert_file.text("client_cert_file")?,
            o.client_key_file.text("client_key_file")?,
        )
    };
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => {}
        (false, false) => {
            c.client_cert = Some(ClientCert {
                cert: cert.into(),
                key: key.into(),
            })
        }
        _ => {
            return Err(Failure::invalid(
                "client_cert_file and client_key_file go together",
            ))
        }
    }
    let tenant = unsafe { o.tenant.text("tenant") }?;
    if !tenant.is_empty() {
        c.tenant = tenant;
    }
    let set = |v: u32, f: &mut dyn FnMut(u32)| {
        if v > 0 {
            f(v)
        }
    };
    set(o.connections, &mut |v| c.connections = v as usize);
    set(o.streams_per_connection, &mut |v| {
        c.streams_per_connection = v as usize
    });
    set(o.connect_timeout_ms, &mut |v| {
        c.connect_timeout = Duration::from_millis(v.into())
    });
    set(o.request_timeout_ms, &mut |v| {
        c.request_timeout = Duration::from_millis(v.into())
    });
    set(o.subscription_buffer, &mut |v| {
        c.subscription_buffer = v as usize
    });
    Ok(c)
}

fn connect_call(cfg: ClientConfig) -> Call {
    Box::pin(async move {
        let client = Client::connect(cfg).await?;
        Ok(Some(Output {
            client: Some(Box::new(FelixClient { client })),
            ..Default::default()
        }))
    })
}

/// Connects (blocking) and stores a new client in `*out`.
///
/// # Safety
/// `options` valid (its strings for their lengths); `out` valid; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_client_connect(
    options: *const FelixConnectOptions,
    out: *mut *mut FelixClient,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        // SAFETY: per the contract.
        unsafe { *out = ptr::null_mut() };
        // SAFETY: per the contract.
        let cfg = unsafe { config(options) }?;
        let client = block(connect_call(cfg))?.and_then(|o| o.client);
        // SAFETY: per the contract.
        unsafe { *out = client.map_or(ptr::null_mut(), Box::into_raw) };
        Ok(())
    })
}

/// Starts connecting; the completion's result holds the client: take it with
/// `felix_result_take_client`.
///
/// # Safety
/// As `felix_client_connect`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_client_connect_start(
    options: *const FelixConnectOptions,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        start(queue, token, config(options).map(connect_call))
    })
}

/// Closes the client: calls in flight and later calls fail with `FELIX_STATUS_CLOSED`. The
/// handle stays valid until `felix_client_free`. NULL is a no-op.
///
/// # Safety
/// `client` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn felix_client_close(client: *const FelixClient) {
    quiet((), || {
        // SAFETY: per the contract.
        if let Some(c) = unsafe { client.as_ref() } {
            c.client.close();
        }
    })
}

/// Closes and releases the client. Calls in flight on it finish with `FELIX_STATUS_CLOSED`;
/// consumers and publishers made from it fail with `closed` from then on; subscriptions end.
/// NULL is a no-op.
///
/// # Safety
/// `client` is NULL or a client from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn felix_client_free(client: *mut FelixClient) {
    quiet((), || {
        if !client.is_null() {
            // SAFETY: per the contract.
            let c = unsafe { Box::from_raw(client) };
            c.client.close();
        }
    })
}

/// The client of a handle, checked for NULL and closed.
pub(crate) unsafe fn live<'a>(client: *const FelixClient) -> Res<&'a Client> {
    // SAFETY: per the caller's contract.
    match unsafe { client.as_ref() } {
        None => Err(Failure::invalid("client is NULL")),
        Some(c) if c.client.is_closed() => Err(Failure::closed("client")),
        Some(c) => Ok(&c.client),
    }
}

/// Runs a call blocking and stores its output.
pub(crate) unsafe fn finish(call: Res<Call>, out: *mut *mut FelixResult) -> Res<()> {
    if !out.is_null() {
        // SAFETY: per the caller's contract.
        unsafe { *out = ptr::null_mut() };
    }
    let o = block(call?)?;
    // SAFETY: per the caller's contract.
    unsafe { store(out, o) };
    Ok(())
}

unsafe fn ping_call(client: *const FelixClient) -> Res<Call> {
    // SAFETY: forwarded.
    let c = unsafe { live(client) }?.clone();
    Ok(Box::pin(async move {
        let rtt = c.ping().await?;
        Ok(Output::value(rtt.as_micros() as u64))
    }))
}

/// Round trip to the broker; `*rtt_us` (if non-NULL) receives it in microseconds.
///
/// # Safety
/// `client` live; `rtt_us` and `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_client_ping(
    client: *const FelixClient,
    rtt_us: *mut u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        // SAFETY: per the contract.
        let o = block(unsafe { ping_call(client) }?)?;
        if !rtt_us.is_null() {
            // SAFETY: per the contract.
            unsafe { *rtt_us = o.map_or(0, |o| o.value) };
        }
        Ok(())
    })
}

/// Starts a ping; the result's `value` is the round trip in microseconds.
///
/// # Safety
/// `client` and `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_client_ping_start(
    client: *const FelixClient,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe { start(queue, token, ping_call(client)) })
}

/// Settings of `felix_client_create_stream`; zero keeps the broker's default.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FelixStreamSettings {
    /// Retention bound in records.
    pub max_records: u64,
    /// Retention bound in bytes.
    pub max_bytes: u64,
    /// Per-subscriber queue bound in messages.
    pub subscriber_buffer: u32,
    /// 0 default, 1 block, 2 drop_newest, 3 drop_oldest, 4 disconnect.
    pub full_policy: u32,
}

/// Creates a stream (idempotent for equal settings). `settings` may be NULL.
///
/// # Safety
/// `client` live; names valid for their lengths; `settings` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_client_create_stream(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    settings: *const FelixStreamSettings,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        // SAFETY: per the contract.
        let (c, ns, st) = unsafe {
            (
                live(client)?.clone(),
                namespace.name("namespace")?,
                stream.name("stream")?,
            )
        };
        let mut s = StreamSettings::default();
        // SAFETY: per the contract.
        if let Some(x) = unsafe { settings.as_ref() } {
            let nz = |v: u64| (v > 0).then_some(v);
            s.max_records = nz(x.max_records);
            s.max_bytes = nz(x.max_bytes);
            s.subscriber_buffer = (x.subscriber_buffer > 0).then_some(x.subscriber_buffer);
            s.full_policy = match x.full_policy {
                0 => None,
                1 => Some(FullPolicy::Block),
                2 => Some(FullPolicy::DropNewest),
                3 => Some(FullPolicy::DropOldest),
                4 => Some(FullPolicy::Disconnect),
                n => return Err(Failure::invalid(format!("unknown full_policy {n}"))),
            };
        }
        block(Box::pin(async move {
            c.create_stream(&ns, &st, s).await?;
            Ok(None)
        }))
        .map(drop)
    })
}

/// Creates a cache with a byte budget and default TTL (0: broker defaults).
///
/// # Safety
/// `client` live; names valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn felix_client_create_cache(
    client: *const FelixClient,
    namespace: FelixBytes,
    cache: FelixBytes,
    max_bytes: u64,
    default_ttl_ms: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        // SAFETY: per the contract.
        let (c, ns, name) = unsafe {
            (
                live(client)?.clone(),
                namespace.name("namespace")?,
                cache.name("cache")?,
            )
        };
        let ttl = (default_ttl_ms > 0).then(|| Duration::from_millis(default_ttl_ms));
        block(Box::pin(async move {
            c.create_cache(&ns, &name, (max_bytes > 0).then_some(max_bytes), ttl)
                .await?;
            Ok(None)
        }))
        .map(drop)
    })
}

/// Creates a consumer group (an existing group is left unchanged). `from_latest`: start at new
/// records only; `ack_timeout_ms`/`max_deliveries` 0: broker defaults.
///
/// # Safety
/// `client` live; names valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn felix_client_create_group(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    group: FelixBytes,
    from_latest: bool,
    ack_timeout_ms: u64,
    max_deliveries: u32,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        // SAFETY: per the contract.
        let (c, ns, st, g) = unsafe {
            (
                live(client)?.clone(),
                namespace.name("namespace")?,
                stream.name("stream")?,
                group.name("group")?,
            )
        };
        let s = GroupSettings {
            from_latest,
            ack_timeout: (ack_timeout_ms > 0).then(|| Duration::from_millis(ack_timeout_ms)),
            max_deliveries: (max_deliveries > 0).then_some(max_deliveries),
        };
        block(Box::pin(async move {
            c.create_group(&ns, &st, &g, s).await?;
            Ok(None)
        }))
        .map(drop)
    })
}
