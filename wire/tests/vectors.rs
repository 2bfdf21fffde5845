//! Our own test vectors: one frame per frame type, message variant and extension op, kept in
//! `vectors/NAME.hex` + `vectors/NAME.json` for other languages' tests.
//!
//! `FELIX_REGEN_VECTORS=1 cargo test -p felix-wire --test vectors` (re)writes the files from
//! the frames built here; otherwise the files must exist, match byte for byte, and decode
//! back to the value each frame was built from.

mod common;

use std::collections::BTreeSet;
use std::fs;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use common::{decode_bytes, encode_decoded, encode_events_no_sub, from_hex, to_hex, vectors_dir};
use felix_wire::ext::op;
use felix_wire::frame::{flags, HEADER_LEN};
use felix_wire::{
    AckError, AckMode, BinaryAck, CacheEntry, CacheTarget, DeadLetterMessage, Decoded, ErrorCode,
    EventBatch, ExtFrame, Message, OffsetEventBatch, PublishBatch, PutCond, QueueMessage, StartPos,
};
use serde_json::{json, Map, Value};

struct Vector {
    name: String,
    bytes: Bytes,
    value: Decoded,
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn s(v: &str) -> String {
    v.to_owned()
}

const T: &str = "acme";
const NS: &str = "prod";

fn target(key: &str) -> CacheTarget {
    CacheTarget {
        tenant_id: s(T),
        namespace: s(NS),
        cache: s("sessions"),
        key: s(key),
    }
}

/// Every vector, built in code.
fn all_vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    let mut json = |name: &str, m: Message| {
        v.push((name.to_owned(), Decoded::Json(m)));
    };

    // --- v1 control plane -------------------------------------------------------------
    json(
        "auth",
        Message::Auth {
            tenant_id: s(T),
            token: Some(s("demo-token")),
            client_flags: None,
            client_features: None,
            client_features_hi: None,
        },
    );
    json(
        "auth_no_token",
        Message::Auth {
            tenant_id: s(T),
            token: None,
            client_flags: None,
            client_features: None,
            client_features_hi: None,
        },
    );
    json(
        "auth_with_flags",
        Message::Auth {
            tenant_id: s(T),
            token: Some(s("demo-token")),
            client_flags: Some(flags::V1_ALL),
            client_features: None,
            client_features_hi: None,
        },
    );
    json(
        "auth_with_features",
        Message::Auth {
            tenant_id: s(T),
            token: Some(s("demo-token")),
            client_flags: Some(flags::ALL),
            client_features: Some(felix_wire::features::ALL as u32),
            client_features_hi: Some(0),
        },
    );
    json(
        "auth_ok",
        Message::AuthOk {
            server_flags: flags::V1_ALL,
            server_features: None,
            server_features_hi: None,
            max_frame_bytes: None,
        },
    );
    json(
        "auth_ok_with_features",
        Message::AuthOk {
            server_flags: flags::ALL,
            server_features: Some(felix_wire::features::ALL as u32),
            server_features_hi: Some(0),
            max_frame_bytes: Some(felix_wire::frame::DEFAULT_MAX_FRAME),
        },
    );
    json("ok", Message::Ok { request_id: None });
    json(
        "ok_with_request_id",
        Message::Ok {
            request_id: Some(41),
        },
    );
    json(
        "error",
        Message::Error {
            message: s("unauthorized"),
            code: None,
            retryable: None,
            request_id: None,
        },
    );
    for code in ErrorCode::ALL {
        json(
            &format!("error_code_{}", code.as_str()),
            Message::error(code, format!("example {code} error"), Some(42), true),
        );
    }
    json(
        "publish",
        Message::Publish {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payload: b("hello"),
            request_id: None,
            ack: None,
        },
    );
    json(
        "publish_acked",
        Message::Publish {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payload: Bytes::from_static(&[0x00, 0xff, 0x10, 0x80]),
            request_id: Some(1),
            ack: Some(AckMode::PerMessage),
        },
    );
    json(
        "publish_ack_none",
        Message::Publish {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payload: b("fire and forget"),
            request_id: Some(2),
            ack: Some(AckMode::None),
        },
    );
    json(
        "publish_batch",
        Message::PublishBatch {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payloads: vec![b("a"), b("bb"), b("")],
            request_id: None,
            ack: None,
        },
    );
    json(
        "publish_batch_acked",
        Message::PublishBatch {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payloads: vec![b("a"), b("bb")],
            request_id: Some(3),
            ack: Some(AckMode::PerBatch),
        },
    );
    json(
        "publish_ok",
        Message::PublishOk {
            request_id: 1,
            offset: None,
        },
    );
    json(
        "publish_ok_with_offset",
        Message::PublishOk {
            request_id: 1,
            offset: Some(1234),
        },
    );
    json(
        "publish_error",
        Message::PublishError {
            request_id: 3,
            message: s("stream not found"),
            code: None,
            retryable: None,
        },
    );
    json(
        "publish_error_with_code",
        Message::PublishError {
            request_id: 3,
            message: s("in-flight byte limit reached"),
            code: Some(s(ErrorCode::Overloaded.as_str())),
            retryable: Some(true),
        },
    );
    json(
        "subscribe",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            subscription_id: None,
            start: None,
        },
    );
    json(
        "subscribe_with_id",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            subscription_id: Some(7),
            start: None,
        },
    );
    json(
        "subscribe_wildcard_earliest",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.>"),
            subscription_id: None,
            start: Some(StartPos::Earliest),
        },
    );
    json(
        "subscribe_star_latest",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.*"),
            subscription_id: None,
            start: Some(StartPos::Latest),
        },
    );
    json(
        "subscribe_from_offset",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            subscription_id: Some(8),
            start: Some(StartPos::Offset(100)),
        },
    );
    json(
        "subscribed",
        Message::Subscribed {
            subscription_id: 7,
            start_offset: None,
            epoch: None,
        },
    );
    json(
        "subscribed_with_start_offset",
        Message::Subscribed {
            subscription_id: 8,
            start_offset: Some(120),
            epoch: Some(0x5eed_f00d),
        },
    );
    json(
        "event_stream_hello",
        Message::EventStreamHello { subscription_id: 7 },
    );
    json(
        "event",
        Message::Event {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payload: b("world"),
            offset: None,
        },
    );
    json(
        "event_with_offset",
        Message::Event {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payload: b("world"),
            offset: Some(5),
        },
    );
    json(
        "event_batch",
        Message::EventBatch {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payloads: vec![b("one"), b("two")],
            offsets: None,
        },
    );
    json(
        "event_batch_with_offsets",
        Message::EventBatch {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payloads: vec![b("one"), b("two")],
            offsets: Some(vec![10, 12]),
        },
    );
    json(
        "subscription_end",
        Message::SubscriptionEnd {
            subscription_id: 7,
            code: s(ErrorCode::SlowConsumer.as_str()),
            message: s("subscriber buffer full"),
        },
    );

    // --- cache ----------------------------------------------------------------------------
    json(
        "cache_put",
        Message::CachePut {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            value: b("cached"),
            request_id: Some(10),
            ttl_ms: Some(1000),
            if_absent: None,
            if_version: None,
        },
    );
    json(
        "cache_put_default_ttl",
        Message::CachePut {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            value: b("cached"),
            request_id: Some(11),
            ttl_ms: None,
            if_absent: None,
            if_version: None,
        },
    );
    json(
        "cache_put_if_absent",
        Message::CachePut {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            value: b("cached"),
            request_id: Some(12),
            ttl_ms: Some(60_000),
            if_absent: Some(true),
            if_version: None,
        },
    );
    json(
        "cache_put_if_version",
        Message::CachePut {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            value: b("cached-v2"),
            request_id: Some(13),
            ttl_ms: None,
            if_absent: None,
            if_version: Some(4),
        },
    );
    json(
        "cache_ok",
        Message::CacheOk {
            request_id: Some(10),
            version: None,
        },
    );
    json(
        "cache_ok_with_version",
        Message::CacheOk {
            request_id: Some(13),
            version: Some(5),
        },
    );
    json(
        "cache_get",
        Message::CacheGet {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            request_id: Some(14),
        },
    );
    json(
        "cache_value",
        Message::CacheValue {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            value: Some(b("cached")),
            request_id: Some(14),
            version: None,
        },
    );
    json(
        "cache_value_miss",
        Message::CacheValue {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:2"),
            value: None,
            request_id: Some(15),
            version: None,
        },
    );
    json(
        "cache_value_with_version",
        Message::CacheValue {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            value: Some(b("cached")),
            request_id: Some(16),
            version: Some(5),
        },
    );
    json(
        "cache_delete",
        Message::CacheDelete {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            request_id: 17,
        },
    );
    json(
        "cache_deleted",
        Message::CacheDeleted {
            request_id: 17,
            existed: true,
        },
    );
    json(
        "cache_get_many",
        Message::CacheGetMany {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            keys: vec![s("user:1"), s("user:2")],
            request_id: 18,
        },
    );
    json(
        "cache_values",
        Message::CacheValues {
            request_id: 18,
            values: vec![
                CacheEntry {
                    key: s("user:1"),
                    value: Some(b("cached")),
                    version: Some(5),
                },
                CacheEntry {
                    key: s("user:2"),
                    value: None,
                    version: None,
                },
            ],
        },
    );

    // --- admin ------------------------------------------------------------------------------
    json(
        "stream_create",
        Message::StreamCreate {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            request_id: 20,
            max_records: Some(1_000_000),
            max_bytes: Some(1 << 30),
            subscriber_buffer: Some(4096),
            full_policy: Some(s("drop_oldest")),
        },
    );
    json(
        "stream_create_defaults",
        Message::StreamCreate {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("audit"),
            request_id: 21,
            max_records: None,
            max_bytes: None,
            subscriber_buffer: None,
            full_policy: None,
        },
    );
    json(
        "cache_create",
        Message::CacheCreate {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            request_id: 22,
            max_bytes: Some(64 << 20),
            default_ttl_ms: Some(300_000),
        },
    );

    // --- queues -----------------------------------------------------------------------------
    json(
        "group_create",
        Message::GroupCreate {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 30,
            start: Some(StartPos::Earliest),
            ack_timeout_ms: Some(30_000),
            max_deliveries: Some(5),
        },
    );
    json(
        "group_create_defaults",
        Message::GroupCreate {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("audit"),
            request_id: 31,
            start: None,
            ack_timeout_ms: None,
            max_deliveries: None,
        },
    );
    json(
        "queue_pull",
        Message::QueuePull {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 32,
            max: 10,
            wait_ms: 5000,
        },
    );
    json(
        "queue_messages",
        Message::QueueMessages {
            request_id: 32,
            messages: vec![
                QueueMessage {
                    offset: 0,
                    payload: b("first"),
                    attempt: 1,
                    lease_ms: 30_000,
                },
                QueueMessage {
                    offset: 3,
                    payload: b("again"),
                    attempt: 2,
                    lease_ms: 29_500,
                },
            ],
        },
    );
    json(
        "queue_messages_empty",
        Message::QueueMessages {
            request_id: 33,
            messages: vec![],
        },
    );
    json(
        "queue_ack",
        Message::QueueAck {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 34,
            offsets: vec![0, 3],
        },
    );
    json(
        "queue_nack",
        Message::QueueNack {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 35,
            offsets: vec![4],
            delay_ms: 1000,
        },
    );
    json(
        "queue_extend",
        Message::QueueExtend {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 36,
            offsets: vec![5, 6],
            extend_ms: 60_000,
        },
    );
    json(
        "dead_letter_list",
        Message::DeadLetterList {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 37,
            max: 100,
        },
    );
    json(
        "dead_letters",
        Message::DeadLetters {
            request_id: 37,
            messages: vec![DeadLetterMessage {
                offset: 9,
                payload: b("poison"),
                attempts: 5,
                reason: s("max_deliveries"),
            }],
        },
    );
    json(
        "dead_letter_redrive",
        Message::DeadLetterRedrive {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 38,
            offsets: Some(vec![9]),
        },
    );
    json(
        "dead_letter_redrive_all",
        Message::DeadLetterRedrive {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 39,
            offsets: None,
        },
    );
    json(
        "dead_letter_discard",
        Message::DeadLetterDiscard {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 40,
            offsets: Some(vec![9, 11]),
        },
    );
    json(
        "dead_letter_discard_all",
        Message::DeadLetterDiscard {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            group: s("billing"),
            request_id: 41,
            offsets: None,
        },
    );
    json(
        "count",
        Message::Count {
            request_id: 34,
            count: 2,
        },
    );
    json("ping", Message::Ping { request_id: 50 });
    json("pong", Message::Pong { request_id: 50 });

    let mut out: Vec<Vector> = v
        .into_iter()
        .map(|(name, value)| {
            let Decoded::Json(m) = &value else {
                unreachable!()
            };
            Vector {
                name,
                bytes: m.to_frame_bytes(),
                value,
            }
        })
        .collect();

    // --- binary data plane --------------------------------------------------------------------
    let mut bin = |name: &str, value: Decoded| {
        let bytes = encode_decoded(&value);
        out.push(Vector {
            name: name.to_owned(),
            bytes,
            value,
        });
    };
    let publish = |ack| PublishBatch {
        ack,
        tenant_id: s(T),
        namespace: s(NS),
        stream: s("orders.eu"),
        payloads: vec![b("hello"), b("world")],
    };
    bin("binary_publish_batch", Decoded::Publish(publish(None)));
    bin(
        "binary_publish_batch_per_message",
        Decoded::Publish(publish(Some((7, AckMode::PerMessage)))),
    );
    bin(
        "binary_publish_batch_per_batch",
        Decoded::Publish(publish(Some((8, AckMode::PerBatch)))),
    );
    bin(
        "binary_publish_batch_empty",
        Decoded::Publish(PublishBatch {
            payloads: vec![],
            ..publish(None)
        }),
    );
    bin(
        "binary_event_batch",
        Decoded::Events(EventBatch {
            subscription_id: 7,
            payloads: vec![b("one"), Bytes::from_static(&[0x00, 0xff, 0xfe]), b("")],
        }),
    );
    bin(
        "binary_event_batch_no_sub",
        Decoded::EventsNoSub(vec![b("one"), b("two")]),
    );
    bin(
        "binary_offset_event_batch",
        Decoded::OffsetEvents(OffsetEventBatch {
            subscription_id: 8,
            stream: s("orders.eu"),
            events: vec![(120, b("one")), (121, b("two")), (125, b("six"))],
        }),
    );
    bin(
        "binary_ack_ok",
        Decoded::Ack(BinaryAck {
            request_id: 7,
            error: None,
        }),
    );
    bin(
        "binary_ack_error",
        Decoded::Ack(BinaryAck {
            request_id: 9,
            error: Some(AckError {
                message: s("stream not found"),
                code: None,
                retryable: false,
            }),
        }),
    );
    bin(
        "binary_ack_error_with_code",
        Decoded::Ack(BinaryAck {
            request_id: 9,
            error: Some(AckError {
                message: s("stream not found"),
                code: Some(ErrorCode::NotFound),
                retryable: false,
            }),
        }),
    );
    bin(
        "binary_ack_error_retryable",
        Decoded::Ack(BinaryAck {
            request_id: 10,
            error: Some(AckError {
                message: s("in-flight byte limit reached"),
                code: Some(ErrorCode::Overloaded),
                retryable: true,
            }),
        }),
    );

    // --- binary extension (0x0020) ----------------------------------------------------------
    let ext = |f: ExtFrame| Decoded::Ext(f);
    bin(
        "ext_cache_get",
        ext(ExtFrame::CacheGet {
            request_id: 60,
            target: target("user:1"),
        }),
    );
    bin(
        "ext_cache_put",
        ext(ExtFrame::CachePut {
            request_id: 61,
            target: target("user:1"),
            ttl_ms: Some(1000),
            cond: PutCond::Always,
            value: b("cached"),
        }),
    );
    bin(
        "ext_cache_put_default_ttl",
        ext(ExtFrame::CachePut {
            request_id: 62,
            target: target("user:1"),
            ttl_ms: None,
            cond: PutCond::Always,
            value: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
        }),
    );
    bin(
        "ext_cache_put_if_absent",
        ext(ExtFrame::CachePut {
            request_id: 63,
            target: target("user:1"),
            ttl_ms: Some(60_000),
            cond: PutCond::IfAbsent,
            value: b("cached"),
        }),
    );
    bin(
        "ext_cache_put_if_version",
        ext(ExtFrame::CachePut {
            request_id: 64,
            target: target("user:1"),
            ttl_ms: None,
            cond: PutCond::IfVersion(4),
            value: b("cached-v2"),
        }),
    );
    bin(
        "ext_cache_delete",
        ext(ExtFrame::CacheDelete {
            request_id: 65,
            target: target("user:1"),
        }),
    );
    bin(
        "ext_cache_value_hit",
        ext(ExtFrame::CacheValue {
            request_id: 60,
            value: Some((5, b("cached"))),
        }),
    );
    bin(
        "ext_cache_value_miss",
        ext(ExtFrame::CacheValue {
            request_id: 66,
            value: None,
        }),
    );
    bin(
        "ext_cache_ok",
        ext(ExtFrame::CacheOk {
            request_id: 61,
            version: 5,
        }),
    );
    bin(
        "ext_cache_deleted",
        ext(ExtFrame::CacheDeleted {
            request_id: 65,
            existed: true,
        }),
    );
    bin(
        "ext_cache_deleted_absent",
        ext(ExtFrame::CacheDeleted {
            request_id: 67,
            existed: false,
        }),
    );
    bin(
        "ext_error_conflict",
        ext(ExtFrame::Error {
            request_id: 63,
            code: ErrorCode::Conflict,
            retryable: false,
            message: s("key exists"),
        }),
    );
    bin(
        "ext_error_unavailable",
        ext(ExtFrame::Error {
            request_id: 64,
            code: ErrorCode::Unavailable,
            retryable: true,
            message: s("shutting down"),
        }),
    );
    out
}

fn b64(b: &[u8]) -> Value {
    Value::String(STANDARD.encode(b))
}

/// Adds `payloads` (base64) and, when every payload is UTF-8, `payloads_utf8`.
fn put_payloads(m: &mut Map<String, Value>, payloads: &[&[u8]]) {
    m.insert(s("payloads"), payloads.iter().map(|p| b64(p)).collect());
    let utf8: Option<Vec<Value>> = payloads
        .iter()
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .map(|t| Value::String(t.to_owned()))
        })
        .collect();
    if let Some(u) = utf8 {
        m.insert(s("payloads_utf8"), Value::Array(u));
    }
}

fn put_value(m: &mut Map<String, Value>, v: &[u8]) {
    m.insert(s("value"), b64(v));
    if let Ok(t) = std::str::from_utf8(v) {
        m.insert(s("value_utf8"), Value::String(t.to_owned()));
    }
}

fn put_target(m: &mut Map<String, Value>, t: &CacheTarget) {
    m.insert(s("tenant_id"), json!(t.tenant_id));
    m.insert(s("namespace"), json!(t.namespace));
    m.insert(s("cache"), json!(t.cache));
    m.insert(s("key"), json!(t.key));
}

fn put_code(m: &mut Map<String, Value>, code: ErrorCode, retryable: bool) {
    m.insert(s("code"), json!(code.as_str()));
    m.insert(s("code_num"), json!(code.as_u16()));
    m.insert(s("retryable"), json!(retryable));
}

/// The language-neutral description of a decoded frame: `(kind, key, object)` where key is
/// `message` for JSON frames and `fields` for binary ones.
fn describe(d: &Decoded, payload: &[u8]) -> (&'static str, &'static str, Value) {
    let mut m = Map::new();
    let kind = match d {
        Decoded::Json(_) => {
            let obj: Value = serde_json::from_slice(payload).unwrap();
            return ("json", "message", obj);
        }
        Decoded::Publish(p) => {
            if let Some((rid, mode)) = p.ack {
                m.insert(s("request_id"), json!(rid));
                m.insert(s("ack_mode"), serde_json::to_value(mode).unwrap());
            }
            m.insert(s("tenant_id"), json!(p.tenant_id));
            m.insert(s("namespace"), json!(p.namespace));
            m.insert(s("stream"), json!(p.stream));
            put_payloads(
                &mut m,
                &p.payloads.iter().map(|x| x.as_ref()).collect::<Vec<_>>(),
            );
            if p.ack.is_some() {
                "acked_publish_batch"
            } else {
                "publish_batch"
            }
        }
        Decoded::Events(e) => {
            m.insert(s("subscription_id"), json!(e.subscription_id));
            put_payloads(
                &mut m,
                &e.payloads.iter().map(|x| x.as_ref()).collect::<Vec<_>>(),
            );
            "event_batch"
        }
        Decoded::EventsNoSub(p) => {
            put_payloads(&mut m, &p.iter().map(|x| x.as_ref()).collect::<Vec<_>>());
            "event_batch_no_sub"
        }
        Decoded::OffsetEvents(e) => {
            m.insert(s("subscription_id"), json!(e.subscription_id));
            m.insert(s("stream"), json!(e.stream));
            m.insert(
                s("offsets"),
                e.events.iter().map(|(o, _)| json!(o)).collect(),
            );
            put_payloads(
                &mut m,
                &e.events.iter().map(|(_, p)| p.as_ref()).collect::<Vec<_>>(),
            );
            "offset_event_batch"
        }
        Decoded::Ack(a) => {
            m.insert(s("request_id"), json!(a.request_id));
            match &a.error {
                None => {
                    m.insert(s("status"), json!("ok"));
                    m.insert(s("message"), Value::Null);
                }
                Some(e) => {
                    m.insert(s("status"), json!("error"));
                    m.insert(s("message"), json!(e.message));
                    if let Some(code) = e.code {
                        put_code(&mut m, code, e.retryable);
                    }
                }
            }
            "binary_ack"
        }
        Decoded::Ext(x) => {
            m.insert(s("request_id"), json!(x.request_id()));
            let (name, byte) = match x {
                ExtFrame::CacheGet { target, .. } => {
                    put_target(&mut m, target);
                    ("cache_get", op::CACHE_GET)
                }
                ExtFrame::CachePut {
                    target,
                    ttl_ms,
                    cond,
                    value,
                    ..
                } => {
                    put_target(&mut m, target);
                    let (c, ver) = match cond {
                        PutCond::Always => ("always", 0),
                        PutCond::IfAbsent => ("if_absent", 0),
                        PutCond::IfVersion(v) => ("if_version", *v),
                    };
                    m.insert(s("condition"), json!(c));
                    m.insert(s("version"), json!(ver));
                    m.insert(s("ttl_ms"), json!(ttl_ms.unwrap_or(0)));
                    put_value(&mut m, value);
                    ("cache_put", op::CACHE_PUT)
                }
                ExtFrame::CacheDelete { target, .. } => {
                    put_target(&mut m, target);
                    ("cache_delete", op::CACHE_DELETE)
                }
                ExtFrame::CacheValue { value, .. } => {
                    m.insert(s("found"), json!(value.is_some()));
                    if let Some((ver, v)) = value {
                        m.insert(s("version"), json!(ver));
                        put_value(&mut m, v);
                    }
                    ("cache_value", op::CACHE_VALUE)
                }
                ExtFrame::CacheOk { version, .. } => {
                    m.insert(s("version"), json!(version));
                    ("cache_ok", op::CACHE_OK)
                }
                ExtFrame::CacheDeleted { existed, .. } => {
                    m.insert(s("existed"), json!(existed));
                    ("cache_deleted", op::CACHE_DELETED)
                }
                ExtFrame::Error {
                    code,
                    retryable,
                    message,
                    ..
                } => {
                    put_code(&mut m, *code, *retryable);
                    m.insert(s("message"), json!(message));
                    ("error", op::ERROR)
                }
            };
            m.insert(s("op"), json!(name));
            m.insert(s("op_byte"), json!(byte));
            "ext"
        }
    };
    (kind, "fields", Value::Object(m))
}

fn vector_json(v: &Vector) -> Value {
    let frame_flags = u16::from_be_bytes([v.bytes[6], v.bytes[7]]);
    let (kind, key, body) = describe(&v.value, &v.bytes[HEADER_LEN..]);
    let mut m = Map::new();
    m.insert(s("name"), json!(v.name));
    m.insert(s("flags"), json!(frame_flags));
    m.insert(s("kind"), json!(kind));
    m.insert(s(key), body);
    m.insert(s("frame_hex"), json!(to_hex(&v.bytes)));
    Value::Object(m)
}

/// Pretty JSON with the top-level keys in reading order (name, flags, kind, body, frame_hex).
fn ordered_pretty(v: &Value) -> String {
    let keys = ["name", "flags", "kind", "message", "fields", "frame_hex"];
    let obj = v.as_object().unwrap();
    assert!(obj.keys().all(|k| keys.contains(&k.as_str())));
    let parts: Vec<String> = keys
        .iter()
        .filter_map(|k| obj.get(*k).map(|val| (k, val)))
        .map(|(k, val)| {
            let text = serde_json::to_string_pretty(val)
                .unwrap()
                .replace('\n', "\n  ");
            format!("  \"{k}\": {text}")
        })
        .collect();
    format!("{{\n{}\n}}\n", parts.join(",\n"))
}

fn regen() -> bool {
    std::env::var("FELIX_REGEN_VECTORS").is_ok_and(|v| v == "1")
}

#[test]
fn vectors_match_files() {
    let dir = vectors_dir();
    let vectors = all_vectors();
    let mut names = BTreeSet::new();
    for v in &vectors {
        assert!(names.insert(v.name.clone()), "duplicate vector {}", v.name);
        // The frame decodes to the value it was built from and re-encodes identically.
        let decoded = decode_bytes(&v.bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(decoded, v.value, "{}", v.name);
        assert_eq!(encode_decoded(&decoded), v.bytes, "{}: re-encoding", v.name);

        let want_json = vector_json(v);
        let hex_path = dir.join(format!("{}.hex", v.name));
        let json_path = dir.join(format!("{}.json", v.name));
        if regen() {
            fs::write(&hex_path, format!("{}\n", to_hex(&v.bytes))).unwrap();
            fs::write(&json_path, ordered_pretty(&want_json)).unwrap();
            continue;
        }
        let hint = "run FELIX_REGEN_VECTORS=1 cargo test -p felix-wire --test vectors";
        let hex = fs::read_to_string(&hex_path)
            .unwrap_or_else(|e| panic!("{}: {e} ({hint})", hex_path.display()));
        assert_eq!(
            hex.trim_end(),
            to_hex(&v.bytes),
            "{}: .hex differs ({hint})",
            v.name
        );
        let on_disk: Value = serde_json::from_str(
            &fs::read_to_string(&json_path)
                .unwrap_or_else(|e| panic!("{}: {e} ({hint})", json_path.display())),
        )
        .unwrap();
        assert_eq!(on_disk, want_json, "{}: .json differs ({hint})", v.name);
        // What a reader of the files sees decodes back to the same value.
        let from_file = from_hex(on_disk["frame_hex"].as_str().unwrap());
        assert_eq!(decode_bytes(&from_file).unwrap(), v.value, "{}", v.name);
        assert_eq!(from_hex(&hex), from_file, "{}", v.name);
    }

    if !regen() {
        // No stale vectors: every NAME.hex / NAME.json on disk is built here.
        for entry in fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = file
                .strip_suffix(".hex")
                .or_else(|| file.strip_suffix(".json"))
            {
                assert!(names.contains(stem), "stale vector file {file}");
            }
        }
    }
}

/// The names serde knows for `Message`, read from its own "unknown variant" error, so a new
/// variant without a vector fails here.
fn message_type_names() -> Vec<String> {
    let err = serde_json::from_str::<Message>(r#"{"type":"__no_such_type__"}"#).unwrap_err();
    let text = err.to_string();
    let list = text
        .split("expected one of")
        .nth(1)
        .expect("variant list in error");
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_message_variant_and_frame_type_has_a_vector() {
    let vectors = all_vectors();
    let mut types = BTreeSet::new();
    let mut frame_flags = BTreeSet::new();
    let mut ops = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for v in &vectors {
        frame_flags.insert(u16::from_be_bytes([v.bytes[6], v.bytes[7]]));
        match &v.value {
            Decoded::Json(m) => {
                let val = serde_json::to_value(m).unwrap();
                types.insert(val["type"].as_str().unwrap().to_owned());
            }
            Decoded::Ext(_) => {
                ops.insert(v.bytes[HEADER_LEN]);
            }
            Decoded::Ack(a) => {
                kinds.insert(match &a.error {
                    None => "ack_ok",
                    Some(e) if e.code.is_none() => "ack_error",
                    Some(_) => "ack_error_code",
                });
            }
            _ => {}
        }
    }
    let all_types = message_type_names();
    assert!(all_types.len() >= 37, "parsed {all_types:?}");
    for t in &all_types {
        assert!(types.contains(t), "no vector for message type {t}");
    }
    let want_flags = [
        flags::JSON,
        flags::PUBLISH_BATCH,
        flags::PUBLISH_BATCH | flags::ACKED,
        flags::EVENT_BATCH,
        flags::EVENT_BATCH_NO_SUB,
        flags::BINARY_ACK,
        flags::EXT_BINARY,
        flags::EVENT_BATCH_OFFSETS,
    ];
    assert_eq!(frame_flags, want_flags.into_iter().collect());
    let want_ops = [
        op::CACHE_GET,
        op::CACHE_PUT,
        op::CACHE_DELETE,
        op::CACHE_VALUE,
        op::CACHE_OK,
        op::CACHE_DELETED,
        op::ERROR,
    ];
    assert_eq!(ops, want_ops.into_iter().collect());
    assert_eq!(
        kinds,
        ["ack_ok", "ack_error", "ack_error_code"]
            .into_iter()
            .collect()
    );
    for code in ErrorCode::ALL {
        assert!(vectors
            .iter()
            .any(|v| v.name == format!("error_code_{}", code.as_str())));
    }
}

/// The extension and v1 binary ack bodies differ only by the 3-byte trailer.
#[test]
fn ack_code_trailer_is_three_bytes() {
    let ack = BinaryAck {
        request_id: 9,
        error: Some(AckError {
            message: s("x"),
            code: Some(ErrorCode::Conflict),
            retryable: true,
        }),
    };
    let (mut plain, mut coded) = (BytesMut::new(), BytesMut::new());
    ack.encode(&mut plain, false);
    ack.encode(&mut coded, true);
    assert_eq!(coded.len(), plain.len() + 3);
    assert_eq!(&coded[coded.len() - 3..], &[0x00, 0x04, 0x01]);
    assert_eq!(&coded[12..coded.len() - 3], &plain[12..]);
    let mut no_sub = BytesMut::new();
    encode_events_no_sub(&mut no_sub, &[b("a")]);
    assert_eq!(to_hex(&no_sub[12..]), "000000010000000161");
}
