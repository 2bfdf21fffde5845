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

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::log::{Log, ReadResult, Retention};

#[cfg(test)]
mod tests;

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
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            subscriber_buffer: 1024,
            full_policy: FullPolicy::default(),
            block_timeout: Duration::from_secs(1),
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

struct SubState {
    queue: VecDeque<Event>,
    /// Replayed events not yet consumed. They do not count against `capacity` (replay is
    /// bounded by retention instead); events leaving the front use this credit up first.
    replay_credit: usize,
    closed: Option<CloseReason>,
}

impl SubState {
    /// Queued events that count against capacity.
    fn live(&self) -> usize {
        self.queue.len() - self.replay_credit
    }

    fn pop_front(&mut self) -> Option<Event> {
        let ev = self.queue.pop_front()?;
        self.replay_credit = self.replay_credit.saturating_sub(1);
        Some(ev)
    }
}

/// Outcome of offering a publish batch to one subscriber.
enum Offer {
    /// Queued (possibly with drops); `full` = a Block subscriber is at/over capacity.
    Queued { dropped: u64, full: bool },
    /// The subscriber was closed by this offer (Disconnect policy).
    Disconnected,
    /// The subscriber was already closed.
    Closed,
}

/// One subscription's bounded queue of [`Event`]s.
///
/// Memory bound: at most `capacity` live events, plus not-yet-consumed replayed events
/// (bounded by the log retention of each stream it subscribed to with replay), plus, for
/// `Block` only, one publish batch per concurrently publishing request (each publisher awaits
/// its [`Backpressure`] before publishing again). Closing frees the queue immediately.
pub struct Subscriber {
    id: u64,
    capacity: usize,
    policy: FullPolicy,
    state: Mutex<SubState>,
    /// Wakes the consumer (`next_batch`); notified on empty -> non-empty and on close.
    ready: Notify,
    /// Wakes `Backpressure` waiters; notified when live events fall below capacity and on close.
    drained: Notify,
    /// Wakes [`Subscriber::closed`] waiters (the writer blocked on a stalled client).
    closed_signal: Notify,
    dropped: AtomicU64,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("queued", &st.queue.len())
            .field("closed", &st.closed)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Subscriber {
    /// A new open subscriber. `capacity` is in events; 0 is treated as 1.
    pub fn new(id: u64, capacity: usize, policy: FullPolicy) -> Arc<Self> {
        Arc::new(Self {
            id,
            capacity: capacity.max(1),
            policy,
            state: Mutex::new(SubState {
                queue: VecDeque::new(),
                replay_credit: 0,
                closed: None,
            }),
            ready: Notify::new(),
            drained: Notify::new(),
            closed_signal: Notify::new(),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits until at least one event is queued or the subscriber is closed; then moves up to
    /// `max_events` / `max_bytes` (payload bytes; always at least one event) into `out`, in
    /// order. Once closed it returns the reason immediately and queued events are discarded.
    /// Cancel-safe; meant for a single consumer task.
    pub async fn next_batch(
        &self,
        out: &mut Vec<Event>,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<(), CloseReason> {
        loop {
            if self.try_next_batch(out, max_events, max_bytes)? > 0 {
                return Ok(());
            }
            // `notify_one` stores a permit, so a push between the check and here is not lost.
            self.ready.notified().await;
        }
    }

    /// Non-blocking [`next_batch`](Self::next_batch): returns how many events were moved
    /// (0 when none is queued), or the close reason.
    pub fn try_next_batch(
        &self,
        out: &mut Vec<Event>,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<usize, CloseReason> {
        let max_events = max_events.max(1);
        let mut st = self.state.lock();
        if let Some(reason) = st.closed {
            return Err(reason);
        }
        let was_full = st.live() >= self.capacity;
        out.reserve(st.queue.len().min(max_events));
        let mut n = 0;
        let mut bytes = 0usize;
        while n < max_events {
            let len = match st.queue.front() {
                Some(ev) => ev.payload.len(),
                None => break,
            };
            if n > 0 && bytes.saturating_add(len) > max_bytes {
                break;
            }
            if let Some(ev) = st.pop_front() {
                out.push(ev);
            }
            bytes = bytes.saturating_add(len);
            n += 1;
        }
        let now_has_room = st.live() < self.capacity;
        if st.queue.is_empty() && st.queue.capacity() > 4 * self.capacity.max(16) {
            // Give back memory grown by a replay or a Block overshoot.
            st.queue.shrink_to(self.capacity);
        }
        drop(st);
        if was_full && now_has_room {
            self.drained.notify_waiters();
        }
        Ok(n)
    }

    /// Closes the subscriber (the first reason wins), discards queued events and wakes the
    /// consumer and any publisher waiting on it. Streams detach it lazily.
    pub fn close(&self, reason: CloseReason) {
        let mut st = self.state.lock();
        let discarded = Self::close_locked(&mut st, reason);
        drop(st);
        drop(discarded);
        self.wake_closed();
    }

    fn close_locked(st: &mut SubState, reason: CloseReason) -> VecDeque<Event> {
        if st.closed.is_some() {
            return VecDeque::new();
        }
        st.closed = Some(reason);
        st.replay_credit = 0;
        std::mem::take(&mut st.queue)
    }

    fn wake_closed(&self) {
        self.ready.notify_one();
        self.drained.notify_waiters();
        self.closed_signal.notify_waiters();
    }

    /// Resolves once the subscriber is closed, with the reason. Lets a writer blocked on a
    /// stalled client's flow control notice that the policy disconnected it.
    pub async fn closed(&self) -> CloseReason {
        loop {
            let notified = self.closed_signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.is_closed() {
                return reason;
            }
            notified.await;
        }
    }

    pub fn is_closed(&self) -> Option<CloseReason> {
        self.state.lock().closed
    }

    /// Events currently queued (including unconsumed replay).
    pub fn queued(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Events dropped for this subscriber by DropNewest / DropOldest, over all its streams.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn policy(&self) -> FullPolicy {
        self.policy
    }

    /// Closed, or live events below capacity: a blocked publisher may proceed.
    fn has_room_or_closed(&self) -> bool {
        let st = self.state.lock();
        st.closed.is_some() || st.live() < self.capacity
    }

    /// Pushes one publish batch (offsets `base..`) applying the full policy per event.
    fn offer(&self, stream: &Arc<str>, base: u64, payloads: &[Bytes]) -> Offer {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return Offer::Closed;
        }
        let was_empty = st.queue.is_empty();
        let mut dropped = 0u64;
        for (offset, payload) in (base..).zip(payloads) {
            if st.live() >= self.capacity {
                match self.policy {
                    FullPolicy::Block => {}
                    FullPolicy::DropNewest => {
                        dropped += 1;
                        continue;
                    }
                    FullPolicy::DropOldest => {
                        st.pop_front();
                        dropped += 1;
                    }
                    FullPolicy::Disconnect => {
                        let discarded = Self::close_locked(&mut st, CloseReason::SlowConsumer);
                        drop(st);
                        drop(discarded);
                        self.add_dropped(dropped);
                        self.wake_closed();
                        return Offer::Disconnected;
                    }
                }
            }
            st.queue.push_back(Event {
                stream: stream.clone(),
                offset,
                payload: payload.clone(),
            });
        }
        let full = self.policy == FullPolicy::Block && st.live() >= self.capacity;
        let wake = was_empty && !st.queue.is_empty();
        drop(st);
        self.add_dropped(dropped);
        if wake {
            self.ready.notify_one();
        }
        Offer::Queued { dropped, full }
    }

    /// Queues replayed records regardless of capacity (no policy applies to replay).
    fn replay(&self, stream: &Arc<str>, records: Vec<(u64, Bytes)>) {
        if records.is_empty() {
            return;
        }
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return;
        }
        let was_empty = st.queue.is_empty();
        st.replay_credit += records.len();
        st.queue.reserve(records.len());
        st.queue
            .extend(records.into_iter().map(|(offset, payload)| Event {
                stream: stream.clone(),
                offset,
                payload,
            }));
        drop(st);
        if was_empty {
            self.ready.notify_one();
        }
    }

    fn add_dropped(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
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
}

/// Full `Block` subscribers a publisher must wait for.
#[derive(Debug)]
#[must_use = "a publisher must await Backpressure::wait before publishing again"]
pub struct Backpressure {
    subs: Vec<Arc<Subscriber>>,
    timeout: Duration,
}

impl Backpressure {
    /// Ids of the subscribers being waited for.
    pub fn subscriber_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.subs.iter().map(|s| s.id())
    }

    /// Waits until every over-capacity Block subscriber has drained below capacity or closed.
    /// If `block_timeout` passes first, those still full are closed with SlowConsumer (so one
    /// stalled subscriber cannot stall publishers forever); the publish itself stays accepted.
    pub async fn wait(self) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        for sub in &self.subs {
            loop {
                let notified = sub.drained.notified();
                tokio::pin!(notified);
                // Register before checking, so a drain between check and await is not missed.
                notified.as_mut().enable();
                if sub.has_room_or_closed() {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    if !sub.has_room_or_closed() {
                        tracing::info!(
                            subscriber = sub.id(),
                            timeout_ms = self.timeout.as_millis() as u64,
                            "block timeout: disconnecting slow consumer"
                        );
                        sub.close(CloseReason::SlowConsumer);
                    }
                    break;
                }
            }
        }
    }
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
            state: Mutex::new(StreamState {
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

    /// Appends atomically to the log and pushes each record to every attached subscriber in
    /// log order, applying each subscriber's full policy. Never awaits. Returns the offsets
    /// and, if any Block-policy subscriber is at/over capacity, a [`Backpressure`] the caller
    /// awaits before acknowledging the publish. Closed subscribers are detached here.
    pub fn publish(&self, payloads: &[Bytes]) -> Published {
        let mut blocked: Vec<Arc<Subscriber>> = Vec::new(); // allocates only if used
        let fanout;
        let offsets = {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let offsets = st.log.append(payloads);
            if payloads.is_empty() {
                return Published {
                    offsets,
                    backpressure: None,
                    fanout: 0,
                };
            }
            st.published += payloads.len() as u64;
            let (mut dropped, mut disconnected) = (0u64, 0u64);
            st.subs
                .retain(|sub| match sub.offer(&self.name, offsets.start, payloads) {
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
            fanout = st.subs.len();
            if disconnected > 0 {
                tracing::info!(
                    stream = %self.name,
                    disconnected,
                    "full queue: disconnected slow consumer(s)"
                );
            }
            offsets
        };
        self.append_notify.notify_waiters();
        Published {
            offsets,
            fanout,
            backpressure: (!blocked.is_empty()).then(|| Backpressure {
                subs: blocked,
                timeout: self.config.block_timeout,
            }),
        }
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
        let next = st.log.next_offset();
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

    /// Reads up to `max` records from `from` (for consumer groups).
    pub fn read(&self, from: u64, max: usize) -> ReadResult {
        self.state.lock().log.read(from, max)
    }

    pub fn next_offset(&self) -> u64 {
        self.state.lock().log.next_offset()
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
