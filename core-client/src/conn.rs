//! One live QUIC connection: authenticated request streams with many requests in flight
//! each (matched by request id), and the router that hands broker-opened event streams to
//! their subscriptions.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use bytes::{Bytes, BytesMut};
use felix_transport::framed::FrameReader;
use felix_wire::{features, flags, Decoded, ExtFrame, Message};
use tokio::sync::{oneshot, OwnedMutexGuard};

use crate::config::ClientConfig;
use crate::error::{Error, Result};

/// Every feature and flag this client can use; the broker grants a subset.
/// `token_refresh` is asked for explicitly: it joins `features::ALL` only once the broker
/// serves it, and a broker that does not know it simply does not grant it.
pub(crate) const WANT_FEATURES: u64 = features::ALL | features::TOKEN_REFRESH;
const WANT_FLAGS: u16 = flags::ALL;

/// A reply routed to the request that asked for it.
#[derive(Debug)]
pub(crate) enum Reply {
    Json(Message),
    /// A binary publish ack (success; failures become errors).
    Ack,
    Ext(ExtFrame),
}

struct Waiter {
    sink: Sink,
    /// Replies still expected (per-message acks of a batch send several).
    remaining: u32,
}

/// Where a request's outcome goes.
enum Sink {
    /// A [`ReqStream::request`] future awaiting it (which keeps its own timer).
    Chan(oneshot::Sender<Result<Reply>>),
    /// A callback run where the reply is read ([`ReqStream::start`]); the stream's sweeper
    /// fails it with a timeout at `deadline`.
    Call {
        done: ReplyFn,
        deadline: Instant,
        timeout: Duration,
    },
}

/// The callback of a request started without a future ([`ReqStream::start`]).
pub(crate) type ReplyFn = Box<dyn FnOnce(Result<Reply>) + Send>;

impl Sink {
    fn send(self, r: Result<Reply>) {
        match self {
            Sink::Chan(tx) => {
                let _ = tx.send(r);
            }
            Sink::Call { done, .. } => {
                // A callback runs on the reader or the sweeper task: a panic in it must not
                // end them (every other request on the stream would hang).
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(r))).is_err() {
                    tracing::error!("a direct call's callback panicked");
                }
            }
        }
    }
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    /// Replies nobody waits for any more that still need handling (see [`Orphan`]).
    orphans: HashMap<u64, Orphan>,
    closed: Option<String>,
    /// A task fails overdue callback requests (it ends when none is left).
    sweeping: bool,
}

/// What to do with a reply that arrives after its caller gave up (timeout, cancellation).
/// A long-poll pull uses it to hand back messages the broker leased to the abandoned call, so
/// they are redelivered now instead of after the lease expires.
pub(crate) type Orphan = Box<dyn FnOnce(Reply) + Send>;

/// What `auth` negotiated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Negotiated {
    pub features: u64,
    pub max_frame: u32,
}

impl Negotiated {
    pub fn has(&self, f: u64) -> bool {
        self.features & f != 0
    }
}

/// One authenticated request stream.
pub(crate) struct ReqStream {
    send: Arc<tokio::sync::Mutex<quinn::SendStream>>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
}

impl ReqStream {
    pub fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `frame` and waits for `replies` replies to `request_id` (the last is returned).
    pub async fn request(
        &self,
        request_id: u64,
        frame: Bytes,
        replies: u32,
        timeout: Duration,
        orphan: Option<Orphan>,
    ) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock();
            if let Some(reason) = &p.closed {
                return Err(Error::ConnectionLost(reason.clone()));
            }
            p.waiters.insert(
                request_id,
                Waiter {
                    sink: Sink::Chan(tx),
                    remaining: replies.max(1),
                },
            );
        }
        // Forget the waiter however this call ends early (error, timeout, or the caller
        // dropping the future); a late reply then goes to `orphan`, if any.
        let mut guard = PendingGuard {
            stream: self,
            request_id,
            orphan,
            armed: true,
        };
        self.write(frame).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => {
                guard.armed = false;
                r
            }
            Ok(Err(_)) => Err(Error::ConnectionLost("request stream closed".into())),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Sends without expecting a reply.
    pub async fn send_only(&self, frame: Bytes) -> Result<()> {
        if let Some(reason) = &self.pending.lock().closed {
            return Err(Error::ConnectionLost(reason.clone()));
        }
        self.write(frame).await
    }

    /// Sends a request whose outcome goes to `done`, run on the runtime thread that reads the
    /// reply (or that finds the request overdue, or the connection lost). No future, task or
    /// timer of its own: the frame is written here when the stream is free and has room, else
    /// by a task; one sweeper task per stream keeps the deadlines. This is the C ABI's hot path
    /// (see `felix_ffi`), where a future per call cost more than the call's own work. `done`
    /// never runs on the calling thread inside this call (a failed write reports through a
    /// task), though another thread may run it before this returns.
    pub fn start(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        request_id: u64,
        frame: Bytes,
        timeout: Duration,
        done: ReplyFn,
    ) {
        {
            let mut p = self.pending.lock();
            if let Some(reason) = &p.closed {
                let e = Error::ConnectionLost(reason.clone());
                drop(p);
                rt.spawn(async move { done(Err(e)) });
                return;
            }
            p.waiters.insert(
                request_id,
                Waiter {
                    sink: Sink::Call {
                        done,
                        deadline: Instant::now() + timeout,
                        timeout,
                    },
                    remaining: 1,
                },
            );
            if !p.sweeping {
                p.sweeping = true;
                rt.spawn(sweep(Arc::downgrade(self)));
            }
        }
        if let Ok(guard) = self.send.clone().try_lock_owned() {
            let mut w = FrameWrite {
                guard: Some(guard),
                rest: frame,
            };
            // One poll without a waker: a write that fits completes here (the common case);
            // otherwise a task takes over, whose poll registers a real waker.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let done_now = match std::pin::pin!(w.run()).poll(&mut cx) {
                std::task::Poll::Ready(r) => Some(r),
                std::task::Poll::Pending => None,
            };
            match done_now {
                Some(Ok(())) => {}
                Some(Err(e)) => self.write_in_task(rt, request_id, async move { Err(e) }),
                None => self.write_in_task(rt, request_id, async move { w.run().await }),
            }
        } else {
            let stream = self.clone();
            self.write_in_task(rt, request_id, async move { stream.write(frame).await });
        }
    }

    /// Finishes a started request's write in a task, failing the request if it fails (from the
    /// task: never inside [`ReqStream::start`]).
    fn write_in_task(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        request_id: u64,
        write: impl Future<Output = Result<()>> + Send + 'static,
    ) {
        let stream = self.clone();
        rt.spawn(async move {
            if let Err(e) = write.await {
                stream.deliver(request_id, Err(e));
            }
        });
    }

    /// Gives up a request started with [`ReqStream::start`]: its callback runs now with
    /// [`Error::Cancelled`] (on this thread), and a late reply is dropped. False if it already
    /// finished.
    pub fn cancel(&self, request_id: u64) -> bool {
        let w = self.pending.lock().waiters.remove(&request_id);
        match w {
            Some(w) => {
                w.sink.send(Err(Error::Cancelled));
                true
            }
            None => false,
        }
    }

    /// Fails the callback requests whose deadline has passed; returns the earliest deadline
    /// left, or `None` (and stops sweeping) when no callback request is left.
    fn sweep_once(&self, now: Instant) -> Option<Instant> {
        let mut p = self.pending.lock();
        let mut next: Option<Instant> = None;
        let mut overdue = Vec::new();
        for (rid, w) in &p.waiters {
            if let Sink::Call { deadline, .. } = &w.sink {
                if *deadline <= now {
                    overdue.push(*rid);
                } else {
                    next = Some(next.map_or(*deadline, |n| n.min(*deadline)));
                }
            }
        }
        let overdue: Vec<Waiter> = overdue
            .iter()
            .filter_map(|rid| p.waiters.remove(rid))
            .collect();
        if next.is_none() {
            p.sweeping = false;
        }
        drop(p);
        for w in overdue {
            if let Sink::Call { done, timeout, .. } = w.sink {
                done(Err(Error::Timeout(timeout)));
            }
        }
        next
    }

    /// Writes one whole frame. If the caller drops this future mid-write, the rest of the
    /// frame is still written from a task, so the stream's framing never breaks.
    async fn write(&self, frame: Bytes) -> Result<()> {
        let guard = self.send.clone().lock_owned().await;
        let mut w = FrameWrite {
            guard: Some(guard),
            rest: frame,
        };
        w.run().await
    }

    fn fail_all(&self, reason: String) {
        let waiters = {
            let mut p = self.pending.lock();
            p.closed.get_or_insert(reason.clone());
            p.orphans.clear();
            std::mem::take(&mut p.waiters)
        };
        for (_, w) in waiters {
            w.sink.send(Err(Error::ConnectionLost(reason.clone())));
        }
    }

    fn deliver(&self, request_id: u64, r: Result<Reply>) {
        let mut p = self.pending.lock();
        let done = match p.waiters.get_mut(&request_id) {
            Some(w) => {
                w.remaining -= 1;
                w.remaining == 0 || r.is_err()
            }
            None => {
                // The caller gave up (timeout or drop).
                if let Some(orphan) = p.orphans.remove(&request_id) {
                    drop(p);
                    if let Ok(reply) = r {
                        orphan(reply);
                    }
                }
                return;
            }
        };
        if done {
            if let Some(w) = p.waiters.remove(&request_id) {
                drop(p);
                w.sink.send(r);
            }
        }
    }
}

/// Fails a stream's overdue callback requests, waking at the earliest deadline; ends when no
/// callback request is left (the next [`ReqStream::start`] starts another) or the stream goes.
async fn sweep(stream: std::sync::Weak<ReqStream>) {
    // Dropped unfinished (its runtime shut down): the next start must start another.
    struct Stopped<'a>(&'a std::sync::Weak<ReqStream>, bool);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            if !self.1 {
                if let Some(s) = self.0.upgrade() {
                    s.pending.lock().sweeping = false;
                }
            }
        }
    }
    let mut stopped = Stopped(&stream, false);
    let mut at = Instant::now();
    loop {
        let Some(s) = stream.upgrade() else {
            stopped.1 = true;
            return;
        };
        let Some(next) = s.sweep_once(at) else {
            stopped.1 = true; // `sweep_once` cleared the flag under the lock
            return;
        };
        drop(s);
        tokio::time::sleep_until(next.into()).await;
        at = Instant::now();
    }
}

struct PendingGuard<'a> {
    stream: &'a ReqStream,
    request_id: u64,
    orphan: Option<Orphan>,
    /// False once the reply was received.
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut p = self.stream.pending.lock();
        // Still waiting means the reply has not come: route it to the orphan handler.
        if p.waiters.remove(&self.request_id).is_some() && p.closed.is_none() {
            if let Some(orphan) = self.orphan.take() {
                p.orphans.insert(self.request_id, orphan);
            }
        }
    }
}

struct FrameWrite {
    guard: Option<OwnedMutexGuard<quinn::SendStream>>,
    rest: Bytes,
}

impl FrameWrite {
    async fn run(&mut self) -> Result<()> {
        let send = self.guard.as_mut().expect("present until done");
        while !self.rest.is_empty() {
            match send.write(&self.rest).await {
                Ok(n) => {
                    bytes::Buf::advance(&mut self.rest, n);
                }
                Err(e) => {
                    self.guard = None;
                    return Err(Error::ConnectionLost(e.to_string()));
                }
            }
        }
        self.guard = None;
        Ok(())
    }
}

impl Drop for FrameWrite {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            if !self.rest.is_empty() {
                let rest = std::mem::take(&mut self.rest);
                if let Ok(h) = tokio::runtime::Handle::try_current() {
                    h.spawn(async move {
                        let _ = guard.write_all(&rest).await;
                    });
                }
            }
        }
    }
}

/// Subscriptions waiting for their broker-opened event stream, by subscription id.
#[derive(Default)]
pub(crate) struct Router {
    waiting: Mutex<HashMap<u64, oneshot::Sender<FrameReader>>>,
}

impl Router {
    pub fn register(&self, id: u64) -> oneshot::Receiver<FrameReader> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(id, tx);
        rx
    }

    pub fn forget(&self, id: u64) {
        self.waiting.lock().remove(&id);
    }
}

/// A connected, authenticated connection.
///
/// Its request streams come in two lanes. The broker handles one stream's requests in
/// order, and a publish to a `block` stream whose subscriber does not read holds its stream
/// until the subscriber drains or the block timeout passes: a cache get that shared the
/// stream waited behind it (5 s). Publishes, the only requests the broker may hold, have
/// streams of their own, so cache, queue and admin requests never queue behind one.
pub(crate) struct Live {
    pub conn: quinn::Connection,
    /// Cache, queue and admin requests.
    pub streams: Vec<Arc<ReqStream>>,
    /// Publishes (acknowledged or not).
    pub publish_streams: Vec<Arc<ReqStream>>,
    pub negotiated: Negotiated,
    pub router: Arc<Router>,
    rr: AtomicUsize,
    publish_rr: AtomicUsize,
    dead: AtomicBool,
    next_subscription: AtomicU64,
    /// Generation of the client's token this connection acts under (see `refresh`).
    token_gen: AtomicU64,
}

impl Live {
    /// Picks a request stream (round robin).
    pub fn stream(&self) -> &Arc<ReqStream> {
        let i = self.rr.fetch_add(1, Ordering::Relaxed) % self.streams.len();
        &self.streams[i]
    }

    /// Picks a publish stream (round robin).
    pub fn publish_stream(&self) -> &Arc<ReqStream> {
        let i = self.publish_rr.fetch_add(1, Ordering::Relaxed) % self.publish_streams.len();
        &self.publish_streams[i]
    }

    /// The publish stream `key` maps to (bits independent of the connection choice in
    /// `Pool::live_keyed`): frames written with one key arrive in the order written.
    pub fn publish_stream_keyed(&self, key: u64) -> &Arc<ReqStream> {
        let n = self.publish_streams.len() as u64;
        &self.publish_streams[(key.rotate_right(32) % n) as usize]
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire) || self.conn.close_reason().is_some()
    }

    pub fn next_subscription_id(&self) -> u64 {
        self.next_subscription.fetch_add(1, Ordering::Relaxed)
    }

    pub fn token_gen(&self) -> u64 {
        self.token_gen.load(Ordering::Acquire)
    }

    pub fn set_token_gen(&self, gen: u64) {
        self.token_gen.fetch_max(gen, Ordering::AcqRel);
    }

    /// Takes this connection out of service for new work (the pool connects a new one on the
    /// next call) and closes it after `grace`, so requests in flight can finish; its
    /// subscriptions then resume on a new connection from their last offset.
    pub fn retire(self: &Arc<Self>, grace: Duration) {
        if self.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        let live = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            live.conn
                .close(quinn::VarInt::from_u32(0), b"token replaced");
        });
    }

    /// Sends `reauth` with `token` and waits for the broker's answer.
    pub async fn reauth(&self, token: &str, timeout: Duration) -> Result<()> {
        let stream = self.stream();
        let rid = stream.next_request_id();
        let frame = json_frame(&Message::Reauth {
            request_id: rid,
            token: token.to_owned(),
        });
        match stream.request(rid, frame, 1, timeout, None).await? {
            Reply::Json(Message::Ok { .. }) => Ok(()),
            _ => Err(Error::Protocol("unexpected reply to reauth".into())),
        }
    }
}

/// The `auth` frame this client sends on every stream (with the newest token).
pub(crate) fn auth_frame(tenant: &str, token: Option<&str>) -> Bytes {
    let (lo, hi) = features::split(WANT_FEATURES);
    Message::Auth {
        tenant_id: tenant.to_owned(),
        token: token.map(str::to_owned),
        client_flags: Some(WANT_FLAGS),
        client_features: Some(lo),
        client_features_hi: Some(hi),
    }
    .to_frame_bytes()
}

/// Reads the broker's answer to `auth`.
pub(crate) async fn read_auth_reply(reader: &mut FrameReader) -> Result<Negotiated> {
    let frame = reader
        .next()
        .await
        .map_err(|e| Error::ConnectionLost(e.to_string()))?
        .ok_or_else(|| Error::ConnectionLost("stream ended during auth".into()))?;
    match felix_wire::decode(frame).map_err(|e| Error::Protocol(e.to_string()))? {
        Decoded::Json(Message::AuthOk {
            server_features,
            server_features_hi,
            max_frame_bytes,
            ..
        }) => Ok(Negotiated {
            features: features::join(server_features, server_features_hi) & WANT_FEATURES,
            max_frame: max_frame_bytes.unwrap_or(felix_wire::frame::DEFAULT_MAX_FRAME),
        }),
        Decoded::Json(Message::Ok { .. }) => Ok(Negotiated {
            features: 0,
            max_frame: felix_wire::frame::DEFAULT_MAX_FRAME,
        }),
        Decoded::Json(Message::Error { message, code, .. }) => {
            Err(Error::broker(code.as_deref(), message))
        }
        other => Err(Error::Protocol(format!("unexpected auth reply {other:?}"))),
    }
}

/// Connects to one address and authenticates every request stream (`streams_per_connection`
/// of each lane, see [`Live`]).
pub(crate) async fn connect(
    endpoint: &quinn::Endpoint,
    cfg: &ClientConfig,
    addr: std::net::SocketAddr,
    token: &crate::refresh::Current,
) -> Result<Arc<Live>> {
    let connecting = endpoint
        .connect(addr, &cfg.server_name)
        .map_err(|e| Error::Connect(format!("{addr}: {e}")))?;
    let conn = connecting.await.map_err(|e| connect_error(addr, e))?;
    let auth = auth_frame(&cfg.tenant, token.token.as_deref());
    let max_frame = felix_wire::frame::DEFAULT_MAX_FRAME;
    let per_lane = cfg.streams_per_connection.max(1);
    let opens = (0..2 * per_lane).map(|_| {
        let conn = conn.clone();
        let auth = auth.clone();
        async move {
            let (mut send, recv) = conn
                .open_bi()
                .await
                .map_err(|e| Error::Connect(e.to_string()))?;
            send.write_all(&auth)
                .await
                .map_err(|e| Error::Connect(e.to_string()))?;
            let mut reader = FrameReader::new(recv, max_frame);
            let negotiated = read_auth_reply(&mut reader).await?;
            Ok::<_, Error>((send, reader, negotiated))
        }
    });
    let opened = futures::future::join_all(opens).await;
    let mut streams = Vec::new();
    let mut readers = Vec::new();
    let mut negotiated = None;
    for r in opened {
        let (send, reader, n) = match r {
            Ok(x) => x,
            // The broker may have closed the connection on purpose (max_connections,
            // shutdown): report its reason and code rather than a generic failure.
            Err(e) => match conn.close_reason() {
                Some(reason) => return Err(connect_error(addr, reason)),
                None => return Err(e),
            },
        };
        negotiated = Some(n);
        streams.push(Arc::new(ReqStream {
            send: Arc::new(tokio::sync::Mutex::new(send)),
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
        }));
        readers.push(reader);
    }
    let negotiated = negotiated.expect("at least one stream");
    let publish_streams = streams.split_off(per_lane);
    let live = Arc::new(Live {
        conn: conn.clone(),
        streams,
        publish_streams,
        negotiated,
        router: Arc::new(Router::default()),
        rr: AtomicUsize::new(0),
        publish_rr: AtomicUsize::new(0),
        dead: AtomicBool::new(false),
        next_subscription: AtomicU64::new(1),
        token_gen: AtomicU64::new(token.gen),
    });
    let all = live.streams.iter().chain(&live.publish_streams);
    for (stream, reader) in all.cloned().zip(readers) {
        tokio::spawn(read_replies(stream, reader, Arc::downgrade(&live)));
    }
    tokio::spawn(route_event_streams(
        conn,
        live.router.clone(),
        Arc::downgrade(&live),
    ));
    Ok(live)
}

fn connect_error(addr: std::net::SocketAddr, e: quinn::ConnectionError) -> Error {
    if let quinn::ConnectionError::ApplicationClosed(c) = &e {
        let code = u16::try_from(c.error_code.into_inner())
            .ok()
            .and_then(felix_wire::ErrorCode::from_u16);
        if let Some(code) = code {
            return Error::Broker {
                code,
                message: String::from_utf8_lossy(&c.reason).into_owned(),
            };
        }
    }
    Error::Connect(format!("{addr}: {e}"))
}

/// Reads replies of one request stream and completes their waiters.
async fn read_replies(
    stream: Arc<ReqStream>,
    mut reader: FrameReader,
    live: std::sync::Weak<Live>,
) {
    let reason = loop {
        let frame = match reader.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break "broker finished the request stream".to_owned(),
            Err(e) => break e.to_string(),
        };
        match felix_wire::decode(frame) {
            Ok(Decoded::Ack(ack)) => {
                let r = match ack.error {
                    None => Ok(Reply::Ack),
                    Some(e) => Err(match e.code {
                        Some(code) => Error::Broker {
                            code,
                            message: e.message,
                        },
                        None => Error::broker(None, e.message),
                    }),
                };
                stream.deliver(ack.request_id, r);
            }
            Ok(Decoded::Ext(f)) => {
                let rid = f.request_id();
                let r = match f {
                    ExtFrame::Error { code, message, .. } => Err(Error::Broker { code, message }),
                    other => Ok(Reply::Ext(other)),
                };
                stream.deliver(rid, r);
            }
            Ok(Decoded::Json(m)) => match reply_request_id(&m) {
                Some(rid) => {
                    let r = match m {
                        Message::Error { message, code, .. }
                        | Message::PublishError { message, code, .. } => {
                            Err(Error::broker(code.as_deref(), message))
                        }
                        other => Ok(Reply::Json(other)),
                    };
                    stream.deliver(rid, r);
                }
                None => {
                    // An error that names no request means the broker could not parse what
                    // we sent: a bug on one side; fail the stream rather than guess.
                    let text = match m {
                        Message::Error { message, .. } => message,
                        other => format!("unexpected {other:?}"),
                    };
                    break format!("broker error without request id: {text}");
                }
            },
            Ok(other) => break format!("unexpected frame on request stream: {other:?}"),
            Err(e) => break format!("undecodable reply: {e}"),
        }
    };
    stream.fail_all(reason);
    if let Some(live) = live.upgrade() {
        live.dead.store(true, Ordering::Release);
    }
}

fn reply_request_id(m: &Message) -> Option<u64> {
    match m {
        Message::PublishOk { request_id, .. }
        | Message::PublishError { request_id, .. }
        | Message::CacheDeleted { request_id, .. }
        | Message::CacheValues { request_id, .. }
        | Message::QueueMessages { request_id, .. }
        | Message::DeadLetters { request_id, .. }
        | Message::Count { request_id, .. }
        | Message::Pong { request_id } => Some(*request_id),
        Message::Ok { request_id }
        | Message::CacheOk { request_id, .. }
        | Message::CacheValue { request_id, .. }
        | Message::Error { request_id, .. } => *request_id,
        _ => None,
    }
}

/// Accepts broker-opened event streams, reads their hello and hands them to the waiting
/// subscription.
async fn route_event_streams(
    conn: quinn::Connection,
    router: Arc<Router>,
    live: std::sync::Weak<Live>,
) {
    while let Ok(recv) = conn.accept_uni().await {
        let router = router.clone();
        tokio::spawn(async move {
            let mut reader = FrameReader::new(recv, felix_wire::frame::DEFAULT_MAX_FRAME);
            let Ok(Some(frame)) = reader.next().await else {
                return;
            };
            if let Ok(Decoded::Json(Message::EventStreamHello { subscription_id })) =
                felix_wire::decode(frame)
            {
                if let Some(tx) = router.waiting.lock().remove(&subscription_id) {
                    let _ = tx.send(reader);
                    return;
                }
            }
            reader.stop(0);
        });
    }
    if let Some(live) = live.upgrade() {
        live.dead.store(true, Ordering::Release);
    }
}

/// Encodes one JSON message into a frame.
pub(crate) fn json_frame(m: &Message) -> Bytes {
    let mut b = BytesMut::with_capacity(128);
    m.encode(&mut b);
    b.freeze()
}
