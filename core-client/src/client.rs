//! [`Client`]: the entry point. Cheap to clone; every clone shares the connection pool.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use felix_wire::{features, AckMode, Message, PublishBatch};

use crate::config::ClientConfig;
use crate::conn::{json_frame, Live, Negotiated, Orphan, Reply, ReqStream};
use crate::error::{Error, Result};
use crate::pool::Pool;

/// A connection to a Felix broker (a pool of QUIC connections and request streams).
///
/// ```no_run
/// # async fn demo() -> felix_client::Result<()> {
/// use felix_client::{Client, ClientConfig};
/// let client = Client::connect(ClientConfig::default()).await?;
/// client.publish("default", "orders", "hello".into()).await?;
/// client.cache_put("default", "sessions", "k", "v".into(), None).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) pool: Arc<Pool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addresses", &self.pool.cfg.addresses)
            .field("tenant", &self.pool.cfg.tenant)
            .field("closed", &self.pool.is_closed())
            .finish()
    }
}

impl Client {
    /// Connects every pooled connection and authenticates its streams. Must be called within
    /// a tokio runtime; the client's tasks run on it.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        Ok(Self {
            pool: Pool::connect(config).await?,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.pool.cfg
    }

    /// Tenant every request acts for.
    pub(crate) fn tenant(&self) -> &str {
        &self.pool.cfg.tenant
    }

    /// Closes every connection; pending and later calls fail with `closed`.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Counters of the token machinery: fetches, refresh failures, `reauth`s, connections
    /// replaced to move to a new token.
    pub fn token_stats(&self) -> crate::TokenStats {
        self.pool.tokens.stats()
    }

    /// Whether [`Client::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Sends one request and waits for its reply. `build` encodes the frame for the request id
    /// and negotiated features, and says how many replies to expect.
    pub(crate) async fn call<F>(&self, extra_timeout: Duration, build: F) -> Result<Reply>
    where
        F: FnOnce(u64, &Negotiated) -> Result<(Bytes, u32)>,
    {
        self.call_with_orphan(extra_timeout, build, None).await
    }

    /// [`Client::call`] with a handler for a reply that arrives after this call gave up.
    pub(crate) async fn call_with_orphan<F>(
        &self,
        extra_timeout: Duration,
        build: F,
        orphan: Option<Orphan>,
    ) -> Result<Reply>
    where
        F: FnOnce(u64, &Negotiated) -> Result<(Bytes, u32)>,
    {
        self.call_on(Live::stream, extra_timeout, build, orphan)
            .await
    }

    /// [`Client::call_with_orphan`] on the request stream `pick` chooses (the lane, see
    /// [`Live`]).
    async fn call_on<P, F>(
        &self,
        pick: P,
        extra_timeout: Duration,
        build: F,
        orphan: Option<Orphan>,
    ) -> Result<Reply>
    where
        P: Fn(&Live) -> &Arc<ReqStream>,
        F: FnOnce(u64, &Negotiated) -> Result<(Bytes, u32)>,
    {
        let deadline = self.pool.deadline(extra_timeout);
        // Only a call that must wait for a connection listens for `close`: registering with
        // the Notify on every call cost two lock round trips. A call already sent learns of
        // `close` from its stream, which fails every waiter when the connection goes.
        let live = match self.pool.try_live() {
            Some(l) => l,
            None => tokio::select! {
                l = self.pool.live(deadline) => l?,
                _ = self.pool.closed_notify.notified() => return Err(Error::Closed("client")),
            },
        };
        let (stream, rid, frame, replies) = encode_on(&live, pick(&live), build)?;
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let r = stream.request(rid, frame, replies, timeout, orphan).await;
        r.map_err(|e| self.pool.why(e))
    }

    /// Sends an unacknowledged publish (a request that gets no reply) on the publish lane.
    pub(crate) async fn send<F>(&self, order_key: u64, build: F) -> Result<()>
    where
        F: FnOnce(&Negotiated) -> Result<Bytes>,
    {
        // Unanswered frames with one key go down one connection and one QUIC stream: the
        // broker reads a stream in order, so they are applied in the order written. Round
        // robin here let two sequential unacked publishes to one stream overtake each other.
        let deadline = self.pool.deadline(Duration::ZERO);
        let live = self.pool.live_keyed(order_key, deadline).await?;
        let frame = build(&live.negotiated)?;
        check_size(&frame, &live.negotiated)?;
        live.publish_stream_keyed(order_key).send_only(frame).await
    }

    /// Fails with `unsupported` unless the broker granted `feature`.
    pub(crate) fn require(n: &Negotiated, feature: u64, what: &str) -> Result<()> {
        if n.has(feature) {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "the broker does not offer {what}"
            )))
        }
    }

    /// Publishes one message and waits for the broker's acknowledgement.
    pub async fn publish(&self, namespace: &str, stream: &str, payload: Bytes) -> Result<()> {
        self.publish_batch(
            namespace,
            stream,
            std::slice::from_ref(&payload),
            AckMode::PerBatch,
        )
        .await
    }

    /// Publishes messages atomically and in order. `AckMode::None` returns once written (one
    /// client's unacknowledged publishes to one stream keep their order);
    /// otherwise the call waits for the broker (one ack per message with `PerMessage`).
    pub async fn publish_batch(
        &self,
        namespace: &str,
        stream: &str,
        payloads: &[Bytes],
        ack: AckMode,
    ) -> Result<()> {
        if payloads.is_empty() {
            return Err(Error::InvalidArgument(
                "a publish needs at least one payload".into(),
            ));
        }
        let tenant = self.tenant();
        let encode = |ack_part: Option<(u64, AckMode)>| {
            let size: usize = payloads.iter().map(|p| p.len() + 4).sum();
            let mut out =
                bytes::BytesMut::with_capacity(64 + size + stream.len() + namespace.len());
            PublishBatch::encode_parts(&mut out, ack_part, tenant, namespace, stream, payloads);
            out.freeze()
        };
        match ack {
            AckMode::None => {
                let key = order_key(namespace, stream);
                self.send(key, |_| Ok(encode(None))).await
            }
            mode => {
                let replies = if mode == AckMode::PerMessage {
                    payloads.len() as u32
                } else {
                    1
                };
                // On the publish lane: the broker may hold it (`block` policy), and nothing
                // else may queue behind it.
                let build = |rid, _: &Negotiated| Ok((encode(Some((rid, mode))), replies));
                self.call_on(Live::publish_stream, Duration::ZERO, build, None)
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Round trip to the broker (liveness and latency probe).
    pub async fn ping(&self) -> Result<Duration> {
        let start = std::time::Instant::now();
        self.call(Duration::ZERO, |rid, n| {
            Self::require(n, features::PING, "ping")?;
            Ok((json_frame(&Message::Ping { request_id: rid }), 1))
        })
        .await?;
        Ok(start.elapsed())
    }

    /// Creates a stream with explicit settings (idempotent for equal settings).
    pub async fn create_stream(
        &self,
        namespace: &str,
        stream: &str,
        settings: StreamSettings,
    ) -> Result<()> {
        let tenant = self.tenant().to_owned();
        self.call(Duration::ZERO, |rid, n| {
            Self::require(n, features::ADMIN, "stream creation")?;
            let m = Message::StreamCreate {
                tenant_id: tenant,
                namespace: namespace.into(),
                stream: stream.into(),
                request_id: rid,
                max_records: settings.max_records,
                max_bytes: settings.max_bytes,
                subscriber_buffer: settings.subscriber_buffer,
                full_policy: settings.full_policy.map(|p| p.as_str().to_owned()),
                durability: None,
                fsync: None,
                fsync_interval_ms: None,
            };
            Ok((json_frame(&m), 1))
        })
        .await
        .map(|_| ())
    }
}

/// The ordering key of a stream's unacknowledged publishes (see `Client::send`).
fn order_key(namespace: &str, stream: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    namespace.hash(&mut h);
    stream.hash(&mut h);
    h.finish()
}

/// Picks a request stream of `live` and encodes a request for it: its request id, the frame
/// `build` makes for the negotiated features (checked against the broker's frame limit), and
/// how many replies to expect.
pub(crate) fn encode<F>(live: &Live, build: F) -> Result<(&Arc<ReqStream>, u64, Bytes, u32)>
where
    F: FnOnce(u64, &Negotiated) -> Result<(Bytes, u32)>,
{
    encode_on(live, live.stream(), build)
}

/// [`encode`] for a given request stream of `live`.
fn encode_on<'a, F>(
    live: &Live,
    stream: &'a Arc<ReqStream>,
    build: F,
) -> Result<(&'a Arc<ReqStream>, u64, Bytes, u32)>
where
    F: FnOnce(u64, &Negotiated) -> Result<(Bytes, u32)>,
{
    let rid = stream.next_request_id();
    let (frame, replies) = build(rid, &live.negotiated)?;
    check_size(&frame, &live.negotiated)?;
    Ok((stream, rid, frame, replies))
}

fn check_size(frame: &Bytes, n: &Negotiated) -> Result<()> {
    let payload = frame.len().saturating_sub(felix_wire::frame::HEADER_LEN);
    if payload > n.max_frame as usize {
        return Err(Error::FrameTooLarge {
            size: payload,
            max: n.max_frame as usize,
        });
    }
    Ok(())
}

/// What a subscriber's queue does when full (set per stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullPolicy {
    /// The publisher's ack waits (backpressure), up to the stream's block timeout.
    Block,
    /// The newest event is dropped for that subscriber.
    DropNewest,
    /// The oldest queued event is dropped for that subscriber.
    DropOldest,
    /// The slow subscriber is disconnected (`slow_consumer`).
    Disconnect,
}

impl FullPolicy {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FullPolicy::Block => "block",
            FullPolicy::DropNewest => "drop_newest",
            FullPolicy::DropOldest => "drop_oldest",
            FullPolicy::Disconnect => "disconnect",
        }
    }
}

/// Settings of an explicitly created stream; `None` keeps the broker's default.
#[derive(Debug, Clone, Default)]
pub struct StreamSettings {
    /// Retention bound in records.
    pub max_records: Option<u64>,
    /// Retention bound in bytes.
    pub max_bytes: Option<u64>,
    /// Per-subscriber queue bound in messages.
    pub subscriber_buffer: Option<u32>,
    /// Policy when a subscriber's queue is full.
    pub full_policy: Option<FullPolicy>,
}
