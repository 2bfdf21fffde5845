//! Work queues: a [`FelixConsumer`] in a consumer group pulls leased messages and settles them.
//!
//! Results: a pull gives one item per message (`offset`: the id to ack, `payload`, `attempt`,
//! `lease_ms`); a dead-letter listing gives one item per dead letter (`offset`, `payload`,
//! `attempt` = attempts, `text` = reason); ack/nack/extend/redrive/discard give `value` = how
//! many offsets were affected.

use std::ptr;
use std::time::Duration;

use felix_client::Consumer;

use crate::bytes::{array, FelixBytes, FelixResult, ItemData, Output};
use crate::client::{finish, live, FelixClient};
use crate::completion::{start, FelixCompletionQueue};
use crate::error::{guard, quiet, Failure, FelixError, FelixStatus, Res};
use crate::runtime::Call;

/// A member of a consumer group on one stream. Thread-safe. Release with
/// `felix_consumer_free`; it does not keep its client open (freeing the client closes it).
pub struct FelixConsumer {
    consumer: Consumer,
}

/// Creates a consumer in `group` on `namespace/stream` (no I/O; the group is created on first
/// use in dev mode, or with `felix_client_create_group`).
///
/// # Safety
/// `client` live; names valid for their lengths; `out` valid; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_new(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    group: FelixBytes,
    out: *mut *mut FelixConsumer,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        // SAFETY: per the contract.
        unsafe {
            *out = ptr::null_mut();
            let c = live(client)?;
            let consumer = c.consumer(
                &namespace.name("namespace")?,
                &stream.name("stream")?,
                &group.name("group")?,
            );
            *out = Box::into_raw(Box::new(FelixConsumer { consumer }));
        }
        Ok(())
    })
}

/// Releases a consumer (leases it holds run out on the broker). NULL is a no-op.
///
/// # Safety
/// `consumer` is NULL or a consumer from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_free(consumer: *mut FelixConsumer) {
    quiet((), || {
        if !consumer.is_null() {
            // SAFETY: per the contract.
            drop(unsafe { Box::from_raw(consumer) });
        }
    })
}

unsafe fn consumer<'a>(c: *const FelixConsumer) -> Res<&'a Consumer> {
    // SAFETY: forwarded from the export's contract.
    unsafe { c.as_ref() }
        .map(|c| &c.consumer)
        .ok_or_else(|| Failure::invalid("consumer is NULL"))
}

unsafe fn pull_call(c: *const FelixConsumer, max: u32, wait_ms: u64) -> Res<Call> {
    // SAFETY: forwarded.
    let c = unsafe { consumer(c) }?.clone();
    if max == 0 {
        return Err(Failure::invalid("max must be at least 1"));
    }
    Ok(Box::pin(async move {
        let msgs = c.pull(max, Duration::from_millis(wait_ms)).await?;
        Ok(Output::items(
            msgs.into_iter()
                .map(|m| ItemData {
                    payload: m.payload,
                    offset: m.offset,
                    attempt: m.attempt,
                    lease_ms: m.lease.as_millis().min(u32::MAX as u128) as u32,
                    present: true,
                    ..Default::default()
                })
                .collect(),
        ))
    }))
}

unsafe fn dead_letters_call(c: *const FelixConsumer, max: u32) -> Res<Call> {
    // SAFETY: forwarded.
    let c = unsafe { consumer(c) }?.clone();
    Ok(Box::pin(async move {
        let dls = c.dead_letters(max).await?;
        Ok(Output::items(
            dls.into_iter()
                .map(|d| ItemData {
                    payload: d.payload,
                    text: Some(d.reason.into()),
                    offset: d.offset,
                    attempt: d.attempts,
                    present: true,
                    ..Default::default()
                })
                .collect(),
        ))
    }))
}

/// Which settle operation a count call runs.
#[derive(Clone, Copy)]
enum Settle {
    Ack,
    Nack(u64),
    Extend(u64),
    Redrive,
    Discard,
}

unsafe fn settle_call(
    c: *const FelixConsumer,
    offsets: *const u64,
    len: usize,
    op: Settle,
) -> Res<Call> {
    // SAFETY: forwarded.
    let c = unsafe { consumer(c) }?.clone();
    // NULL offsets mean "all" for redrive/discard.
    let all = offsets.is_null() && matches!(op, Settle::Redrive | Settle::Discard);
    // SAFETY: forwarded.
    let offs = unsafe { array(offsets, len, "offsets") }?.to_vec();
    Ok(Box::pin(async move {
        let n = match op {
            Settle::Ack => c.ack(&offs).await?,
            Settle::Nack(ms) => c.nack(&offs, Duration::from_millis(ms)).await?,
            Settle::Extend(ms) => c.extend(&offs, Duration::from_millis(ms)).await?,
            Settle::Redrive => c.redrive((!all).then_some(&offs[..])).await?,
            Settle::Discard => c.discard((!all).then_some(&offs[..])).await?,
        };
        Ok(Output::value(n))
    }))
}

unsafe fn settle_blocking(call: Res<Call>, count: *mut u64) -> Res<()> {
    let mut r: *mut FelixResult = ptr::null_mut();
    // SAFETY: `r` is a local; `count` per the export's contract.
    unsafe {
        finish(call, &mut r)?;
        if !count.is_null() && !r.is_null() {
            *count = (*r).value;
        }
        crate::bytes::felix_result_free(r);
    }
    Ok(())
}

/// Takes up to `max` messages, waiting up to `wait_ms` for the first (long poll; blocking).
///
/// # Safety
/// `consumer` live; `out`, `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_pull(
    consumer: *const FelixConsumer,
    max: u32,
    wait_ms: u64,
    out: *mut *mut FelixResult,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        finish(pull_call(consumer, max, wait_ms), out)
    })
}

/// Starts a pull.
///
/// # Safety
/// As `felix_consumer_pull`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_pull_start(
    consumer: *const FelixConsumer,
    max: u32,
    wait_ms: u64,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        start(queue, token, pull_call(consumer, max, wait_ms))
    })
}

/// Lists up to `max` dead letters, oldest first (blocking).
///
/// # Safety
/// `consumer` live; `out`, `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_dead_letters(
    consumer: *const FelixConsumer,
    max: u32,
    out: *mut *mut FelixResult,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        finish(dead_letters_call(consumer, max), out)
    })
}

/// Starts a dead-letter listing.
///
/// # Safety
/// As `felix_consumer_dead_letters`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_dead_letters_start(
    consumer: *const FelixConsumer,
    max: u32,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        start(queue, token, dead_letters_call(consumer, max))
    })
}

/// Which settle operation `felix_consumer_settle`/`_start` runs.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FelixSettle {
    /// Acknowledge: done with these messages.
    Ack = 0,
    /// Give back for redelivery after `arg_ms`.
    Nack = 1,
    /// Extend the leases by `arg_ms`.
    Extend = 2,
    /// Move dead letters back for delivery (`offsets` NULL: all).
    Redrive = 3,
    /// Drop dead letters (`offsets` NULL: all).
    Discard = 4,
}

fn settle_op(op: u32, arg_ms: u64) -> Res<Settle> {
    Ok(match op {
        0 => Settle::Ack,
        1 => Settle::Nack(arg_ms),
        2 => Settle::Extend(arg_ms),
        3 => Settle::Redrive,
        4 => Settle::Discard,
        n => return Err(Failure::invalid(format!("unknown settle operation {n}"))),
    })
}

/// Acks, nacks (redelivery after `arg_ms`), extends leases (by `arg_ms`), redrives or discards
/// dead letters (`op`: a `FelixSettle`), blocking. `*count` (if non-NULL) gets how many
/// offsets were affected.
///
/// # Safety
/// `consumer` live; `offsets` NULL or valid for `len`; `count`, `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_settle(
    consumer: *const FelixConsumer,
    op: u32,
    offsets: *const u64,
    len: usize,
    arg_ms: u64,
    count: *mut u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        let op = settle_op(op, arg_ms)?;
        // SAFETY: per the contract.
        unsafe { settle_blocking(settle_call(consumer, offsets, len, op), count) }
    })
}

/// Starts a settle operation; the result's `value` is the count.
///
/// # Safety
/// As `felix_consumer_settle`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_settle_start(
    consumer: *const FelixConsumer,
    op: u32,
    offsets: *const u64,
    len: usize,
    arg_ms: u64,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        let op = settle_op(op, arg_ms)?;
        // SAFETY: per the contract.
        unsafe { start(queue, token, settle_call(consumer, offsets, len, op)) }
    })
}

/// Acknowledges messages (blocking shorthand for `felix_consumer_settle` with `FELIX_SETTLE_ACK`).
///
/// # Safety
/// As `felix_consumer_settle`.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_ack(
    consumer: *const FelixConsumer,
    offsets: *const u64,
    len: usize,
    count: *mut u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: forwarded.
    unsafe { felix_consumer_settle(consumer, 0, offsets, len, 0, count, error) }
}

/// Gives messages back for redelivery after `delay_ms` (blocking).
///
/// # Safety
/// As `felix_consumer_settle`.
#[no_mangle]
pub unsafe extern "C" fn felix_consumer_nack(
    consumer: *const FelixConsumer,
    offsets: *const u64,
    len: usize,
    delay_ms: u64,
    count: *mut u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: forwarded.
    unsafe { felix_consumer_settle(consumer, 1, offsets, len, delay_ms, count, error) }
}
