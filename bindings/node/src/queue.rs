//! Work queues: `NativeConsumer` is one member of a consumer group on one stream (pull with
//! long poll, ack, nack with delay, lease extension, dead letters, redrive, discard).

use felix_client::{Consumer, DeadLetter, GroupSettings, QueueMessage};
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::client::NativeClient;
use crate::error::{invalid, Outcome};
use crate::runtime::{cancellable, promise, rejected};
use crate::value::{millis, offsets, opt_millis, uint32, Js};
use crate::CancelToken;

/// Settings of `createGroup`.
#[napi(object)]
#[derive(Default)]
pub struct GroupOptions {
    /// `"earliest"` (default) or `"latest"`.
    pub from: Option<String>,
    /// Lease length before redelivery, ms.
    pub ack_timeout_ms: Option<f64>,
    /// Deliveries before dead-lettering.
    pub max_deliveries: Option<u32>,
}

fn group_settings(o: GroupOptions) -> Outcome<GroupSettings> {
    let from_latest = match o.from.as_deref() {
        None | Some("earliest") => false,
        Some("latest") => true,
        Some(other) => {
            return Err(invalid(format!(
                "from must be \"earliest\" or \"latest\", got {other:?}"
            )))
        }
    };
    Ok(GroupSettings {
        from_latest,
        ack_timeout: opt_millis("ackTimeoutMs", o.ack_timeout_ms)?,
        max_deliveries: o.max_deliveries,
    })
}

#[napi]
impl NativeClient {
    /// A consumer in `group` on `namespace/stream` (created on first use in dev mode).
    #[napi]
    pub fn consumer(&self, namespace: String, stream: String, group: String) -> NativeConsumer {
        NativeConsumer {
            consumer: self.shared.client.consumer(&namespace, &stream, &group),
        }
    }

    /// Creates a consumer group with settings; an existing group is left unchanged.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn create_group(
        &self,
        env: Env,
        namespace: String,
        stream: String,
        group: String,
        options: Option<GroupOptions>,
    ) -> Result<sys::napi_value> {
        let settings = match group_settings(options.unwrap_or_default()) {
            Ok(s) => s,
            Err(f) => return rejected(&env, f),
        };
        let client = self.shared.client.clone();
        promise(
            &env,
            async move {
                Ok(client
                    .create_group(&namespace, &stream, &group, settings)
                    .await?)
            },
            |env, ()| Js(env).undefined(),
        )
    }
}

/// A member of a consumer group. Use the package's `Consumer` (an async iterable) instead.
#[napi]
pub struct NativeConsumer {
    consumer: Consumer,
}

/// A leased delivery (type declaration only; built by `pull`).
#[napi(object)]
#[allow(dead_code)] // declares the TypeScript shape; values are built by `value::Js`
pub struct NativeQueueMessage {
    /// Offset in the stream: the id to ack.
    pub offset: f64,
    pub payload: Buffer,
    /// Delivery attempt, 1 on first delivery.
    pub attempt: u32,
    /// Lease time left when handed out, ms.
    pub lease_ms: f64,
}

/// A dead-lettered message (type declaration only; built by `deadLetters`).
#[napi(object)]
#[allow(dead_code)] // declares the TypeScript shape; values are built by `value::Js`
pub struct NativeDeadLetter {
    pub offset: f64,
    pub payload: Buffer,
    /// Deliveries attempted.
    pub attempts: u32,
    /// `max_deliveries` or `rejected`.
    pub reason: String,
}

fn count_to_js(env: sys::napi_env, n: u64) -> crate::runtime::Settled {
    Js(env).number(n as f64)
}

macro_rules! reject_on {
    ($env:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(f) => return rejected(&$env, f),
        }
    };
}

#[napi]
impl NativeConsumer {
    /// Takes up to `max` messages, waiting up to `waitMs` for the first one (long poll).
    #[napi(ts_return_type = "Promise<Array<NativeQueueMessage>>")]
    pub fn pull(
        &self,
        env: Env,
        max: f64,
        wait_ms: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> Result<sys::napi_value> {
        let max = reject_on!(env, uint32("max", max));
        let wait = reject_on!(env, millis("waitMs", wait_ms.unwrap_or(0.0)));
        let c = self.consumer.clone();
        promise(
            &env,
            cancellable(CancelToken::arc(cancel), async move {
                Ok(c.pull(max, wait).await?)
            }),
            |env, msgs: Vec<QueueMessage>| {
                Js(env).array(msgs, |js, m| {
                    js.object(&[
                        (c"offset", js.number(m.offset as f64)?),
                        (c"payload", js.buffer(&m.payload)?),
                        (c"attempt", js.number(m.attempt.into())?),
                        (c"leaseMs", js.number(m.lease.as_secs_f64() * 1000.0)?),
                    ])
                })
            },
        )
    }

    /// Acknowledges; resolves to how many were still leased (and are now done).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn ack(&self, env: Env, offsets_: Vec<f64>) -> Result<sys::napi_value> {
        let o = reject_on!(env, offsets(&offsets_));
        let c = self.consumer.clone();
        promise(&env, async move { Ok(c.ack(&o).await?) }, count_to_js)
    }

    /// Returns messages for redelivery after `delayMs` (default 0).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn nack(
        &self,
        env: Env,
        offsets_: Vec<f64>,
        delay_ms: Option<f64>,
    ) -> Result<sys::napi_value> {
        let o = reject_on!(env, offsets(&offsets_));
        let delay = reject_on!(env, millis("delayMs", delay_ms.unwrap_or(0.0)));
        let c = self.consumer.clone();
        promise(
            &env,
            async move { Ok(c.nack(&o, delay).await?) },
            count_to_js,
        )
    }

    /// Extends leases to `byMs` from now.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn extend(&self, env: Env, offsets_: Vec<f64>, by_ms: f64) -> Result<sys::napi_value> {
        let o = reject_on!(env, offsets(&offsets_));
        let by = reject_on!(env, millis("byMs", by_ms));
        let c = self.consumer.clone();
        promise(
            &env,
            async move { Ok(c.extend(&o, by).await?) },
            count_to_js,
        )
    }

    /// Lists up to `max` dead letters (default 100), oldest first.
    #[napi(ts_return_type = "Promise<Array<NativeDeadLetter>>")]
    pub fn dead_letters(&self, env: Env, max: Option<f64>) -> Result<sys::napi_value> {
        let max = reject_on!(env, uint32("max", max.unwrap_or(100.0)));
        let c = self.consumer.clone();
        promise(
            &env,
            async move { Ok(c.dead_letters(max).await?) },
            |env, dls: Vec<DeadLetter>| {
                Js(env).array(dls, |js, d| {
                    js.object(&[
                        (c"offset", js.number(d.offset as f64)?),
                        (c"payload", js.buffer(&d.payload)?),
                        (c"attempts", js.number(d.attempts.into())?),
                        (c"reason", js.string(&d.reason)?),
                    ])
                })
            },
        )
    }

    /// Makes dead letters deliverable again (all when `offsets` is absent).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn redrive(&self, env: Env, offsets_: Option<Vec<f64>>) -> Result<sys::napi_value> {
        let o = reject_on!(env, offsets_.as_deref().map(offsets).transpose());
        let c = self.consumer.clone();
        promise(
            &env,
            async move { Ok(c.redrive(o.as_deref()).await?) },
            count_to_js,
        )
    }

    /// Drops dead letters (all when `offsets` is absent).
    #[napi(ts_return_type = "Promise<number>")]
    pub fn discard(&self, env: Env, offsets_: Option<Vec<f64>>) -> Result<sys::napi_value> {
        let o = reject_on!(env, offsets_.as_deref().map(offsets).transpose());
        let c = self.consumer.clone();
        promise(
            &env,
            async move { Ok(c.discard(o.as_deref()).await?) },
            count_to_js,
        )
    }
}
