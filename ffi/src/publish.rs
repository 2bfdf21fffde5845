//! Publishing: one message or an atomic batch with an acknowledgement mode, and the batching
//! [`FelixPublisher`] for high rates on one stream.

use std::ptr;

use bytes::Bytes;
use felix_client::{AckMode, Publisher, PublisherConfig};

use crate::bytes::{array, FelixBytes};
use crate::client::{finish, live, FelixClient};
use crate::completion::{start, FelixCompletionQueue};
use crate::error::{guard, quiet, Failure, FelixError, FelixStatus, Res};
use crate::runtime::{handle, Call};

/// Acknowledgement mode of a publish.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FelixAckMode {
    /// Return once written; no reply from the broker.
    None = 0,
    /// Wait for one acknowledgement per message.
    PerMessage = 1,
    /// Wait for one acknowledgement for the whole batch (the default).
    PerBatch = 2,
}

fn ack_mode(n: u32) -> Res<AckMode> {
    match n {
        0 => Ok(AckMode::None),
        1 => Ok(AckMode::PerMessage),
        2 => Ok(AckMode::PerBatch),
        n => Err(Failure::invalid(format!("unknown ack mode {n}"))),
    }
}

unsafe fn batch_call(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    payloads: *const FelixBytes,
    payloads_len: usize,
    ack: u32,
) -> Res<Call> {
    let ack = ack_mode(ack)?;
    // SAFETY: forwarded from the export's contract.
    let (c, ns, st, payloads) = unsafe {
        (
            live(client)?.clone(),
            namespace.name("namespace")?,
            stream.name("stream")?,
            array(payloads, payloads_len, "payloads")?
                .iter()
                .map(|p| p.copy_bytes("payload"))
                .collect::<Res<Vec<Bytes>>>()?,
        )
    };
    Ok(Box::pin(async move {
        c.publish_batch(&ns, &st, &payloads, ack).await?;
        Ok(None)
    }))
}

/// Publishes one message and waits for the broker's acknowledgement (blocking).
///
/// # Safety
/// `client` live; byte views valid for their lengths; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_client_publish(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    payload: FelixBytes,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    unsafe {
        felix_client_publish_batch(
            client,
            namespace,
            stream,
            &payload,
            1,
            FelixAckMode::PerBatch as u32,
            error,
        )
    }
}

/// Publishes `payloads_len` messages atomically and in order (blocking); `ack` is a
/// `FelixAckMode`.
///
/// # Safety
/// `client` live; `payloads` valid for `payloads_len` views; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_client_publish_batch(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    payloads: *const FelixBytes,
    payloads_len: usize,
    ack: u32,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        let call = batch_call(client, namespace, stream, payloads, payloads_len, ack);
        finish(call, ptr::null_mut())
    })
}

/// Starts a batch publish (payloads are copied before this returns); no result.
///
/// # Safety
/// As `felix_client_publish_batch`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_client_publish_start(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    payloads: *const FelixBytes,
    payloads_len: usize,
    ack: u32,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        let call = batch_call(client, namespace, stream, payloads, payloads_len, ack);
        start(queue, token, call)
    })
}

/// A batching publisher bound to one stream: concurrent publishes are coalesced into batches.
/// Thread-safe. Release with `felix_publisher_free`.
pub struct FelixPublisher {
    publisher: Publisher,
}

/// Creates a batching publisher. `max_batch_messages`, `max_batch_bytes`, `max_delay_us` and
/// `queue_capacity` 0 keep the defaults (256, 256 KiB, 0 = send as soon as possible, 4096);
/// `ack` is a `FelixAckMode`.
///
/// # Safety
/// `client` live; names valid for their lengths; `out` valid; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_publisher_new(
    client: *const FelixClient,
    namespace: FelixBytes,
    stream: FelixBytes,
    ack: u32,
    max_batch_messages: u32,
    max_batch_bytes: u32,
    max_delay_us: u32,
    queue_capacity: u32,
    out: *mut *mut FelixPublisher,
    error: *mut *mut FelixError,
) -> FelixStatus {
    guard(error, || {
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        // SAFETY: per the contract.
        unsafe { *out = ptr::null_mut() };
        // SAFETY: per the contract.
        let (c, ns, st) = unsafe {
            (
                live(client)?,
                namespace.name("namespace")?,
                stream.name("stream")?,
            )
        };
        let mut cfg = PublisherConfig {
            ack: ack_mode(ack)?,
            ..Default::default()
        };
        if max_batch_messages > 0 {
            cfg.max_batch_messages = max_batch_messages as usize;
        }
        if max_batch_bytes > 0 {
            cfg.max_batch_bytes = max_batch_bytes as usize;
        }
        cfg.max_delay = std::time::Duration::from_micros(max_delay_us.into());
        if queue_capacity > 0 {
            cfg.queue_capacity = queue_capacity as usize;
        }
        let _rt = handle().enter();
        let publisher = c.publisher(&ns, &st, cfg);
        // SAFETY: per the contract.
        unsafe { *out = Box::into_raw(Box::new(FelixPublisher { publisher })) };
        Ok(())
    })
}

unsafe fn publisher_call(publisher: *const FelixPublisher, payload: FelixBytes) -> Res<Call> {
    // SAFETY: forwarded from the export's contract.
    let p = unsafe { publisher.as_ref() }
        .ok_or_else(|| Failure::invalid("publisher is NULL"))?
        .publisher
        .clone();
    // SAFETY: forwarded.
    let payload = unsafe { payload.copy_bytes("payload") }?;
    Ok(Box::pin(async move {
        p.publish(payload).await?;
        Ok(None)
    }))
}

/// Publishes through the publisher and waits until its batch is acknowledged (blocking).
///
/// # Safety
/// `publisher` live; `payload` valid for its length; `error` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn felix_publisher_publish(
    publisher: *const FelixPublisher,
    payload: FelixBytes,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        finish(publisher_call(publisher, payload), ptr::null_mut())
    })
}

/// Starts a publish through the publisher; completes when its batch is acknowledged.
///
/// # Safety
/// As `felix_publisher_publish`; `queue` live.
#[no_mangle]
pub unsafe extern "C" fn felix_publisher_publish_start(
    publisher: *const FelixPublisher,
    payload: FelixBytes,
    queue: *const FelixCompletionQueue,
    token: u64,
    error: *mut *mut FelixError,
) -> FelixStatus {
    // SAFETY: per the contract.
    guard(error, || unsafe {
        start(queue, token, publisher_call(publisher, payload))
    })
}

/// Releases a publisher; messages already queued are still sent. NULL is a no-op.
///
/// # Safety
/// `publisher` is NULL or a publisher from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn felix_publisher_free(publisher: *mut FelixPublisher) {
    quiet((), || {
        if !publisher.is_null() {
            // SAFETY: per the contract.
            drop(unsafe { Box::from_raw(publisher) });
        }
    })
}
