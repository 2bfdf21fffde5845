//! Calls without a future: a request is encoded and sent at once, and its outcome handed to a
//! callback on the runtime thread that reads the reply.
//!
//! The async API costs one future per call, a timer per request and a channel to hand the
//! reply over; for a binding that already has its own completion machinery (the C ABI's
//! completion queues, see `felix_ffi`) that is more work than the call itself. A
//! [`DirectCall`] skips all three: its deadline is kept by one sweeper task per request
//! stream, and its reply is read straight into the callback. Only the hot single-key cache
//! operations have a direct form; everything else goes through the async API.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;

use crate::cache::{self, CacheValue, PutCondition};
use crate::client::{encode, Client};
use crate::conn::{Negotiated, Reply, ReqStream};
use crate::error::Result;
use crate::pool::Pool;

/// A request encoded for one connection's stream and ready to be sent with
/// [`DirectCall::start`].
pub struct DirectCall<T> {
    stream: Arc<ReqStream>,
    pool: Arc<Pool>,
    request_id: u64,
    frame: Bytes,
    timeout: Duration,
    read: fn(Reply) -> Result<T>,
}

impl<T> std::fmt::Debug for DirectCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectCall")
            .field("request_id", &self.request_id)
            .field("frame_len", &self.frame.len())
            .finish()
    }
}

/// Cancels a started [`DirectCall`] (cheap to keep: it does not hold the connection).
#[derive(Debug, Clone)]
pub struct DirectHandle {
    stream: Weak<ReqStream>,
    request_id: u64,
}

impl DirectHandle {
    /// Gives the call up: its callback runs now, on this thread, with [`Error::Cancelled`],
    /// and a late reply is dropped. False when it had already finished (or not started).
    pub fn cancel(&self) -> bool {
        self.stream
            .upgrade()
            .is_some_and(|s| s.cancel(self.request_id))
    }
}

impl<T: Send + 'static> DirectCall<T> {
    /// The handle that cancels this call once started.
    pub fn handle(&self) -> DirectHandle {
        DirectHandle {
            stream: Arc::downgrade(&self.stream),
            request_id: self.request_id,
        }
    }

    /// Sends the request; `done` runs exactly once, on a thread of `rt`'s runtime (the one
    /// that reads the reply, finds it overdue or the connection lost) or in
    /// [`DirectHandle::cancel`], and never before this returns. Callable from any thread; on a
    /// thread that drives `rt` it needs no wake-up of another.
    pub fn start(self, rt: &Handle, done: impl FnOnce(Result<T>) + Send + 'static) {
        let (read, pool) = (self.read, self.pool);
        self.stream.start(
            rt,
            self.request_id,
            self.frame,
            self.timeout,
            Box::new(move |r| done(r.map_err(|e| pool.why(e)).and_then(read))),
        );
    }
}

impl Client {
    /// Prepares a request for a live connection: `None` when none is up (or the client is
    /// closed); use the async call then, which waits for one.
    fn direct<T>(
        &self,
        build: impl FnOnce(u64, &Negotiated) -> Result<(Bytes, u32)>,
        read: fn(Reply) -> Result<T>,
    ) -> Option<Result<DirectCall<T>>> {
        let live = self.pool.try_live()?;
        Some(
            encode(&live, build).map(|(stream, request_id, frame, _)| DirectCall {
                stream: stream.clone(),
                pool: self.pool.clone(),
                request_id,
                frame,
                timeout: self.pool.cfg.request_timeout,
                read,
            }),
        )
    }

    /// [`Client::cache_get`] as a [`DirectCall`]; `None` when no connection is up yet.
    pub fn cache_get_direct(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
    ) -> Option<Result<DirectCall<Option<CacheValue>>>> {
        let t = self.target(namespace, cache, key);
        self.direct(|rid, n| cache::get_frame(t, rid, n), cache::get_reply)
    }

    /// [`Client::cache_put_if`] as a [`DirectCall`]; `None` when no connection is up yet.
    pub fn cache_put_direct(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        cond: PutCondition,
    ) -> Option<Result<DirectCall<u64>>> {
        let ttl_ms = match cache::ttl_ms(ttl) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let t = self.target(namespace, cache, key);
        self.direct(
            |rid, n| cache::put_frame(t, ttl_ms, cond, value, rid, n),
            cache::put_reply,
        )
    }

    /// [`Client::cache_delete`] as a [`DirectCall`]; `None` when no connection is up yet.
    pub fn cache_delete_direct(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
    ) -> Option<Result<DirectCall<bool>>> {
        let t = self.target(namespace, cache, key);
        self.direct(|rid, n| cache::delete_frame(t, rid, n), cache::delete_reply)
    }
}
