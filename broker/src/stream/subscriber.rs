//! One subscription's bounded queue ([`Subscriber`]) and the [`Backpressure`] a publisher
//! awaits for full `Block` subscribers.
//!
//! A queue is bounded twice: in events (`capacity`) and in payload bytes (`max_bytes`). A
//! count bound alone let a subscriber that never reads hold 4,096 messages of any size: 1.6 GB
//! of RSS for a stream whose log was capped at 64 MiB. Past either bound the subscriber's
//! [`FullPolicy`] applies, exactly the same way. Live events also reserve their bytes from the
//! broker-wide [`MemoryBudget`] when one is given; a reservation that does not fit counts as
//! "full" too, so the policy (not an error to the publisher) decides.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{CloseReason, Event, FullPolicy};
use crate::budget::MemoryBudget;

/// A queued event and whether its bytes count as live (and were reserved from the budget).
struct Queued {
    ev: Event,
    /// Bytes charged for this event (to `live_bytes` and the budget); 0 for replay and for a
    /// `Block` overshoot the budget could not cover.
    charged: usize,
}

struct SubState {
    queue: VecDeque<Queued>,
    /// Replayed events not yet consumed. They do not count against `capacity` (replay is
    /// bounded by retention instead); events leaving the front use this credit up first.
    replay_credit: usize,
    /// Payload bytes of charged (live) events queued: bounded by `max_bytes`.
    live_bytes: usize,
    closed: Option<CloseReason>,
}

impl SubState {
    /// Queued events that count against capacity.
    fn live(&self) -> usize {
        self.queue.len() - self.replay_credit
    }

    /// Pops the front event, giving back what it was charged.
    fn pop_front(&mut self, budget: Option<&MemoryBudget>) -> Option<Event> {
        let q = self.queue.pop_front()?;
        self.replay_credit = self.replay_credit.saturating_sub(1);
        self.uncharge(q.charged, budget);
        Some(q.ev)
    }

    fn uncharge(&mut self, n: usize, budget: Option<&MemoryBudget>) {
        if n > 0 {
            self.live_bytes -= n;
            if let Some(b) = budget {
                b.release(n);
            }
        }
    }
}

/// Outcome of offering a publish batch to one subscriber.
pub(super) enum Offer {
    /// Queued (possibly with drops); `full` = a Block subscriber is at/over capacity.
    Queued { dropped: u64, full: bool },
    /// The subscriber was closed by this offer (Disconnect policy).
    Disconnected,
    /// The subscriber was already closed.
    Closed,
}

/// One subscription's bounded queue of [`Event`]s.
///
/// Memory bound: at most `capacity` live events and `max_bytes` live payload bytes (one event
/// is always accepted into an empty queue, however large), plus not-yet-consumed replayed
/// events (bounded by the log retention of each stream it subscribed to with replay), plus,
/// for `Block` only, one publish batch per concurrently publishing request (each publisher
/// awaits its [`Backpressure`] before publishing again). Closing frees the queue immediately.
pub struct Subscriber {
    id: u64,
    capacity: usize,
    max_bytes: usize,
    policy: FullPolicy,
    budget: Option<Arc<MemoryBudget>>,
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
            .field("max_bytes", &self.max_bytes)
            .field("policy", &self.policy)
            .field("queued", &st.queue.len())
            .field("live_bytes", &st.live_bytes)
            .field("closed", &st.closed)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if let Some(b) = &self.budget {
            b.release(st.live_bytes);
        }
    }
}

impl Subscriber {
    /// A new open subscriber bounded in events only. `capacity` is in events; 0 is treated
    /// as 1.
    pub fn new(id: u64, capacity: usize, policy: FullPolicy) -> Arc<Self> {
        Self::bounded(id, capacity, usize::MAX, policy, None)
    }

    /// A new open subscriber bounded by `capacity` events and `max_bytes` payload bytes (0 is
    /// treated as 1), reserving live bytes from `budget` when given.
    pub fn bounded(
        id: u64,
        capacity: usize,
        max_bytes: usize,
        policy: FullPolicy,
        budget: Option<Arc<MemoryBudget>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
            policy,
            budget,
            state: Mutex::new(SubState {
                queue: VecDeque::new(),
                replay_credit: 0,
                live_bytes: 0,
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

    /// At or over either bound (what `Block` waits on).
    fn is_full(&self, st: &SubState) -> bool {
        st.live() >= self.capacity || st.live_bytes >= self.max_bytes
    }

    /// Whether one more event of `len` bytes would go past a bound. An empty live queue always
    /// takes one event, so a payload larger than `max_bytes` is still deliverable.
    fn would_overflow(&self, st: &SubState, len: usize) -> bool {
        st.live() > 0
            && (st.live() >= self.capacity || st.live_bytes.saturating_add(len) > self.max_bytes)
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
        let was_full = self.is_full(&st);
        out.reserve(st.queue.len().min(max_events));
        let mut n = 0;
        let mut bytes = 0usize;
        while n < max_events {
            let len = match st.queue.front() {
                Some(q) => q.ev.payload.len(),
                None => break,
            };
            if n > 0 && bytes.saturating_add(len) > max_bytes {
                break;
            }
            if let Some(ev) = st.pop_front(self.budget.as_deref()) {
                out.push(ev);
            }
            bytes = bytes.saturating_add(len);
            n += 1;
        }
        let now_has_room = !self.is_full(&st);
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
        let discarded = self.close_locked(&mut st, reason);
        drop(st);
        drop(discarded);
        self.wake_closed();
    }

    fn close_locked(&self, st: &mut SubState, reason: CloseReason) -> VecDeque<Queued> {
        if st.closed.is_some() {
            return VecDeque::new();
        }
        st.closed = Some(reason);
        st.replay_credit = 0;
        let live = std::mem::take(&mut st.live_bytes);
        if let Some(b) = &self.budget {
            b.release(live);
        }
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

    /// Payload bytes of live (non-replay) events queued now.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().live_bytes
    }

    /// Events dropped for this subscriber by DropNewest / DropOldest, over all its streams.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The byte bound of live events.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub fn policy(&self) -> FullPolicy {
        self.policy
    }

    /// Closed, or below both bounds: a blocked publisher may proceed.
    fn has_room_or_closed(&self) -> bool {
        let st = self.state.lock();
        st.closed.is_some() || !self.is_full(&st)
    }

    /// Reserves `len` bytes from the budget (always succeeds without one).
    fn reserve(&self, len: usize) -> bool {
        self.budget.as_ref().is_none_or(|b| b.try_reserve(len))
    }

    /// Pushes one publish batch (offsets `base..`) applying the full policy per event.
    pub(super) fn offer(&self, stream: &Arc<str>, base: u64, payloads: &[Bytes]) -> Offer {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return Offer::Closed;
        }
        let budget = self.budget.as_deref();
        let was_empty = st.queue.is_empty();
        let mut dropped = 0u64;
        for (offset, payload) in (base..).zip(payloads) {
            let len = payload.len();
            // Full by the queue's own bounds, or the broker-wide budget cannot take the bytes:
            // either way the policy decides.
            let mut reserved = false;
            let mut charged = len;
            loop {
                if !self.would_overflow(&st, len) {
                    reserved = self.reserve(len);
                    if reserved {
                        break;
                    }
                }
                match self.policy {
                    FullPolicy::Block => break,
                    FullPolicy::DropNewest => break,
                    FullPolicy::DropOldest if !st.queue.is_empty() => {
                        st.pop_front(budget);
                        dropped += 1;
                    }
                    FullPolicy::DropOldest => break,
                    FullPolicy::Disconnect => {
                        let discarded = self.close_locked(&mut st, CloseReason::SlowConsumer);
                        drop(st);
                        drop(discarded);
                        self.add_dropped(dropped);
                        self.wake_closed();
                        return Offer::Disconnected;
                    }
                }
            }
            if !reserved {
                match self.policy {
                    // Queued anyway (bounded by one batch per publisher, see above); what the
                    // budget could not cover is not charged.
                    FullPolicy::Block => {
                        if !self.reserve(len) {
                            charged = 0;
                        }
                    }
                    _ => {
                        dropped += 1;
                        continue;
                    }
                }
            }
            st.live_bytes += charged;
            st.queue.push_back(Queued {
                ev: Event {
                    stream: stream.clone(),
                    offset,
                    payload: payload.clone(),
                },
                charged,
            });
        }
        let full = self.policy == FullPolicy::Block && self.is_full(&st);
        let wake = was_empty && !st.queue.is_empty();
        drop(st);
        self.add_dropped(dropped);
        if wake {
            self.ready.notify_one();
        }
        Offer::Queued { dropped, full }
    }

    /// Queues replayed records regardless of capacity (no policy applies to replay; it is
    /// bounded by the log's retention and shares the log's payloads, so it is not charged).
    pub(super) fn replay(&self, stream: &Arc<str>, records: Vec<(u64, Bytes)>) {
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
            .extend(records.into_iter().map(|(offset, payload)| Queued {
                ev: Event {
                    stream: stream.clone(),
                    offset,
                    payload,
                },
                charged: 0,
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

/// Full `Block` subscribers a publisher must wait for.
#[derive(Debug)]
#[must_use = "a publisher must await Backpressure::wait before publishing again"]
pub struct Backpressure {
    pub(super) subs: Vec<Arc<Subscriber>>,
    pub(super) timeout: Duration,
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
