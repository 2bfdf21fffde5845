//! [`Publisher`]: batching publisher for one stream.
//!
//! `publish` enqueues into a bounded queue (waiting when it is full: backpressure) and
//! resolves when the batch holding the message is acknowledged. A background task drains
//! the queue into batches bounded by messages and bytes; with `max_delay` zero a batch is
//! whatever queued up while the previous one was being written, so a lone message is sent at
//! once and load batches itself.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::client::Client;
use crate::config::PublisherConfig;
use crate::error::{Error, Result};

type Done = oneshot::Sender<Result<()>>;

/// A batching publisher bound to one stream. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: mpsc::Sender<(Bytes, Done)>,
    max_message: usize,
}

impl Client {
    /// A batching publisher for `namespace/stream`.
    pub fn publisher(&self, namespace: &str, stream: &str, config: PublisherConfig) -> Publisher {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let max_message = config.max_batch_bytes.max(1);
        tokio::spawn(run(
            self.clone(),
            namespace.to_owned(),
            stream.to_owned(),
            config,
            rx,
        ));
        Publisher { tx, max_message }
    }
}

impl Publisher {
    /// Publishes one message; resolves when its batch is acknowledged (or written, with
    /// `AckMode::None`).
    pub async fn publish(&self, payload: Bytes) -> Result<()> {
        let rx = self.enqueue(payload).await?;
        rx.await.map_err(|_| Error::Closed("publisher"))?
    }

    /// Enqueues one message and returns a receiver for its outcome, so a caller can keep
    /// many messages in flight without awaiting each.
    pub async fn enqueue(&self, payload: Bytes) -> Result<oneshot::Receiver<Result<()>>> {
        if payload.len() > self.max_message {
            return Err(Error::InvalidArgument(format!(
                "message of {} bytes exceeds the publisher's max_batch_bytes {}",
                payload.len(),
                self.max_message
            )));
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .send((payload, done))
            .await
            .map_err(|_| Error::Closed("publisher"))?;
        Ok(rx)
    }
}

async fn run(
    client: Client,
    namespace: String,
    stream: String,
    cfg: PublisherConfig,
    mut rx: mpsc::Receiver<(Bytes, Done)>,
) {
    let mut payloads: Vec<Bytes> = Vec::with_capacity(cfg.max_batch_messages);
    let mut waiters: Vec<Done> = Vec::with_capacity(cfg.max_batch_messages);
    while let Some((p, d)) = rx.recv().await {
        let mut bytes = p.len();
        payloads.push(p);
        waiters.push(d);
        let deadline = tokio::time::Instant::now() + cfg.max_delay;
        while payloads.len() < cfg.max_batch_messages {
            let next = if cfg.max_delay == Duration::ZERO {
                rx.try_recv().ok()
            } else {
                tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten()
            };
            let Some((p, d)) = next else { break };
            bytes += p.len();
            payloads.push(p);
            waiters.push(d);
            if bytes >= cfg.max_batch_bytes {
                break;
            }
        }
        let r = client
            .publish_batch(&namespace, &stream, &payloads, cfg.ack)
            .await;
        payloads.clear();
        for w in waiters.drain(..) {
            let _ = w.send(r.clone());
        }
        if client.is_closed() {
            break;
        }
    }
    // Anything still queued fails rather than hanging.
    rx.close();
    while let Ok((_, d)) = rx.try_recv() {
        let _ = d.send(Err(Error::Closed("client")));
    }
}
