//! Queue requests (queue extension): consumer groups, long-poll pulls, acks, nacks, lease
//! extension and dead letters.
//!
//! A pull that finds nothing waits on the stream's append signal, the group's redelivery
//! signal and the group's next lease/nack deadline, in its own task, so the request stream
//! keeps serving other requests (acks in particular) meanwhile.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use felix_wire::{features, DeadLetterMessage, Message, QueueMessage, StartPos};
use tokio::sync::OwnedSemaphorePermit;

use super::request::{reply_result, Ctx};
use crate::auth::{until_withdrawn, Action, Principal, PERMISSION_WITHDRAWN};
use crate::error::BrokerError;
use crate::queue::{ConsumerGroup, Delivery};
use crate::registry::StreamEntry;
use crate::stream::Start;

fn resolve(
    ctx: &mut Ctx,
    tenant: &str,
    ns: &str,
    stream: &str,
    group: &str,
) -> Result<(Arc<StreamEntry>, Arc<ConsumerGroup>), BrokerError> {
    ctx.require(features::QUEUES, "queue operations")?;
    ctx.authorize(Action::Consume, tenant, ns, stream)?;
    let entry = ctx.stream_entry(tenant, ns, stream)?;
    let g = ctx.group_entry(&entry, tenant, ns, stream, group)?;
    Ok((entry, g))
}

/// Refuses an offsets list longer than `limits.max_offsets_per_request` (`invalid_argument`
/// naming the limit): one request must not hold the serving thread for long.
fn check_offsets(ctx: &Ctx, what: &str, n: usize) -> Result<(), BrokerError> {
    let max = ctx.shared.cfg.limits.max_offsets_per_request;
    if n > max {
        ctx.shared.metrics.request_too_large.inc();
        return Err(BrokerError::invalid(format!(
            "{what} with {n} offsets exceeds limits.max_offsets_per_request ({max})"
        )));
    }
    Ok(())
}

fn to_wire(d: Delivery, now: Instant) -> QueueMessage {
    QueueMessage {
        offset: d.offset,
        payload: d.payload,
        attempt: d.attempt,
        lease_ms: d.lease_deadline.saturating_duration_since(now).as_millis() as u64,
    }
}

fn pull_now(entry: &StreamEntry, group: &ConsumerGroup, max: usize) -> (Vec<Delivery>, Instant) {
    let now = Instant::now();
    let d = group.pull(max, now, |from, n| entry.stream.read(from, n));
    (d, now)
}

pub async fn json(
    ctx: &mut Ctx,
    msg: Message,
    permit: OwnedSemaphorePermit,
) -> Result<(), quinn::WriteError> {
    let (r, request_id) = match msg {
        Message::GroupCreate {
            tenant_id,
            namespace,
            stream,
            group,
            request_id,
            start,
            ack_timeout_ms,
            max_deliveries,
        } => {
            let r = (|| {
                ctx.require(features::QUEUES, "group_create")?;
                ctx.authorize(Action::Admin, &tenant_id, &namespace, &stream)?;
                let entry = ctx.stream_entry(&tenant_id, &namespace, &stream)?;
                let mut cfg = ctx.group_base_config(&tenant_id, &namespace, &stream, &group);
                if let Some(ms) = ack_timeout_ms {
                    if ms == 0 {
                        return Err(BrokerError::invalid("ack_timeout_ms must be > 0"));
                    }
                    cfg.ack_timeout = Duration::from_millis(ms);
                }
                if let Some(n) = max_deliveries {
                    if n == 0 {
                        return Err(BrokerError::invalid("max_deliveries must be > 0"));
                    }
                    cfg.max_deliveries = n;
                }
                let start = match start {
                    // No start in the request: the definition's, else the earliest record.
                    None => ctx
                        .shared
                        .definitions
                        .group(&tenant_id, &namespace, &stream, &group)
                        .map_or(Start::Earliest, |d| d.start),
                    Some(StartPos::Earliest) => Start::Earliest,
                    Some(StartPos::Latest) => Start::Latest,
                    Some(StartPos::Offset(o)) => Start::Offset(o),
                };
                ctx.shared
                    .registry
                    .create_group(&entry, &group, cfg, start)?;
                Ok(Message::Ok {
                    request_id: Some(request_id),
                })
            })();
            ctx.audit_admin("group_create", &namespace, &format!("{stream}/{group}"), &r);
            (r, request_id)
        }
        Message::QueuePull {
            tenant_id,
            namespace,
            stream,
            group,
            request_id,
            max,
            wait_ms,
        } => {
            let limits = &ctx.shared.cfg.limits;
            if max == 0 || max > limits.max_pull_batch {
                let e =
                    BrokerError::invalid(format!("max must be in 1..={}", limits.max_pull_batch));
                return reply_result(ctx, Err(e), Some(request_id)).await;
            }
            let wait = Duration::from_millis(wait_ms.min(limits.max_pull_wait_ms));
            let (entry, g) = match resolve(ctx, &tenant_id, &namespace, &stream, &group) {
                Ok(x) => x,
                Err(e) => return reply_result(ctx, Err(e), Some(request_id)).await,
            };
            let (d, now) = pull_now(&entry, &g, max as usize);
            if !d.is_empty() || wait.is_zero() {
                ctx.shared.metrics.queue_delivered.add(d.len() as u64);
                let messages = d.into_iter().map(|d| to_wire(d, now)).collect();
                return reply_result(
                    ctx,
                    Ok(Message::QueueMessages {
                        request_id,
                        messages,
                    }),
                    Some(request_id),
                )
                .await;
            }
            let parked = match Parked::take(ctx) {
                Ok(p) => p,
                Err(e) => return reply_result(ctx, Err(e), Some(request_id)).await,
            };
            let replier = ctx.replier.clone();
            // The stream is not finished while this answer is owed (shutdown included).
            let owed = replier.owe();
            let shared = ctx.shared.clone();
            let conn = ctx.conn.clone();
            let mut shutdown = ctx.shared.shutdown.clone();
            // The principal ending (expiry, revocation, key withdrawn) or a refresh that no
            // longer grants `consume` here answers the parked pull `unauthorized`.
            let mut principal = ctx.session.principal.watch();
            let resource = format!("{namespace}/{stream}");
            let who = (ctx.session.principal.clone(), ctx.conn_state.id);
            tokio::spawn(async move {
                let (_permit, _parked, _owed) = (permit, parked, owed);
                let deadline = Instant::now() + wait;
                let allowed = |p: &Principal| p.perms.allows(Action::Consume, &namespace, &stream);
                let polled = tokio::select! {
                    r = long_poll(&entry, &g, max as usize, deadline) => Ok(r),
                    _ = conn.closed() => return,
                    // Shutting down: answer now with what a long poll that found nothing
                    // answers, an empty list (nothing was leased, so nothing is lost),
                    // before the stream and connection close (wire-protocol 7.6).
                    _ = shutdown.wait_for(|s| *s) => Ok((Vec::new(), Instant::now())),
                    // Nothing was leased either (the poll leases only when it returns).
                    why = until_withdrawn(&mut principal, allowed) => Err(why),
                };
                let (d, now) = match polled {
                    Ok(x) => x,
                    Err(why) => {
                        let e = BrokerError::new(
                            felix_wire::ErrorCode::Unauthorized,
                            format!("unauthorized: {why}"),
                        );
                        if *why == *PERMISSION_WITHDRAWN {
                            shared.metrics.permission_withdrawn.inc();
                            let who = crate::audit::Who {
                                tenant: who.0.tenant(),
                                sub: who.0.subject(),
                                conn: who.1,
                            };
                            shared.audit.denied(who, "consume", &resource, &e);
                        }
                        let _ = replier.error(&e, Some(request_id)).await;
                        return;
                    }
                };
                shared.metrics.queue_delivered.add(d.len() as u64);
                let messages = d.into_iter().map(|d| to_wire(d, now)).collect();
                let _ = replier
                    .msg(&Message::QueueMessages {
                        request_id,
                        messages,
                    })
                    .await;
            });
            return Ok(());
        }
        Message::QueueAck {
            tenant_id,
            namespace,
            stream,
            group,
            request_id,
            offsets,
        } => {
            let r = check_offsets(ctx, "queue_ack", offsets.len())
                .and_then(|_| resolve(ctx, &tenant_id, &namespace, &stream, &group))
                .map(|(_, g)| {
                    let n = g.ack(&offsets, Instant::now());
                    ctx.shared.metrics.queue_acked.add(n as u64);
                    Message::Count {
                        request_id,
                        count: n as u64,
                    }
                });
            (r, request_id)
        }
        Message::QueueNack {
            tenant_id,
            namespace,
            stream,
            group,
            request_id,
            offsets,
            delay_ms,
        } => {
            let r = check_offsets(ctx, "queue_nack", offsets.len())
                .and_then(|_| resolve(ctx, &tenant_id, &namespace, &stream, &group))
                .map(|(_, g)| {
                    let n = g.nack(&offsets, Duration::from_millis(delay_ms), Instant::now());
                    Message::Count {
                        request_id,
                        count: n as u64,
                    }
                });
            (r, request_id)
        }
        Message::QueueExtend {
            tenant_id,
            namespace,
            stream,
            group,
            request_id,
            offsets,
            extend_ms,
        } => {
            let r = check_offsets(ctx, "queue_extend", offsets.len())
                .and_then(|_| resolve(ctx, &tenant_id, &namespace, &stream, &group))
                .map(|(_, g)| {
                    let n = g.extend(&offsets, Duration::from_millis(extend_ms), Instant::now());
                    Message::Count {
                        request_id,
                        count: n as u64,
                    }
                });
            (r, request_id)
        }
        Message::DeadLetterList {
            tenant_id,
            namespace,
            stream,
            group,
            request_id,
            max,
        } => {
            let r = resolve(ctx, &tenant_id, &namespace, &stream, &group).map(|(_, g)| {
                // A "most entries" bound: clamped to max_offsets_per_request, not refused.
                let max = (max as usize).min(ctx.shared.cfg.limits.max_offsets_per_request);
                let messages = g
                    .dead_letters(max)
                    .into_iter()
                    .map(|d| DeadLetterMessage {
                        offset: d.offset,
                        payload: d.payload,
                        attempts: d.attempts,
                        reason: d.reason.as_str().to_owned(),
                    })
                    .collect();
                Message::DeadLetters {
                    request_id,
                    messages,
                }
            });
            (r, request_id)
        }
        Message::DeadLetterRedrive {
            tenant_id,
            namespace,
            stream,
            group,
            request_id,
            offsets,
        } => {
            let n = offsets.as_ref().map_or(0, Vec::len);
            let r = check_offsets(ctx, "dead_letter_redrive", n)
                .and_then(|_| resolve(ctx, &tenant_id, &namespace, &stream, &group))
                .map(|(_, g)| Message::Count {
                    request_id,
                    count: g.redrive(offsets.as_deref()) as u64,
                });
            (r, request_id)
        }
        Message::DeadLetterDiscard {
            tenant_id,
            namespace,
            stream,
            group,
            request_id,
            offsets,
        } => {
            let n = offsets.as_ref().map_or(0, Vec::len);
            let r = check_offsets(ctx, "dead_letter_discard", n)
                .and_then(|_| resolve(ctx, &tenant_id, &namespace, &stream, &group))
                .map(|(_, g)| Message::Count {
                    request_id,
                    count: g.discard(offsets.as_deref()) as u64,
                });
            (r, request_id)
        }
        _ => unreachable!("routed by request::json"),
    };
    drop(permit);
    reply_result(ctx, r, Some(request_id)).await
}

/// Nominal bytes a parked pull holds (its task, reply state and wake-up registrations),
/// reserved from the broker's memory budget while it is parked.
const PARKED_PULL_BYTES: usize = 1024;

/// One parked long-poll pull, counted against `max_parked_pulls_per_connection` and the
/// memory budget until dropped.
struct Parked {
    state: Arc<super::conn::ConnState>,
    shared: Arc<super::Shared>,
    _memory: crate::budget::Reservation,
}

impl Parked {
    /// Takes a parking place, or the `overloaded` error to answer the pull with.
    fn take(ctx: &Ctx) -> Result<Self, BrokerError> {
        let limit = ctx.shared.cfg.limits.max_parked_pulls_per_connection;
        let state = ctx.conn_state.clone();
        let refuse = |why: String| {
            ctx.shared.metrics.parked_pulls_refused.inc();
            ctx.shared.metrics.overloaded.inc();
            Err(BrokerError::overloaded(why))
        };
        if state.parked_pulls.fetch_add(1, Ordering::AcqRel) >= limit {
            state.parked_pulls.fetch_sub(1, Ordering::AcqRel);
            return refuse(format!(
                "connection has {limit} long-poll queue_pulls waiting \
                 (limits.max_parked_pulls_per_connection)"
            ));
        }
        let Some(memory) = ctx.shared.memory.reserve(PARKED_PULL_BYTES) else {
            state.parked_pulls.fetch_sub(1, Ordering::AcqRel);
            return refuse("broker memory budget exhausted (limits.max_memory_bytes)".into());
        };
        ctx.shared.metrics.parked_pulls.inc();
        Ok(Self {
            state,
            shared: ctx.shared.clone(),
            _memory: memory,
        })
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.state.parked_pulls.fetch_sub(1, Ordering::AcqRel);
        self.shared.metrics.parked_pulls.dec();
    }
}

/// Waits until the group has something for us or the deadline passes.
async fn long_poll(
    entry: &StreamEntry,
    group: &ConsumerGroup,
    max: usize,
    deadline: Instant,
) -> (Vec<Delivery>, Instant) {
    loop {
        // Register interest before looking, so an append between the pull and the wait is
        // not missed.
        let appended = entry.stream.append_notify().notified();
        let redeliverable = group.notify().notified();
        tokio::pin!(appended, redeliverable);
        appended.as_mut().enable();
        redeliverable.as_mut().enable();
        let (d, now) = pull_now(entry, group, max);
        if !d.is_empty() || now >= deadline {
            return (d, now);
        }
        let wake = group.next_wakeup().map_or(deadline, |w| w.min(deadline));
        tokio::select! {
            _ = appended => {}
            _ = redeliverable => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}
