//! Queue deliveries and dead letters as Python objects.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A leased delivery: ack it with `consumer.ack([msg.offset])`.
#[pyclass(module = "felix._native", frozen)]
pub struct QueueMessage {
    /// Offset in the stream (the id to ack, nack or extend).
    #[pyo3(get)]
    offset: u64,
    payload: Bytes,
    /// Delivery attempt, 1 on first delivery.
    #[pyo3(get)]
    attempt: u32,
    /// Seconds left on the lease when it was handed out.
    #[pyo3(get)]
    lease: f64,
}

#[pymethods]
impl QueueMessage {
    /// Payload.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.payload)
    }

    fn __repr__(&self) -> String {
        format!(
            "QueueMessage(offset={}, attempt={}, payload=<{} bytes>, lease={:.3})",
            self.offset,
            self.attempt,
            self.payload.len(),
            self.lease
        )
    }
}

impl From<felix_client::QueueMessage> for QueueMessage {
    fn from(m: felix_client::QueueMessage) -> Self {
        Self {
            offset: m.offset,
            payload: m.payload,
            attempt: m.attempt,
            lease: m.lease.as_secs_f64(),
        }
    }
}

/// A dead-lettered message.
#[pyclass(module = "felix._native", frozen)]
pub struct DeadLetter {
    /// Offset in the stream.
    #[pyo3(get)]
    offset: u64,
    payload: Bytes,
    /// Deliveries attempted.
    #[pyo3(get)]
    attempts: u32,
    /// `"max_deliveries"` or `"rejected"`.
    #[pyo3(get)]
    reason: String,
}

#[pymethods]
impl DeadLetter {
    /// Payload.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.payload)
    }

    fn __repr__(&self) -> String {
        format!(
            "DeadLetter(offset={}, attempts={}, reason={:?}, payload=<{} bytes>)",
            self.offset,
            self.attempts,
            self.reason,
            self.payload.len()
        )
    }
}

impl From<felix_client::DeadLetter> for DeadLetter {
    fn from(d: felix_client::DeadLetter) -> Self {
        Self {
            offset: d.offset,
            payload: d.payload,
            attempts: d.attempts,
            reason: d.reason,
        }
    }
}
