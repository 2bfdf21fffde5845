//! The one place where core errors become Python exceptions.
//!
//! Every [`felix_client::Error`] carries a stable [`felix_client::ErrorCode`]; the exception
//! class is picked by that code from `felix.error` (the hierarchy is defined in Python so it
//! can also derive from built-ins such as `TimeoutError` and `ConnectionError`). Each
//! exception carries `code` (snake_case string), `code_number`, `retryable` and `message`.

use felix_client::ErrorCode;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyDict;

static FROM_CODE: GILOnceCell<PyObject> = GILOnceCell::new();

fn make(py: Python<'_>, code: ErrorCode, message: String) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let f = FROM_CODE.get_or_try_init(py, || -> PyResult<PyObject> {
            Ok(py.import("felix.error")?.getattr("_from_code")?.unbind())
        })?;
        let exc = f.call1(
            py,
            (code.as_str(), code.as_u16(), code.retryable(), message),
        )?;
        Ok(PyErr::from_value(exc.into_bound(py)))
    };
    build().unwrap_or_else(|e| e)
}

/// Converts a core error into the matching `felix.FelixError` subclass.
pub fn to_py_err(e: felix_client::Error) -> PyErr {
    Python::with_gil(|py| make(py, e.code(), e.message()))
}

/// An `InvalidArgumentError` raised by the binding before anything reaches the core.
pub fn invalid_argument(message: impl Into<String>) -> PyErr {
    Python::with_gil(|py| make(py, ErrorCode::InvalidArgument, message.into()))
}

/// A `ClosedError`.
pub fn closed_error(message: impl Into<String>) -> PyErr {
    Python::with_gil(|py| make(py, ErrorCode::Closed, message.into()))
}

/// The error of a client used in a process forked after it was made.
pub fn forked_error() -> PyErr {
    Python::with_gil(|py| {
        let build = || -> PyResult<PyErr> {
            let cls = py.import("felix.error")?.getattr("ForkedError")?;
            let kw = PyDict::new(py);
            let exc = cls.call(
                ("this client was created before os.fork(); a forked child must create its own client",),
                Some(&kw),
            )?;
            Ok(PyErr::from_value(exc))
        };
        build().unwrap_or_else(|e| PyRuntimeError::new_err(e.to_string()))
    })
}

/// `(code, number, retryable)` of every stable code, for `felix.error` to check its table
/// against the core's.
#[pyfunction]
pub fn error_codes() -> Vec<(&'static str, u16, bool)> {
    ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str(), c.as_u16(), c.retryable()))
        .collect()
}
