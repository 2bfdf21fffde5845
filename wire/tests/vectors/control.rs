//! JSON control frames: handshake, ok/error replies (one per error code), admin, ping/pong.

use felix_wire::frame::flags;
use felix_wire::{ErrorCode, Message};

use super::{s, Vectors, NS, T};

/// Auth in each of its shapes, then the generic ok/error replies.
pub(crate) fn handshake(v: &mut Vectors) {
    v.json(
        "auth",
        Message::Auth {
            tenant_id: s(T),
            token: Some(s("demo-token")),
            client_flags: None,
            client_features: None,
            client_features_hi: None,
        },
    );
    v.json(
        "auth_no_token",
        Message::Auth {
            tenant_id: s(T),
            token: None,
            client_flags: None,
            client_features: None,
            client_features_hi: None,
        },
    );
    v.json(
        "auth_with_flags",
        Message::Auth {
            tenant_id: s(T),
            token: Some(s("demo-token")),
            client_flags: Some(flags::V1_ALL),
            client_features: None,
            client_features_hi: None,
        },
    );
    v.json(
        "auth_with_features",
        Message::Auth {
            tenant_id: s(T),
            token: Some(s("demo-token")),
            client_flags: Some(flags::ALL),
            client_features: Some(felix_wire::features::ALL as u32),
            client_features_hi: Some(0),
        },
    );
    v.json(
        "auth_ok",
        Message::AuthOk {
            server_flags: flags::V1_ALL,
            server_features: None,
            server_features_hi: None,
            max_frame_bytes: None,
        },
    );
    v.json(
        "auth_ok_with_features",
        Message::AuthOk {
            server_flags: flags::ALL,
            server_features: Some(felix_wire::features::ALL as u32),
            server_features_hi: Some(0),
            max_frame_bytes: Some(felix_wire::frame::DEFAULT_MAX_FRAME),
        },
    );
    v.json("ok", Message::Ok { request_id: None });
    v.json(
        "ok_with_request_id",
        Message::Ok {
            request_id: Some(41),
        },
    );
    v.json(
        "error",
        Message::Error {
            message: s("unauthorized"),
            code: None,
            retryable: None,
            request_id: None,
        },
    );
    for code in ErrorCode::ALL {
        v.json(
            &format!("error_code_{}", code.as_str()),
            Message::error(code, format!("example {code} error"), Some(42), true),
        );
    }
}

/// Stream and cache creation, with and without their optional limits.
pub(crate) fn admin(v: &mut Vectors) {
    v.json(
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
            durability: None,
            fsync: None,
            fsync_interval_ms: None,
        },
    );
    v.json(
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
            durability: None,
            fsync: None,
            fsync_interval_ms: None,
        },
    );
    v.json(
        "stream_create_durable",
        Message::StreamCreate {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("payments"),
            request_id: 22,
            max_records: None,
            max_bytes: None,
            subscriber_buffer: None,
            full_policy: None,
            durability: Some(s("durable")),
            fsync: Some(s("interval")),
            fsync_interval_ms: Some(50),
        },
    );
    v.json(
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
}

pub(crate) fn keepalive(v: &mut Vectors) {
    v.json("ping", Message::Ping { request_id: 50 });
    v.json(
        "reauth",
        Message::Reauth {
            request_id: 51,
            token: "eyJhbGciOiJFZERTQSJ9.e30.sig".into(),
        },
    );
    v.json("pong", Message::Pong { request_id: 50 });
}
