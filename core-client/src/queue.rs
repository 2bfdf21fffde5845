//! Work queues: a [`Consumer`] in a consumer group shares a stream with the group's other
//! consumers; each message is leased to one of them until acked, nacked or the lease ends.

use std::time::Duration;

use bytes::Bytes;
use felix_wire::{features, Message, StartPos};

use crate::client::Client;
use crate::conn::{json_frame, Orphan, Reply};
use crate::error::{Error, Result};

/// A leased delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// Offset in the stream: the message id to ack.
    pub offset: u64,
    /// Payload.
    pub payload: Bytes,
    /// Delivery attempt, 1 on first delivery.
    pub attempt: u32,
    /// Time left on the lease when it was handed out.
    pub lease: Duration,
}

/// A dead-lettered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Offset in the stream.
    pub offset: u64,
    /// Payload.
    pub payload: Bytes,
    /// Deliveries attempted.
    pub attempts: u32,
    /// `max_deliveries` or `rejected`.
    pub reason: String,
}

/// Settings of an explicitly created consumer group.
#[derive(Debug, Clone, Default)]
pub struct GroupSettings {
    /// Start at the oldest retained record (default) or only new ones.
    pub from_latest: bool,
    /// Lease length before redelivery.
    pub ack_timeout: Option<Duration>,
    /// Deliveries before dead-lettering.
    pub max_deliveries: Option<u32>,
}

/// A member of a consumer group on one stream. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Consumer {
    client: Client,
    namespace: String,
    stream: String,
    group: String,
}

impl Client {
    /// A consumer in `group` on `namespace/stream` (the group is created on first use in dev
    /// mode, or explicitly with [`Client::create_group`]).
    pub fn consumer(&self, namespace: &str, stream: &str, group: &str) -> Consumer {
        Consumer {
            client: self.clone(),
            namespace: namespace.into(),
            stream: stream.into(),
            group: group.into(),
        }
    }

    /// Creates a consumer group with settings; an existing group is left unchanged.
    pub async fn create_group(
        &self,
        namespace: &str,
        stream: &str,
        group: &str,
        settings: GroupSettings,
    ) -> Result<()> {
        let tenant = self.tenant().to_owned();
        self.call(Duration::ZERO, |rid, n| {
            Self::require(n, features::QUEUES, "queues")?;
            let m = Message::GroupCreate {
                tenant_id: tenant,
                namespace: namespace.into(),
                stream: stream.into(),
                group: group.into(),
                request_id: rid,
                start: Some(if settings.from_latest {
                    StartPos::Latest
                } else {
                    StartPos::Earliest
                }),
                ack_timeout_ms: settings.ack_timeout.map(|d| d.as_millis().max(1) as u64),
                max_deliveries: settings.max_deliveries,
            };
            Ok((json_frame(&m), 1))
        })
        .await
        .map(|_| ())
    }
}

impl Consumer {
    async fn count(
        &self,
        build: impl FnOnce(u64, String, String, String, String) -> Message,
    ) -> Result<u64> {
        let tenant = self.client.tenant().to_owned();
        let r = self
            .client
            .call(Duration::ZERO, |rid, n| {
                Client::require(n, features::QUEUES, "queues")?;
                let m = build(
                    rid,
                    tenant,
                    self.namespace.clone(),
                    self.stream.clone(),
                    self.group.clone(),
                );
                Ok((json_frame(&m), 1))
            })
            .await?;
        match r {
            Reply::Json(Message::Count { count, .. }) => Ok(count),
            other => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Takes up to `max` messages, waiting up to `wait` for the first one (long poll).
    pub async fn pull(&self, max: u32, wait: Duration) -> Result<Vec<QueueMessage>> {
        if max == 0 {
            return Err(Error::InvalidArgument("max must be at least 1".into()));
        }
        let tenant = self.client.tenant().to_owned();
        // If this call is abandoned (cancelled, timed out) while the broker holds it, whatever
        // the broker then leases to it is nacked at once, so those messages go to another
        // consumer now rather than after their lease expires.
        let owner = self.clone();
        let orphan: Orphan = Box::new(move |reply| {
            if let Reply::Json(Message::QueueMessages { messages, .. }) = reply {
                let offsets: Vec<u64> = messages.iter().map(|m| m.offset).collect();
                if !offsets.is_empty() {
                    tokio::spawn(async move {
                        let _ = owner.nack(&offsets, Duration::ZERO).await;
                    });
                }
            }
        });
        let r = self
            .client
            .call_with_orphan(
                wait,
                |rid, n| {
                    Client::require(n, features::QUEUES, "queues")?;
                    let m = Message::QueuePull {
                        tenant_id: tenant,
                        namespace: self.namespace.clone(),
                        stream: self.stream.clone(),
                        group: self.group.clone(),
                        request_id: rid,
                        max,
                        wait_ms: wait.as_millis() as u64,
                    };
                    Ok((json_frame(&m), 1))
                },
                Some(orphan),
            )
            .await?;
        match r {
            Reply::Json(Message::QueueMessages { messages, .. }) => Ok(messages
                .into_iter()
                .map(|m| QueueMessage {
                    offset: m.offset,
                    payload: m.payload,
                    attempt: m.attempt,
                    lease: Duration::from_millis(m.lease_ms),
                })
                .collect()),
            other => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Acknowledges messages; returns how many were still leased (and are now done).
    pub async fn ack(&self, offsets: &[u64]) -> Result<u64> {
        let offsets = offsets.to_vec();
        self.count(
            |request_id, tenant_id, namespace, stream, group| Message::QueueAck {
                tenant_id,
                namespace,
                stream,
                group,
                request_id,
                offsets,
            },
        )
        .await
    }

    /// Returns messages for redelivery after `delay`.
    pub async fn nack(&self, offsets: &[u64], delay: Duration) -> Result<u64> {
        let offsets = offsets.to_vec();
        self.count(
            |request_id, tenant_id, namespace, stream, group| Message::QueueNack {
                tenant_id,
                namespace,
                stream,
                group,
                request_id,
                offsets,
                delay_ms: delay.as_millis() as u64,
            },
        )
        .await
    }

    /// Extends leases to `by` from now.
    pub async fn extend(&self, offsets: &[u64], by: Duration) -> Result<u64> {
        let offsets = offsets.to_vec();
        self.count(
            |request_id, tenant_id, namespace, stream, group| Message::QueueExtend {
                tenant_id,
                namespace,
                stream,
                group,
                request_id,
                offsets,
                extend_ms: by.as_millis() as u64,
            },
        )
        .await
    }

    /// Lists up to `max` dead letters, oldest first.
    pub async fn dead_letters(&self, max: u32) -> Result<Vec<DeadLetter>> {
        let tenant = self.client.tenant().to_owned();
        let r = self
            .client
            .call(Duration::ZERO, |rid, n| {
                Client::require(n, features::QUEUES, "queues")?;
                let m = Message::DeadLetterList {
                    tenant_id: tenant,
                    namespace: self.namespace.clone(),
                    stream: self.stream.clone(),
                    group: self.group.clone(),
                    request_id: rid,
                    max,
                };
                Ok((json_frame(&m), 1))
            })
            .await?;
        match r {
            Reply::Json(Message::DeadLetters { messages, .. }) => Ok(messages
                .into_iter()
                .map(|d| DeadLetter {
                    offset: d.offset,
                    payload: d.payload,
                    attempts: d.attempts,
                    reason: d.reason,
                })
                .collect()),
            other => Err(Error::Protocol(format!("unexpected reply {other:?}"))),
        }
    }

    /// Moves dead letters back for delivery (all when `offsets` is `None`).
    pub async fn redrive(&self, offsets: Option<&[u64]>) -> Result<u64> {
        let offsets = offsets.map(<[u64]>::to_vec);
        self.count(
            |request_id, tenant_id, namespace, stream, group| Message::DeadLetterRedrive {
                tenant_id,
                namespace,
                stream,
                group,
                request_id,
                offsets,
            },
        )
        .await
    }

    /// Drops dead letters (all when `offsets` is `None`).
    pub async fn discard(&self, offsets: Option<&[u64]>) -> Result<u64> {
        let offsets = offsets.map(<[u64]>::to_vec);
        self.count(
            |request_id, tenant_id, namespace, stream, group| Message::DeadLetterDiscard {
                tenant_id,
                namespace,
                stream,
                group,
                request_id,
                offsets,
            },
        )
        .await
    }
}
