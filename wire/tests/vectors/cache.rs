//! Cache frames: the JSON requests and replies, and the binary extension (0x0020) ops.

use bytes::Bytes;
use felix_wire::{CacheEntry, CacheTarget, Decoded, ErrorCode, ExtFrame, Message, PutCond};

use super::{b, s, Vectors, NS, T};

fn target(key: &str) -> CacheTarget {
    CacheTarget {
        tenant_id: s(T),
        namespace: s(NS),
        cache: s("sessions"),
        key: s(key),
    }
}

pub(crate) fn json_frames(v: &mut Vectors) {
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
        "cache_ok",
        Message::CacheOk {
            request_id: Some(10),
            version: None,
        },
    );
    v.json(
        "cache_ok_with_version",
        Message::CacheOk {
            request_id: Some(13),
            version: Some(5),
        },
    );
    v.json(
        "cache_get",
        Message::CacheGet {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            request_id: Some(14),
        },
    );
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
        "cache_delete",
        Message::CacheDelete {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            key: s("user:1"),
            request_id: 17,
        },
    );
    v.json(
        "cache_deleted",
        Message::CacheDeleted {
            request_id: 17,
            existed: true,
        },
    );
    v.json(
        "cache_get_many",
        Message::CacheGetMany {
            tenant_id: s(T),
            namespace: s(NS),
            cache: s("sessions"),
            keys: vec![s("user:1"), s("user:2")],
            request_id: 18,
        },
    );
    v.json(
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
}

pub(crate) fn ext_frames(v: &mut Vectors) {
    let ext = |f: ExtFrame| Decoded::Ext(f);
    v.bin(
        "ext_cache_get",
        ext(ExtFrame::CacheGet {
            request_id: 60,
            target: target("user:1"),
        }),
    );
    v.bin(
        "ext_cache_put",
        ext(ExtFrame::CachePut {
            request_id: 61,
            target: target("user:1"),
            ttl_ms: Some(1000),
            cond: PutCond::Always,
            value: b("cached"),
        }),
    );
    v.bin(
        "ext_cache_put_default_ttl",
        ext(ExtFrame::CachePut {
            request_id: 62,
            target: target("user:1"),
            ttl_ms: None,
            cond: PutCond::Always,
            value: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
        }),
    );
    v.bin(
        "ext_cache_put_if_absent",
        ext(ExtFrame::CachePut {
            request_id: 63,
            target: target("user:1"),
            ttl_ms: Some(60_000),
            cond: PutCond::IfAbsent,
            value: b("cached"),
        }),
    );
    v.bin(
        "ext_cache_put_if_version",
        ext(ExtFrame::CachePut {
            request_id: 64,
            target: target("user:1"),
            ttl_ms: None,
            cond: PutCond::IfVersion(4),
            value: b("cached-v2"),
        }),
    );
    v.bin(
        "ext_cache_delete",
        ext(ExtFrame::CacheDelete {
            request_id: 65,
            target: target("user:1"),
        }),
    );
    v.bin(
        "ext_cache_value_hit",
        ext(ExtFrame::CacheValue {
            request_id: 60,
            value: Some((5, b("cached"))),
        }),
    );
    v.bin(
        "ext_cache_value_miss",
        ext(ExtFrame::CacheValue {
            request_id: 66,
            value: None,
        }),
    );
    v.bin(
        "ext_cache_ok",
        ext(ExtFrame::CacheOk {
            request_id: 61,
            version: 5,
        }),
    );
    v.bin(
        "ext_cache_deleted",
        ext(ExtFrame::CacheDeleted {
            request_id: 65,
            existed: true,
        }),
    );
    v.bin(
        "ext_cache_deleted_absent",
        ext(ExtFrame::CacheDeleted {
            request_id: 67,
            existed: false,
        }),
    );
    v.bin(
        "ext_error_conflict",
        ext(ExtFrame::Error {
            request_id: 63,
            code: ErrorCode::Conflict,
            retryable: false,
            message: s("key exists"),
        }),
    );
    v.bin(
        "ext_error_unavailable",
        ext(ExtFrame::Error {
            request_id: 64,
            code: ErrorCode::Unavailable,
            retryable: true,
            message: s("shutting down"),
        }),
    );
}
