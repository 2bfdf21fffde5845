//! JSON control messages (frame flags `0x0000`): the v1 set and our negotiated extensions.
//!
//! Unknown fields are ignored so that newer peers can add fields; optional extension fields
//! are omitted when unset so that a v1 peer sees exactly the v1 shape.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::binary::AckMode;
use crate::error::{ErrorCode, WireError};
use crate::frame::{flags, FrameHeader, HEADER_LEN};

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPos {
    /// Only records appended after the subscription.
    Latest,
    /// The oldest record the log still holds.
    Earliest,
    /// This offset (or the oldest held, with a gap reported, if it was evicted).
    Offset(u64),
}

impl Serialize for StartPos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StartPos::Latest => s.serialize_str("latest"),
            StartPos::Earliest => s.serialize_str("earliest"),
            StartPos::Offset(o) => s.serialize_u64(*o),
        }
    }
}

impl<'de> Deserialize<'de> for StartPos {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(StartPos::Offset(n)),
            Raw::Str(s) if s == "latest" => Ok(StartPos::Latest),
            Raw::Str(s) if s == "earliest" => Ok(StartPos::Earliest),
            Raw::Str(s) => s
                .parse::<u64>()
                .map(StartPos::Offset)
                .map_err(|_| serde::de::Error::custom(format!("invalid start {s:?}"))),
        }
    }
}

/// One key's result in `cache_values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The key asked for.
    pub key: String,
    /// Value, or null (or absent) when missing or expired.
    #[serde(default, with = "crate::b64::option")]
    pub value: Option<Bytes>,
    /// Version of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// One delivery in `queue_messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// Log offset: the message id within its stream.
    pub offset: u64,
    /// Payload.
    #[serde(with = "crate::b64")]
    pub payload: Bytes,
    /// Delivery attempt, 1 on first delivery.
    pub attempt: u32,
    /// Milliseconds until the lease expires and the message is redelivered.
    pub lease_ms: u64,
}

/// One entry of a dead-letter listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterMessage {
    /// Log offset.
    pub offset: u64,
    /// Payload.
    #[serde(with = "crate::b64")]
    pub payload: Bytes,
    /// Deliveries attempted.
    pub attempts: u32,
    /// `max_deliveries` or `rejected`.
    pub reason: String,
}

/// Every JSON message, tagged by its snake_case `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    /// First frame of every client-opened stream.
    Auth {
        /// Tenant the stream acts for.
        tenant_id: String,
        /// Bearer token (dev mode accepts any or none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Frame flags the client understands.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_flags: Option<u16>,
        /// Feature bits, low half.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_features: Option<u32>,
        /// Feature bits, high half.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_features_hi: Option<u32>,
    },
    /// Successful auth with negotiated capabilities.
    AuthOk {
        /// Frame flags both sides may use.
        server_flags: u16,
        /// Feature bits granted, low half.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_features: Option<u32>,
        /// Feature bits granted, high half.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_features_hi: Option<u32>,
        /// Largest frame payload the broker accepts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_frame_bytes: Option<u32>,
    },
    /// Plain success: v1 auth reply (no fields) or reply to an extension request.
    Ok {
        /// Request answered (extension requests only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Failure.
    Error {
        /// Human-readable detail.
        message: String,
        /// Stable error code (error-code extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// Whether a retry may succeed (error-code extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retryable: Option<bool>,
        /// Request that failed, when the failure belongs to one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Publish one message.
    Publish {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Payload.
        #[serde(with = "crate::b64")]
        payload: Bytes,
        /// Correlates the ack.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// Ack mode; absent = `per_message` when a request id is given, else `none`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ack: Option<AckMode>,
    },
    /// Publish several messages atomically, in order.
    PublishBatch {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Payloads.
        #[serde(with = "crate::b64::vec")]
        payloads: Vec<Bytes>,
        /// Correlates the ack.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// Ack mode; absent = `per_batch` when a request id is given, else `none`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ack: Option<AckMode>,
    },
    /// Publish acknowledged.
    PublishOk {
        /// Request acknowledged.
        request_id: u64,
        /// Offset of the (first) message (event-offsets extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// Publish failed.
    PublishError {
        /// Request that failed.
        request_id: u64,
        /// Detail.
        message: String,
        /// Stable code (error-code extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// Retryable (error-code extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retryable: Option<bool>,
    },
    /// Open a subscription (on its own stream).
    Subscribe {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream name, or a pattern with the wildcard extension.
        stream: String,
        /// Client-chosen id; the broker assigns one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subscription_id: Option<u64>,
        /// Start position (subscribe-from extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<StartPos>,
    },
    /// Subscription accepted.
    Subscribed {
        /// The subscription's id.
        subscription_id: u64,
        /// First offset that will be delivered (event-offsets extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_offset: Option<u64>,
        /// Epoch of the stream's offset space; a change means the log was recreated and old
        /// offsets mean nothing (event-offsets extension, single-stream subscriptions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// First frame of the broker-opened event stream.
    EventStreamHello {
        /// Subscription the stream carries.
        subscription_id: u64,
    },
    /// One event (JSON form).
    Event {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Payload.
        #[serde(with = "crate::b64")]
        payload: Bytes,
        /// Log offset (event-offsets extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// Several events of one stream (JSON form).
    EventBatch {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Payloads.
        #[serde(with = "crate::b64::vec")]
        payloads: Vec<Bytes>,
        /// Offsets, one per payload (event-offsets extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offsets: Option<Vec<u64>>,
    },
    /// The broker ends a subscription (event-offsets extension), e.g. slow consumer.
    SubscriptionEnd {
        /// Subscription ended.
        subscription_id: u64,
        /// Stable code (`slow_consumer`, `unavailable`, ...).
        code: String,
        /// Detail.
        message: String,
    },
    /// Write a cache key.
    CachePut {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
        /// Value.
        #[serde(with = "crate::b64")]
        value: Bytes,
        /// Correlates the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// Time to live; null = the cache's default.
        #[serde(default)]
        ttl_ms: Option<u64>,
        /// Only write when no live entry exists (cache extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_absent: Option<bool>,
        /// Only write when the live entry has this version (cache extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_version: Option<u64>,
    },
    /// Cache write done.
    CacheOk {
        /// Request answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// Version assigned (cache extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
    /// Read a cache key.
    CacheGet {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
        /// Correlates the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Cache read result.
    CacheValue {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
        /// Value, null (or absent) when missing or expired.
        #[serde(default, with = "crate::b64::option")]
        value: Option<Bytes>,
        /// Request answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// Version of the value (cache extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
    /// Delete a cache key (cache extension).
    CacheDelete {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
        /// Correlates the reply.
        request_id: u64,
    },
    /// Delete result (cache extension).
    CacheDeleted {
        /// Request answered.
        request_id: u64,
        /// Whether a live entry existed.
        existed: bool,
    },
    /// Read several keys (cache extension).
    CacheGetMany {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Cache name.
        cache: String,
        /// Keys.
        keys: Vec<String>,
        /// Correlates the reply.
        request_id: u64,
    },
    /// Multi-get result, in request order (cache extension).
    CacheValues {
        /// Request answered.
        request_id: u64,
        /// One entry per requested key.
        values: Vec<CacheEntry>,
    },
    /// Create a stream with settings (admin extension).
    StreamCreate {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Correlates the reply.
        request_id: u64,
        /// Retention bound in records.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_records: Option<u64>,
        /// Retention bound in bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_bytes: Option<u64>,
        /// Per-subscriber queue bound in messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subscriber_buffer: Option<u32>,
        /// `block`, `drop_newest`, `drop_oldest` or `disconnect`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        full_policy: Option<String>,
        /// `ephemeral` or `durable` (needs a broker with `storage.data_dir`); absent: the
        /// broker's `stream_defaults.durability`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        durability: Option<String>,
        /// Durable streams: `always`, `interval` or `os`; absent: `storage.default_fsync`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fsync: Option<String>,
        /// Durable `interval` streams: fsync cadence in ms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fsync_interval_ms: Option<u64>,
    },
    /// Create a cache with settings (admin extension).
    CacheCreate {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Cache name.
        cache: String,
        /// Correlates the reply.
        request_id: u64,
        /// Byte budget (LRU eviction beyond it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_bytes: Option<u64>,
        /// TTL applied when a put gives none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_ttl_ms: Option<u64>,
    },
    /// Create a consumer group on a stream (queue extension).
    GroupCreate {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream consumed.
        stream: String,
        /// Group name.
        group: String,
        /// Correlates the reply.
        request_id: u64,
        /// Where the group's cursor starts (default `earliest`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<StartPos>,
        /// Lease length before redelivery.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ack_timeout_ms: Option<u64>,
        /// Deliveries before dead-lettering.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_deliveries: Option<u32>,
    },
    /// Pull up to `max` messages, waiting up to `wait_ms` for the first (queue extension).
    QueuePull {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Group.
        group: String,
        /// Correlates the reply.
        request_id: u64,
        /// Most messages to return.
        max: u32,
        /// Long-poll wait when nothing is available.
        #[serde(default)]
        wait_ms: u64,
    },
    /// Pulled messages (queue extension).
    QueueMessages {
        /// Request answered.
        request_id: u64,
        /// Deliveries, possibly empty.
        messages: Vec<QueueMessage>,
    },
    /// Acknowledge deliveries (queue extension).
    QueueAck {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Group.
        group: String,
        /// Correlates the reply.
        request_id: u64,
        /// Offsets acknowledged.
        offsets: Vec<u64>,
    },
    /// Negative-acknowledge: redeliver after `delay_ms` (queue extension).
    QueueNack {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Group.
        group: String,
        /// Correlates the reply.
        request_id: u64,
        /// Offsets.
        offsets: Vec<u64>,
        /// Redelivery delay.
        #[serde(default)]
        delay_ms: u64,
    },
    /// Extend leases by `extend_ms` from now (queue extension).
    QueueExtend {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Group.
        group: String,
        /// Correlates the reply.
        request_id: u64,
        /// Offsets.
        offsets: Vec<u64>,
        /// New lease length from now.
        extend_ms: u64,
    },
    /// List dead letters (queue extension).
    DeadLetterList {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Group.
        group: String,
        /// Correlates the reply.
        request_id: u64,
        /// Most entries to return.
        max: u32,
    },
    /// Dead-letter listing (queue extension).
    DeadLetters {
        /// Request answered.
        request_id: u64,
        /// Entries, oldest first.
        messages: Vec<DeadLetterMessage>,
    },
    /// Move dead letters back for delivery; all when `offsets` is absent (queue extension).
    DeadLetterRedrive {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Group.
        group: String,
        /// Correlates the reply.
        request_id: u64,
        /// Offsets, or all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offsets: Option<Vec<u64>>,
    },
    /// Drop dead letters; all when `offsets` is absent (queue extension).
    DeadLetterDiscard {
        /// Tenant.
        tenant_id: String,
        /// Namespace.
        namespace: String,
        /// Stream.
        stream: String,
        /// Group.
        group: String,
        /// Correlates the reply.
        request_id: u64,
        /// Offsets, or all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offsets: Option<Vec<u64>>,
    },
    /// How many items an operation affected (acks, nacks, redrive, discard).
    Count {
        /// Request answered.
        request_id: u64,
        /// Items affected.
        count: u64,
    },
    /// Liveness probe (ping extension).
    Ping {
        /// Correlates the reply.
        request_id: u64,
    },
    /// Reply to `ping`.
    Pong {
        /// Request answered.
        request_id: u64,
    },
    /// A fresh token for the connection (token-refresh extension), sent on a request stream.
    /// It must name the same tenant and subject as the token it replaces; on success every
    /// stream of the connection that acts as that principal continues under the new token
    /// (subscriptions included). Answered with `ok` or `error` (`unauthorized`).
    Reauth {
        /// Correlates the reply.
        request_id: u64,
        /// The new bearer token.
        token: String,
    },
}

impl Message {
    /// An error reply; the code fields are filled only when the peer negotiated them.
    pub fn error(
        code: ErrorCode,
        message: impl Into<String>,
        request_id: Option<u64>,
        with_code: bool,
    ) -> Self {
        Message::Error {
            message: message.into(),
            code: with_code.then(|| code.as_str().to_owned()),
            retryable: with_code.then(|| code.retryable()),
            request_id,
        }
    }

    /// Parses a JSON payload.
    ///
    /// A `type` naming no known message gives [`WireError::UnknownType`]; any other failure,
    /// including an unknown value of a nested enum such as `"ack":"bogus"`, gives
    /// [`WireError::InvalidJson`].
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        serde_json::from_slice(payload).map_err(|e| {
            let text = e.to_string();
            if text.starts_with("unknown variant") {
                if let Some(ty) = unknown_type_name(payload) {
                    return WireError::UnknownType(ty);
                }
            }
            WireError::InvalidJson(text)
        })
    }

    /// Appends the framed JSON encoding to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        FrameHeader {
            flags: flags::JSON,
            length: 0,
        }
        .write(out);
        let mut w = bytes::BufMut::writer(std::mem::take(out));
        serde_json::to_writer(&mut w, self).expect("messages always serialize");
        *out = w.into_inner();
        let len = (out.len() - start - HEADER_LEN) as u32;
        out[start + 8..start + 12].copy_from_slice(&len.to_be_bytes());
    }

    /// The framed JSON encoding as one buffer.
    pub fn to_frame_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        self.encode(&mut out);
        out.freeze()
    }
}

/// On the error path only: the payload's `type` string when it names no message we know.
///
/// serde reports an unknown tag and an unknown value of a nested enum (e.g. `ack`) with the
/// same "unknown variant" error, so the tag is read on its own and checked separately.
fn unknown_type_name(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(rename = "type", borrow)]
        ty: std::borrow::Cow<'a, str>,
    }
    let tag: Tag<'_> = serde_json::from_slice(payload).ok()?;
    let probe = serde_json::json!({ "type": tag.ty });
    match serde_json::from_value::<Message>(probe) {
        Err(e) if e.to_string().starts_with("unknown variant") => Some(tag.ty.into_owned()),
        _ => None,
    }
}
