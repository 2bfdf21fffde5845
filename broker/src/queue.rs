//! Work queues: consumer groups reading a stream's log through one shared cursor.
//!
//! A stream's subscribers each get every record; a consumer group instead splits records
//! between its consumers. Each delivery is a lease with an ack deadline: acked messages are
//! forgotten, nacked or expired ones come back (with their attempt count kept) and messages
//! that exhaust `max_deliveries` or are rejected move to a bounded dead-letter list.
//!
//! The group never copies the log: it holds only the cursor plus the messages it must
//! remember (leased, awaiting redelivery, dead), each bounded by a knob, so its memory is
//! bounded however slow its consumers are. Payloads are `Bytes` shared with the log.
//!
//! Reading goes through a closure instead of a log type, so this module works with any
//! stream implementation and the caller decides which lock the log read happens under. All
//! time-dependent behaviour takes `now` explicitly; there are no timers inside, and a
//! long-poll waiter learns when to retry from [`ConsumerGroup::next_wakeup`] and
//! [`ConsumerGroup::notify`].
//!
//! Acks, nacks and extends name messages by offset only. A consumer whose lease expired and
//! whose message was redelivered elsewhere can therefore still ack it: the message was
//! processed at least once, which is the guarantee the group gives.

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer};
use tokio::sync::Notify;

use crate::log::ReadResult;

/// Longest lease or nack delay honoured; longer ones are capped. It keeps `now + d` from
/// overflowing `Instant` on a misconfigured or hostile duration.
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Knobs of a [`ConsumerGroup`].
///
/// Deserialises with every field optional; `ack_timeout` is integer milliseconds
/// (`ack_timeout_ms`), and unknown fields are rejected so a typo cannot fall back to a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// How long a delivery stays leased before it is handed out again.
    #[serde(rename = "ack_timeout_ms", deserialize_with = "de_duration_ms")]
    pub ack_timeout: Duration,
    /// Deliveries a message gets before it is dead-lettered (0 is treated as 1).
    pub max_deliveries: u32,
    /// Dead letters kept; when full the oldest is dropped (and counted).
    pub dead_letter_max: usize,
    /// Unacknowledged messages the group holds (leased plus awaiting redelivery); no new
    /// records are read from the log while at the limit.
    pub max_in_flight: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(30),
            max_deliveries: 5,
            dead_letter_max: 10_000,
            max_in_flight: 10_000,
        }
    }
}

fn de_duration_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// A message handed to a consumer, leased until `lease_deadline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Log offset; also the handle used to ack, nack, extend or reject.
    pub offset: u64,
    /// Record payload.
    pub payload: Bytes,
    /// 1 on first delivery, incremented on each redelivery.
    pub attempt: u32,
    /// After this instant the message may be handed to another consumer.
    pub lease_deadline: Instant,
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadReason {
    /// It was delivered `max_deliveries` times without being acked.
    MaxDeliveries,
    /// A consumer rejected it.
    Rejected,
}

impl DeadReason {
    /// The stable wire string (`max_deliveries`, `rejected`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::MaxDeliveries => "max_deliveries",
            DeadReason::Rejected => "rejected",
        }
    }
}

/// A message the group gave up on, kept for inspection, redrive or discard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Log offset.
    pub offset: u64,
    /// Record payload.
    pub payload: Bytes,
    /// Deliveries it had.
    pub attempts: u32,
    /// Why it was dead-lettered.
    pub reason: DeadReason,
}

/// Point-in-time view of a [`ConsumerGroup`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Next log offset the group will read.
    pub cursor: u64,
    /// Messages currently leased to consumers.
    pub in_flight: usize,
    /// Messages waiting to be delivered again (nacked, lease expired or redriven).
    pub pending_redelivery: usize,
    /// Dead letters currently kept.
    pub dead_letters: usize,
    /// Deliveries handed out, first ones and redeliveries.
    pub delivered: u64,
    /// Messages acked.
    pub acked: u64,
    /// Messages nacked.
    pub nacked: u64,
    /// Messages rejected.
    pub rejected: u64,
    /// Deliveries of messages that had been delivered before.
    pub redelivered: u64,
    /// Messages moved to the dead-letter list.
    pub dead_lettered: u64,
    /// Dead letters dropped because the list was full.
    pub dead_letters_dropped: u64,
    /// Records retention removed before the group read them.
    pub lost: u64,
}

/// A consumer group over one stream's log. `Send + Sync`; its lock is only held inside
/// these synchronous methods, never across an await.
pub struct ConsumerGroup {
    config: GroupConfig,
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Debug)]
enum Phase {
    Leased {
        deadline: Instant,
    },
    /// Nacked or redriven, deliverable from `available_at`.
    Waiting {
        available_at: Instant,
    },
    /// Deliverable now; only left here when a pull ran out of `max`.
    Due,
}

#[derive(Debug)]
struct Msg {
    payload: Bytes,
    /// Deliveries so far.
    attempts: u32,
    phase: Phase,
}

#[derive(Debug)]
struct State {
    cursor: u64,
    /// Every message handed out and not yet acked or dead; the indexes below point into it.
    msgs: HashMap<u64, Msg>,
    /// Leased messages by deadline. Kept exact rather than lazily invalidated: stale
    /// entries of acked messages would otherwise pile up for a whole `ack_timeout`.
    leases: BTreeSet<(Instant, u64)>,
    waiting: BTreeSet<(Instant, u64)>,
    /// Due messages by offset, so redeliveries go out oldest record first.
    due: BTreeSet<u64>,
    dead: VecDeque<DeadLetter>,
    /// Latest `now` seen. Due messages are deliverable immediately, and this stands in for
    /// "immediately" in [`ConsumerGroup::next_wakeup`], which has no `now` of its own.
    latest_now: Option<Instant>,
    stats: GroupStats,
}

impl ConsumerGroup {
    /// A group whose first pull reads the log from `start_offset`.
    pub fn new(config: GroupConfig, start_offset: u64) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                cursor: start_offset,
                msgs: HashMap::new(),
                leases: BTreeSet::new(),
                waiting: BTreeSet::new(),
                due: BTreeSet::new(),
                dead: VecDeque::new(),
                latest_now: None,
                stats: GroupStats {
                    cursor: start_offset,
                    ..GroupStats::default()
                },
            }),
            notify: Notify::new(),
        }
    }

    /// The knobs this group was built with.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Hands out up to `max` deliveries, each leased until `now + ack_timeout`.
    ///
    /// Expired leases are released first. Messages due for redelivery (nack delay elapsed,
    /// lease expired, redriven) go out before new data, in offset order; a message that
    /// already had `max_deliveries` deliveries is dead-lettered instead. The rest is read
    /// from the log with `read(from, max_records)`, never beyond `max_in_flight`
    /// unacknowledged messages; `read` is not called when there is no room. Records that
    /// retention removed before the cursor reached them are skipped and counted as lost.
    pub fn pull(
        &self,
        max: usize,
        now: Instant,
        read: impl FnOnce(u64, usize) -> ReadResult,
    ) -> Vec<Delivery> {
        let lease_deadline = now + self.config.ack_timeout.min(MAX_DELAY);
        let mut st = self.state.lock();
        st.observe(now);
        st.expire_leases(now, &self.config);
        st.promote_waiting(now);

        let mut out =
            Vec::with_capacity(max.min(st.due.len().saturating_add(self.config.max_in_flight)));
        while out.len() < max {
            let Some(offset) = st.due.pop_first() else {
                break;
            };
            let msg = st.msgs.get_mut(&offset).expect("due message is held");
            msg.attempts += 1;
            msg.phase = Phase::Leased {
                deadline: lease_deadline,
            };
            out.push(Delivery {
                offset,
                payload: msg.payload.clone(),
                attempt: msg.attempts,
                lease_deadline,
            });
            st.leases.insert((lease_deadline, offset));
            st.stats.redelivered += 1;
        }

        let room = self
            .config
            .max_in_flight
            .saturating_sub(st.msgs.len())
            .min(max - out.len());
        if room > 0 {
            let rr = read(st.cursor, room);
            if rr.first_available > st.cursor {
                st.stats.lost += rr.first_available - st.cursor;
                st.cursor = rr.first_available;
            }
            for (offset, payload) in rr.records.into_iter().take(room) {
                // Below the cursor would hand out a record twice; never trust the reader.
                if offset < st.cursor {
                    continue;
                }
                st.stats.lost += offset - st.cursor;
                st.cursor = offset + 1;
                st.msgs.insert(
                    offset,
                    Msg {
                        payload: payload.clone(),
                        attempts: 1,
                        phase: Phase::Leased {
                            deadline: lease_deadline,
                        },
                    },
                );
                st.leases.insert((lease_deadline, offset));
                out.push(Delivery {
                    offset,
                    payload,
                    attempt: 1,
                    lease_deadline,
                });
            }
        }
        st.stats.delivered += out.len() as u64;
        out
    }

    /// The earliest instant at which a pull could return something other than new log data
    /// (a nack delay ending, a lease expiring, or a message already due, which yields an
    /// instant not after the latest `now` seen); `None` if nothing is pending.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let st = self.state.lock();
        let due_now = if st.due.is_empty() {
            None
        } else {
            st.latest_now
        };
        [
            st.leases.first().map(|&(t, _)| t),
            st.waiting.first().map(|&(t, _)| t),
            due_now,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Acknowledges messages; returns how many were held (unknown offsets are ignored). A
    /// message whose lease expired is still accepted until it is dead-lettered, so a slow
    /// consumer's work is not done twice needlessly.
    pub fn ack(&self, offsets: &[u64], now: Instant) -> usize {
        let mut st = self.state.lock();
        st.observe(now);
        let was_full = st.msgs.len() >= self.config.max_in_flight;
        let acked = offsets.iter().filter(|&&o| st.detach(o).is_some()).count();
        st.stats.acked += acked as u64;
        let has_room = st.msgs.len() < self.config.max_in_flight;
        drop(st);
        // A waiter blocked only by max_in_flight can read new records again.
        if was_full && has_room {
            self.notify.notify_waiters();
        }
        acked
    }

    /// Negative-acknowledges messages: each becomes deliverable again `delay` from now, with
    /// its attempt count kept (or is dead-lettered if it has no deliveries left). Returns how
    /// many were held.
    pub fn nack(&self, offsets: &[u64], delay: Duration, now: Instant) -> usize {
        let available_at = now + delay.min(MAX_DELAY);
        let mut st = self.state.lock();
        st.observe(now);
        let mut nacked = 0;
        for &offset in offsets {
            if let Some(msg) = st.detach(offset) {
                st.release(offset, msg, available_at, &self.config);
                nacked += 1;
            }
        }
        st.stats.nacked += nacked as u64;
        let available_now = nacked > 0 && delay.is_zero() && !st.waiting.is_empty();
        drop(st);
        if available_now {
            self.notify.notify_waiters();
        }
        nacked
    }

    /// Moves messages straight to the dead-letter list (reason [`DeadReason::Rejected`]);
    /// returns how many were held.
    pub fn reject(&self, offsets: &[u64], now: Instant) -> usize {
        let mut st = self.state.lock();
        st.observe(now);
        let mut rejected = 0;
        for &offset in offsets {
            if let Some(msg) = st.detach(offset) {
                st.dead_letter(offset, msg, DeadReason::Rejected, &self.config);
                rejected += 1;
            }
        }
        st.stats.rejected += rejected as u64;
        rejected
    }

    /// Sets the lease deadline of leased messages to `now + by` (an expired lease not yet
    /// handed out again counts as leased); returns how many were extended.
    pub fn extend(&self, offsets: &[u64], by: Duration, now: Instant) -> usize {
        let deadline = now + by.min(MAX_DELAY);
        let mut st = self.state.lock();
        st.observe(now);
        let mut extended = 0;
        for &offset in offsets {
            let Some(msg) = st.msgs.get_mut(&offset) else {
                continue;
            };
            let Phase::Leased { deadline: old } = msg.phase else {
                continue;
            };
            msg.phase = Phase::Leased { deadline };
            st.leases.remove(&(old, offset));
            st.leases.insert((deadline, offset));
            extended += 1;
        }
        extended
    }

    /// Up to `max` dead letters, oldest first.
    pub fn dead_letters(&self, max: usize) -> Vec<DeadLetter> {
        self.state.lock().dead.iter().take(max).cloned().collect()
    }

    /// Makes dead letters deliverable again with their attempt count reset; `None` means
    /// all. Returns how many were moved. Redriven messages count towards `max_in_flight`
    /// but are not refused by it, since the group held them anyway.
    pub fn redrive(&self, offsets: Option<&[u64]>) -> usize {
        let mut st = self.state.lock();
        let revived = st.take_dead(offsets);
        let n = revived.len();
        for d in revived {
            st.msgs.insert(
                d.offset,
                Msg {
                    payload: d.payload,
                    attempts: 0,
                    phase: Phase::Due,
                },
            );
            st.due.insert(d.offset);
        }
        drop(st);
        if n > 0 {
            self.notify.notify_waiters();
        }
        n
    }

    /// Drops dead letters for good; `None` means all. Returns how many were dropped.
    pub fn discard(&self, offsets: Option<&[u64]>) -> usize {
        self.state.lock().take_dead(offsets).len()
    }

    /// Current counters, read consistently under the group's lock.
    pub fn stats(&self) -> GroupStats {
        let st = self.state.lock();
        GroupStats {
            cursor: st.cursor,
            in_flight: st.leases.len(),
            pending_redelivery: st.waiting.len() + st.due.len(),
            dead_letters: st.dead.len(),
            ..st.stats
        }
    }

    /// Woken (all current waiters) when a nack without delay, a redrive, or an ack that
    /// frees room under `max_in_flight` makes a pull worthwhile. Time-driven availability
    /// is not signalled: sleep until [`ConsumerGroup::next_wakeup`] for that. To not miss a
    /// wakeup, create and `enable` the `Notified` future before the pull that came back
    /// empty, then await it.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

// Not derived: that would print every held message and dead letter.
impl std::fmt::Debug for ConsumerGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerGroup")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl State {
    fn observe(&mut self, now: Instant) {
        self.latest_now = Some(self.latest_now.map_or(now, |t| t.max(now)));
    }

    /// Removes a held message from the map and from whichever index holds it.
    fn detach(&mut self, offset: u64) -> Option<Msg> {
        let msg = self.msgs.remove(&offset)?;
        match msg.phase {
            Phase::Leased { deadline } => self.leases.remove(&(deadline, offset)),
            Phase::Waiting { available_at } => self.waiting.remove(&(available_at, offset)),
            Phase::Due => self.due.remove(&offset),
        };
        Some(msg)
    }

    /// Puts a detached message back to be delivered from `available_at`, unless it has used
    /// up its deliveries. Deciding here rather than at the next pull frees the slot early.
    fn release(&mut self, offset: u64, mut msg: Msg, available_at: Instant, cfg: &GroupConfig) {
        if msg.attempts >= cfg.max_deliveries.max(1) {
            self.dead_letter(offset, msg, DeadReason::MaxDeliveries, cfg);
            return;
        }
        msg.phase = Phase::Waiting { available_at };
        self.msgs.insert(offset, msg);
        self.waiting.insert((available_at, offset));
    }

    fn expire_leases(&mut self, now: Instant, cfg: &GroupConfig) {
        while let Some(&(deadline, offset)) = self.leases.first() {
            if deadline > now {
                break;
            }
            let msg = self.detach(offset).expect("leased message is held");
            self.release(offset, msg, deadline, cfg);
        }
    }

    fn promote_waiting(&mut self, now: Instant) {
        while let Some(&(available_at, offset)) = self.waiting.first() {
            if available_at > now {
                break;
            }
            self.waiting.pop_first();
            self.msgs
                .get_mut(&offset)
                .expect("waiting message is held")
                .phase = Phase::Due;
            self.due.insert(offset);
        }
    }

    fn dead_letter(&mut self, offset: u64, msg: Msg, reason: DeadReason, cfg: &GroupConfig) {
        self.stats.dead_lettered += 1;
        if cfg.dead_letter_max == 0 {
            self.stats.dead_letters_dropped += 1;
            return;
        }
        if self.dead.len() >= cfg.dead_letter_max {
            self.dead.pop_front();
            self.stats.dead_letters_dropped += 1;
        }
        self.dead.push_back(DeadLetter {
            offset,
            payload: msg.payload,
            attempts: msg.attempts,
            reason,
        });
    }

    /// Removes and returns the selected dead letters, in list order. One pass over the list
    /// whatever the number of offsets: these are admin operations, not the hot path.
    fn take_dead(&mut self, offsets: Option<&[u64]>) -> Vec<DeadLetter> {
        let Some(offsets) = offsets else {
            return self.dead.drain(..).collect();
        };
        let wanted: HashSet<u64> = offsets.iter().copied().collect();
        let mut taken = Vec::new();
        self.dead.retain(|d| {
            let take = wanted.contains(&d.offset);
            if take {
                taken.push(d.clone());
            }
            !take
        });
        taken
    }
}
