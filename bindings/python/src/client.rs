//! The native client: connection options, and every core call in both flavours.
//!
//! Each method that talks to the broker takes `via` first: `None` runs it blocking (GIL
//! released, see [`crate::runtime::block`]); a [`Completer`] runs it for asyncio and returns
//! `(future, token)` at once. The pure-Python layer (`felix.client`) hides `via`.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use felix_client::sync::Mutex;
use felix_client::{
    ClientConfig, FullPolicy, GroupSettings, PublisherConfig, PutCondition, StreamSettings, Tls,
};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use crate::cache::{self, CacheValue};
use crate::error::invalid_argument;
use crate::publish::{self, PublisherState};
use crate::queue::{DeadLetter, QueueMessage};
use crate::runtime::{block, check_fork, generation, handle, Completer};
use crate::subscribe::{self, Event, Gap, Shared};

/// Seconds (float) to a duration; negative, NaN or infinite is `InvalidArgumentError`.
fn secs(name: &str, v: f64) -> PyResult<Duration> {
    if v.is_finite() && v >= 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(invalid_argument(format!(
            "{name} must be a finite number of seconds >= 0, not {v}"
        )))
    }
}

fn opt_secs(name: &str, v: Option<f64>) -> PyResult<Option<Duration>> {
    v.map(|v| secs(name, v)).transpose()
}

/// Runs `fut` blocking (`via` is `None`) or for asyncio (`via` is a completer).
fn run<T, F>(
    py: Python<'_>,
    born: u64,
    via: Option<&Bound<'_, Completer>>,
    fut: F,
) -> PyResult<PyObject>
where
    T: for<'py> IntoPyObject<'py> + Send + 'static,
    F: Future<Output = felix_client::Result<T>> + Send + 'static,
{
    match via {
        None => {
            let v = block(py, born, fut)?;
            v.into_py_any(py)
        }
        Some(c) => {
            let pair = c.get().submit(py, born, fut)?;
            pair.into_py_any(py)
        }
    }
}

/// A connection pool to a Felix broker (the Rust core's `Client`).
#[pyclass(module = "felix._native", frozen)]
pub struct Client {
    inner: ManuallyDrop<felix_client::Client>,
    born: u64,
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.born == generation() {
            let _g = handle().enter();
            // SAFETY: dropped once, here.
            unsafe { ManuallyDrop::drop(&mut self.inner) };
        }
        // In a forked child the runtime thread is gone: leak rather than touch it.
    }
}

impl Client {
    fn core(&self) -> felix_client::Client {
        (*self.inner).clone()
    }
}

#[pymethods]
impl Client {
    /// Connects; see `felix.Client` for the options.
    #[staticmethod]
    #[pyo3(signature = (via, addresses, *, ca_file=None, ca_pem=None, insecure_dev=false,
        server_name="localhost".to_string(), tenant="default".to_string(), token=None,
        connections=1, streams_per_connection=4, connect_timeout=5.0, request_timeout=10.0,
        reconnect_initial=0.05, reconnect_max=5.0, subscription_buffer=1024,
        token_exchange_url=None, subject_token=None, subject_token_file=None,
        token_refresh_interval=None, client_cert_file=None, client_key_file=None,
        token_exchange_ca_file=None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        addresses: Vec<String>,
        ca_file: Option<PathBuf>,
        ca_pem: Option<Vec<u8>>,
        insecure_dev: bool,
        server_name: String,
        tenant: String,
        token: Option<Bound<'_, PyAny>>,
        connections: usize,
        streams_per_connection: usize,
        connect_timeout: f64,
        request_timeout: f64,
        reconnect_initial: f64,
        reconnect_max: f64,
        subscription_buffer: usize,
        token_exchange_url: Option<String>,
        subject_token: Option<String>,
        subject_token_file: Option<PathBuf>,
        token_refresh_interval: Option<f64>,
        client_cert_file: Option<PathBuf>,
        client_key_file: Option<PathBuf>,
        token_exchange_ca_file: Option<PathBuf>,
    ) -> PyResult<PyObject> {
        if addresses.is_empty() {
            return Err(invalid_argument("at least one broker address is needed"));
        }
        if connections == 0 || streams_per_connection == 0 || subscription_buffer == 0 {
            return Err(invalid_argument(
                "connections, streams_per_connection and subscription_buffer must be >= 1",
            ));
        }
        let tls = match (ca_file, ca_pem, insecure_dev) {
            (Some(f), None, false) => Tls::CaFile(f),
            (None, Some(p), false) => Tls::CaPem(p),
            (None, None, true) => Tls::InsecureDev,
            (None, None, false) => ClientConfig::default().tls,
            _ => {
                return Err(invalid_argument(
                    "give at most one of ca_file, ca_pem and insecure_dev",
                ))
            }
        };
        let (token, token_source) = crate::token::source(
            token,
            token_exchange_url,
            subject_token,
            subject_token_file,
            token_exchange_ca_file,
        )?;
        let mut token_refresh = felix_client::TokenRefresh::default();
        if let Some(s) = token_refresh_interval {
            token_refresh.interval = Some(secs("token_refresh_interval", s)?);
        }
        let client_cert = match (client_cert_file, client_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(felix_client::ClientCert { cert, key }),
            _ => {
                return Err(invalid_argument(
                    "client_cert_file and client_key_file go together",
                ))
            }
        };
        let cfg = ClientConfig {
            addresses,
            server_name,
            tls,
            tenant,
            token,
            token_source,
            token_refresh,
            client_cert,
            connections,
            streams_per_connection,
            connect_timeout: secs("connect_timeout", connect_timeout)?,
            request_timeout: secs("request_timeout", request_timeout)?,
            reconnect_initial: secs("reconnect_initial", reconnect_initial)?,
            reconnect_max: secs("reconnect_max", reconnect_max)?,
            subscription_buffer,
            ..ClientConfig::default()
        };
        let born = generation();
        run(py, born, via, async move {
            let c = felix_client::Client::connect(cfg).await?;
            Ok(Client {
                inner: ManuallyDrop::new(c),
                born,
            })
        })
    }

    /// Closes every connection; calls in flight and later fail with `ClosedError`.
    fn close(&self) {
        if self.born == generation() {
            let _g = handle().enter();
            self.inner.close();
        }
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Tenant every request acts for.
    #[getter]
    fn tenant(&self) -> String {
        self.inner.config().tenant.clone()
    }

    /// Broker addresses.
    #[getter]
    fn addresses(&self) -> Vec<String> {
        self.inner.config().addresses.clone()
    }

    /// Round trip to the broker, in seconds.
    fn ping(&self, py: Python<'_>, via: Option<&Bound<'_, Completer>>) -> PyResult<PyObject> {
        let c = self.core();
        run(py, self.born, via, async move {
            c.ping().await.map(|d| d.as_secs_f64())
        })
    }

    /// Publishes one message and waits for the broker's acknowledgement.
    fn publish(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        stream: String,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let p = publish::payload(payload)?;
        let c = self.core();
        run(py, self.born, via, async move {
            c.publish(&namespace, &stream, p).await
        })
    }

    /// Publishes messages atomically and in order with an ack mode.
    fn publish_batch(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        stream: String,
        payloads: &Bound<'_, PyAny>,
        ack: &str,
    ) -> PyResult<PyObject> {
        let ps = publish::payloads(payloads)?;
        let ack = publish::ack_mode(ack)?;
        let c = self.core();
        run(py, self.born, via, async move {
            c.publish_batch(&namespace, &stream, &ps, ack).await
        })
    }

    /// A batching publisher for one stream.
    #[pyo3(signature = (namespace, stream, *, max_batch_messages=256, max_batch_bytes=262144,
        max_delay=0.0, ack="per_batch", queue_capacity=4096))]
    #[allow(clippy::too_many_arguments)]
    fn publisher(
        &self,
        namespace: &str,
        stream: &str,
        max_batch_messages: usize,
        max_batch_bytes: usize,
        max_delay: f64,
        ack: &str,
        queue_capacity: usize,
    ) -> PyResult<Publisher> {
        check_fork(self.born)?;
        let cfg = PublisherConfig {
            max_batch_messages: max_batch_messages.max(1),
            max_batch_bytes: max_batch_bytes.max(1),
            max_delay: secs("max_delay", max_delay)?,
            ack: publish::ack_mode(ack)?,
            queue_capacity: queue_capacity.max(1),
        };
        let _g = handle().enter();
        Ok(Publisher {
            state: PublisherState {
                inner: self.inner.publisher(namespace, stream, cfg),
                unflushed: Arc::new(Mutex::new(Vec::new())),
            },
            born: self.born,
        })
    }

    /// Subscribes to a stream or a `*` / `>` pattern from `start`.
    fn subscribe(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        stream: String,
        start: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let start = subscribe::start(start)?;
        let c = self.core();
        let born = self.born;
        run(py, born, via, async move {
            let s = c.subscribe(&namespace, &stream, start).await?;
            Ok(Subscription {
                sub: Arc::new(Mutex::new(Some(s))),
                born,
            })
        })
    }

    /// A consumer in `group` on `namespace/stream`.
    fn consumer(&self, namespace: &str, stream: &str, group: &str) -> PyResult<Consumer> {
        check_fork(self.born)?;
        Ok(Consumer {
            inner: self.inner.consumer(namespace, stream, group),
            born: self.born,
        })
    }

    /// Creates a stream with settings (idempotent for equal settings).
    #[pyo3(signature = (via, namespace, stream, *, max_records=None, max_bytes=None,
        subscriber_buffer=None, full_policy=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_stream(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        stream: String,
        max_records: Option<u64>,
        max_bytes: Option<u64>,
        subscriber_buffer: Option<u32>,
        full_policy: Option<&str>,
    ) -> PyResult<PyObject> {
        let full_policy = full_policy
            .map(|p| match p {
                "block" => Ok(FullPolicy::Block),
                "drop_newest" => Ok(FullPolicy::DropNewest),
                "drop_oldest" => Ok(FullPolicy::DropOldest),
                "disconnect" => Ok(FullPolicy::Disconnect),
                other => Err(invalid_argument(format!(
                    "full_policy must be 'block', 'drop_newest', 'drop_oldest' or 'disconnect', not {other:?}"
                ))),
            })
            .transpose()?;
        let settings = StreamSettings {
            max_records,
            max_bytes,
            subscriber_buffer,
            full_policy,
        };
        let c = self.core();
        run(py, self.born, via, async move {
            c.create_stream(&namespace, &stream, settings).await
        })
    }

    /// Creates a consumer group; an existing group is left unchanged.
    #[pyo3(signature = (via, namespace, stream, group, *, from_latest=false, ack_timeout=None,
        max_deliveries=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_group(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        stream: String,
        group: String,
        from_latest: bool,
        ack_timeout: Option<f64>,
        max_deliveries: Option<u32>,
    ) -> PyResult<PyObject> {
        let settings = GroupSettings {
            from_latest,
            ack_timeout: opt_secs("ack_timeout", ack_timeout)?,
            max_deliveries,
        };
        let c = self.core();
        run(py, self.born, via, async move {
            c.create_group(&namespace, &stream, &group, settings).await
        })
    }

    /// Creates a cache with a byte budget and default TTL (idempotent for equal settings).
    #[pyo3(signature = (via, namespace, cache, *, max_bytes=None, default_ttl=None))]
    fn create_cache(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        cache: String,
        max_bytes: Option<u64>,
        default_ttl: Option<f64>,
    ) -> PyResult<PyObject> {
        let ttl = opt_secs("default_ttl", default_ttl)?;
        let c = self.core();
        run(py, self.born, via, async move {
            c.create_cache(&namespace, &cache, max_bytes, ttl).await
        })
    }

    /// Reads a key: a `CacheValue`, or `None` when missing or expired.
    fn cache_get(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        cache: String,
        key: String,
    ) -> PyResult<PyObject> {
        let c = self.core();
        run(py, self.born, via, async move {
            c.cache_get(&namespace, &cache, &key).await.map(cache::opt)
        })
    }

    /// Writes a key (`ttl` in seconds, `None`: the cache's default); returns the new version.
    #[pyo3(signature = (via, namespace, cache, key, value, ttl=None, if_absent=false, if_version=None))]
    #[allow(clippy::too_many_arguments)]
    fn cache_put(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        cache: String,
        key: String,
        value: &Bound<'_, PyAny>,
        ttl: Option<f64>,
        if_absent: bool,
        if_version: Option<u64>,
    ) -> PyResult<PyObject> {
        let v = publish::payload(value)?;
        let ttl = opt_secs("ttl", ttl)?;
        let cond = match (if_absent, if_version) {
            (false, None) => PutCondition::Always,
            (true, None) => PutCondition::IfAbsent,
            (false, Some(v)) => PutCondition::IfVersion(v),
            (true, Some(_)) => {
                return Err(invalid_argument(
                    "give at most one of if_absent and if_version",
                ))
            }
        };
        let c = self.core();
        run(py, self.born, via, async move {
            c.cache_put_if(&namespace, &cache, &key, v, ttl, cond).await
        })
    }

    /// Deletes a key; returns whether a live entry existed.
    fn cache_delete(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        cache: String,
        key: String,
    ) -> PyResult<PyObject> {
        let c = self.core();
        run(py, self.born, via, async move {
            c.cache_delete(&namespace, &cache, &key).await
        })
    }

    /// Reads several keys in one round trip (results in the order of `keys`).
    fn cache_get_many(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        namespace: String,
        cache: String,
        keys: Vec<String>,
    ) -> PyResult<PyObject> {
        let c = self.core();
        run(py, self.born, via, async move {
            let ks: Vec<&str> = keys.iter().map(String::as_str).collect();
            c.cache_get_many(&namespace, &cache, &ks).await.map(|vs| {
                vs.into_iter()
                    .map(cache::opt)
                    .collect::<Vec<Option<CacheValue>>>()
            })
        })
    }
}

/// A batching publisher bound to one stream.
#[pyclass(module = "felix._native", frozen)]
pub struct Publisher {
    state: PublisherState,
    born: u64,
}

#[pymethods]
impl Publisher {
    /// Publishes one message; completes when its batch is acknowledged.
    fn publish(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let p = publish::payload(payload)?;
        let inner = self.state.inner.clone();
        run(py, self.born, via, async move { inner.publish(p).await })
    }

    /// Queues one message without waiting for its acknowledgement (waits only while the
    /// publisher's queue is full); `flush` reports the outcome.
    fn send(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<PyObject> {
        let p = publish::payload(payload)?;
        let inner = self.state.inner.clone();
        let unflushed = self.state.unflushed.clone();
        run(py, self.born, via, async move {
            let receipt = inner.enqueue(p).await?;
            unflushed.lock().push(receipt);
            Ok(())
        })
    }

    /// Waits until every message given to `send` so far is acknowledged; returns how many.
    /// Raises the first error any of them had.
    fn flush(&self, py: Python<'_>, via: Option<&Bound<'_, Completer>>) -> PyResult<PyObject> {
        let receipts = std::mem::take(&mut *self.state.unflushed.lock());
        run(py, self.born, via, publish::flush(receipts))
    }
}

/// A live subscription.
#[pyclass(module = "felix._native", frozen)]
pub struct Subscription {
    sub: Shared,
    born: u64,
}

#[pymethods]
impl Subscription {
    /// The next buffered event without waiting, or `None`.
    fn try_next(&self) -> PyResult<Option<Event>> {
        check_fork(self.born)?;
        match subscribe::try_next(&self.sub) {
            Some(Some(Ok(e))) => Ok(Some(e)),
            Some(Some(Err(e))) => Err(crate::error::to_py_err(e)),
            Some(None) | None => Ok(None),
        }
    }

    /// Whether the subscription has ended (closed, or after its terminal error).
    #[getter]
    fn ended(&self) -> bool {
        self.sub.lock().is_none()
    }

    /// The next event; `None` once ended. `timeout` (seconds) gives a `TimeoutError`.
    #[pyo3(signature = (via, timeout=None))]
    fn next(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        timeout: Option<f64>,
    ) -> PyResult<PyObject> {
        let timeout = opt_secs("timeout", timeout)?;
        run(
            py,
            self.born,
            via,
            subscribe::next(self.sub.clone(), timeout),
        )
    }

    /// Gaps recorded since the last call (events lost across a reconnect or a broker
    /// restart), in order: those taken right after `next` gave an event precede it.
    fn take_gaps(&self) -> Vec<Gap> {
        match self.sub.lock().as_ref() {
            Some(s) => s.take_gaps().into_iter().map(Gap::from).collect(),
            None => Vec::new(),
        }
    }

    /// Ends the subscription on the broker.
    fn close(&self) {
        let s = self.sub.lock().take();
        if self.born == generation() {
            let _g = handle().enter();
            drop(s);
        } else {
            std::mem::forget(s);
        }
    }
}

/// A member of a consumer group on one stream.
#[pyclass(module = "felix._native", frozen)]
pub struct Consumer {
    inner: felix_client::Consumer,
    born: u64,
}

#[pymethods]
impl Consumer {
    /// Takes up to `max` messages, waiting up to `wait` seconds for the first one.
    #[pyo3(signature = (via, max=100, wait=0.0))]
    fn pull(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        max: u32,
        wait: f64,
    ) -> PyResult<PyObject> {
        let wait = secs("wait", wait)?;
        let c = self.inner.clone();
        run(py, self.born, via, async move {
            c.pull(max, wait)
                .await
                .map(|ms| ms.into_iter().map(QueueMessage::from).collect::<Vec<_>>())
        })
    }

    /// Acknowledges; returns how many were still leased.
    fn ack(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        offsets: Vec<u64>,
    ) -> PyResult<PyObject> {
        let c = self.inner.clone();
        run(py, self.born, via, async move { c.ack(&offsets).await })
    }

    /// Returns messages for redelivery after `delay` seconds.
    #[pyo3(signature = (via, offsets, delay=0.0))]
    fn nack(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        offsets: Vec<u64>,
        delay: f64,
    ) -> PyResult<PyObject> {
        let delay = secs("delay", delay)?;
        let c = self.inner.clone();
        run(
            py,
            self.born,
            via,
            async move { c.nack(&offsets, delay).await },
        )
    }

    /// Extends leases to `by` seconds from now.
    fn extend(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        offsets: Vec<u64>,
        by: f64,
    ) -> PyResult<PyObject> {
        let by = secs("by", by)?;
        let c = self.inner.clone();
        run(
            py,
            self.born,
            via,
            async move { c.extend(&offsets, by).await },
        )
    }

    /// Lists up to `max` dead letters, oldest first.
    #[pyo3(signature = (via, max=100))]
    fn dead_letters(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        max: u32,
    ) -> PyResult<PyObject> {
        let c = self.inner.clone();
        run(py, self.born, via, async move {
            c.dead_letters(max)
                .await
                .map(|ds| ds.into_iter().map(DeadLetter::from).collect::<Vec<_>>())
        })
    }

    /// Moves dead letters back for delivery (all when `offsets` is `None`).
    #[pyo3(signature = (via, offsets=None))]
    fn redrive(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        offsets: Option<Vec<u64>>,
    ) -> PyResult<PyObject> {
        let c = self.inner.clone();
        run(py, self.born, via, async move {
            c.redrive(offsets.as_deref()).await
        })
    }

    /// Drops dead letters (all when `offsets` is `None`).
    #[pyo3(signature = (via, offsets=None))]
    fn discard(
        &self,
        py: Python<'_>,
        via: Option<&Bound<'_, Completer>>,
        offsets: Option<Vec<u64>>,
    ) -> PyResult<PyObject> {
        let c = self.inner.clone();
        run(py, self.born, via, async move {
            c.discard(offsets.as_deref()).await
        })
    }
}
