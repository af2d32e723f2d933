//! `treadle._treadle._Supervisor`: the binding of the core's process supervisor, used by
//! `treadle.ProcessPoolExecutor` (`python/treadle/futures/process.py`).
//!
//! Thin: it moves bytes and descriptors across and turns the supervisor's events into typed
//! records (`events.rs`). Pickling and resolving futures happen in Python; `poll` is the pool's
//! supervisor thread's wait, with the interpreter released. `wire.rs` exposes the wire formats
//! for the Python side to be checked against.

pub(crate) mod events;
pub(crate) mod wire;

use crate::runtime::timeout::{deadline_after, seconds, Wait};
use crate::runtime::wait::block_on;
use crate::stats::PyExecutorStats;
use events::PyCancelOutcome;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use treadle_os::process::Signal;
use treadle_os::{Config, ForkServer, SubmitError, Supervisor, Task};

pyo3::import_exception!(concurrent.futures.process, BrokenProcessPool);

/// The supervisor of one process pool's workers.
#[pyclass(frozen, name = "_Supervisor", module = "treadle")]
pub(crate) struct PySupervisor {
    core: Arc<Supervisor>,
}

#[pymethods]
impl PySupervisor {
    #[new]
    #[pyo3(signature = (program, args, workers, max_tasks_per_child, init, prefetch, fork_server=None))]
    fn new(
        program: String,
        args: Vec<String>,
        workers: usize,
        max_tasks_per_child: Option<u64>,
        init: Vec<u8>,
        prefetch: usize,
        fork_server: Option<PyRef<'_, PyForkServer>>,
    ) -> PyResult<Self> {
        if workers == 0 {
            return Err(PyValueError::new_err("max_workers must be greater than 0"));
        }
        let config = Config {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            workers,
            max_tasks_per_child,
            init,
            prefetch,
            fork_server: fork_server.map(|server| server.core.clone()),
        };
        let core = Supervisor::new(config).map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(PySupervisor {
            core: Arc::new(core),
        })
    }

    /// Queues task `id`. The descriptors in `fds` are handed over: the supervisor closes them.
    #[pyo3(signature = (id, payload, fds, timeout))]
    fn submit(
        &self,
        id: u64,
        payload: Vec<u8>,
        fds: Vec<i32>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let fds = owned_fds(fds)?;
        let timeout = match timeout {
            Some(obj) if !obj.is_none() => {
                let secs = seconds(obj)?;
                if secs < 0.0 {
                    return Err(PyValueError::new_err("timeout must be non-negative"));
                }
                Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
            }
            _ => None,
        };
        let task = Task {
            id,
            payload,
            fds,
            timeout,
        };
        self.core.submit(task).map_err(|e| match e {
            SubmitError::ShutDown => {
                PyRuntimeError::new_err("cannot schedule new futures after shutdown")
            }
            SubmitError::Broken(reason) => BrokenProcessPool::new_err(reason.to_string()),
            SubmitError::Frame(e) => PyValueError::new_err(format!("task does not fit: {e:?}")),
        })
    }

    /// Cancels task `id`: `CANCELLED` (it had not been sent), `RUNNING` (sent; no interrupt
    /// asked), `INTERRUPTED` (skipped, or its worker killed), `UNKNOWN` (already over).
    fn cancel(&self, id: u64, interrupt: bool) -> PyCancelOutcome {
        self.core.cancel(id, interrupt).into()
    }

    /// Whether task `id` waits in the queue, not yet handed to a worker.
    fn queued(&self, id: u64) -> bool {
        self.core.is_queued(id)
    }

    /// Stops taking tasks; returns the ids of queued tasks dropped when `cancel_pending`.
    fn shutdown(&self, cancel_pending: bool) -> Vec<u64> {
        self.core.shutdown(cancel_pending)
    }

    /// Signals every worker and drops the queued tasks (their ids are returned).
    fn terminate(&self, signal: i32) -> PyResult<Vec<u64>> {
        let signal = Signal::from_named_raw(signal)
            .ok_or_else(|| PyValueError::new_err(format!("invalid signal number {signal}")))?;
        Ok(self.core.terminate(signal))
    }

    /// The pool's statistics now (`ExecutorStats`).
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyExecutorStats>> {
        crate::stats::to_python(py, self.core.stats())
    }

    /// The pids of the workers serving now.
    fn pids(&self) -> Vec<u32> {
        self.core.pids()
    }

    /// Waits (without the interpreter) until something happens or `timeout` seconds pass, and
    /// returns the events as records (an empty list on timeout).
    #[pyo3(signature = (timeout=None))]
    fn poll<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let wait = Wait::Until(timeout.and_then(deadline_after));
        let core = &self.core;
        let events = block_on(py, wait, None, |deadline| core.poll(deadline))?;
        events
            .unwrap_or_default()
            .into_iter()
            .map(|event| events::to_python(py, event))
            .collect()
    }
}

/// A connection to a fork server (`treadle/multiprocessing/fork_server.py`), shared by the pools that fork their
/// workers from it.
#[pyclass(frozen, name = "_ForkServer", module = "treadle")]
pub(crate) struct PyForkServer {
    core: Arc<ForkServer>,
}

#[pymethods]
impl PyForkServer {
    /// Takes over `fd`, the parent's end of the server's socket; `pid` is the server's.
    #[new]
    fn new(fd: i32, pid: u32) -> PyResult<Self> {
        let mut fds = owned_fds(vec![fd])?;
        let socket = fds.pop().expect("one descriptor");
        Ok(PyForkServer {
            core: Arc::new(ForkServer::new(socket, pid)),
        })
    }

    /// The server's pid.
    #[getter]
    fn pid(&self) -> u32 {
        self.core.pid()
    }

    /// Whether the server still answers.
    fn alive(&self) -> bool {
        self.core.alive()
    }
}

/// Asks for `SIGKILL` when this process's parent (thread) dies, then checks that the parent is
/// still `parent`: False if it died already (the signal would never come).
#[pyfunction]
pub(crate) fn _die_with_parent(parent: i32) -> PyResult<bool> {
    treadle_os::die_with_parent(parent).map_err(|e| PyOSError::new_err(e.to_string()))
}

fn owned_fds(fds: Vec<i32>) -> PyResult<Vec<OwnedFd>> {
    if fds.iter().any(|&fd| fd < 0) {
        return Err(PyValueError::new_err("negative file descriptor"));
    }
    Ok(fds
        .into_iter()
        // SAFETY: the caller hands these descriptors over (documented on `submit`) and does not
        // close them; each is open and now owned only here.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect())
}
