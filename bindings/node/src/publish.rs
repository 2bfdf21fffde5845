//! Publishing: one message, an atomic batch with an ack mode, and the batching
//! `NativePublisher` (many messages in flight, batched by the core).

use bytes::Bytes;
use felix_client::{AckMode, Publisher, PublisherConfig};
use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::client::{enter, NativeClient};
use crate::error::{invalid, Outcome};
use crate::runtime::{promise, rejected, throw};
use crate::value::{millis, Js};

fn ack_mode(ack: Option<&str>) -> Outcome<AckMode> {
    match ack {
        None | Some("per_batch") => Ok(AckMode::PerBatch),
        Some("per_message") => Ok(AckMode::PerMessage),
        Some("none") => Ok(AckMode::None),
        Some(other) => Err(invalid(format!(
            "ack must be per_batch, per_message or none, got {other:?}"
        ))),
    }
}

/// Settings of a batching publisher (absent ones keep the core's defaults).
#[napi(object)]
#[derive(Default)]
pub struct PublisherOptions {
    /// Most messages per batch (default 256).
    pub max_batch_messages: Option<u32>,
    /// Most payload bytes per batch (default 256 KiB).
    pub max_batch_bytes: Option<u32>,
    /// How long the first message of a batch may wait for company, ms (default 0).
    pub max_delay_ms: Option<f64>,
    /// `per_batch` (default), `per_message` or `none`.
    pub ack: Option<String>,
    /// Messages queued before `publish` waits (default 4096).
    pub queue_capacity: Option<u32>,
}

fn publisher_config(o: PublisherOptions) -> Outcome<PublisherConfig> {
    let mut c = PublisherConfig {
        ack: ack_mode(o.ack.as_deref())?,
        ..PublisherConfig::default()
    };
    for (what, v, slot) in [
        (
            "maxBatchMessages",
            o.max_batch_messages,
            &mut c.max_batch_messages,
        ),
        ("maxBatchBytes", o.max_batch_bytes, &mut c.max_batch_bytes),
        ("queueCapacity", o.queue_capacity, &mut c.queue_capacity),
    ] {
        match v {
            Some(0) => return Err(invalid(format!("{what} must be at least 1"))),
            Some(n) => *slot = n as usize,
            None => {}
        }
    }
    if let Some(d) = o.max_delay_ms {
        c.max_delay = millis("maxDelayMs", d)?;
    }
    Ok(c)
}

#[napi]
impl NativeClient {
    /// Publishes one message; resolves when the broker acknowledged it.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn publish(
        &self,
        env: Env,
        namespace: String,
        stream: String,
        payload: Uint8ArraySlice<'_>,
    ) -> Result<sys::napi_value> {
        let client = self.shared.client.clone();
        let payload = Bytes::copy_from_slice(&payload);
        promise(
            &env,
            async move { Ok(client.publish(&namespace, &stream, payload).await?) },
            |env, ()| Js(env).undefined(),
        )
    }

    /// Publishes messages atomically and in order. `ack`: `per_batch` (default),
    /// `per_message`, or `none` (resolves once written).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn publish_batch(
        &self,
        env: Env,
        namespace: String,
        stream: String,
        payloads: Vec<Uint8Array>,
        ack: Option<String>,
    ) -> Result<sys::napi_value> {
        let ack = match ack_mode(ack.as_deref()) {
            Ok(a) => a,
            Err(f) => return rejected(&env, f),
        };
        let client = self.shared.client.clone();
        let payloads: Vec<Bytes> = payloads.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        promise(
            &env,
            async move {
                Ok(client
                    .publish_batch(&namespace, &stream, &payloads, ack)
                    .await?)
            },
            |env, ()| Js(env).undefined(),
        )
    }

    /// A batching publisher for `namespace/stream`.
    #[napi]
    pub fn publisher(
        &self,
        env: Env,
        namespace: String,
        stream: String,
        options: Option<PublisherOptions>,
    ) -> Result<NativePublisher> {
        let cfg = publisher_config(options.unwrap_or_default()).map_err(|f| throw(env.raw(), f))?;
        let _rt = enter();
        Ok(NativePublisher {
            publisher: self.shared.client.publisher(&namespace, &stream, cfg),
        })
    }
}

/// A batching publisher bound to one stream.
#[napi]
pub struct NativePublisher {
    publisher: Publisher,
}

#[napi]
impl NativePublisher {
    /// Publishes one message; resolves when its batch is acknowledged.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn publish(&self, env: Env, payload: Uint8ArraySlice<'_>) -> Result<sys::napi_value> {
        let p = self.publisher.clone();
        let payload = Bytes::copy_from_slice(&payload);
        promise(
            &env,
            async move { Ok(p.publish(payload).await?) },
            |env, ()| Js(env).undefined(),
        )
    }
}
