//! `treadle._treadle._Supervisor`: the binding of the core's process supervisor, used by
//! `treadle.ProcessPoolExecutor` (`python/treadle/futures/process.py`).
//!
//! Thin: it moves bytes and lent buffers across (`lent.rs`) and turns the supervisor's events
//! into typed records (`events.rs`). Pickling happens in Python; `poll` is the pool's supervisor
//! thread's wait, with the interpreter released, and `poll_resolving` the same wait that also
//! resolves the commonest event itself (a value with no segments: unpickled and set as its
//! future's result, with no record made), leaving every other one to Python. A thread waiting
//! on one of the pool's futures resolves such values the same way, reading its worker's answer
//! itself for a short while first (`Reader`, reached through the future's weak link to it).
//! Starting a worker may call back into Python from the supervisor thread (to capture the
//! parent's state for a fork server's worker, or to fork the caller): the callbacks run
//! attached, with no lock of the supervisor held.
//! `wire.rs` exposes the wire formats for the Python side to be checked against.

pub(crate) mod events;
pub(crate) mod lent;
pub(crate) mod wire;

use crate::future::{Answers, Cell, PyFuture};
use crate::runtime::timeout::{deadline_after, seconds, Wait};
use crate::runtime::wait::block_on;
use crate::stats::PyExecutorStats;
use events::PyCancelOutcome;
use lent::{release, LentBuffer};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt};
use pyo3::{PyTraverseError, PyVisit};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use treadle_core::Outcome;
use treadle_os::process::Signal;
use treadle_os::{
    Buffers, CaptureState, Config, Event, ForkCaller, ForkServer, Origin, OutOfBand, ParentState,
    SubmitError, Supervisor, Task,
};

pyo3::import_exception!(concurrent.futures.process, BrokenProcessPool);

/// How long a thread that waits on one of the pool's futures reads its worker's answer itself
/// before it leaves that to the supervisor thread and waits as for any future: about what a
/// round trip of a tiny task takes, less than two wake-ups on a busy machine.
const READ_FOR: Duration = Duration::from_micros(30);

/// The supervisor of one process pool's workers.
#[pyclass(frozen, name = "_Supervisor", module = "treadle")]
pub(crate) struct PySupervisor {
    core: Arc<Supervisor>,
    /// The process that made it: in a forked child the pool is the parent's (its workers, its
    /// poller thread), and its mutex may have been copied held by a thread the child lacks.
    pid: u32,
    /// What the pool's waiters read answers with, once `resolve_with` gave the pool's tasks.
    reader: OnceLock<Arc<Reader>>,
}

/// What a thread waiting on one of the pool's futures reads and resolves answers with
/// ([`Answers`]): the supervisor, the pool's tasks (task id -> a tuple whose first item is the
/// task's future) and the function that unpickles a value, as `poll_resolving` takes them.
struct Reader {
    core: Arc<Supervisor>,
    tasks: Py<PyDict>,
    loads: Py<PyAny>,
}

impl Answers for Reader {
    fn read_for(&self, py: Python<'_>, cell: &Cell, task: u64, until: Option<Instant>) -> bool {
        let end = Instant::now() + READ_FOR;
        let end = until.map_or(end, |until| until.min(end));
        loop {
            let core = &self.core;
            let taken = py.detach(|| loop {
                if cell.is_done() {
                    return Vec::new();
                }
                let taken = core.take_returned(task);
                if !taken.is_empty() || Instant::now() >= end {
                    return taken;
                }
                // A worker that shares this core gets it for its task.
                std::thread::yield_now();
            });
            if taken.is_empty() {
                return cell.is_done();
            }
            let (tasks, loads) = (self.tasks.bind(py), self.loads.bind(py));
            let mut left = Vec::new();
            for event in taken {
                // An error here is the tasks mapping's own: the supervisor thread meets it too.
                if let Ok(Some(event)) = resolve(py, tasks, loads, event, Resolver::Waiter) {
                    left.push(event);
                }
            }
            self.core.give_back(left);
            if cell.is_done() {
                return true;
            }
        }
    }
}

/// Which thread resolves an answer.
#[derive(Clone, Copy, PartialEq)]
enum Resolver {
    /// The pool's supervisor thread (`poll_resolving`).
    Supervisor,
    /// A thread waiting on one of the pool's futures, which may hold locks a done-callback
    /// takes: it resolves only futures with no done-callbacks, which run in the supervisor
    /// thread as ever.
    Waiter,
}

/// Resolves `event` if it is a value returned with no segments, for a task of `tasks` (see
/// `poll_resolving`); returns any other event, and a value that `loads` cannot unpickle (or,
/// for a waiter, whose future has done-callbacks), for the supervisor thread's path. A task no
/// longer in `tasks` (cancelled meanwhile, and forgotten) is skipped.
fn resolve(
    py: Python<'_>,
    tasks: &Bound<'_, PyDict>,
    loads: &Bound<'_, PyAny>,
    event: Event,
    by: Resolver,
) -> PyResult<Option<Event>> {
    let Event::Returned { id, payload, fds } = event else {
        return Ok(Some(event));
    };
    if !fds.is_empty() {
        return Ok(Some(Event::Returned { id, payload, fds }));
    }
    let key = PyInt::new(py, id);
    let Some(task) = tasks.get_item(&key)? else {
        return Ok(None);
    };
    let future = task.get_item(0)?;
    let native = future.cast::<PyFuture>().ok();
    if by == Resolver::Waiter && native.map_or(true, |native| native.get().cell.has_callbacks()) {
        return Ok(Some(Event::Returned { id, payload, fds }));
    }
    let Ok(value) = loads.call1((PyBytes::new(py, &payload),)) else {
        // Python's path reports why, as for any value.
        return Ok(Some(Event::Returned { id, payload, fds }));
    };
    // Gone only if something took it meanwhile: it is resolved all the same.
    let _ = tasks.del_item(&key);
    // A future cancelled meanwhile keeps its state.
    match native {
        Some(native) => drop(PyFuture::set_outcome(
            native,
            Outcome::Returned(value.unbind()),
        )),
        None => drop(future.call_method1("set_result", (value,))),
    }
    Ok(None)
}

#[pymethods]
impl PySupervisor {
    /// Workers come from `fork` if given (it forks this process into a worker serving its
    /// first argument, closing its second in the child, and returns the pid), else from
    /// `fork_server` if given (each taking the parent's state as `parent_state` returns it:
    /// the fork server's payload and a descriptor of the working directory), else they are fresh
    /// interpreters (`program args...`).
    #[new]
    #[pyo3(signature = (
        program, args, workers, max_tasks_per_child, init, prefetch,
        *, fork_server=None, parent_state=None, fork=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        program: String,
        args: Vec<String>,
        workers: usize,
        max_tasks_per_child: Option<u64>,
        init: Vec<u8>,
        prefetch: usize,
        fork_server: Option<PyRef<'_, PyForkServer>>,
        parent_state: Option<Py<PyAny>>,
        fork: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        if workers == 0 {
            return Err(PyValueError::new_err("max_workers must be greater than 0"));
        }
        let origin = match (fork, fork_server, parent_state) {
            (Some(fork), _, _) => Origin::Caller(fork_caller(fork)),
            (None, Some(server), Some(state)) => Origin::ForkServer {
                server: server.core.clone(),
                state: capture_state(state),
            },
            (None, Some(_), None) => {
                return Err(PyValueError::new_err(
                    "a fork server's workers need parent_state",
                ))
            }
            (None, None, _) => Origin::Fresh,
        };
        let config = Config {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            workers,
            max_tasks_per_child,
            init,
            prefetch,
            origin,
        };
        let core = Supervisor::new(config).map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(PySupervisor {
            core: Arc::new(core),
            pid: std::process::id(),
            reader: OnceLock::new(),
        })
    }

    /// The objects it holds, for the garbage collector: the pool's tasks hold futures that hold
    /// the pool, which holds this supervisor.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(reader) = self.reader.get() {
            visit.call(&reader.tasks)?;
            visit.call(&reader.loads)?;
        }
        Ok(())
    }

    /// Lets threads that wait on the pool's futures read their answers themselves (futures
    /// given to `submit` from now on), resolving them as `poll_resolving` does with `tasks` and
    /// `loads`. Once per supervisor.
    fn resolve_with(&self, tasks: Py<PyDict>, loads: Py<PyAny>) -> PyResult<()> {
        let reader = Reader {
            core: self.core.clone(),
            tasks,
            loads,
        };
        self.reader
            .set(Arc::new(reader))
            .map_err(|_| PyRuntimeError::new_err("resolve_with() was called already"))
    }

    /// Queues task `id`. `buffers` are its out-of-band buffers (C-contiguous byte buffers, such
    /// as `PickleBuffer.raw()`): lent, not copied, until a worker is about to take the task.
    /// A thread waiting on `future` (the task's) reads the answer itself, after `resolve_with`.
    #[pyo3(signature = (id, payload, buffers, timeout, future=None))]
    fn submit(
        &self,
        py: Python<'_>,
        id: u64,
        payload: Vec<u8>,
        buffers: Vec<Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
        future: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if let (Some(future), Some(reader)) = (future, self.reader.get()) {
            if let Ok(native) = future.cast::<PyFuture>() {
                let reader: Weak<Reader> = Arc::downgrade(reader);
                native.get().answered_by(reader, id);
            }
        }
        let buffers = if buffers.is_empty() {
            Buffers::None
        } else {
            let lent = buffers
                .iter()
                .map(|b| LentBuffer::new(b).map(|b| Box::new(b) as Box<dyn OutOfBand>))
                .collect::<PyResult<Vec<_>>>()?;
            Buffers::Lent(lent.into())
        };
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
            buffers,
            timeout,
        };
        let submitted = self.core.submit(task);
        release(py);
        submitted.map_err(|e| match e {
            SubmitError::ShutDown => {
                PyRuntimeError::new_err("cannot schedule new futures after shutdown")
            }
            SubmitError::Broken(reason) => BrokenProcessPool::new_err(reason.to_string()),
            SubmitError::Frame(e) => PyValueError::new_err(format!("task does not fit: {e}")),
        })
    }

    /// Cancels task `id`: `CANCELLED` (it had not been sent), `RUNNING` (sent; no interrupt
    /// asked), `INTERRUPTED` (skipped, or its worker killed), `UNKNOWN` (already over).
    fn cancel(&self, py: Python<'_>, id: u64, interrupt: bool) -> PyCancelOutcome {
        let outcome = self.core.cancel(id, interrupt).into();
        release(py);
        outcome
    }

    /// Whether task `id` waits in the queue, not yet handed to a worker.
    fn queued(&self, id: u64) -> bool {
        self.core.is_queued(id)
    }

    /// Stops taking tasks; returns the ids of queued tasks dropped when `cancel_pending`. In a
    /// forked child it does nothing: the pool is the parent's.
    fn shutdown(&self, py: Python<'_>, cancel_pending: bool) -> Vec<u64> {
        if std::process::id() != self.pid {
            return Vec::new();
        }
        let dropped = self.core.shutdown(cancel_pending);
        release(py);
        dropped
    }

    /// Signals every worker and drops the queued tasks (their ids are returned). In a forked
    /// child it does nothing: the pool is the parent's.
    fn terminate(&self, py: Python<'_>, signal: i32) -> PyResult<Vec<u64>> {
        let signal = Signal::from_named_raw(signal)
            .ok_or_else(|| PyValueError::new_err(format!("invalid signal number {signal}")))?;
        if std::process::id() != self.pid {
            return Ok(Vec::new());
        }
        let dropped = self.core.terminate(signal);
        release(py);
        Ok(dropped)
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
        self.wait_events(py, timeout)?
            .into_iter()
            .map(|event| events::to_python(py, event))
            .collect()
    }

    /// As `poll`, resolving here the commonest event: a task of `tasks` (task id -> a tuple
    /// whose first item is the task's `treadle.Future`) returned a value with no segments.
    /// The task is taken out of `tasks`, its value unpickled with `loads` and set as its
    /// future's result (a future cancelled meanwhile stays so). Every other event is returned,
    /// as is a value that `loads` cannot unpickle (its task left in `tasks`).
    #[pyo3(signature = (tasks, loads, timeout=None))]
    fn poll_resolving<'py>(
        &self,
        py: Python<'py>,
        tasks: &Bound<'py, PyDict>,
        loads: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let mut left = Vec::new();
        for event in self.wait_events(py, timeout)? {
            if let Some(event) = resolve(py, tasks, loads, event, Resolver::Supervisor)? {
                left.push(events::to_python(py, event)?);
            }
        }
        Ok(left)
    }
}

impl PySupervisor {
    /// The events of the next `poll`, waited for without the interpreter.
    fn wait_events(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<Event>> {
        let wait = Wait::Until(timeout.and_then(deadline_after));
        let core = &self.core;
        let events = block_on(py, wait, None, |deadline| core.poll(deadline));
        release(py);
        Ok(events?.unwrap_or_default())
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

    /// Forks the child of a `treadle.multiprocessing.Process`, which takes the parent's `state`
    /// (as `fork_server.parent_state()` returns it: its descriptor is handed over) and starts
    /// with `data` (its start-up data) and the descriptors `fds` (duplicated for it: the caller
    /// keeps and closes its own); the child's pid.
    fn spawn_process(
        &self,
        py: Python<'_>,
        state: (Vec<u8>, i32),
        data: &[u8],
        fds: Vec<i32>,
    ) -> PyResult<u32> {
        let state = parent_state(state)?;
        if fds.iter().any(|&fd| fd < 0) {
            return Err(PyValueError::new_err("negative file descriptor"));
        }
        // SAFETY: the caller keeps the descriptors open for the call (documented above); they
        // are only duplicated here, not closed.
        let fds: Vec<BorrowedFd<'_>> = fds
            .into_iter()
            .map(|fd| unsafe { BorrowedFd::borrow_raw(fd) })
            .collect();
        let core = &self.core;
        py.detach(|| core.spawn_process(&state, data, &fds))
            .map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// Reaps the server's child `pid` (call once its pidfd polls readable: the server waits
    /// for it); its wait status.
    fn wait(&self, py: Python<'_>, pid: u32) -> PyResult<i32> {
        let core = &self.core;
        py.detach(|| core.wait(pid))
            .map_err(|e| PyOSError::new_err(e.to_string()))
    }
}

/// Asks for `SIGKILL` when this process's parent (thread) dies, then checks that the parent is
/// still `parent`: False if it died already (the signal would never come).
#[pyfunction]
pub(crate) fn _die_with_parent(parent: i32) -> PyResult<bool> {
    treadle_os::die_with_parent(parent).map_err(|e| PyOSError::new_err(e.to_string()))
}

/// The fork-server origin's capture of the parent's state: `callable()` returns it as
/// `fork_server.parent_state()` does.
fn capture_state(callable: Py<PyAny>) -> CaptureState {
    Arc::new(move || call_python(|py| parent_state(callable.call0(py)?.extract(py)?)))
}

/// The parent's state from what `fork_server.parent_state()` returns: the pickled state and a
/// descriptor of the working directory (handed over).
fn parent_state((payload, cwd): (Vec<u8>, i32)) -> PyResult<ParentState> {
    Ok(ParentState {
        payload,
        fds: owned_fds(vec![cwd])?,
    })
}

/// The caller origin's fork: `callable(worker_end, pool_end)` forks this process and returns the
/// child's pid (the child serves `worker_end` and never returns).
fn fork_caller(callable: Py<PyAny>) -> ForkCaller {
    Arc::new(move |worker_end: &OwnedFd, pool_end: &OwnedFd| {
        call_python(|py| {
            let ends = (worker_end.as_raw_fd(), pool_end.as_raw_fd());
            callable.call1(py, ends)?.extract(py)
        })
    })
}

/// Runs `call` attached to the interpreter (from the poller, which holds no lock of the
/// supervisor then). An `OSError` is the start's failure; any other exception is a bug of the
/// package, reported as unraisable before it fails the start.
fn call_python<T>(call: impl FnOnce(Python<'_>) -> PyResult<T>) -> io::Result<T> {
    Python::try_attach(|py| {
        call(py).map_err(|error| {
            let message = error.to_string();
            if !error.is_instance_of::<PyOSError>(py) {
                error.write_unraisable(py, None);
            }
            io::Error::other(message)
        })
    })
    .unwrap_or_else(|| Err(io::Error::other("the interpreter is shutting down")))
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
