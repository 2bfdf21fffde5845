//! Consumer-group queue frames: group creation, pull/ack/nack/extend, and the dead-letter ops.

use felix_wire::{DeadLetterMessage, Message, QueueMessage, StartPos};

use super::{b, s, Vectors, NS, T};

pub(crate) fn json_frames(v: &mut Vectors) {
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
        "queue_messages_empty",
        Message::QueueMessages {
            request_id: 33,
            messages: vec![],
        },
    );
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
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
    v.json(
        "count",
        Message::Count {
            request_id: 34,
            count: 2,
        },
    );
}
