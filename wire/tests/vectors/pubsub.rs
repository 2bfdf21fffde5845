//! Publish, subscribe and event frames: the JSON forms and the binary data plane.

use bytes::Bytes;
use felix_wire::{
    AckError, AckMode, BinaryAck, Decoded, ErrorCode, EventBatch, Message, OffsetEventBatch,
    PublishBatch, StartPos,
};

use super::{b, s, Vectors, NS, T};

pub(crate) fn json_frames(v: &mut Vectors) {
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
        "publish_ok",
        Message::PublishOk {
            request_id: 1,
            offset: None,
        },
    );
    v.json(
        "publish_ok_with_offset",
        Message::PublishOk {
            request_id: 1,
            offset: Some(1234),
        },
    );
    v.json(
        "publish_error",
        Message::PublishError {
            request_id: 3,
            message: s("stream not found"),
            code: None,
            retryable: None,
        },
    );
    v.json(
        "publish_error_with_code",
        Message::PublishError {
            request_id: 3,
            message: s("in-flight byte limit reached"),
            code: Some(s(ErrorCode::Overloaded.as_str())),
            retryable: Some(true),
        },
    );
    v.json(
        "subscribe",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            subscription_id: None,
            start: None,
        },
    );
    v.json(
        "subscribe_with_id",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            subscription_id: Some(7),
            start: None,
        },
    );
    v.json(
        "subscribe_wildcard_earliest",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.>"),
            subscription_id: None,
            start: Some(StartPos::Earliest),
        },
    );
    v.json(
        "subscribe_star_latest",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.*"),
            subscription_id: None,
            start: Some(StartPos::Latest),
        },
    );
    v.json(
        "subscribe_from_offset",
        Message::Subscribe {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            subscription_id: Some(8),
            start: Some(StartPos::Offset(100)),
        },
    );
    v.json(
        "subscribed",
        Message::Subscribed {
            subscription_id: 7,
            start_offset: None,
            epoch: None,
        },
    );
    v.json(
        "subscribed_with_start_offset",
        Message::Subscribed {
            subscription_id: 8,
            start_offset: Some(120),
            epoch: Some(0x5eed_f00d),
        },
    );
    v.json(
        "event_stream_hello",
        Message::EventStreamHello { subscription_id: 7 },
    );
    v.json(
        "event",
        Message::Event {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payload: b("world"),
            offset: None,
        },
    );
    v.json(
        "event_with_offset",
        Message::Event {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payload: b("world"),
            offset: Some(5),
        },
    );
    v.json(
        "event_batch",
        Message::EventBatch {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payloads: vec![b("one"), b("two")],
            offsets: None,
        },
    );
    v.json(
        "event_batch_with_offsets",
        Message::EventBatch {
            tenant_id: s(T),
            namespace: s(NS),
            stream: s("orders.eu"),
            payloads: vec![b("one"), b("two")],
            offsets: Some(vec![10, 12]),
        },
    );
    v.json(
        "subscription_end",
        Message::SubscriptionEnd {
            subscription_id: 7,
            code: s(ErrorCode::SlowConsumer.as_str()),
            message: s("subscriber buffer full"),
        },
    );
}

/// The binary batches and acks, in every ack mode and error shape.
pub(crate) fn binary_frames(v: &mut Vectors) {
    let publish = |ack| PublishBatch {
        ack,
        tenant_id: s(T),
        namespace: s(NS),
        stream: s("orders.eu"),
        payloads: vec![b("hello"), b("world")],
    };
    v.bin("binary_publish_batch", Decoded::Publish(publish(None)));
    v.bin(
        "binary_publish_batch_per_message",
        Decoded::Publish(publish(Some((7, AckMode::PerMessage)))),
    );
    v.bin(
        "binary_publish_batch_per_batch",
        Decoded::Publish(publish(Some((8, AckMode::PerBatch)))),
    );
    v.bin(
        "binary_publish_batch_empty",
        Decoded::Publish(PublishBatch {
            payloads: vec![],
            ..publish(None)
        }),
    );
    v.bin(
        "binary_event_batch",
        Decoded::Events(EventBatch {
            subscription_id: 7,
            payloads: vec![b("one"), Bytes::from_static(&[0x00, 0xff, 0xfe]), b("")],
        }),
    );
    v.bin(
        "binary_event_batch_no_sub",
        Decoded::EventsNoSub(vec![b("one"), b("two")]),
    );
    v.bin(
        "binary_offset_event_batch",
        Decoded::OffsetEvents(OffsetEventBatch {
            subscription_id: 8,
            stream: s("orders.eu"),
            events: vec![(120, b("one")), (121, b("two")), (125, b("six"))],
        }),
    );
    v.bin(
        "binary_ack_ok",
        Decoded::Ack(BinaryAck {
            request_id: 7,
            error: None,
        }),
    );
    v.bin(
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
    v.bin(
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
    v.bin(
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
}
