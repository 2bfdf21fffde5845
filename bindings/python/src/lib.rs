//! `felix._native`: the Python binding of the Felix client core.
//!
//! A thin translation of `felix-client`: [`client`] (connection options and every call),
//! [`publish`], [`subscribe`], [`queue`], [`cache`] (value types), [`error`] (the one mapping of
//! core errors to exceptions) and [`runtime`] (the shared tokio runtime, blocking calls and the
//! asyncio completion queue). The public API is the pure-Python package `felix`.

/// mimalloc: the runtime's thread allocates what the event loop's thread frees (and back) on
/// every call, which glibc's allocator serves from its slow path (asyncio c32: +8%, 3 of 3
/// alternating runs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cache;
mod client;
mod error;
mod publish;
mod queue;
mod runtime;
mod subscribe;
mod token;

use pyo3::prelude::*;

/// Marker checked by `felix` to prove the imported module is this project's binding.
const MARKER: &str = "felix-broker-client";

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MARKER", MARKER)?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Publisher>()?;
    m.add_class::<client::Subscription>()?;
    m.add_class::<client::Consumer>()?;
    m.add_class::<runtime::Completer>()?;
    m.add_class::<cache::CacheValue>()?;
    m.add_class::<subscribe::Event>()?;
    m.add_class::<subscribe::Gap>()?;
    m.add_class::<queue::QueueMessage>()?;
    m.add_class::<queue::DeadLetter>()?;
    m.add_function(wrap_pyfunction!(runtime::after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(error::error_codes, m)?)?;
    Ok(())
}
