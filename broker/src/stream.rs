//! A stream: the core [`Log`] plus fanout to subscribers.
//!
//! Every publish appends to the log and, under the same lock, pushes each record into every
//! attached [`Subscriber`]'s bounded queue in log order, so every subscriber sees the stream
//! in log order. A subscriber is shared (`Arc`) between the broker's writer task (which drains
//! it with [`Subscriber::next_batch`]) and every stream it is attached to (a wildcard
//! subscription is attached to several streams; its events carry the stream name).
//!
//! What happens when a subscriber's queue is full is its [`FullPolicy`]. Whatever the policy,
//! a slow subscriber costs other subscribers nothing but one push into its queue: its queue
//! stays bounded (see [`Subscriber`] for the exact bound) and it is never awaited while the
//! stream lock is held. Only `Block` slows anyone down, and only the publisher, which gets a
//! [`Backpressure`] to await and which is released after [`StreamConfig::block_timeout`] at
//! the latest by disconnecting the stalled subscriber.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::log::{AppendError, Durability, Log, ReadResult, Retention, Ticket};

#[cfg(test)]
mod durable_tests;
mod subscriber;
#[cfg(test)]
mod tests;

use subscriber::Offer;
pub use subscriber::{Backpressure, Subscriber};

/// Records read from the log per step while replaying into a new subscriber (bounds the
/// temporary buffer; the whole replay still happens under the stream lock).
const REPLAY_CHUNK: usize = 1024;

/// What to do with a record for a subscriber whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Queue the record anyway and hand the publisher a [`Backpressure`] to await; a
    /// subscriber still full after `block_timeout` is disconnected as a slow consumer.
    Block,
    /// Do not queue the incoming record for this subscriber (counted in `dropped`).
    DropNewest,
    /// Remove the oldest queued record (counted in `dropped`) and queue the incoming one.
    DropOldest,
    /// Close the subscriber with [`CloseReason::SlowConsumer`] and detach it.
    #[default]
    Disconnect,
}

impl FullPolicy {
    /// The snake_case name (`"drop_oldest"`), as used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            FullPolicy::Block => "block",
            FullPolicy::DropNewest => "drop_newest",
            FullPolicy::DropOldest => "drop_oldest",
            FullPolicy::Disconnect => "disconnect",
        }
    }
}

impl fmt::Display for FullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown [`FullPolicy`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown full policy {0:?}; expected block, drop_newest, drop_oldest or disconnect")]
pub struct ParseFullPolicyError(pub String);

impl FromStr for FullPolicy {
    type Err = ParseFullPolicyError;
    /// Accepts the snake_case names, case-insensitively, with `-` allowed for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "block" => Ok(FullPolicy::Block),
            "drop_newest" => Ok(FullPolicy::DropNewest),
            "drop_oldest" => Ok(FullPolicy::DropOldest),
            "disconnect" => Ok(FullPolicy::Disconnect),
            _ => Err(ParseFullPolicyError(s.to_owned())),
        }
    }
}

/// Per-stream knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Bounds of the stream's log (and so of any replay).
    pub retention: Retention,
    /// Default per-subscriber queue capacity, in messages (the broker passes it to
    /// [`Subscriber::new`]; each subscriber carries its own capacity and policy).
    pub subscriber_buffer: usize,
    /// Default full policy for subscribers of this stream.
    pub full_policy: FullPolicy,
    /// How long a publish may be held back by a full `Block` subscriber before that
    /// subscriber is disconnected.
    pub block_timeout: Duration,
    /// Ephemeral (a `MemoryLog`) or durable with its fsync policy (the registry creates the
    /// log accordingly).
    pub durability: Durability,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            subscriber_buffer: 1024,
            full_policy: FullPolicy::default(),
            block_timeout: Duration::from_secs(1),
            durability: Durability::Ephemeral,
        }
    }
}

/// One record delivered to a subscriber. Cloning shares the payload and the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stream name only (without tenant/namespace).
    pub stream: Arc<str>,
    pub offset: u64,
    pub payload: Bytes,
}

/// Why a subscriber was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// It could not keep up (Disconnect policy, or Block past `block_timeout`).
    SlowConsumer,
    /// The client ended the subscription.
    Unsubscribed,
    /// The stream was deleted.
    StreamDeleted,
    /// The broker is shutting down.
    Shutdown,
}

impl CloseReason {
    /// Stable machine-readable code, e.g. `"slow_consumer"`.
    pub fn code(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Unsubscribed => "unsubscribed",
            CloseReason::StreamDeleted => "stream_deleted",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Where a new subscription starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only records published after subscribing.
    Latest,
    /// Everything the log still holds, then live records.
    Earliest,
    /// From this offset (clamped to what the log holds; past the end means `Latest`).
    Offset(u64),
}

/// Where a subscription actually started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeInfo {
    /// Offset of the first record this subscriber receives from the stream.
    pub start_offset: u64,
    /// Requested offset was older than the log holds: records `[requested, start_offset)` are gone.
    pub gap: Option<Range<u64>>,
}

/// Result of [`Stream::publish`].
#[derive(Debug)]
#[must_use = "await the backpressure (if any) before acknowledging the publish"]
pub struct Published {
    /// Offsets given to the published records.
    pub offsets: Range<u64>,
    /// Present when a `Block` subscriber is at/over capacity: await it before acknowledging.
    pub backpressure: Option<Backpressure>,
    /// Subscribers the records were handed to (their writer tasks were woken).
    pub fanout: usize,
    /// Durable stream: the records are neither acknowledged nor visible yet. Await the
    /// ticket, then call [`Stream::make_visible`] with its end (which fans them out and may
    /// return the backpressure to await); only then acknowledge. `None` for an ephemeral
    /// stream, whose records were fanned out inline.
    pub ticket: Option<Ticket>,
}

/// Result of [`Stream::make_visible`].
#[derive(Debug, Default)]
#[must_use = "await the backpressure (if any) before acknowledging the publish"]
pub struct Visible {
    /// Present when a `Block` subscriber is at/over capacity.
    pub backpressure: Option<Backpressure>,
    /// Subscribers attached when the records were fanned out (0 if this call found them
    /// already visible).
    pub fanout: usize,
}

/// Counters of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Records held by the log.
    pub records: usize,
    /// Payload bytes held by the log.
    pub bytes: usize,
    /// Attached, open subscribers.
    pub subscribers: usize,
    /// Records published since creation.
    pub published: u64,
    /// Deliveries dropped by DropNewest / DropOldest on this stream.
    pub dropped: u64,
    /// Subscribers disconnected as slow consumers by publishes on this stream.
    pub disconnected: u64,
    pub first_offset: u64,
    pub next_offset: u64,
}

struct StreamState {
    log: Box<dyn Log>,
    /// Records below this offset were fanned out and are readable by replays and groups.
    /// Equal to the log's next offset for an ephemeral log; for a durable log it trails it
    /// until tickets resolve (`docs/storage.md` 4.5: nobody sees a record its class could
    /// still lose).
    visible: u64,
    subs: Vec<Arc<Subscriber>>,
    published: u64,
    dropped: u64,
    disconnected: u64,
}

impl StreamState {
    fn detach_closed(&mut self) {
        self.subs.retain(|s| s.is_closed().is_none());
    }
}

/// A stream: one log and the subscribers fanned out to.
pub struct Stream {
    name: Arc<str>,
    config: StreamConfig,
    epoch: u64,
    durability: Durability,
    state: Mutex<StreamState>,
    append_notify: Notify,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Stream {
    pub fn new(name: Arc<str>, config: StreamConfig, log: Box<dyn Log>) -> Arc<Self> {
        Arc::new(Self {
            name,
            config,
            epoch: log.epoch(),
            durability: log.durability(),
            state: Mutex::new(StreamState {
                visible: log.next_offset(),
                log,
                subs: Vec::new(),
                published: 0,
                dropped: 0,
                disconnected: 0,
            }),
            append_notify: Notify::new(),
        })
    }

    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// The log's epoch (see [`Log::epoch`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The log's class.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// [`Stream::publish_at`] now.
    pub fn publish(&self, payloads: &[Bytes]) -> Result<Published, AppendError> {
        self.publish_at(payloads, unix_now_ms())
    }

    /// Appends atomically to the log and pushes each record to every attached subscriber in
    /// log order, applying each subscriber's full policy. Never awaits. Returns the offsets
    /// and, if any Block-policy subscriber is at/over capacity, a [`Backpressure`] the caller
    /// awaits before acknowledging the publish. Closed subscribers are detached here. When the
    /// log cannot take the batch (memory budget, storage), nothing is appended or delivered.
    ///
    /// A durable log's records are not fanned out here: the result carries the log's
    /// [`Ticket`], and [`Stream::make_visible`] fans them out once it resolved.
    pub fn publish_at(
        &self,
        payloads: &[Bytes],
        now_unix_ms: u64,
    ) -> Result<Published, AppendError> {
        let mut blocked: Vec<Arc<Subscriber>> = Vec::new(); // allocates only if used
        let fanout;
        let offsets = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let appended = st.log.append(payloads, now_unix_ms)?;
            let offsets = appended.offsets;
            if payloads.is_empty() || appended.ticket.is_some() {
                st.published += payloads.len() as u64;
                return Ok(Published {
                    offsets,
                    backpressure: None,
                    fanout: 0,
                    ticket: appended.ticket,
                });
            }
            st.published += payloads.len() as u64;
            st.visible = offsets.end;
            fanout = self.fanout(st, offsets.start, payloads, &mut blocked);
            offsets
        };
        self.append_notify.notify_waiters();
        Ok(Published {
            offsets,
            fanout,
            backpressure: self.backpressure(blocked),
            ticket: None,
        })
    }

    /// Makes the records below `end` visible (a durable publish calls it after its ticket
    /// resolved): fans out, in log order, every record from the visible watermark to `end`
    /// that the log holds, and wakes readers. Records already visible are skipped, so
    /// publishers whose tickets resolve out of order each call it with their own end.
    pub fn make_visible(&self, end: u64) -> Visible {
        let mut blocked: Vec<Arc<Subscriber>> = Vec::new();
        let mut fanout = 0;
        {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let end = end.min(st.log.next_offset());
            if end <= st.visible {
                return Visible::default();
            }
            let mut from = st.visible;
            while from < end {
                let want = REPLAY_CHUNK.min((end - from) as usize);
                let chunk = st.log.read(from, want).records;
                let Some(&(first, _)) = chunk.first() else {
                    break;
                };
                let last = chunk.last().map_or(first, |&(o, _)| o);
                let payloads: Vec<Bytes> = chunk.into_iter().map(|(_, p)| p).collect();
                fanout = self.fanout(st, first, &payloads, &mut blocked);
                from = last + 1;
            }
            st.visible = end;
        }
        self.append_notify.notify_waiters();
        Visible {
            backpressure: self.backpressure(blocked),
            fanout,
        }
    }

    /// Offers consecutive records starting at `first` to every subscriber (under the stream
    /// lock), detaching the ones their policy disconnects; returns the subscribers left.
    fn fanout(
        &self,
        st: &mut StreamState,
        first: u64,
        payloads: &[Bytes],
        blocked: &mut Vec<Arc<Subscriber>>,
    ) -> usize {
        let (mut dropped, mut disconnected) = (0u64, 0u64);
        st.subs
            .retain(|sub| match sub.offer(&self.name, first, payloads) {
                Offer::Queued { dropped: d, full } => {
                    dropped += d;
                    if full {
                        blocked.push(sub.clone());
                    }
                    true
                }
                Offer::Disconnected => {
                    disconnected += 1;
                    false
                }
                Offer::Closed => false,
            });
        st.dropped += dropped;
        st.disconnected += disconnected;
        if disconnected > 0 {
            tracing::info!(
                stream = %self.name,
                disconnected,
                "full queue: disconnected slow consumer(s)"
            );
        }
        st.subs.len()
    }

    fn backpressure(&self, blocked: Vec<Arc<Subscriber>>) -> Option<Backpressure> {
        (!blocked.is_empty()).then(|| Backpressure {
            subs: blocked,
            timeout: self.config.block_timeout,
        })
    }

    /// Attaches a subscriber; replays records from the log per `start` (replay may exceed the
    /// subscriber's capacity: it is bounded by the log's retention; no drop policy applies to
    /// it), then it receives live records. Replay and attach happen under the stream lock, so
    /// no record is lost or duplicated between them. Subscribing an already attached
    /// subscriber (same id) replaces its attachment. A closed subscriber is not attached.
    pub fn subscribe(&self, sub: &Arc<Subscriber>, start: Start) -> SubscribeInfo {
        let mut st = self.state.lock();
        st.subs.retain(|s| s.id() != sub.id());
        let first = st.log.first_offset();
        // Replay only what is visible; later records reach the subscriber by fanout.
        let next = st.visible;
        let (mut from, gap) = match start {
            Start::Latest => (next, None),
            Start::Earliest => (first, None),
            Start::Offset(o) if o < first => (first, Some(o..first)),
            Start::Offset(o) => (o.min(next), None),
        };
        let start_offset = from;
        while from < next {
            let want = REPLAY_CHUNK.min((next - from) as usize);
            let chunk = st.log.read(from, want).records;
            match chunk.last() {
                Some(&(last, _)) => from = last + 1,
                None => break,
            }
            sub.replay(&self.name, chunk);
        }
        if sub.is_closed().is_none() {
            st.subs.push(sub.clone());
        }
        SubscribeInfo { start_offset, gap }
    }

    /// Detaches the subscriber with this id (does not close it: a wildcard subscriber may
    /// stay attached elsewhere). Returns whether it was attached.
    pub fn unsubscribe(&self, id: u64) -> bool {
        let mut st = self.state.lock();
        let before = st.subs.len();
        st.subs.retain(|s| s.id() != id);
        st.subs.len() != before
    }

    /// Whether the subscriber with this id is attached.
    pub fn is_attached(&self, id: u64) -> bool {
        self.state.lock().subs.iter().any(|s| s.id() == id)
    }

    /// Detaches every subscriber and returns them (e.g. to close them on stream deletion).
    pub fn detach_all(&self) -> Vec<Arc<Subscriber>> {
        std::mem::take(&mut self.state.lock().subs)
    }

    /// Attached open subscribers (detaches closed ones first).
    pub fn subscriber_count(&self) -> usize {
        let mut st = self.state.lock();
        st.detach_closed();
        st.subs.len()
    }

    /// Reads up to `max` visible records from `from` (for consumer groups).
    pub fn read(&self, from: u64, max: usize) -> ReadResult {
        let st = self.state.lock();
        let mut r = st.log.read(from, max);
        if r.next_offset > st.visible {
            r.records.retain(|&(o, _)| o < st.visible);
            r.next_offset = st.visible;
        }
        r
    }

    /// Offset after the last visible record (the log's next offset for an ephemeral stream).
    pub fn next_offset(&self) -> u64 {
        self.state.lock().visible
    }

    pub fn first_offset(&self) -> u64 {
        self.state.lock().log.first_offset()
    }

    /// Notified (`notify_waiters`) after every non-empty append. Register interest with
    /// `Notified::enable` (or create the future) before checking `next_offset`.
    pub fn append_notify(&self) -> &Notify {
        &self.append_notify
    }

    pub fn stats(&self) -> StreamStats {
        let mut st = self.state.lock();
        st.detach_closed();
        StreamStats {
            records: st.log.len(),
            bytes: st.log.bytes(),
            subscribers: st.subs.len(),
            published: st.published,
            dropped: st.dropped,
            disconnected: st.disconnected,
            first_offset: st.log.first_offset(),
            next_offset: st.log.next_offset(),
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
