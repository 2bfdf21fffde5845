//! The one tokio runtime every client of the process shares, and the two ways Python waits on
//! it.
//!
//! The core runs on a current-thread runtime ([`felix_client::Driver`]): driven by the thread
//! that waits in a sync call when nobody else drives it, and by one background thread
//! (`felix-rt`) otherwise, the same shape as the Rust bench.
//!
//! - Sync calls ([`block`]): the caller releases the GIL and runs the operation itself, driving
//!   the runtime on its own thread, so the request is written and the reply read with no
//!   hand-off between threads (waking every 100 ms to let Python handle signals; a
//!   `KeyboardInterrupt` drops, and so cancels, the operation).
//! - Asyncio calls ([`Completer`]): the operation is spawned with a token; on completion the
//!   runtime thread pushes `(token, outcome)` onto a queue, never touching the GIL, and writes
//!   one byte to a socket pair only if the queue was idle. The event loop watches the other
//!   end with `loop.add_reader`; its callback ([`Completer::drain`]) takes the whole queue and
//!   resolves every asyncio future in one go, so wake-ups batch under load.
//!
//! Fork: a child process has no runtime thread. `after_fork_in_child` (registered with
//! `os.register_at_fork`) bumps a generation counter; clients made before the fork fail with
//! `ForkedError`, and the child gets a fresh runtime for the clients it makes itself.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use felix_client::sync::Mutex;
use felix_client::{Driver, Flavor, Wake};
use futures::future::AbortHandle;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use tokio::runtime::Handle;

use crate::error::{forked_error, to_py_err};

/// Result of an operation, turned into a Python object on the thread that holds the GIL.
pub type Outcome =
    Result<Box<dyn FnOnce(Python<'_>) -> PyResult<PyObject> + Send>, felix_client::Error>;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static RUNTIME: Mutex<Option<(u64, Arc<Driver>)>> = Mutex::new(None);

/// Current fork generation (bumped in every forked child).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Called in a child process right after `os.fork()`.
#[pyfunction]
pub fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    // The parent's runtime thread does not exist here; forget its handle without dropping
    // anything that would wait for it.
    if let Some(old) = RUNTIME.lock().take() {
        std::mem::forget(old);
    }
}

/// Fails with `ForkedError` if `born` is not the current fork generation.
pub fn check_fork(born: u64) -> PyResult<()> {
    if born == generation() {
        Ok(())
    } else {
        Err(forked_error())
    }
}

/// The runtime of this process (started on first use; a fresh one in a forked child).
pub fn driver() -> Arc<Driver> {
    let mut g = RUNTIME.lock();
    let gen = generation();
    if let Some((g0, d)) = g.as_ref() {
        if *g0 == gen {
            return d.clone();
        }
    }
    let d = Driver::start("felix-rt", Flavor::CurrentThread)
        .expect("felix: cannot start the tokio runtime");
    *g = Some((gen, d.clone()));
    d
}

/// The runtime's handle (to enter its context).
pub fn handle() -> Handle {
    driver().handle().clone()
}

/// Runs `fut` with the GIL released on the calling thread, which drives the runtime while it
/// waits (see the module docs). Wakes every 100 ms to check for signals, so Ctrl-C drops
/// (cancels) the operation.
pub fn block<T, F>(py: Python<'_>, born: u64, fut: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = felix_client::Result<T>> + Send + 'static,
{
    check_fork(born)?;
    let mut fut = Box::pin(fut);
    let d = driver();
    loop {
        let got = py.allow_threads(|| {
            // The timer is created inside the async block, i.e. inside the runtime context.
            d.block_on(async {
                tokio::time::timeout(Duration::from_millis(100), fut.as_mut()).await
            })
        });
        match got {
            Ok(r) => return r.map_err(to_py_err),
            Err(_) => py.check_signals()?,
        }
    }
}

/// Completions shared between the runtime thread (producer) and the event loop (consumer).
struct Queue {
    done: Mutex<Vec<(u64, Outcome)>>,
    /// Calls submitted and not yet pushed.
    in_flight: AtomicUsize,
    signalled: AtomicBool,
    tx: UnixStream,
}

impl Queue {
    /// Queues an outcome and says when the caller must [`Queue::signal`]: at once when no other
    /// call is in flight, else after this runtime turn, so the calls completed by the same
    /// reply packet ride on one wake-up of the event loop.
    fn push(&self, token: u64, outcome: Outcome) -> Wake {
        self.done.lock().push((token, outcome));
        let others = self.in_flight.fetch_sub(1, Ordering::AcqRel) > 1;
        Wake::after_push(!self.signalled.swap(true, Ordering::AcqRel), others)
    }

    /// Wakes the event loop: one byte per idle-to-busy transition (a full socket buffer means
    /// a wake-up is already pending, so the error is harmless).
    fn signal(&self) {
        let _ = (&self.tx).write(&[1]);
    }
}

/// Resolves asyncio futures of one event loop from completions made on the runtime thread.
#[pyclass(module = "felix._native", frozen)]
pub struct Completer {
    queue: Arc<Queue>,
    rx: UnixStream,
    event_loop: PyObject,
    next_token: AtomicU64,
    closed: AtomicBool,
    pending: Mutex<HashMap<u64, (PyObject, AbortHandle)>>,
}

#[pymethods]
impl Completer {
    #[new]
    fn new(event_loop: PyObject) -> PyResult<Self> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Self {
            queue: Arc::new(Queue {
                done: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                signalled: AtomicBool::new(false),
                tx,
            }),
            rx,
            event_loop,
            next_token: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// File descriptor to register with `loop.add_reader(fd, completer.drain)`.
    fn fileno(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.rx.as_raw_fd()
    }

    /// Operations in flight.
    fn pending_count(&self) -> usize {
        self.pending.lock().len()
    }

    /// An operation that does nothing, resolved through the runtime like every call: the
    /// binding's own cost per awaited call (the hand-off to the runtime and back). For the
    /// bench.
    fn round_trip(&self, py: Python<'_>) -> PyResult<(PyObject, u64)> {
        self.submit(py, generation(), async {
            Ok::<(), felix_client::Error>(())
        })
    }

    /// Reader callback: resolves the future of every completed operation.
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        let mut buf = [0u8; 256];
        while let Ok(n) = (&self.rx).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
        self.queue.signalled.store(false, Ordering::Release);
        let done = std::mem::take(&mut *self.queue.done.lock());
        if done.is_empty() {
            return Ok(());
        }
        let futs: Vec<(Option<PyObject>, Outcome)> = {
            let mut p = self.pending.lock();
            done.into_iter()
                .map(|(t, o)| (p.remove(&t).map(|(f, _)| f), o))
                .collect()
        };
        resolve(py, futs)
    }

    /// Cancels the operation behind `token` (the task awaiting it was cancelled).
    fn abort(&self, token: u64) {
        if let Some((_, h)) = self.pending.lock().remove(&token) {
            h.abort();
        }
    }

    /// Cancels every operation in flight (the client is closing); their futures and every
    /// later call fail with `ClosedError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.closed.store(true, Ordering::Release);
        let all: Vec<_> = self.pending.lock().drain().collect();
        for (_, (fut, h)) in all {
            h.abort();
            let fut = fut.bind(py);
            if !fut.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
                let e = crate::error::closed_error("the client was closed");
                fut.call_method1(pyo3::intern!(py, "set_exception"), (e.value(py),))?;
            }
        }
        Ok(())
    }
}

/// Settles each asyncio future with its outcome (skipping futures already cancelled).
fn resolve(py: Python<'_>, futs: Vec<(Option<PyObject>, Outcome)>) -> PyResult<()> {
    for (fut, outcome) in futs {
        let Some(fut) = fut else { continue };
        let fut = fut.bind(py);
        if fut.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
            continue;
        }
        match outcome.map_err(to_py_err).and_then(|f| f(py)) {
            Ok(v) => fut.call_method1(pyo3::intern!(py, "set_result"), (v,))?,
            Err(e) => fut.call_method1(pyo3::intern!(py, "set_exception"), (e.value(py),))?,
        };
    }
    Ok(())
}

impl Completer {
    /// Spawns `fut` and returns `(asyncio future, token)`; the future resolves on the loop.
    pub fn submit<T, F>(&self, py: Python<'_>, born: u64, fut: F) -> PyResult<(PyObject, u64)>
    where
        T: for<'py> IntoPyObject<'py> + Send + 'static,
        F: Future<Output = felix_client::Result<T>> + Send + 'static,
    {
        check_fork(born)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(crate::error::closed_error("the client was closed"));
        }
        let afut = self
            .event_loop
            .call_method0(py, pyo3::intern!(py, "create_future"))?;
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let queue = self.queue.clone();
        // The pending entry must exist before the completion can be drained: the lock is
        // held across the spawn (drain takes it too, on this same thread, later).
        let mut p = self.pending.lock();
        let q = queue.clone();
        let (task, abort) = futures::future::abortable(async move {
            let outcome: Outcome = fut.await.map(|v| {
                Box::new(move |py: Python<'_>| v.into_py_any(py))
                    as Box<dyn FnOnce(Python<'_>) -> PyResult<PyObject> + Send>
            });
            q.push(token, outcome)
        });
        queue.in_flight.fetch_add(1, Ordering::AcqRel);
        driver().spawn(async move {
            // Outside the abortable part: a queue marked signalled must get its byte.
            match task.await {
                Ok(wake) => wake.signal(|| queue.signal()).await,
                // Aborted before it pushed.
                Err(_) => {
                    queue.in_flight.fetch_sub(1, Ordering::AcqRel);
                }
            }
        });
        p.insert(token, (afut.clone_ref(py), abort));
        Ok((afut, token))
    }
}
