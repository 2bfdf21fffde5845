//! One client connection: connection limit, per-connection budgets, stream dispatch and
//! draining on shutdown.

use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use felix_wire::ErrorCode;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::debug;

use super::session::{authenticate, Replier};
use super::{request, Shared};
use crate::budget::MemoryBudget;
use felix_transport::framed::{ByteBudget, FrameBudget, FrameReader};

/// Budgets shared by all streams of one connection.
pub struct ConnState {
    /// Request bytes being processed (permits = bytes).
    pub inflight: Arc<Semaphore>,
    /// Open subscriptions.
    pub subscriptions: AtomicUsize,
    /// Refused `auth` attempts so far (the connection is closed at
    /// `limits.max_auth_failures_per_connection`).
    pub auth_failures: AtomicU32,
    /// Unfinished frames of all streams (`max_partial_frame_bytes_per_connection`); the
    /// bytes actually buffered are also counted in the broker's memory budget.
    pub frames: Arc<FrameBudget>,
    /// Long-poll `queue_pull`s parked now (`max_parked_pulls_per_connection`).
    pub parked_pulls: AtomicUsize,
    /// Connection id in the audit log (QUIC stable id, unique within this process).
    pub id: u64,
    /// mTLS: the identity of the verified client certificate (its first URI SAN such as a
    /// SPIFFE id, else its first DNS SAN); `None` without a client certificate. Shown in the
    /// audit log; available to authorization as the connection's certificate identity.
    pub peer_identity: Option<String>,
    /// The tenants this connection counts against (tenant connection quota), given back
    /// when the connection ends, or when every principal of a tenant on it ended.
    pub tenants: Arc<crate::quota::ConnQuota>,
    /// The principals its streams act as (one per tenant and subject; refresh, expiry).
    pub principals: crate::auth::Cells,
}

/// The bytes of unfinished frames actually buffered are counted in the broker-wide budget
/// (never refused by it: the connection's own budget bounds them).
impl ByteBudget for MemoryBudget {
    fn charge(&self, n: usize) {
        MemoryBudget::charge(self, n)
    }

    fn release(&self, n: usize) {
        MemoryBudget::release(self, n)
    }
}

pub async fn serve(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let peer = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            debug!(error = %e, "handshake failed");
            shared.audit.connection_refused(peer, None, &e.to_string());
            return;
        }
    };
    if shared.metrics.connections.get() as usize >= shared.cfg.limits.max_connections {
        shared.metrics.connections_refused.inc();
        let reason = "max_connections reached";
        shared
            .audit
            .connection_refused(peer, Some(ErrorCode::Overloaded), reason);
        conn.close(
            quinn::VarInt::from_u32(ErrorCode::Overloaded.as_u16() as u32),
            b"overloaded: max_connections reached",
        );
        return;
    }
    shared.metrics.connections.inc();
    shared.metrics.connections_total.inc();
    let remote = conn.remote_address();
    debug!(%remote, "connection open");
    let tenants: Arc<crate::quota::ConnQuota> = Arc::default();
    let released = tenants.clone();
    let principals =
        crate::auth::Cells::with_hook(Box::new(move |tenant: &str| released.release(tenant)));
    let state = Arc::new(ConnState {
        inflight: Arc::new(Semaphore::new(
            shared.cfg.limits.max_inflight_bytes_per_connection,
        )),
        subscriptions: AtomicUsize::new(0),
        auth_failures: AtomicU32::new(0),
        frames: FrameBudget::new(
            shared.cfg.limits.max_partial_frame_bytes_per_connection,
            Duration::from_millis(shared.cfg.limits.partial_frame_wait_ms),
            Some(shared.memory.clone() as Arc<dyn ByteBudget>),
        ),
        parked_pulls: AtomicUsize::new(0),
        id: conn.stable_id() as u64,
        peer_identity: felix_transport::peer_identity(&conn),
        tenants,
        principals,
    });
    let audit = |open: bool| {
        let who = state.tenants.principals();
        let identity = state.peer_identity.as_deref();
        shared
            .audit
            .connection(open, state.id, remote, identity, &who);
    };
    audit(true);
    let mut shutdown = shared.shutdown.clone();
    let mut streams = JoinSet::new();
    let mut draining = false;
    loop {
        tokio::select! {
            s = conn.accept_bi(), if !draining => match s {
                Ok((send, recv)) => {
                    streams.spawn(stream(shared.clone(), conn.clone(), state.clone(), send, recv));
                }
                Err(_) => break,
            },
            _ = shutdown.wait_for(|s| *s), if !draining => draining = true,
            joined = streams.join_next(), if !streams.is_empty() => {
                if joined.is_none() && draining { break; }
            }
            else => break,
        }
        if draining && streams.is_empty() {
            break;
        }
    }
    if draining {
        let grace = Duration::from_millis(shared.cfg.shutdown_grace_ms);
        let _ = tokio::time::timeout(grace, async {
            while streams.join_next().await.is_some() {}
        })
        .await;
        conn.close(
            quinn::VarInt::from_u32(ErrorCode::Unavailable.as_u16() as u32),
            b"unavailable: broker shutting down",
        );
    }
    streams.abort_all();
    drop(streams);
    audit(false);
    memory::after_close();
    shared.metrics.connections.dec();
    shared.connection_closed.notify_waiters();
    debug!(%remote, "connection closed");
}

async fn stream(
    shared: Arc<Shared>,
    conn: quinn::Connection,
    state: Arc<ConnState>,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let limits = &shared.cfg.limits;
    // Until the stream has authenticated it may send only a small frame (an `auth`), so an
    // anonymous peer cannot make the broker buffer `max_frame_bytes` per stream.
    let mut reader = FrameReader::with_budget(
        recv,
        limits.max_auth_frame_bytes.min(limits.max_frame_bytes),
        state.frames.clone(),
    );
    let mut replier = Replier::new(send);
    let Ok(session) = authenticate(&shared, &conn, &state, &mut reader, &mut replier).await else {
        return;
    };
    reader.set_max_frame(limits.max_frame_bytes);
    let late = replier.clone();
    request::serve(shared.clone(), conn, state, session, reader, replier).await;
    if *shared.shutdown.borrow() {
        // Closing the connection right after the stream ends would drop the last replies
        // (a parked pull's answer) before they reach the client: wait until the client has
        // them, bounded by the grace period.
        let grace = Duration::from_millis(shared.cfg.shutdown_grace_ms);
        let _ = tokio::time::timeout(grace, late.delivered()).await;
    }
}

/// Giving memory back to the OS after connections close.
///
/// glibc's malloc keeps freed memory in its arenas, and the many small allocations of a
/// connection (stream tasks, quinn's stream tables) leave it fragmented: without a trim, the
/// RSS of 2 000 idle connections stayed after they closed. `malloc_trim` returns the free
/// pages of every arena. It runs at most once a second, one second after a close (so the
/// last close of a burst is followed by a trim too), on a blocking thread.
mod memory {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    static PENDING: AtomicBool = AtomicBool::new(false);

    pub fn after_close() {
        if PENDING.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            PENDING.store(false, Ordering::Release);
            let _ = tokio::task::spawn_blocking(trim).await;
        });
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trim() {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only walks glibc's own arenas; it has no preconditions.
        unsafe {
            malloc_trim(0);
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn trim() {}
}
