//! Stream authentication and negotiation, and the reply side of a stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use felix_wire::{features, flags, AckError, BinaryAck, ErrorCode, Message};
use tokio::sync::{Mutex, Notify};

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use super::conn::ConnState;
use super::Shared;
use crate::auth::{AuthError, PrincipalCell};
use crate::error::BrokerError;
use crate::metrics::Metrics;
use felix_transport::framed::{FrameReader, ReadFrameError};

/// How long the broker tries to write the answer to a stream it is giving up on (auth
/// deadline, lost framing) before resetting it instead: a peer that grants no flow-control
/// credit must not keep the stream (and its task) alive.
const LAST_WORD: Duration = Duration::from_secs(1);

/// What one client-opened stream negotiated in its `auth`.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who the stream acts as: the connection's cell for its principal (refreshed by
    /// `reauth`, ended by expiry or revocation).
    pub principal: Arc<PrincipalCell>,
    /// Frame flags both sides use.
    pub flags: u16,
    /// Extension features both sides use.
    pub features: u64,
}

impl Session {
    /// Whether an extension was negotiated.
    pub fn has(&self, feature: u64) -> bool {
        self.features & feature != 0
    }
}

/// Writes replies on a stream's send side; shared with late (long-poll) replies.
#[derive(Clone)]
pub struct Replier {
    send: Arc<Mutex<quinn::SendStream>>,
    /// Errors carry codes (error-code extension negotiated).
    pub codes: bool,
    late: Arc<LateReplies>,
}

/// Replies promised but not written yet (parked long polls): `finish` waits for them, so a
/// stream is not finished under an answer still owed.
#[derive(Default)]
struct LateReplies {
    owed: AtomicUsize,
    done: Notify,
}

/// One late reply owed on a stream, until dropped (after writing it, or giving up).
pub struct LateReply(Arc<LateReplies>);

impl Drop for LateReply {
    fn drop(&mut self) {
        if self.0.owed.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.done.notify_waiters();
        }
    }
}

impl Replier {
    pub fn new(send: quinn::SendStream) -> Self {
        Self {
            send: Arc::new(Mutex::new(send)),
            codes: false,
            late: Arc::default(),
        }
    }

    /// Registers a reply that will be written later; `finish` waits until it is dropped.
    pub fn owe(&self) -> LateReply {
        self.late.owed.fetch_add(1, Ordering::AcqRel);
        LateReply(self.late.clone())
    }

    /// Resolves once the send side is finished and the peer has acknowledged every byte (or
    /// stopped the stream, or the connection is gone).
    pub async fn delivered(&self) {
        let stopped = self.send.lock().await.stopped();
        let _ = stopped.await;
    }

    /// Answers `e` (bounded by [`LAST_WORD`]) and finishes, or resets the stream when the
    /// answer cannot be written in time.
    pub async fn last_word(&self, e: &BrokerError) {
        match tokio::time::timeout(LAST_WORD, self.error(e, None)).await {
            Ok(_) => self.finish().await,
            Err(_) => {
                let code = quinn::VarInt::from_u32(e.code.as_u16() as u32);
                let _ = self.send.lock().await.reset(code);
            }
        }
    }

    /// Writes encoded frames.
    pub async fn raw(&self, bytes: &[u8]) -> Result<(), quinn::WriteError> {
        self.send.lock().await.write_all(bytes).await
    }

    /// Writes one JSON message.
    pub async fn msg(&self, m: &Message) -> Result<(), quinn::WriteError> {
        let mut buf = BytesMut::with_capacity(128);
        m.encode(&mut buf);
        self.raw(&buf).await
    }

    /// Writes an `error` message.
    pub async fn error(
        &self,
        e: &BrokerError,
        request_id: Option<u64>,
    ) -> Result<(), quinn::WriteError> {
        let mut m = Message::error(e.code, &e.message, request_id, self.codes);
        if let Message::Error { retryable, .. } = &mut m {
            if retryable.is_some() {
                *retryable = Some(e.retryable);
            }
        }
        self.msg(&m).await
    }

    /// Writes a binary publish ack.
    pub fn encode_ack(&self, out: &mut BytesMut, request_id: u64, err: Option<&BrokerError>) {
        BinaryAck {
            request_id,
            error: err.map(|e| AckError {
                message: e.message.clone(),
                code: Some(e.code),
                retryable: e.retryable,
            }),
        }
        .encode(out, self.codes);
    }

    /// Finishes the send side, once every late reply owed on it is written.
    pub async fn finish(&self) {
        loop {
            let done = self.late.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.late.owed.load(Ordering::Acquire) == 0 {
                break;
            }
            done.await;
        }
        let _ = self.send.lock().await.finish();
    }
}

/// The error to answer a failed frame read with, when the framing of the stream is lost
/// through the peer's bytes (a bad header, a stream finished inside a frame: `protocol`,
/// like a truncated body) or through a limit (no room for its unfinished frame within
/// `partial_frame_wait_ms`: `overloaded`), counted in its metric. `None` for I/O failures
/// (reset stream, lost connection), which nobody can be told about.
pub fn framing_error(metrics: &Metrics, e: &ReadFrameError) -> Option<BrokerError> {
    let err = match e {
        ReadFrameError::Wire(w) => BrokerError::new(w.code(), w.to_string()),
        ReadFrameError::Truncated => BrokerError::new(ErrorCode::Protocol, "truncated frame"),
        ReadFrameError::Overloaded { .. } => {
            metrics.partial_frames_overloaded.inc();
            metrics.overloaded.inc();
            return Some(BrokerError::overloaded(format!(
                "{e}: connection exceeds max_partial_frame_bytes_per_connection"
            )));
        }
        _ => return None,
    };
    metrics.protocol_errors.inc();
    Some(err)
}

/// Counts, logs (rate-limited, never the token) and answers a refused `auth`; closes the
/// connection at `limits.max_auth_failures_per_connection`. Each further failure on a
/// connection is answered a little later (100 ms per failure so far, at most 1 s), so a
/// guesser gains nothing by pipelining attempts.
async fn auth_failed(
    shared: &Shared,
    conn: &quinn::Connection,
    state: &ConnState,
    tenant: &str,
    e: &AuthError,
    replier: &mut Replier,
) {
    shared.metrics.auth_failures.inc();
    shared
        .audit
        .auth_failed(state.id, tenant, &BrokerError::from(e.clone()));
    let failures = state.auth_failures.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(suppressed) = AUTH_LOG.allow(Instant::now()) {
        tracing::warn!(
            remote = %conn.remote_address(),
            tenant,
            // The reason may quote the token's header (kid, alg): never raw into a line.
            reason = %crate::audit::loggable(&e.to_string()),
            failures_on_connection = failures,
            suppressed_since_last = suppressed,
            "auth refused"
        );
    }
    let delay = Duration::from_millis(100 * u64::from(failures - 1).min(10));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let _ = replier.error(&BrokerError::from(e.clone()), None).await;
    replier.finish().await;
    if failures == shared.cfg.limits.max_auth_failures_per_connection {
        shared.metrics.auth_connections_closed.inc();
        // Closing drops unsent stream data: let the refusal reach the client first.
        let _ = tokio::time::timeout(Duration::from_millis(500), replier.delivered()).await;
        conn.close(
            quinn::VarInt::from_u32(ErrorCode::Unauthorized.as_u16() as u32),
            b"unauthorized: too many failed auth attempts",
        );
    }
}

/// At most one "auth refused" log line per second broker-wide, with the count of those left
/// out, so that a guessing client cannot flood the log.
static AUTH_LOG: LogLimiter = LogLimiter::new();

/// Allows one event per second and counts the rest.
pub struct LogLimiter {
    /// Start of the current one-second window (ms since the limiter's epoch) plus one; 0 is
    /// "never logged".
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// A limiter that allows the first event.
    pub const fn new() -> Self {
        Self {
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(events left out since the last allowed one)` if this event may be logged.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let now_ms = now.saturating_duration_since(*EPOCH).as_millis() as u64 + 1;
        let last = self.window.load(Ordering::Relaxed);
        if last != 0 && now_ms < last + 1_000 {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.window
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| self.suppressed.swap(0, Ordering::Relaxed))
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new()
    }
}

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// Reads and checks the `auth` frame; replies `ok` / `auth_ok` or `error`.
pub async fn authenticate(
    shared: &Shared,
    conn: &quinn::Connection,
    state: &ConnState,
    reader: &mut FrameReader,
    replier: &mut Replier,
) -> Result<Session, ()> {
    // A stream that does not complete `auth` in time is closed: parked anonymous streams
    // would otherwise hold their task and buffers for the connection's life.
    let timeout_ms = shared.cfg.limits.auth_timeout_ms;
    let first = match tokio::time::timeout(Duration::from_millis(timeout_ms), reader.next()).await {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return Err(()),
        Ok(Err(e)) => {
            // A bad header, or a stream that ends inside a frame (which used to get no
            // answer at all): framing is lost, so answer once, stop reading with the code
            // number and finish (wire-protocol 7.9). I/O failures need no answer.
            if let Some(e) = framing_error(&shared.metrics, &e) {
                reader.stop(e.code.as_u16() as u32);
                replier.last_word(&e).await;
            }
            return Err(());
        }
        Err(_) => {
            shared.metrics.auth_timeouts.inc();
            let e = BrokerError::new(
                ErrorCode::Unauthorized,
                format!("no auth within limits.auth_timeout_ms ({timeout_ms} ms)"),
            );
            reader.stop(e.code.as_u16() as u32);
            replier.last_word(&e).await;
            return Err(());
        }
    };
    let (tenant_id, token, client_flags, client_features) = match felix_wire::decode(first) {
        Ok(felix_wire::Decoded::Json(Message::Auth {
            tenant_id,
            token,
            client_flags,
            client_features,
            client_features_hi,
        })) => (
            tenant_id,
            token,
            client_flags,
            (client_features.is_some() || client_features_hi.is_some())
                .then(|| features::join(client_features, client_features_hi)),
        ),
        Ok(_) => {
            let e = BrokerError::new(ErrorCode::Unauthorized, "the first frame must be auth");
            let _ = replier.error(&e, None).await;
            replier.finish().await;
            return Err(());
        }
        Err(e) => {
            shared.metrics.protocol_errors.inc();
            let _ = replier
                .error(&BrokerError::new(e.code(), e.to_string()), None)
                .await;
            replier.finish().await;
            return Err(());
        }
    };
    let negotiated_features = client_features.unwrap_or(0) & features::ALL;
    replier.codes = negotiated_features & features::ERROR_CODES != 0;
    // An invalid tenant name is a malformed request, `invalid_argument` (wire-protocol 7.2
    // and 7.8), whatever the authenticator would say about it (DevAuth said `unauthorized`).
    if let Err(e) = crate::names::validate_tenant(&tenant_id) {
        let _ = replier.error(&BrokerError::from(e), None).await;
        replier.finish().await;
        return Err(());
    }
    // A connection past its failure limit is being closed: refuse without looking at the
    // token, so streams opened in parallel cannot add guesses.
    let limit = shared.cfg.limits.max_auth_failures_per_connection;
    if state.auth_failures.load(Ordering::Relaxed) >= limit {
        let e = BrokerError::new(ErrorCode::Unauthorized, "too many failed auth attempts");
        let _ = replier.error(&e, None).await;
        replier.finish().await;
        return Err(());
    }
    // The token opens the tenant; with mTLS bindings the certificate must be bound to it too.
    // Without a token, a bound certificate with grants is a principal of its own.
    let cert_only = match token {
        None => shared
            .cfg
            .mtls
            .certificate_principal(state.peer_identity.as_deref(), &tenant_id),
        Some(_) => None,
    };
    let authenticated = match cert_only {
        Some(p) => Ok(p),
        None => shared.auth.authenticate(&tenant_id, token.as_deref()),
    };
    let principal = match authenticated.and_then(|p| {
        shared
            .cfg
            .mtls
            .check(state.peer_identity.as_deref(), &p.tenant)
            .map_err(crate::auth::AuthError::Unauthorized)
            .map(|()| p)
    }) {
        Ok(p) => p,
        Err(e) => {
            auth_failed(shared, conn, state, &tenant_id, &e, replier).await;
            return Err(());
        }
    };
    // Bind first, then take (or confirm) the tenant's connection slot: binding may revive a
    // cell of the principal that ended (and gave its slot back) meanwhile, so the slot is
    // checked after it, and the AuthOk is written only then. A refused slot ends the cell.
    let kid = principal.kid.clone();
    let (tenant, subject) = (principal.tenant.clone(), principal.subject.clone());
    let per_minute = shared.cfg.limits.max_reauths_per_minute;
    let bound = match state
        .principals
        .bind(principal, &shared.auth, per_minute, Instant::now())
    {
        Ok(b) => b,
        Err(e) => {
            // A new token for a live principal is a reauth: over the bound it is refused the
            // same way (`overloaded`, retryable), and audited as one.
            shared.metrics.reauths_limited.inc();
            shared.metrics.overloaded.inc();
            let e = BrokerError::overloaded(e.to_string());
            let who = crate::audit::Who {
                tenant: &tenant,
                sub: subject.as_deref(),
                conn: state.id,
            };
            if state.principals.limited_audit(Instant::now()).is_some() {
                shared.audit.reauth(who, kid.as_deref(), &Err(e.clone()));
            }
            let _ = replier.error(&e, None).await;
            replier.finish().await;
            return Err(());
        }
    };
    if bound.swapped {
        shared.metrics.reauths.inc();
        let who = crate::audit::Who {
            tenant: &tenant,
            sub: subject.as_deref(),
            conn: state.id,
        };
        shared.audit.reauth(who, kid.as_deref(), &Ok(()));
    }
    let principal = bound.cell.principal();
    if super::guard::admit_stream(shared, state, &principal, replier)
        .await
        .is_err()
    {
        state
            .principals
            .end_cell(&bound.cell, "connection quota of the tenant reached");
        return Err(());
    }
    // Extension frame kinds are usable only together with their feature.
    let mut supported = flags::V1_ALL;
    if negotiated_features & features::BINARY_EXT != 0 {
        supported |= flags::EXT_BINARY;
    }
    if negotiated_features & features::EVENT_OFFSETS != 0 {
        supported |= flags::EVENT_BATCH_OFFSETS;
    }
    let session_flags = match client_flags {
        Some(f) => f & supported,
        None => flags::V1_BASELINE,
    };
    let reply = if client_flags.is_some() || client_features.is_some() {
        let (lo, hi) = features::split(negotiated_features);
        Message::AuthOk {
            server_flags: session_flags,
            server_features: client_features.map(|_| lo),
            server_features_hi: client_features.map(|_| hi),
            max_frame_bytes: client_features.map(|_| shared.cfg.limits.max_frame_bytes),
        }
    } else {
        Message::Ok { request_id: None }
    };
    if replier.msg(&reply).await.is_err() {
        return Err(());
    }
    Ok(Session {
        principal: bound.cell,
        flags: session_flags,
        features: negotiated_features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_limiter_allows_one_event_a_second_and_counts_the_rest() {
        let l = LogLimiter::new();
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0), "the first event is logged");
        for i in 1..=5 {
            assert_eq!(l.allow(t0 + Duration::from_millis(i * 100)), None);
        }
        assert_eq!(
            l.allow(t0 + Duration::from_millis(1_001)),
            Some(5),
            "a second later: logged, with the five left out"
        );
        assert_eq!(l.allow(t0 + Duration::from_millis(1_500)), None);
    }
}
