//! Subscriptions: `NativeSubscription.next(max)` resolves to the next events (at least one,
//! at most `max`, whatever is buffered) so that a busy stream costs one promise per batch, not
//! per event; `null` once the subscription ended. The JavaScript layer turns this into an
//! async iterator.

use std::sync::Arc;

use felix_client::sync::Mutex;
use felix_client::{Event, Gap, Start, Subscription};
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::client::NativeClient;
use crate::error::{cancelled, invalid, Failure, Outcome};
use crate::runtime::{promise, rejected, Cancel, Settled};
use crate::value::{uint, Js};
use crate::CancelToken;

struct Inner {
    sub: tokio::sync::Mutex<Option<Subscription>>,
    /// Fired by `close()` (of the subscription or of its client).
    closed: Arc<Cancel>,
    /// Gaps taken from the core while a `next` held the subscription.
    gaps: Mutex<Vec<Gap>>,
    /// A terminal error read behind a batch of events, reported by the next call.
    failed: Mutex<Option<Failure>>,
}

impl Inner {
    fn stash_gaps(&self, sub: &Subscription) {
        let g = sub.take_gaps();
        if !g.is_empty() {
            self.gaps.lock().extend(g);
        }
    }
}

fn start(from: Option<Either<String, f64>>) -> Outcome<Start> {
    match from {
        None => Ok(Start::Latest),
        Some(Either::A(s)) => match s.as_str() {
            "latest" => Ok(Start::Latest),
            "earliest" => Ok(Start::Earliest),
            other => Err(invalid(format!(
                "from must be \"latest\", \"earliest\" or an offset, got {other:?}"
            ))),
        },
        Some(Either::B(o)) => Ok(Start::Offset(uint("from", o)?)),
    }
}

#[napi]
impl NativeClient {
    /// Subscribes to a stream or a `*` / `>` pattern; resolves once the broker accepted it.
    /// `from`: `"latest"` (default), `"earliest"` or an offset.
    #[napi(ts_return_type = "Promise<NativeSubscription>")]
    pub fn subscribe(
        &self,
        env: Env,
        namespace: String,
        stream: String,
        from: Option<Either<String, f64>>,
        cancel: Option<&CancelToken>,
    ) -> Result<sys::napi_value> {
        let start = match start(from) {
            Ok(s) => s,
            Err(f) => return rejected(&env, f),
        };
        let closed = Arc::new(Cancel::default());
        if let Err(f) = self.shared.track(&closed) {
            return rejected(&env, f);
        }
        let client = self.shared.client.clone();
        let cancel = CancelToken::arc(cancel);
        let fut = async move {
            let open = client.subscribe(&namespace, &stream, start);
            let sub = tokio::select! {
                s = open => s?,
                _ = closed.fired() => return Err(crate::error::closed("client")),
                _ = async { match &cancel { Some(c) => c.fired().await, None => std::future::pending().await } } => {
                    return Err(cancelled())
                }
            };
            Ok(Arc::new(Inner {
                sub: tokio::sync::Mutex::new(Some(sub)),
                closed,
                gaps: Mutex::new(Vec::new()),
                failed: Mutex::new(None),
            }))
        };
        promise(&env, fut, |env, inner| {
            // SAFETY: JavaScript thread (promise settlement).
            unsafe { NativeSubscription::to_napi_value(env, NativeSubscription { inner }) }
                .map_err(|e| Failure::new(felix_client::ErrorCode::Internal, e.reason.clone()))
        })
    }
}

/// A live subscription. Use the package's `Subscription` (an async iterable) instead.
#[napi]
pub struct NativeSubscription {
    inner: Arc<Inner>,
}

fn events_to_js(env: sys::napi_env, events: Option<Vec<Event>>) -> Settled {
    let js = Js(env);
    let Some(events) = events else {
        return js.null();
    };
    js.array(events, |js, e| {
        let offset = match e.offset {
            Some(o) => js.number(o as f64)?,
            None => js.null()?,
        };
        js.object(&[
            (c"stream", js.string(&e.stream)?),
            (c"offset", offset),
            (c"payload", js.buffer(&e.payload)?),
        ])
    })
}

#[napi]
impl NativeSubscription {
    /// Resolves to the next events (1..=`max`), or `null` once the subscription has ended
    /// (closed, or after its terminal error was reported).
    #[napi(ts_return_type = "Promise<Array<SubscriptionEvent> | null>")]
    pub fn next(
        &self,
        env: Env,
        max: Option<u32>,
        cancel: Option<&CancelToken>,
    ) -> Result<sys::napi_value> {
        let max = max.unwrap_or(256).max(1) as usize;
        let inner = self.inner.clone();
        let cancel = CancelToken::arc(cancel);
        let fut = async move {
            if let Some(f) = inner.failed.lock().take() {
                return Err(f);
            }
            let mut guard = tokio::select! {
                g = inner.sub.lock() => g,
                _ = inner.closed.fired() => return Ok(None),
            };
            let Some(sub) = guard.as_mut() else {
                return Ok(None);
            };
            let first = tokio::select! {
                biased;
                _ = inner.closed.fired() => None,
                _ = async { match &cancel { Some(c) => c.fired().await, None => std::future::pending().await } } => {
                    return Err(cancelled())
                }
                e = sub.next() => Some(e),
            };
            inner.stash_gaps(sub);
            let Some(first) = first else {
                *guard = None;
                return Ok(None);
            };
            let first = match first {
                None => {
                    *guard = None;
                    return Ok(None);
                }
                Some(Err(e)) => {
                    *guard = None;
                    return Err(e.into());
                }
                Some(Ok(e)) => e,
            };
            let mut out = Vec::with_capacity(max.min(64));
            out.push(first);
            while out.len() < max {
                match sub.try_next_until_gap() {
                    Some(Ok(e)) => out.push(e),
                    Some(Err(e)) => {
                        *inner.failed.lock() = Some(e.into());
                        *guard = None;
                        break;
                    }
                    None => break,
                }
            }
            Ok(Some(out))
        };
        promise(&env, fut, events_to_js)
    }

    /// Up to `max` events that are already buffered (empty when none is, or while a `next` is
    /// pending); never waits.
    #[napi(ts_return_type = "Array<SubscriptionEvent>")]
    pub fn try_next(&self, env: Env, max: Option<u32>) -> Result<sys::napi_value> {
        let max = max.unwrap_or(256).max(1) as usize;
        let mut out = Vec::new();
        if let Ok(mut g) = self.inner.sub.try_lock() {
            if let Some(sub) = g.as_mut() {
                while out.len() < max {
                    // The first event may follow gaps (they become visible now); later ones
                    // may not (a batch never spans a gap).
                    let next = if out.is_empty() {
                        sub.try_next()
                    } else {
                        sub.try_next_until_gap()
                    };
                    match next {
                        Some(Ok(e)) => out.push(e),
                        Some(Err(e)) => {
                            *self.inner.failed.lock() = Some(e.into());
                            *g = None;
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
        events_to_js(env.raw(), Some(out))
            .map_err(|f| Error::new(Status::GenericFailure, f.message))
    }

    /// Gaps (events lost across a reconnect or a broker restart) recorded since the last
    /// call, in order: those taken right after a batch of events precede its first event (a
    /// batch never spans a gap).
    #[napi(ts_return_type = "Array<SubscriptionGap>")]
    pub fn take_gaps(&self, env: Env) -> Result<sys::napi_value> {
        let mut gaps = std::mem::take(&mut *self.inner.gaps.lock());
        if let Ok(g) = self.inner.sub.try_lock() {
            if let Some(s) = g.as_ref() {
                gaps.extend(s.take_gaps());
            }
        }
        Js(env.raw())
            .array(gaps, |js, g| {
                js.object(&[
                    (c"stream", js.string(&g.stream)?),
                    (c"from", js.number(g.from as f64)?),
                    (c"to", js.number(g.to as f64)?),
                    (c"reset", js.bool(g.reset)?),
                ])
            })
            .map_err(|f| Error::new(Status::GenericFailure, f.message))
    }

    /// Ends the subscription on the broker; a pending `next` resolves to `null`.
    #[napi]
    pub fn close(&self) {
        self.inner.closed.fire();
        if let Ok(mut g) = self.inner.sub.try_lock() {
            g.take();
        }
    }

    /// Whether `close()` was called (on it or its client).
    #[napi]
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_fired()
    }
}

/// One delivered event (type declaration only; built by `next`).
#[napi(object)]
#[allow(dead_code)] // declares the TypeScript shape; values are built by `value::Js`
pub struct SubscriptionEvent {
    /// Stream it was published to (differs per event for wildcard subscriptions).
    pub stream: String,
    /// Offset in that stream (`null` from a broker without offsets).
    pub offset: Option<f64>,
    /// Payload.
    pub payload: Buffer,
}

/// Offsets a resumed subscription could not get back: `[from, to)` in `stream`. With
/// `reset`, the broker recreated the stream's log (an in-memory broker restarted): `from` is
/// in the old log (its undelivered events from there on are lost, how many is unknown), `to`
/// in the new one.
#[napi(object)]
#[allow(dead_code)] // declares the TypeScript shape; values are built by `value::Js`
pub struct SubscriptionGap {
    pub stream: String,
    pub from: f64,
    pub to: f64,
    pub reset: bool,
}
