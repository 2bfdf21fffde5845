//! Cache values as Python objects.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A cached value and the version it was written with (for `cache_put_if(if_version=...)`).
#[pyclass(module = "felix._native", frozen, eq)]
#[derive(PartialEq)]
pub struct CacheValue {
    value: Bytes,
    /// Version assigned when the value was written.
    #[pyo3(get)]
    version: u64,
}

#[pymethods]
impl CacheValue {
    /// The value.
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.value)
    }

    fn __repr__(&self) -> String {
        format!(
            "CacheValue(value=<{} bytes>, version={})",
            self.value.len(),
            self.version
        )
    }
}

impl From<felix_client::CacheValue> for CacheValue {
    fn from(v: felix_client::CacheValue) -> Self {
        Self {
            value: v.value,
            version: v.version,
        }
    }
}

/// Maps a core option to the Python value.
pub fn opt(v: Option<felix_client::CacheValue>) -> Option<CacheValue> {
    v.map(CacheValue::from)
}
