//! Events, gaps and the state behind a native subscription.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use felix_client::sync::Mutex;
use felix_client::Start;
use futures::Stream;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::error::invalid_argument;

/// One delivered event.
#[pyclass(module = "felix._native", frozen)]
pub struct Event {
    stream: Arc<str>,
    /// Offset in its stream (`None` from a broker without offsets).
    #[pyo3(get)]
    offset: Option<u64>,
    payload: Bytes,
}

#[pymethods]
impl Event {
    /// Stream the event was published to (differs per event for wildcard subscriptions).
    #[getter]
    fn stream(&self) -> &str {
        &self.stream
    }

    /// Payload.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.payload)
    }

    fn __repr__(&self) -> String {
        format!(
            "Event(stream={:?}, offset={}, payload=<{} bytes>)",
            &*self.stream,
            self.offset
                .map_or_else(|| "None".to_string(), |o| o.to_string()),
            self.payload.len()
        )
    }
}

impl From<felix_client::Event> for Event {
    fn from(e: felix_client::Event) -> Self {
        Self {
            stream: e.stream,
            offset: e.offset,
            payload: e.payload,
        }
    }
}

/// Offsets `[from_offset, to_offset)` of `stream` a resumed subscription could not get back.
/// With `reset`, the broker recreated the stream's log (an in-memory broker restarted):
/// `from_offset` is in the old log (its undelivered events from there on are lost, how many is
/// unknown), `to_offset` in the new one.
#[pyclass(module = "felix._native", frozen, get_all)]
pub struct Gap {
    /// Stream.
    stream: String,
    /// First missed offset.
    from_offset: u64,
    /// First offset delivered after the gap.
    to_offset: u64,
    /// The stream's log was recreated (epoch change).
    reset: bool,
}

#[pymethods]
impl Gap {
    fn __repr__(&self) -> String {
        format!(
            "Gap(stream={:?}, from_offset={}, to_offset={}, reset={})",
            self.stream,
            self.from_offset,
            self.to_offset,
            if self.reset { "True" } else { "False" }
        )
    }
}

impl From<felix_client::Gap> for Gap {
    fn from(g: felix_client::Gap) -> Self {
        Self {
            stream: g.stream,
            from_offset: g.from,
            to_offset: g.to,
            reset: g.reset,
        }
    }
}

/// Parses a start position: `"latest"`, `"earliest"` or an offset.
pub fn start(obj: &Bound<'_, PyAny>) -> PyResult<Start> {
    if let Ok(s) = obj.downcast::<PyString>() {
        return match &*s.to_cow()? {
            "latest" => Ok(Start::Latest),
            "earliest" => Ok(Start::Earliest),
            other => Err(invalid_argument(format!(
                "start must be 'latest', 'earliest' or an offset, not {other:?}"
            ))),
        };
    }
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "start must be 'latest', 'earliest' or an int offset",
        ));
    }
    match obj.extract::<i128>() {
        Ok(n) if (0..=u64::MAX as i128).contains(&n) => Ok(Start::Offset(n as u64)),
        Ok(n) => Err(invalid_argument(format!("start offset {n} out of range"))),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(
            "start must be 'latest', 'earliest' or an int offset",
        )),
    }
}

/// The core subscription, shared between Python calls and the runtime (only ever locked for
/// one poll).
pub type Shared = Arc<Mutex<Option<felix_client::Subscription>>>;

/// Polls the subscription once: `Ready(None)` once it has ended or was closed.
fn poll(sub: &Shared, cx: &mut Context<'_>) -> Poll<Option<felix_client::Result<Event>>> {
    let mut g = sub.lock();
    match g.as_mut() {
        None => Poll::Ready(None),
        Some(s) => Pin::new(s)
            .poll_next(cx)
            .map(|o| o.map(|r| r.map(Event::from))),
    }
}

/// The next buffered item without waiting: `Ok(None)` when nothing is buffered.
pub fn try_next(sub: &Shared) -> Option<Option<felix_client::Result<Event>>> {
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match poll(sub, &mut cx) {
        Poll::Ready(item) => Some(item),
        Poll::Pending => None,
    }
}

/// Waits for the next event (`None` once ended); `timeout` gives a `timeout` error.
pub async fn next(sub: Shared, timeout: Option<Duration>) -> felix_client::Result<Option<Event>> {
    let wait = poll_fn(|cx| poll(&sub, cx));
    let item = match timeout {
        Some(d) => tokio::time::timeout(d, wait)
            .await
            .map_err(|_| felix_client::Error::Timeout(d))?,
        None => wait.await,
    };
    item.transpose()
}
