//! A subscription: the `subscribe` request on its own stream, then a broker-opened
//! unidirectional stream carrying `event_stream_hello` and event batches.
//!
//! One task per subscription drains the subscriber's bounded queue and writes batches. When
//! the client stops reading, QUIC flow control blocks this task only; the stream's full
//! policy then decides what happens to the queue, so publishers and other subscribers never
//! wait on a slow one (except under the `block` policy, by choice, up to its timeout).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use felix_wire::{features, flags, ErrorCode, EventBatch, Message, OffsetEventBatch, StartPos};
use tracing::debug;

use super::conn::ConnState;
use super::request::Ctx;
use crate::auth::{until_withdrawn, Action, Principal, Resource, PERMISSION_WITHDRAWN};
use crate::error::BrokerError;
use crate::names;
use crate::stream::{CloseReason, Event, Start, Subscriber};
use felix_transport::framed::FrameReader;

/// How events are framed for this client.
#[derive(Clone, Copy)]
enum Encoding {
    /// `0x0040`: stream name and offsets (event-offsets extension).
    Offsets,
    /// `0x0002`: v1 binary batch.
    Binary,
    /// JSON `event` per message (a v1 client that did not list `0x0002`).
    Json,
}

pub async fn serve(mut ctx: Ctx, state: Arc<ConnState>, reader: FrameReader, msg: Message) {
    let Message::Subscribe {
        tenant_id,
        namespace,
        stream,
        subscription_id,
        start,
    } = msg
    else {
        unreachable!("routed by request::serve")
    };
    let limit = ctx.shared.cfg.limits.max_subscriptions_per_connection;
    // The tenant's subscription slot, held for the task's life (given back when it ends or
    // is aborted with its connection).
    let mut _quota_slot = None;
    let r = (|| {
        if names::is_pattern(&stream) {
            // Some stream of the namespace must be granted; each one the pattern matches is
            // then attached only if granted (the registry asks the filter made in `attach`).
            ctx.authorize_on(Action::Subscribe, &tenant_id, &namespace, Resource::SomeIn)?;
            ctx.require(features::WILDCARD, "wildcard subscriptions")?;
        } else {
            ctx.authorize(Action::Subscribe, &tenant_id, &namespace, &stream)?;
        }
        if start.is_some() {
            ctx.require(features::SUBSCRIBE_FROM, "subscribe start")?;
        }
        if state.subscriptions.fetch_add(1, Ordering::SeqCst) >= limit {
            state.subscriptions.fetch_sub(1, Ordering::SeqCst);
            ctx.shared.metrics.overloaded.inc();
            return Err(BrokerError::overloaded(format!(
                "connection holds its maximum of {limit} subscriptions"
            )));
        }
        _quota_slot = Some(
            ctx.quota_subscription(&tenant_id, &namespace, &stream)
                .inspect_err(|_| {
                    state.subscriptions.fetch_sub(1, Ordering::SeqCst);
                })?,
        );
        Ok(())
    })();
    if let Err(e) = r {
        let _ = ctx.replier.error(&e, None).await;
        ctx.replier.finish().await;
        return;
    }
    // The broker-wide id keys the subscriber inside streams; the client may name the
    // subscription on the wire with its own id (unique only within its connection).
    let internal_id = ctx.shared.next_subscription_id();
    let id = subscription_id.unwrap_or(internal_id);
    let start = match start.unwrap_or(StartPos::Latest) {
        StartPos::Latest => Start::Latest,
        StartPos::Earliest => Start::Earliest,
        StartPos::Offset(o) => Start::Offset(o),
    };
    let subscribed = attach(
        &mut ctx,
        &tenant_id,
        &namespace,
        &stream,
        internal_id,
        start,
    );
    let (sub, start_offset, epoch) = match subscribed {
        Ok(x) => x,
        Err(e) => {
            state.subscriptions.fetch_sub(1, Ordering::SeqCst);
            let _ = ctx.replier.error(&e, None).await;
            ctx.replier.finish().await;
            return;
        }
    };
    ctx.shared.metrics.subscriptions.inc();
    // From here the subscription is counted and attached; the guard undoes both however this
    // task ends. The connection aborts its stream tasks when it closes (the client went away,
    // was dropped or killed), so clean-up written after `run` never ran there: the subscriber
    // stayed attached (a `block` stream then held every later publish for its block timeout)
    // and the gauges kept counting it.
    let _attached = Attached {
        shared: ctx.shared.clone(),
        state,
        sub: sub.clone(),
        tenant: tenant_id.clone(),
        namespace: namespace.clone(),
        stream: stream.clone(),
        internal_id,
    };
    let offsets = ctx.session.has(features::EVENT_OFFSETS);
    let reply = Message::Subscribed {
        subscription_id: id,
        start_offset: offsets.then_some(start_offset),
        epoch: epoch.filter(|_| offsets),
    };
    let encoding = if offsets {
        Encoding::Offsets
    } else if ctx.session.flags & flags::EVENT_BATCH != 0 {
        Encoding::Binary
    } else {
        Encoding::Json
    };
    let sent = ctx.replier.msg(&reply).await.is_ok();
    // Done with the subscribe stream: closing both sides now gives the client its stream
    // credit back. Held open for the subscription's life, every subscription pinned one of
    // the connection's 1024 bidirectional streams, and subscribe number 1025 on a
    // connection hung in the client's `open_bi`.
    ctx.replier.finish().await;
    drop(reader);
    if sent {
        // What a refresh must still grant for the subscription to go on: the stream, or for
        // a pattern some stream of the namespace and every stream it is attached to.
        let registry = ctx.shared.clone();
        let (t, ns, name) = (tenant_id.clone(), namespace.clone(), stream.clone());
        let wildcard = names::is_pattern(&stream);
        let allowed = move |p: &Principal| {
            if !wildcard {
                return p.perms.allows(Action::Subscribe, &ns, &name);
            }
            p.perms.allows_some_in(Action::Subscribe, &ns)
                && registry.registry.attached_all(&t, &ns, internal_id, |s| {
                    p.perms.allows(Action::Subscribe, &ns, s)
                })
        };
        let resource = format!("{namespace}/{stream}");
        run(
            &ctx, &sub, id, encoding, &tenant_id, &namespace, &resource, allowed,
        )
        .await;
    }
}

/// An attached, counted subscription: dropping it (the task returned or was aborted) closes
/// the subscriber, detaches it from its streams and uncounts it.
struct Attached {
    shared: Arc<super::Shared>,
    state: Arc<ConnState>,
    sub: Arc<Subscriber>,
    tenant: String,
    namespace: String,
    stream: String,
    internal_id: u64,
}

impl Drop for Attached {
    fn drop(&mut self) {
        // Closing first wakes a publisher waiting on this subscriber's room at once.
        self.sub.close(CloseReason::Unsubscribed);
        self.shared.registry.unsubscribe(
            &self.tenant,
            &self.namespace,
            &self.stream,
            self.internal_id,
        );
        self.state.subscriptions.fetch_sub(1, Ordering::SeqCst);
        self.shared.metrics.subscriptions.dec();
    }
}

fn attach(
    ctx: &mut Ctx,
    tenant: &str,
    ns: &str,
    stream: &str,
    id: u64,
    start: Start,
) -> Result<(Arc<Subscriber>, u64, Option<u64>), BrokerError> {
    let create = ctx.auto_create();
    let registry = &ctx.shared.registry;
    // Bounded in bytes as well as messages; live bytes reserve from the broker-wide budget.
    let max_bytes = ctx.shared.cfg.limits.max_subscriber_buffer_bytes;
    let budget = Some(ctx.shared.memory.clone());
    if names::is_pattern(stream) {
        let d = &ctx.shared.cfg.stream_defaults;
        let sub = Subscriber::bounded(id, d.subscriber_buffer, max_bytes, d.full_policy, budget);
        let cell = ctx.session.principal.clone();
        let namespace: Box<str> = ns.into();
        let filter: crate::registry::StreamFilter =
            Arc::new(move |name: &str| cell.allows(Action::Subscribe, &namespace, name));
        let info = registry.subscribe(tenant, ns, stream, &sub, start, create, Some(filter))?;
        return Ok((sub, info.start_offset, None));
    }
    let entry = ctx.stream_entry(tenant, ns, stream)?;
    let cfg = entry.stream.config();
    let sub = Subscriber::bounded(
        id,
        cfg.subscriber_buffer,
        max_bytes,
        cfg.full_policy,
        budget,
    );
    let info = entry.stream.subscribe(&sub, start);
    Ok((sub, info.start_offset, Some(entry.stream.epoch())))
}

/// Opens the event stream and pumps batches until the subscription ends: by the client, its
/// stream's policy, shutdown, or its principal (the token expired, was revoked or lost its
/// key, or a refresh no longer grants what `allowed` checks).
#[allow(clippy::too_many_arguments)]
async fn run(
    ctx: &Ctx,
    sub: &Arc<Subscriber>,
    id: u64,
    encoding: Encoding,
    tenant: &str,
    ns: &str,
    resource: &str,
    allowed: impl Fn(&Principal) -> bool,
) {
    let Ok(mut uni) = ctx.conn.open_uni().await else {
        return;
    };
    // Both buffers start small and grow to the batches actually seen: reserved up front
    // (64 KiB and `max_event_batch` events) they cost ~16 KiB of RSS per idle subscription,
    // 12x what NATS holds per subscription (bench/run, memory figures).
    let mut out = BytesMut::with_capacity(256);
    Message::EventStreamHello {
        subscription_id: id,
    }
    .encode(&mut out);
    if uni.write_all(&out).await.is_err() {
        return;
    }
    let limits = &ctx.shared.cfg.limits;
    let mut shutdown = ctx.shared.shutdown.clone();
    // The principal's token expiring unrefreshed, being revoked or losing its key ends the
    // subscription, and so does a refresh that no longer grants it. One future for the
    // subscription's life: it re-checks only when the principal changes.
    let mut principal = ctx.session.principal.watch();
    let withdrawn = until_withdrawn(&mut principal, allowed);
    tokio::pin!(withdrawn);
    let mut batch: Vec<Event> = Vec::new();
    let reason = loop {
        batch.clear();
        out.clear();
        let next = tokio::select! {
            r = sub.next_batch(&mut batch, limits.max_event_batch, limits.max_event_batch_bytes) => r.map_err(Ok),
            _ = uni.stopped() => return,
            _ = shutdown.wait_for(|s| *s) => Err(Ok(CloseReason::Shutdown)),
            why = &mut withdrawn => Err(Err(why)),
        };
        match next {
            Ok(()) => {}
            Err(Ok(reason)) => break reason,
            Err(Err(why)) => {
                withdrawn_audit(ctx, resource, &why);
                end_unauthorized(ctx, &mut uni, &mut out, id, encoding, &why).await;
                return;
            }
        }
        encode(&mut out, &batch, id, encoding, tenant, ns);
        // A stalled client blocks this write; the policy may close the subscriber meanwhile.
        tokio::select! {
            w = uni.write_all(&out) => if w.is_err() { return },
            why = &mut withdrawn => {
                withdrawn_audit(ctx, resource, &why);
                let _ = uni.reset(quinn::VarInt::from_u32(ErrorCode::Unauthorized.as_u16() as u32));
                return;
            }
            reason = sub.closed() => {
                // The end frame cannot get past a full window: reset with the code instead.
                let _ = uni.reset(quinn::VarInt::from_u32(code_of(reason).as_u16() as u32));
                if reason == CloseReason::SlowConsumer {
                    ctx.shared.metrics.slow_consumers.inc();
                }
                debug!(subscription = id, reason = reason.code(), "subscription ended while blocked");
                return;
            }
        }
        ctx.shared.metrics.delivered.add(batch.len() as u64);
    };
    if reason == CloseReason::SlowConsumer {
        ctx.shared.metrics.slow_consumers.inc();
    }
    debug!(
        subscription = id,
        reason = reason.code(),
        "subscription ended"
    );
    if matches!(encoding, Encoding::Offsets) {
        out.clear();
        Message::SubscriptionEnd {
            subscription_id: id,
            code: code_of(reason).as_str().to_owned(),
            message: format!("subscription ended: {}", reason.code()),
        }
        .encode(&mut out);
        let _ = uni.write_all(&out).await;
    }
    let _ = uni.finish();
}

/// Counts and audits a subscription ended by a refresh that no longer grants it (an ended
/// principal is counted by the authenticator).
fn withdrawn_audit(ctx: &Ctx, resource: &str, why: &str) {
    if why != PERMISSION_WITHDRAWN {
        return;
    }
    ctx.shared.metrics.permission_withdrawn.inc();
    let e = BrokerError::new(ErrorCode::Unauthorized, format!("unauthorized: {why}"));
    ctx.shared
        .audit
        .denied(ctx.who(), "subscribe", resource, &e);
}

/// Ends a subscription whose principal's token expired or was revoked (or whose permission a
/// refresh withdrew): `subscription_end`
/// with `unauthorized` and the reason (event-offsets clients), else an `error` frame.
async fn end_unauthorized(
    ctx: &Ctx,
    uni: &mut quinn::SendStream,
    out: &mut BytesMut,
    id: u64,
    encoding: Encoding,
    why: &str,
) {
    debug!(
        subscription = id,
        reason = why,
        "subscription ended: unauthorized"
    );
    out.clear();
    let message = format!("unauthorized: {why}");
    if matches!(encoding, Encoding::Offsets) {
        Message::SubscriptionEnd {
            subscription_id: id,
            code: ErrorCode::Unauthorized.as_str().to_owned(),
            message,
        }
        .encode(out);
    } else {
        Message::error(ErrorCode::Unauthorized, message, None, ctx.replier.codes).encode(out);
    }
    // A stalled client cannot take the frame: reset with the code instead.
    match tokio::time::timeout(std::time::Duration::from_secs(1), uni.write_all(out)).await {
        Ok(Ok(())) => {
            let _ = uni.finish();
        }
        _ => {
            let _ = uni.reset(quinn::VarInt::from_u32(
                ErrorCode::Unauthorized.as_u16() as u32
            ));
        }
    }
}

fn code_of(reason: CloseReason) -> ErrorCode {
    match reason {
        CloseReason::SlowConsumer => ErrorCode::SlowConsumer,
        CloseReason::Shutdown => ErrorCode::Unavailable,
        CloseReason::StreamDeleted => ErrorCode::NotFound,
        _ => ErrorCode::Cancelled,
    }
}

fn encode(
    out: &mut BytesMut,
    batch: &[Event],
    id: u64,
    encoding: Encoding,
    tenant: &str,
    ns: &str,
) {
    match encoding {
        Encoding::Offsets => {
            // One frame per run of events from the same stream (wildcards mix streams).
            let mut i = 0;
            while i < batch.len() {
                let name = &batch[i].stream;
                let run = batch[i..]
                    .iter()
                    .take_while(|e| Arc::ptr_eq(&e.stream, name) || e.stream == *name)
                    .count();
                let events = batch[i..i + run]
                    .iter()
                    .map(|e| (e.offset, e.payload.as_ref()));
                OffsetEventBatch::encode_parts(out, id, name, events);
                i += run;
            }
        }
        Encoding::Binary => {
            EventBatch::encode_parts(out, id, batch.iter().map(|e| e.payload.as_ref()));
        }
        Encoding::Json => {
            for e in batch {
                Message::Event {
                    tenant_id: tenant.to_owned(),
                    namespace: ns.to_owned(),
                    stream: e.stream.to_string(),
                    payload: e.payload.clone(),
                    offset: None,
                }
                .encode(out);
            }
        }
    }
}
