//! [`Subscription`]: a stream of events from one stream or a wildcard pattern.
//!
//! A background task owns the subscription's QUIC streams and feeds a bounded buffer; when the
//! application reads slower than events arrive, the buffer fills, the task stops reading, QUIC
//! flow control pushes back to the broker, and the stream's full policy applies there. When
//! the connection drops, the task reconnects with backoff and resubscribes from the offset
//! after the last event it delivered; if the broker no longer holds that offset, the skipped
//! range is recorded as a [`Gap`]. If the broker recreated the stream's log meanwhile (an
//! in-memory broker restarted: a new epoch), the subscription starts again at the new log's
//! first offset and records a [`Gap`] with `reset` set: whatever the old log held from the
//! last delivered offset on may be lost.
//!
//! Gaps travel in the event buffer, in order: one becomes visible to [`Subscription::take_gaps`]
//! when the application has read every event before it, and at the latest when `next`
//! returns the first event after it. So the gaps `take_gaps` returns right after `next` gave
//! an event precede that event.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::sync::Mutex;
use bytes::Bytes;
use felix_transport::framed::FrameReader;
use felix_wire::{features, Decoded, Message, StartPos};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::client::Client;
use crate::conn::{auth_frame, json_frame, read_auth_reply, Live};
use crate::error::{Error, Result};

/// One delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stream it was published to (differs per event for wildcard subscriptions).
    pub stream: Arc<str>,
    /// Offset in that stream (`None` from a broker without the offsets extension).
    pub offset: Option<u64>,
    /// Payload.
    pub payload: Bytes,
}

/// Events a resumed subscription could not get back: `[from, to)` in `stream`, or with
/// `reset`, everything from `from` of the stream's old log on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// Stream.
    pub stream: String,
    /// First missed offset (with `reset`: in the old log).
    pub from: u64,
    /// First offset delivered after the gap (with `reset`: in the new log).
    pub to: u64,
    /// The broker recreated the stream's log (an in-memory broker restarted, its epoch
    /// changed): offsets of the old and the new log are unrelated, the old log's events from
    /// `from` on that were not delivered are lost (how many is unknown), and delivery goes on
    /// from the new log's offset `to` (0, or the first it still holds).
    pub reset: bool,
    /// With `reset`: the old log's epoch (when the broker reports epochs).
    pub old_epoch: Option<u64>,
    /// With `reset`: the new log's epoch (when the broker reports epochs).
    pub new_epoch: Option<u64>,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// Only events published from now on.
    #[default]
    Latest,
    /// The oldest event the broker still holds.
    Earliest,
    /// This offset.
    Offset(u64),
}

/// What the subscription's task hands the application, in order.
enum Item {
    Event(Result<Event>),
    /// Moved to the gap list when read (see the module documentation).
    Gap(Gap),
}

/// A live subscription. Dropping it (or [`Subscription::close`]) ends it on the broker.
pub struct Subscription {
    rx: mpsc::Receiver<Item>,
    /// Gaps read from `rx` and not taken yet.
    gaps: Mutex<Vec<Gap>>,
    /// A gap [`Subscription::try_next_until_gap`] stopped at; the next read moves it on.
    held: Option<Gap>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("buffered", &self.rx.len())
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscription {
    /// The next event; `None` once the subscription has ended (closed, or after a terminal
    /// error was returned).
    pub async fn next(&mut self) -> Option<Result<Event>> {
        self.release_held();
        loop {
            match self.rx.recv().await? {
                Item::Event(r) => return Some(r),
                Item::Gap(g) => self.gaps.lock().push(g),
            }
        }
    }

    /// The next event if one is buffered, without waiting.
    pub fn try_next(&mut self) -> Option<Result<Event>> {
        self.release_held();
        loop {
            match self.rx.try_recv().ok()? {
                Item::Event(r) => return Some(r),
                Item::Gap(g) => self.gaps.lock().push(g),
            }
        }
    }

    /// Like [`Subscription::try_next`], but `None` also when a gap comes next, which then
    /// stays hidden until the next `next`/`try_next`. For a binding that hands events over in
    /// batches: a batch filled with this never spans a gap, so the gaps taken right after a
    /// batch precede its first event.
    pub fn try_next_until_gap(&mut self) -> Option<Result<Event>> {
        if self.held.is_some() {
            return None;
        }
        match self.rx.try_recv().ok()? {
            Item::Event(r) => Some(r),
            Item::Gap(g) => {
                self.held = Some(g);
                None
            }
        }
    }

    /// Makes a gap `try_next_until_gap` stopped at visible: the application reads past it now.
    fn release_held(&mut self) {
        if let Some(g) = self.held.take() {
            self.gaps.lock().push(g);
        }
    }

    /// True once the subscription has ended and every buffered event was read: `next` would
    /// return `None`. Tells "nothing buffered yet" (`try_next` gives `None`, not ended) from
    /// "over".
    pub fn is_ended(&self) -> bool {
        self.rx.is_closed() && self.rx.is_empty() && self.held.is_none()
    }

    /// Gaps recorded since the last call (events lost across a reconnect or a broker
    /// restart), each preceding the events read after it (see the module documentation).
    pub fn take_gaps(&self) -> Vec<Gap> {
        std::mem::take(&mut self.gaps.lock())
    }

    /// Ends the subscription.
    pub fn close(self) {}
}

impl futures::Stream for Subscription {
    type Item = Result<Event>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.release_held();
        loop {
            match std::task::ready!(self.rx.poll_recv(cx)) {
                None => return Poll::Ready(None),
                Some(Item::Event(r)) => return Poll::Ready(Some(r)),
                Some(Item::Gap(g)) => self.gaps.lock().push(g),
            }
        }
    }
}

impl Client {
    /// Subscribes to a stream, or with `*` / `>` wildcards to every matching stream of the
    /// namespace (now and later). Resolves once the broker has accepted the subscription.
    pub async fn subscribe(
        &self,
        namespace: &str,
        stream: &str,
        start: Start,
    ) -> Result<Subscription> {
        let (tx, rx) = mpsc::channel(self.config().subscription_buffer.max(1));
        let mut state = SubState {
            client: self.clone(),
            namespace: namespace.to_owned(),
            stream: stream.to_owned(),
            wildcard: stream.contains('*') || stream.contains('>'),
            start,
            next_offset: None,
            epoch: None,
            reset: None,
        };
        // The first attempt reports its error to the caller; later ones retry.
        let deadline = self.pool.deadline(Duration::ZERO);
        let live = self.pool.live(deadline).await?;
        let opened = state.open(&live).await?;
        let task = tokio::spawn(async move { state.run(opened, tx).await });
        Ok(Subscription {
            rx,
            gaps: Mutex::new(Vec::new()),
            held: None,
            task,
        })
    }
}

struct SubState {
    client: Client,
    namespace: String,
    stream: String,
    wildcard: bool,
    start: Start,
    /// Offset after the last delivered event (single-stream subscriptions).
    next_offset: Option<u64>,
    /// Epoch of the stream's offset space seen at the last subscribe.
    epoch: Option<u64>,
    /// A log recreation seen and not reported yet: the old log's next offset and epoch.
    reset: Option<(u64, Option<u64>)>,
}

struct Opened {
    id: u64,
    events: FrameReader,
    /// What this (re)subscription could not get back, reported before its first event.
    gap: Option<Gap>,
}

enum Ended {
    /// Reconnect and resubscribe.
    Retry,
    /// Terminal: report and stop.
    Fatal(Error),
    /// The application dropped the subscription.
    Dropped,
}

impl SubState {
    async fn open(&mut self, live: &Arc<Live>) -> Result<Opened> {
        let n = live.negotiated;
        if self.wildcard {
            Client::require(&n, features::WILDCARD, "wildcard subscriptions")?;
        }
        let start = match (self.next_offset, self.start) {
            (Some(o), _) if !self.wildcard => Some(StartPos::Offset(o)),
            (_, Start::Latest) => None,
            (_, Start::Earliest) => Some(StartPos::Earliest),
            (_, Start::Offset(o)) => Some(StartPos::Offset(o)),
        };
        if start.is_some() {
            Client::require(&n, features::SUBSCRIBE_FROM, "subscribing from an offset")?;
        }
        let id = live.next_subscription_id();
        let routed = live.router.register(id);
        let r = async {
            let (mut send, recv) = live
                .conn
                .open_bi()
                .await
                .map_err(|e| Error::ConnectionLost(e.to_string()))?;
            let cfg = &self.client.pool.cfg;
            let token = self.client.pool.tokens.current();
            let mut frames = auth_frame(&cfg.tenant, token.token.as_deref()).to_vec();
            frames.extend_from_slice(&json_frame(&Message::Subscribe {
                tenant_id: cfg.tenant.clone(),
                namespace: self.namespace.clone(),
                stream: self.stream.clone(),
                subscription_id: Some(id),
                start,
            }));
            send.write_all(&frames)
                .await
                .map_err(|e| Error::ConnectionLost(e.to_string()))?;
            let mut reader = FrameReader::new(recv, n.max_frame);
            read_auth_reply(&mut reader).await?;
            let frame = reader
                .next()
                .await
                .map_err(|e| Error::ConnectionLost(e.to_string()))?
                .ok_or_else(|| Error::ConnectionLost("stream ended before subscribed".into()))?;
            let (start_offset, epoch) =
                match felix_wire::decode(frame).map_err(|e| Error::Protocol(e.to_string()))? {
                    Decoded::Json(Message::Subscribed {
                        start_offset,
                        epoch,
                        ..
                    }) => (start_offset, epoch),
                    Decoded::Json(Message::Error { message, code, .. }) => {
                        return Err(Error::broker(code.as_deref(), message))
                    }
                    other => {
                        return Err(Error::Protocol(format!(
                            "unexpected subscribe reply {other:?}"
                        )))
                    }
                };
            let _ = send.finish();
            let events = tokio::time::timeout(cfg.connect_timeout, routed)
                .await
                .map_err(|_| Error::Timeout(cfg.connect_timeout))?
                .map_err(|_| Error::ConnectionLost("event stream never arrived".into()))?;
            Ok::<_, Error>((start_offset, epoch, events))
        }
        .await;
        let (start_offset, epoch, mut events) = match r {
            Ok(x) => x,
            Err(e) => {
                live.router.forget(id);
                return Err(e);
            }
        };
        let mut gap = None;
        if !self.wildcard {
            // A new epoch means the broker recreated the stream's log (an in-memory broker
            // restarted): old offsets say nothing about the new log, all of which is new to
            // us. Without epochs (older brokers), a start offset below the one asked for is
            // the same signal. Resubscribe from offset 0 (the retry loop in `run` does so at
            // once) and report the reset as a gap: the old log's events from our offset on
            // that we did not get are gone, however few.
            let restarted = match (self.epoch, epoch) {
                (Some(old), Some(new)) => old != new,
                _ => matches!((self.next_offset, start_offset), (Some(a), Some(g)) if g < a),
            };
            if restarted && self.reset.is_none() {
                self.reset = Some((self.next_offset.unwrap_or(0), self.epoch));
            }
            if epoch.is_some() {
                self.epoch = epoch;
            }
            if restarted && self.next_offset != Some(0) {
                warn!(stream = %self.stream, "stream log was recreated; resubscribing from offset 0");
                self.next_offset = Some(0);
                events.stop(0);
                return Err(Error::ConnectionLost(
                    "stream log recreated; resubscribing from offset 0".into(),
                ));
            }
            let to = start_offset.or(self.next_offset).unwrap_or(0);
            if let Some((from, old_epoch)) = self.reset.take() {
                warn!(stream = %self.stream, from, to, "stream log was recreated: reporting a reset gap");
                gap = Some(Gap {
                    stream: self.stream.clone(),
                    from,
                    to,
                    reset: true,
                    old_epoch,
                    new_epoch: self.epoch,
                });
            } else if let (Some(asked), Some(got)) = (self.next_offset, start_offset) {
                if got > asked {
                    warn!(stream = %self.stream, from = asked, to = got, "resubscribed with a gap");
                    gap = Some(Gap {
                        stream: self.stream.clone(),
                        from: asked,
                        to: got,
                        reset: false,
                        old_epoch: None,
                        new_epoch: None,
                    });
                }
            }
            if start_offset.is_some() {
                self.next_offset = start_offset;
            }
        }
        Ok(Opened { id, events, gap })
    }

    async fn run(mut self, mut opened: Opened, tx: mpsc::Sender<Item>) {
        loop {
            if let Some(g) = opened.gap.take() {
                if tx.send(Item::Gap(g)).await.is_err() {
                    return;
                }
            }
            match self.pump(&mut opened, &tx).await {
                Ended::Dropped => return,
                Ended::Fatal(e) => {
                    let _ = tx.send(Item::Event(Err(e))).await;
                    return;
                }
                Ended::Retry => {}
            }
            opened = loop {
                if self.client.is_closed() || tx.is_closed() {
                    return;
                }
                // Keep trying until the client is closed; the pool backs off between attempts.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
                let live = match self.client.pool.live(deadline).await {
                    Ok(l) => l,
                    Err(e) if e.retryable() => continue,
                    Err(e) => {
                        let _ = tx.send(Item::Event(Err(e))).await;
                        return;
                    }
                };
                match self.open(&live).await {
                    Ok(o) => break o,
                    Err(e) if e.retryable() => {
                        debug!(error = %e, "resubscribe failed; retrying");
                        tokio::time::sleep(self.client.pool.cfg.reconnect_initial).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Item::Event(Err(e))).await;
                        return;
                    }
                }
            };
        }
    }

    async fn pump(&mut self, opened: &mut Opened, tx: &mpsc::Sender<Item>) -> Ended {
        loop {
            let frame = tokio::select! {
                f = opened.events.next() => f,
                _ = tx.closed() => return Ended::Dropped,
            };
            let frame = match frame {
                Ok(Some(f)) => f,
                Ok(None) => return Ended::Retry,
                Err(e) => {
                    if let felix_transport::framed::ReadFrameError::Read(quinn::ReadError::Reset(
                        code,
                    )) = &e
                    {
                        let code = u16::try_from(code.into_inner())
                            .ok()
                            .and_then(felix_wire::ErrorCode::from_u16);
                        if code == Some(felix_wire::ErrorCode::SlowConsumer) {
                            return Ended::Fatal(Error::SlowConsumer(
                                "the broker ended the subscription".into(),
                            ));
                        }
                    }
                    return Ended::Retry;
                }
            };
            let events: Vec<Event> = match felix_wire::decode(frame) {
                Ok(Decoded::OffsetEvents(b)) => {
                    let stream: Arc<str> = b.stream.into();
                    b.events
                        .into_iter()
                        .map(|(o, payload)| Event {
                            stream: stream.clone(),
                            offset: Some(o),
                            payload,
                        })
                        .collect()
                }
                Ok(Decoded::Events(b)) => {
                    let stream: Arc<str> = self.stream.as_str().into();
                    b.payloads
                        .into_iter()
                        .map(|payload| Event {
                            stream: stream.clone(),
                            offset: None,
                            payload,
                        })
                        .collect()
                }
                Ok(Decoded::Json(Message::Event {
                    stream,
                    payload,
                    offset,
                    ..
                })) => {
                    vec![Event {
                        stream: stream.into(),
                        offset,
                        payload,
                    }]
                }
                Ok(Decoded::Json(Message::EventBatch {
                    stream,
                    payloads,
                    offsets,
                    ..
                })) => {
                    let s: Arc<str> = stream.into();
                    payloads
                        .into_iter()
                        .enumerate()
                        .map(|(i, payload)| Event {
                            stream: s.clone(),
                            offset: offsets.as_ref().and_then(|o| o.get(i).copied()),
                            payload,
                        })
                        .collect()
                }
                Ok(Decoded::Json(Message::SubscriptionEnd { code, message, .. })) => {
                    return match code.as_str() {
                        "unavailable" => Ended::Retry,
                        "slow_consumer" => Ended::Fatal(Error::SlowConsumer(message)),
                        other => Ended::Fatal(Error::broker(Some(other), message)),
                    };
                }
                Ok(other) => {
                    return Ended::Fatal(Error::Protocol(format!(
                        "unexpected frame on event stream {}: {other:?}",
                        opened.id
                    )))
                }
                Err(e) => return Ended::Fatal(Error::Protocol(e.to_string())),
            };
            for ev in events {
                if !self.wildcard {
                    if let Some(o) = ev.offset {
                        self.next_offset = Some(o + 1);
                    }
                }
                if tx.send(Item::Event(Ok(ev))).await.is_err() {
                    return Ended::Dropped;
                }
            }
        }
    }
}
