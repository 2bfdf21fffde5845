//! Ack modes and the batching publisher.

use std::sync::Arc;

use bytes::Bytes;
use felix_client::sync::Mutex;
use felix_client::AckMode;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use tokio::sync::oneshot;

use crate::error::invalid_argument;

/// Parses `"per_batch"`, `"per_message"` or `"none"`.
pub fn ack_mode(s: &str) -> PyResult<AckMode> {
    match s {
        "per_batch" => Ok(AckMode::PerBatch),
        "per_message" => Ok(AckMode::PerMessage),
        "none" => Ok(AckMode::None),
        other => Err(invalid_argument(format!(
            "ack must be 'per_batch', 'per_message' or 'none', not {other:?}"
        ))),
    }
}

/// Copies a payload from `bytes`, `bytearray` or `memoryview`; anything else is a `TypeError`.
pub fn payload(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(b) = obj.downcast::<PyByteArray>() {
        return Ok(Bytes::from(b.to_vec()));
    }
    if obj.is_instance_of::<PyString>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "payload must be bytes, not str (encode it, e.g. s.encode())",
        ));
    }
    let mv = obj.py().import("builtins")?.getattr("memoryview")?;
    if obj.is_instance(&mv)? {
        let b = obj.call_method0("tobytes")?;
        return Ok(Bytes::copy_from_slice(b.downcast::<PyBytes>()?.as_bytes()));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "payload must be bytes, bytearray or memoryview, not {}",
        obj.get_type().name()?
    )))
}

/// Payloads of a batch.
pub fn payloads(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Bytes>> {
    if obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyString>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "payloads must be a sequence of bytes, not a single bytes or str",
        ));
    }
    obj.try_iter()?.map(|p| payload(&p?)).collect()
}

type Receipt = oneshot::Receiver<felix_client::Result<()>>;

/// State of a native publisher: the core's batching publisher plus receipts of messages sent
/// with `send` and not yet flushed.
pub struct PublisherState {
    pub inner: felix_client::Publisher,
    pub unflushed: Arc<Mutex<Vec<Receipt>>>,
}

/// Waits for every receipt; the first error wins.
pub async fn flush(receipts: Vec<Receipt>) -> felix_client::Result<usize> {
    let n = receipts.len();
    let mut first = None;
    for r in receipts {
        let outcome = r
            .await
            .unwrap_or(Err(felix_client::Error::Closed("publisher")));
        if let (Err(e), None) = (outcome, &first) {
            first = Some(e);
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(n),
    }
}
