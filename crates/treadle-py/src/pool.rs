//! `treadle.ThreadPoolExecutor`'s native half: submission, the worker loop, the timer loop.
//!
//! The Python class `treadle.ThreadPoolExecutor` derives from this class and from
//! `concurrent.futures.ThreadPoolExecutor`; it makes the worker threads (real `threading`
//! threads, named as the standard library names them) whose target is [`_run_worker`]. A worker
//! takes futures from the core's `Pool` while any are queued without letting go of the
//! interpreter, and parks in the core, detached, when there are none: a burst of submissions
//! costs one wake-up, not one per task.
//!
//! A task with a time limit is registered with the pool's deadlines when it starts; a timer
//! thread ([`_run_timer`], started with the first such task) interrupts it at its deadline and
//! fails its future with `TaskTimeoutError` at once.

use crate::cancel::TaskTimeoutError;
use crate::future::{copy_context, new_future, notify, run_job, Cell, Job, PyFuture, PyTask};
use crate::timeout::Wait;
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use treadle_core::pool::{WAITING_FOR_DEADLINE, WAITING_FOR_WORK};
use treadle_core::{Next, Outcome, Pool, Start, SubmitError};

pyo3::import_exception!(concurrent.futures.thread, BrokenThreadPool);
pyo3::import_exception!(queue, Full);

const BROKEN: &str = "A thread initializer failed, the thread pool is not usable anymore";

/// Set when the interpreter begins to exit: no new submissions, as in the standard library.
static INTERPRETER_EXITING: AtomicBool = AtomicBool::new(false);
/// Set once a `treadle.local` exists: workers then clear them between tasks.
static LOCALS_IN_USE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The pool whose worker this thread is.
    static WORKER_OF: RefCell<Option<Arc<PoolShared>>> = const { RefCell::new(None) };
}

/// What `max_pending` does when the queue is full.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnFull {
    Block,
    Raise,
    CallerRuns,
}

/// A pool's state shared by the executor object, its workers and its timer.
pub(crate) struct PoolShared {
    core: Pool<PyTask>,
    on_full: OnFull,
    task_timeout: Option<Duration>,
    timer_started: AtomicBool,
    /// Running futures with a time limit: the future object and the limit in seconds.
    timed: Mutex<HashMap<usize, (Py<PyAny>, f64)>>,
    /// Futures that raised, to report at shut-down those nobody retrieved.
    failures: Mutex<Vec<(Arc<Cell>, Py<PyAny>)>>,
}

fn key(cell: &Arc<Cell>) -> usize {
    Arc::as_ptr(cell) as usize
}

impl PoolShared {
    pub(crate) fn start_deadline(
        &self,
        py: Python<'_>,
        cell: &Arc<Cell>,
        future: &Py<PyAny>,
        limit: Duration,
    ) {
        let entry = (future.clone_ref(py), limit.as_secs_f64());
        self.timed.lock().insert(key(cell), entry);
        self.core.add_deadline(Instant::now() + limit, cell);
    }

    pub(crate) fn end_deadline(&self, cell: &Arc<Cell>) {
        let entry = self.timed.lock().remove(&key(cell));
        drop(entry);
    }

    pub(crate) fn record_failure(
        &self,
        py: Python<'_>,
        cell: &Arc<Cell>,
        future: &Bound<'_, PyAny>,
    ) {
        let name = match future.cast::<PyFuture>() {
            Ok(future) => future
                .getattr("name")
                .map_or_else(|_| py.None(), Bound::unbind),
            Err(_) => py.None(),
        };
        let mut failures = self.failures.lock();
        if failures.len() >= 1024 {
            // Keep the list to the failures that may still be lost.
            let kept: Vec<_> = failures.drain(..).collect();
            let (lost, seen): (Vec<_>, Vec<_>) = kept.into_iter().partition(|(c, _)| c.is_lost());
            *failures = lost;
            drop(failures);
            drop(seen);
            failures = self.failures.lock();
        }
        failures.push((Arc::clone(cell), name));
    }

    fn submit_error(&self, error: SubmitError) -> PyErr {
        if self.core.is_broken() {
            return BrokenThreadPool::new_err(BROKEN);
        }
        match error {
            SubmitError::ShutDown => {
                PyRuntimeError::new_err("cannot schedule new futures after shutdown")
            }
            SubmitError::Full => Full::new_err("the pool's max_pending tasks are queued"),
        }
    }
}

/// Whether the calling thread is one of `pool`'s workers.
pub(crate) fn is_worker_of(pool: &Arc<PoolShared>) -> bool {
    WORKER_OF.with(|worker| {
        worker
            .borrow()
            .as_ref()
            .is_some_and(|own| Arc::ptr_eq(own, pool))
    })
}

/// On a pool worker, about to start a task (not nested in another): clear `treadle.local`s.
pub(crate) fn clear_locals(py: Python<'_>) {
    if LOCALS_IN_USE.load(Ordering::Relaxed)
        && crate::cancel::current().is_none()
        && WORKER_OF.with(|worker| worker.borrow().is_some())
    {
        crate::future::call_hook(py, "clear_locals", ());
    }
}

/// `_locals_in_use()`: a `treadle.local` was made.
#[pyfunction]
pub(crate) fn _locals_in_use() {
    LOCALS_IN_USE.store(true, Ordering::Relaxed);
}

/// `_interpreter_exiting()`: refuse new submissions from now on.
#[pyfunction]
pub(crate) fn _interpreter_exiting() {
    INTERPRETER_EXITING.store(true, Ordering::Relaxed);
}

/// A worker's or the timer's handle on the pool (it does not keep the executor alive).
#[pyclass(frozen, name = "_PoolHandle", module = "treadle")]
pub(crate) struct PyPoolHandle(Arc<PoolShared>);

/// The native half of `treadle.ThreadPoolExecutor`.
#[pyclass(subclass, frozen, name = "_ThreadPool", module = "treadle")]
pub(crate) struct PyThreadPool {
    shared: OnceLock<Arc<PoolShared>>,
}

impl Drop for PyThreadPool {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.get() {
            // The executor is gone: its workers finish the queue and end.
            drop(shared.core.shutdown(false));
            shared.core.close_timers();
        }
    }
}

impl PyThreadPool {
    fn shared(&self) -> PyResult<&Arc<PoolShared>> {
        self.shared
            .get()
            .ok_or_else(|| PyRuntimeError::new_err("ThreadPoolExecutor.__init__ was not called"))
    }

    fn enqueue<'py>(
        slf: &Bound<'py, Self>,
        func: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
        timeout: Option<Duration>,
        name: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyFuture>> {
        let py = slf.py();
        let shared = slf.get().shared()?;
        if INTERPRETER_EXITING.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err(
                "cannot schedule new futures after interpreter shutdown",
            ));
        }
        let future = new_future(py, shared, name)?;
        let cell = &future.get().cell;
        let job = Job {
            future: future.clone().into_any().unbind(),
            func: func.unbind(),
            args: args.unbind(),
            kwargs: kwargs.map(Bound::unbind),
            context: Some(copy_context(py)?),
            timeout,
        };
        if cell.attach_job(job).is_err() {
            return Err(PyRuntimeError::new_err("a new future was not pending"));
        }
        let queued = match shared.core.submit(cell, Some(Instant::now())) {
            Err(SubmitError::Full) if shared.on_full == OnFull::CallerRuns => {
                if let Start::Started(Some(job)) = cell.start() {
                    run_job(py, Some(shared), cell, job);
                }
                return Ok(future);
            }
            Err(SubmitError::Full) if shared.on_full == OnFull::Block => {
                let core = &shared.core;
                crate::wait::block_on(py, Wait::Until(None), None, |deadline| {
                    match core.submit(cell, deadline) {
                        Err(SubmitError::Full) => None,
                        other => Some(other),
                    }
                })
                .map(|outcome| outcome.unwrap_or(Err(SubmitError::Full)))
            }
            other => Ok(other),
        };
        let spawn = match queued {
            Ok(Ok(spawn)) => spawn,
            Ok(Err(error)) => {
                drop(cell.cancel());
                return Err(shared.submit_error(error));
            }
            Err(error) => {
                drop(cell.cancel());
                return Err(error);
            }
        };
        if spawn {
            if let Err(error) = slf.call_method0("_adjust_thread_count") {
                shared.core.worker_exited();
                return Err(error);
            }
        }
        if timeout.is_some() && !shared.timer_started.swap(true, Ordering::AcqRel) {
            slf.call_method0("_start_timer")?;
        }
        Ok(future)
    }
}

fn positive_seconds(value: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(seconds) if seconds > 0.0 && seconds.is_finite() => {
            Ok(Some(Duration::from_secs_f64(seconds)))
        }
        Some(_) => Err(PyValueError::new_err(format!(
            "{what} must be a positive number of seconds or None"
        ))),
    }
}

#[pymethods]
impl PyThreadPool {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        PyThreadPool {
            shared: OnceLock::new(),
        }
    }

    /// Called once by `__init__` with its checked arguments.
    fn _setup(
        &self,
        max_workers: usize,
        max_pending: usize,
        on_full: &str,
        task_timeout: Option<f64>,
    ) -> PyResult<()> {
        let on_full = match on_full {
            "block" => OnFull::Block,
            "raise" => OnFull::Raise,
            "caller_runs" => OnFull::CallerRuns,
            other => {
                return Err(PyValueError::new_err(format!(
                    "on_full must be 'block', 'raise' or 'caller_runs', not {other:?}"
                )))
            }
        };
        let shared = PoolShared {
            core: Pool::new(max_workers, max_pending),
            on_full,
            task_timeout: positive_seconds(task_timeout, "task_timeout")?,
            timer_started: AtomicBool::new(false),
            timed: Mutex::new(HashMap::new()),
            failures: Mutex::new(Vec::new()),
        };
        self.shared
            .set(Arc::new(shared))
            .map_err(|_| PyRuntimeError::new_err("the executor is already set up"))
    }

    /// Submit `fn(*args, **kwargs)`; returns a `treadle.Future`.
    #[pyo3(signature = (r#fn, /, *args, **kwargs))]
    fn submit<'py>(
        slf: &Bound<'py, Self>,
        r#fn: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyFuture>> {
        let timeout = slf.get().shared()?.task_timeout;
        Self::enqueue(slf, r#fn, args, kwargs, timeout, None)
    }

    /// Submit `fn(*args, **kwargs)` with a time limit (`timeout` seconds once it starts; default
    /// the executor's `task_timeout`) and a name for reports.
    #[pyo3(signature = (r#fn, args=None, kwargs=None, *, timeout=None, name=None))]
    fn schedule<'py>(
        slf: &Bound<'py, Self>,
        r#fn: Bound<'py, PyAny>,
        args: Option<Bound<'py, PyAny>>,
        kwargs: Option<Bound<'py, PyDict>>,
        timeout: Option<f64>,
        name: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyFuture>> {
        let py = slf.py();
        let args = match args {
            None => PyTuple::empty(py),
            Some(args) => PyTuple::new(py, args.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
        };
        let timeout = match positive_seconds(timeout, "timeout")? {
            Some(limit) => Some(limit),
            None => slf.get().shared()?.task_timeout,
        };
        Self::enqueue(slf, r#fn, args, kwargs, timeout, name)
    }

    /// Stops submissions; with `cancel_futures`, cancels what is still queued.
    fn _shutdown_pool(&self, py: Python<'_>, cancel_futures: bool) -> PyResult<()> {
        let shared = self.shared()?;
        let drained = shared.core.shutdown(cancel_futures);
        shared.core.close_timers();
        for cell in drained {
            if let Ok(Some(mut done)) = cell.cancel() {
                if let Some(job) = done.job.take() {
                    notify(py, job.future.bind(py), done);
                }
            }
        }
        Ok(())
    }

    /// The exceptions of failed futures that nobody retrieved, as `(exception, name)` pairs;
    /// each is handed out once.
    fn _take_lost(&self, py: Python<'_>) -> PyResult<Vec<(Py<PyAny>, Py<PyAny>)>> {
        let failures: Vec<_> = self.shared()?.failures.lock().drain(..).collect();
        let mut lost = Vec::new();
        for (cell, name) in failures {
            if cell.take_unreported_failure() {
                cell.read(false, |_, outcome| {
                    if let Some(Outcome::Raised(error)) = outcome {
                        lost.push((error.clone_ref(py), name.clone_ref(py)));
                    }
                });
            }
        }
        Ok(lost)
    }

    /// A handle for a worker or timer thread.
    fn _handle(&self) -> PyResult<PyPoolHandle> {
        Ok(PyPoolHandle(Arc::clone(self.shared()?)))
    }

    /// A worker thread counted by a submission could not be started.
    fn _worker_not_started(&self) -> PyResult<()> {
        self.shared()?.core.worker_exited();
        Ok(())
    }

    /// How many futures are queued, not yet started.
    fn _pending(&self) -> PyResult<usize> {
        Ok(self.shared()?.core.pending())
    }

    /// As the standard library's `ThreadPoolExecutor._broken`: False, or why the pool broke
    /// (a thread initializer failed).
    #[getter]
    fn _broken<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(if self.shared()?.core.is_broken() {
            pyo3::types::PyString::new(py, BROKEN).into_any()
        } else {
            pyo3::types::PyBool::new(py, false).to_owned().into_any()
        })
    }
}

struct WorkerGuard<'a>(&'a PoolShared);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        self.0.core.worker_exited();
        WORKER_OF.with(|worker| worker.borrow_mut().take());
    }
}

/// A worker thread's body: run the initializer, then queued futures until the pool is shut
/// down and drained.
#[pyfunction]
pub(crate) fn _run_worker(
    py: Python<'_>,
    handle: &Bound<'_, PyPoolHandle>,
    initializer: &Bound<'_, PyAny>,
    initargs: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    let shared = Arc::clone(&handle.get().0);
    crate::deadlock::register_current_thread();
    let _guard = WorkerGuard(&shared);
    if !initializer.is_none() {
        if let Err(error) = initializer.call1(initargs) {
            crate::future::call_hook(py, "initializer_failed", (error.into_value(py),));
            for cell in shared.core.break_pool() {
                let error = BrokenThreadPool::new_err(BROKEN).into_value(py).into_any();
                if let Some(mut done) = cell.interrupt(Some(Outcome::Raised(error))) {
                    if let Some(job) = done.job.take() {
                        notify(py, job.future.bind(py), done);
                    }
                }
            }
            return Ok(());
        }
    }
    WORKER_OF.with(|worker| *worker.borrow_mut() = Some(Arc::clone(&shared)));
    shared.core.worker_idle();
    loop {
        let next = match shared.core.next(Some(Instant::now())) {
            Next::Idle => {
                // Published while idle, so that a process stalled with idle workers around is
                // still recognised as stalled (they can act only once work arrives).
                let _idle = parked_in_graph(py, handle, &shared, WAITING_FOR_WORK);
                py.detach(|| shared.core.next(None))
            }
            next => next,
        };
        match next {
            Next::Run(cell) => {
                if let Start::Started(Some(job)) = cell.start() {
                    run_job(py, Some(&shared), &cell, job);
                }
                shared.core.worker_idle();
            }
            Next::Idle => {}
            Next::Exit => return Ok(()),
        }
    }
}

/// The timer thread's body: interrupt tasks at their deadline until the pool is shut down and
/// no deadline is left.
#[pyfunction]
pub(crate) fn _run_timer(py: Python<'_>, handle: &Bound<'_, PyPoolHandle>) {
    let shared = Arc::clone(&handle.get().0);
    loop {
        let due = {
            let _waiting = parked_in_graph(py, handle, &shared, WAITING_FOR_DEADLINE);
            py.detach(|| shared.core.expired(None))
        };
        let Some(due) = due else {
            break;
        };
        for cell in due {
            let entry = shared
                .timed
                .lock()
                .get(&key(&cell))
                .map(|(future, limit)| (future.clone_ref(py), *limit));
            let Some((future, limit)) = entry else {
                continue;
            };
            let error =
                TaskTimeoutError::new_err(format!("the task ran past its time limit of {limit} s"));
            let error = error.into_value(py).into_any();
            if let Some(done) = cell.interrupt(Some(Outcome::Raised(error))) {
                shared.record_failure(py, &cell, future.bind(py));
                notify(py, future.bind(py), done);
            }
        }
    }
}

/// Publishes one of the pool's own threads as parked (see `WaitTarget for Pool`), while the
/// returned guard lives. `None` when deadlock detection is off.
fn parked_in_graph<'a>(
    py: Python<'_>,
    handle: &'a Bound<'_, PyPoolHandle>,
    shared: &'a PoolShared,
    ticket: u64,
) -> Option<crate::deadlock::Tracked<'a>> {
    let graph = treadle_core::wait_graph::WaitGraph::global();
    if graph.mode() == treadle_core::wait_graph::Mode::Off {
        return None;
    }
    let track = crate::deadlock::Track {
        target: &shared.core,
        kind: treadle_core::wait_graph::WaitKind::Queue,
        ticket,
        object: handle.as_any(),
    };
    // Untimed: an idle worker cannot act by itself; nor can the timer without deadlines.
    crate::deadlock::publish(py, graph, &track, false).ok()
}
