//! `NativeClient`: connect with options, ping, close, stream creation. The JavaScript class
//! `Client` (`lib/client.js`) wraps it; every I/O method returns a promise (see `runtime`).

use std::sync::{Arc, Weak};

use felix_client::sync::Mutex;
use felix_client::{
    Client, ClientCert, ClientConfig, FullPolicy, StreamSettings, SubjectToken, Tls, TokenExchange,
    TokenSource,
};
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::error::{closed, invalid, Failure, Outcome};
use crate::runtime::{self, cancellable, promise, rejected, Cancel};
use crate::token::TokenRequest;
use crate::value::{millis, uint, Js};
use crate::CancelToken;

/// Connection options (all optional; defaults are the core's `ClientConfig::default()`).
#[napi(object, object_to_js = false)]
pub struct ConnectOptions {
    /// Broker addresses `host:port`, tried in order (default `["127.0.0.1:5000"]`).
    pub addresses: Option<Vec<String>>,
    /// TLS server name to verify (default `localhost`).
    pub server_name: Option<String>,
    /// CA certificate file (PEM) to verify the broker with (default `$TMPDIR/felix-dev-<uid>/ca.pem`).
    pub ca_file: Option<String>,
    /// CA certificate PEM text (instead of `caFile`).
    pub ca_pem: Option<String>,
    /// Accept any certificate. Development only.
    pub insecure_dev: Option<bool>,
    /// Tenant every request acts for (default `default`).
    pub tenant: Option<String>,
    /// Bearer token, if the broker requires one.
    pub token: Option<String>,
    /// QUIC connections in the pool (default 1).
    pub connections: Option<u32>,
    /// Request streams per connection (default 4).
    pub streams_per_connection: Option<u32>,
    /// Deadline of a connection attempt, ms (default 5000).
    pub connect_timeout_ms: Option<f64>,
    /// Deadline of every request, ms (default 10000; a long-poll pull adds its wait).
    pub request_timeout_ms: Option<f64>,
    /// First reconnect delay, ms (default 50; doubles with jitter).
    pub reconnect_initial_ms: Option<f64>,
    /// Longest reconnect delay, ms (default 5000).
    pub reconnect_max_ms: Option<f64>,
    /// Events buffered per subscription before the client stops reading (default 1024).
    pub subscription_buffer: Option<u32>,
    /// Asks the JavaScript wrapper for a fresh token (it answers with `provideToken`); set by
    /// `Client.connect` from a `token` function.
    #[napi(ts_type = "(id: number) => void")]
    pub token_request: Option<TokenRequest>,
    /// Longest wait for the token function to settle, ms (default 30000).
    pub token_timeout_ms: Option<f64>,
    /// Control plane URL: exchange an OIDC token (`subjectToken`, `subjectTokenFile`, or the
    /// `token` function's) there for Felix tokens (RFC 8693).
    pub token_exchange_url: Option<String>,
    /// The OIDC token to exchange.
    pub subject_token: Option<String>,
    /// A file holding the OIDC token, read at each exchange (a Kubernetes projected
    /// ServiceAccount token).
    pub subject_token_file: Option<String>,
    /// Refresh a changing token at least this often, ms (default: only before its `exp`).
    pub token_refresh_interval_ms: Option<f64>,
    /// PEM certificate chain for mTLS.
    pub client_cert_file: Option<String>,
    /// PEM private key of `clientCertFile`.
    pub client_key_file: Option<String>,
    /// PEM CA certificate(s) an `https` `tokenExchangeUrl` must chain to (a control plane
    /// with a private CA); default: the public web roots. Needs `tokenExchangeUrl`.
    pub token_exchange_ca_file: Option<String>,
}

fn config(o: ConnectOptions) -> Outcome<ClientConfig> {
    let mut c = ClientConfig::default();
    if let Some(a) = o.addresses {
        if a.is_empty() {
            return Err(invalid("addresses must not be empty"));
        }
        c.addresses = a;
    }
    if let Some(s) = o.server_name {
        c.server_name = s;
    }
    let tls_choices = [
        o.ca_file.is_some(),
        o.ca_pem.is_some(),
        o.insecure_dev == Some(true),
    ];
    if tls_choices.iter().filter(|b| **b).count() > 1 {
        return Err(invalid("give at most one of caFile, caPem and insecureDev"));
    }
    if let Some(f) = o.ca_file {
        c.tls = Tls::CaFile(f.into());
    }
    if let Some(p) = o.ca_pem {
        c.tls = Tls::CaPem(p.into_bytes());
    }
    if o.insecure_dev == Some(true) {
        c.tls = Tls::InsecureDev;
    }
    if let Some(t) = o.tenant {
        c.tenant = t;
    }
    c.token = o.token;
    let wait = match o.token_timeout_ms {
        Some(v) => millis("tokenTimeoutMs", v)?,
        None => std::time::Duration::from_secs(30),
    };
    let call = o.token_request.map(|r| crate::token::callback(r, wait));
    c.token_source = match (o.token_exchange_url, call) {
        (None, _) if o.token_exchange_ca_file.is_some() => {
            return Err(invalid("tokenExchangeCaFile needs tokenExchangeUrl"))
        }
        (None, call) => call.map(TokenSource::Callback),
        (Some(url), call) => {
            let subject = match (call, o.subject_token, o.subject_token_file) {
                (Some(f), None, None) => SubjectToken::Callback(f),
                (None, Some(t), None) => SubjectToken::Value(t),
                (None, None, Some(p)) => SubjectToken::File(p.into()),
                _ => {
                    return Err(invalid(
                        "tokenExchangeUrl needs exactly one of a token function, subjectToken and subjectTokenFile",
                    ))
                }
            };
            let mut x = TokenExchange::new(url, subject);
            x.ca_file = o.token_exchange_ca_file.map(Into::into);
            Some(TokenSource::Exchange(x))
        }
    };
    if let Some(v) = o.token_refresh_interval_ms {
        c.token_refresh.interval = Some(millis("tokenRefreshIntervalMs", v)?);
    }
    c.client_cert = match (o.client_cert_file, o.client_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(ClientCert {
            cert: cert.into(),
            key: key.into(),
        }),
        _ => return Err(invalid("clientCertFile and clientKeyFile go together")),
    };
    let positive = |what: &str, v: u32| {
        if v == 0 {
            Err(invalid(format!("{what} must be at least 1")))
        } else {
            Ok(v as usize)
        }
    };
    if let Some(n) = o.connections {
        c.connections = positive("connections", n)?;
    }
    if let Some(n) = o.streams_per_connection {
        c.streams_per_connection = positive("streamsPerConnection", n)?;
    }
    if let Some(n) = o.subscription_buffer {
        c.subscription_buffer = positive("subscriptionBuffer", n)?;
    }
    for (what, v, slot) in [
        (
            "connectTimeoutMs",
            o.connect_timeout_ms,
            &mut c.connect_timeout,
        ),
        (
            "requestTimeoutMs",
            o.request_timeout_ms,
            &mut c.request_timeout,
        ),
        (
            "reconnectInitialMs",
            o.reconnect_initial_ms,
            &mut c.reconnect_initial,
        ),
        ("reconnectMaxMs", o.reconnect_max_ms, &mut c.reconnect_max),
    ] {
        if let Some(v) = v {
            let d = millis(what, v)?;
            if d.is_zero() {
                return Err(invalid(format!("{what} must be positive")));
            }
            *slot = d;
        }
    }
    Ok(c)
}

/// Settings of `createStream` (absent ones keep the broker's defaults).
#[napi(object)]
pub struct StreamOptions {
    /// Retention bound in records.
    pub max_records: Option<f64>,
    /// Retention bound in bytes.
    pub max_bytes: Option<f64>,
    /// Per-subscriber queue bound in messages.
    pub subscriber_buffer: Option<u32>,
    /// `block`, `drop_newest`, `drop_oldest` or `disconnect`.
    pub full_policy: Option<String>,
}

fn stream_settings(o: Option<StreamOptions>) -> Outcome<StreamSettings> {
    let Some(o) = o else {
        return Ok(StreamSettings::default());
    };
    let full_policy = match o.full_policy.as_deref() {
        None => None,
        Some("block") => Some(FullPolicy::Block),
        Some("drop_newest") => Some(FullPolicy::DropNewest),
        Some("drop_oldest") => Some(FullPolicy::DropOldest),
        Some("disconnect") => Some(FullPolicy::Disconnect),
        Some(other) => {
            return Err(invalid(format!(
                "fullPolicy must be block, drop_newest, drop_oldest or disconnect, got {other:?}"
            )))
        }
    };
    Ok(StreamSettings {
        max_records: o.max_records.map(|v| uint("maxRecords", v)).transpose()?,
        max_bytes: o.max_bytes.map(|v| uint("maxBytes", v)).transpose()?,
        subscriber_buffer: o.subscriber_buffer,
        full_policy,
    })
}

/// The client's state shared with its subscriptions: closing the client ends them.
pub(crate) struct Shared {
    pub(crate) client: Client,
    subscriptions: Mutex<Vec<Weak<Cancel>>>,
}

impl Shared {
    /// Registers a subscription's close signal; fails if the client is already closed.
    pub(crate) fn track(&self, c: &Arc<Cancel>) -> Outcome<()> {
        let mut subs = self.subscriptions.lock();
        if self.client.is_closed() {
            return Err(closed("client"));
        }
        subs.retain(|w| w.strong_count() > 0);
        subs.push(Arc::downgrade(c));
        Ok(())
    }
}

/// A connected client (pool of QUIC connections). Use `Client` from the package instead.
#[napi]
pub struct NativeClient {
    pub(crate) shared: Arc<Shared>,
}

#[napi]
impl NativeClient {
    /// Connects (every pooled connection, authenticated).
    #[napi(ts_return_type = "Promise<NativeClient>")]
    pub fn connect(
        env: Env,
        options: Option<ConnectOptions>,
        cancel: Option<&CancelToken>,
    ) -> Result<sys::napi_value> {
        let cfg = match config(options.unwrap_or_else(empty_options)) {
            Ok(c) => c,
            Err(f) => return rejected(&env, f),
        };
        let cancel = CancelToken::arc(cancel);
        promise(
            &env,
            cancellable(cancel, async move { Ok(Client::connect(cfg).await?) }),
            |env, client| {
                let c = NativeClient {
                    shared: Arc::new(Shared {
                        client,
                        subscriptions: Mutex::new(Vec::new()),
                    }),
                };
                // SAFETY: JavaScript thread (promise settlement).
                unsafe { NativeClient::to_napi_value(env, c) }
                    .map_err(|e| Failure::new(felix_client::ErrorCode::Internal, e.reason.clone()))
            },
        )
    }

    /// Closes every connection; pending calls fail with `closed`, subscriptions end.
    #[napi]
    pub fn close(&self) {
        let subs = {
            let mut s = self.shared.subscriptions.lock();
            self.shared.client.close();
            std::mem::take(&mut *s)
        };
        for s in subs.iter().filter_map(Weak::upgrade) {
            s.fire();
        }
    }

    /// Whether `close()` was called.
    #[napi]
    pub fn is_closed(&self) -> bool {
        self.shared.client.is_closed()
    }

    /// Round trip to the broker; resolves to the time taken in milliseconds.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn ping(&self, env: Env, cancel: Option<&CancelToken>) -> Result<sys::napi_value> {
        let client = self.shared.client.clone();
        promise(
            &env,
            cancellable(
                CancelToken::arc(cancel),
                async move { Ok(client.ping().await?) },
            ),
            |env, d| Js(env).number(d.as_secs_f64() * 1000.0),
        )
    }

    /// Creates a stream with settings (idempotent for equal settings).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn create_stream(
        &self,
        env: Env,
        namespace: String,
        stream: String,
        options: Option<StreamOptions>,
    ) -> Result<sys::napi_value> {
        let settings = match stream_settings(options) {
            Ok(s) => s,
            Err(f) => return rejected(&env, f),
        };
        let client = self.shared.client.clone();
        promise(
            &env,
            async move { Ok(client.create_stream(&namespace, &stream, settings).await?) },
            |env, ()| Js(env).undefined(),
        )
    }
}

fn empty_options() -> ConnectOptions {
    ConnectOptions {
        addresses: None,
        server_name: None,
        ca_file: None,
        ca_pem: None,
        insecure_dev: None,
        tenant: None,
        token: None,
        connections: None,
        streams_per_connection: None,
        connect_timeout_ms: None,
        request_timeout_ms: None,
        reconnect_initial_ms: None,
        reconnect_max_ms: None,
        subscription_buffer: None,
        token_request: None,
        token_timeout_ms: None,
        token_exchange_url: None,
        subject_token: None,
        subject_token_file: None,
        token_refresh_interval_ms: None,
        client_cert_file: None,
        client_key_file: None,
        token_exchange_ca_file: None,
    }
}

/// Enters the runtime (for core calls that spawn tasks synchronously).
pub(crate) fn enter() -> tokio::runtime::EnterGuard<'static> {
    runtime::handle().enter()
}
