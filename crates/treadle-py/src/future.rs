//! `treadle.Future`'s native half: a handle on the core's `FutureCell`, with the methods of
//! `concurrent.futures.Future`.
//!
//! The Python class `treadle.Future` derives from this class *and* from
//! `concurrent.futures.Future` (this one first, so its methods win): `isinstance(f,
//! concurrent.futures.Future)` holds, which `asyncio.wrap_future` requires. The standard
//! library's `wait` and `as_completed` reach into a future's `_condition`, `_state` and
//! `_waiters`; they are provided here (the condition and the list made on first use), and
//! completion notifies such waiters under that condition, after the core's state changed (see
//! `FutureCell::observe` for why no notification is lost).
//!
//! Done-callbacks and foreign waiters are Python code: they run in the completing thread after
//! the core's mutex is released, as the standard library runs them after its own lock.
//!
//! A pool worker that waits on futures of its own pool still queued does not wait for itself:
//! [`block_worker`] tells the pool (`treadle_core::pool::Blocking`), which runs them on another
//! thread, with their own thread state; `result()` here and `_Completions` (`wait`,
//! `as_completed`) both go through it.

use crate::runtime::errors::address;
use crate::runtime::hooks::{self, PoolHooks};
use crate::runtime::timeout::{optional_wait, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_until;
use pyo3::exceptions::{PyRuntimeError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use treadle_core::wait_graph::WaitKind;
use treadle_core::{Completed, FutureCell, Outcome, Start, Status, TaskTypes};

pyo3::import_exception!(concurrent.futures, CancelledError);
pyo3::import_exception!(concurrent.futures, InvalidStateError);

/// A task as the binding stores it.
pub(crate) struct PyTask;

impl TaskTypes for PyTask {
    type Job = Job;
    type Value = Py<PyAny>;
    type Callback = Py<PyAny>;
}

pub(crate) type Cell = FutureCell<PyTask>;

/// What a worker runs: `func(*args, **kwargs)` in `context`, for `future`.
pub(crate) struct Job {
    pub(crate) future: Py<PyAny>,
    pub(crate) func: Py<PyAny>,
    pub(crate) args: Py<PyTuple>,
    pub(crate) kwargs: Option<Py<PyDict>>,
    pub(crate) context: Option<Py<PyAny>>,
    pub(crate) timeout: Option<Duration>,
}

/// `_set_pool_hooks(future_class, *, lost, callback_failed, initializer_failed, clear_locals)`:
/// what `treadle.futures.future` hands down at import (see `runtime::hooks::PoolHooks`).
#[pyfunction]
#[pyo3(signature = (future_class, *, lost, callback_failed, initializer_failed, clear_locals))]
pub(crate) fn _set_pool_hooks(
    py: Python<'_>,
    future_class: Py<PyType>,
    lost: Py<PyAny>,
    callback_failed: Py<PyAny>,
    initializer_failed: Py<PyAny>,
    clear_locals: Py<PyAny>,
) -> PyResult<()> {
    hooks::set_pool(
        py,
        PoolHooks {
            future_class,
            lost,
            callback_failed,
            initializer_failed,
            clear_locals,
        },
    )
}

/// The executor a future was submitted to, as the future sees it: for a worker that waits on
/// futures of its own pool (see [`block_worker`]).
pub(crate) trait Executor: Send + Sync {
    /// Whether the calling thread is one of the executor's workers.
    fn is_current_worker(&self) -> bool;
    /// The calling worker is about to wait on `waited`, futures of this executor not done: it
    /// counts as blocked until [`Executor::worker_unblocks`], those still queued go first, and a
    /// spare thread is started if no idle worker will take the queued work. False when no
    /// thread could be added for futures still queued.
    fn worker_blocks(&self, py: Python<'_>, waited: &[Arc<Cell>]) -> bool;
    /// The worker that called [`Executor::worker_blocks`] waits no more.
    fn worker_unblocks(&self);
    /// Runs `job`, the future's own, just started, on the calling thread.
    fn run(&self, py: Python<'_>, cell: &Arc<Cell>, job: Job);
}

/// While alive, the calling worker counts as blocked on its own pool.
pub(crate) struct WorkerBlocked(Arc<dyn Executor>);

impl Drop for WorkerBlocked {
    fn drop(&mut self) {
        self.0.worker_unblocks();
    }
}

/// A worker of `executor` is about to wait on `waited`, futures of it not done: it counts as
/// blocked while the returned guard lives, and those still queued run on other threads. `None`
/// when no thread could be added: it ran one of them itself (as a last resort, past the pool's
/// spare threads), and should look again.
pub(crate) fn block_worker(
    py: Python<'_>,
    executor: &Arc<dyn Executor>,
    waited: &[Arc<Cell>],
) -> Option<WorkerBlocked> {
    let blocked = WorkerBlocked(Arc::clone(executor));
    if executor.worker_blocks(py, waited) {
        return Some(blocked);
    }
    drop(blocked);
    for cell in waited {
        if let Start::Started(Some(job)) = cell.start() {
            executor.run(py, cell, job);
            break;
        }
    }
    None
}

/// Where a thread that waits on a future may read the future's answer itself (a process pool,
/// whose workers' answers the pool's supervisor thread otherwise reads and delivers): the
/// waiter is then not one more thread to wake on the way of a quick round trip.
pub(crate) trait Answers: Send + Sync {
    /// Reads answers for task `task` (whose future's cell is `cell`) and resolves them, for a
    /// short while at most and never past `until`; whether `cell` is done.
    fn read_for(&self, py: Python<'_>, cell: &Cell, task: u64, until: Option<Instant>) -> bool;
}

/// Where a pool keeps its futures' failures for its `shutdown()` (`crate::unretrieved`), as a
/// future sees it.
pub(crate) trait FailureLedger: Send + Sync {
    /// Whether a freed future's unretrieved failure is left to the ledger (strict mode, before
    /// the pool's shutdown took them), rather than reported by the future.
    fn keeps(&self) -> bool;
}

/// The native half of `treadle.Future`.
#[pyclass(subclass, frozen, name = "_FutureBase", module = "treadle")]
pub(crate) struct PyFuture {
    pub(crate) cell: Arc<Cell>,
    executor: OnceLock<Arc<dyn Executor>>,
    name: OnceLock<Py<PyAny>>,
    /// The ledger that recorded this future's failure, if one did.
    ledger: OnceLock<Arc<dyn FailureLedger>>,
    /// Where a waiter reads the answer itself, and the task's id there (weak: a future does
    /// not keep its pool's supervisor).
    answers: OnceLock<(Weak<dyn Answers>, u64)>,
    condition: PyOnceLock<Py<PyAny>>,
    waiters: PyOnceLock<Py<PyList>>,
}

impl Drop for PyFuture {
    fn drop(&mut self) {
        if self.ledger.get().is_some_and(|ledger| ledger.keeps()) {
            return;
        }
        if self.cell.take_unreported_failure() {
            Python::attach(|py| report_lost(py, &self.cell, self.name.get()));
        }
    }
}

/// Hands a lost exception to the `treadle` package's reporter.
pub(crate) fn report_lost(py: Python<'_>, cell: &Cell, name: Option<&Py<PyAny>>) {
    let exception = cell.read(false, |_, outcome| match outcome {
        Some(Outcome::Raised(exception)) => Some(exception.clone_ref(py)),
        _ => None,
    });
    if let Some(exception) = exception {
        let name = name.map_or_else(|| py.None(), |name| name.clone_ref(py));
        if let Some(hooks) = hooks::pool(py) {
            hooks::call(py, &hooks.lost, (exception, name));
        }
    }
}

/// Everything that follows a completion: foreign waiters, then done-callbacks.
pub(crate) fn notify(py: Python<'_>, future: &Bound<'_, PyAny>, done: Completed<PyTask>) {
    let Completed {
        callbacks,
        observed,
        job,
    } = done;
    drop(job);
    if observed {
        if let Ok(this) = future.cast::<PyFuture>() {
            if let Err(error) = this.get().notify_waiters(py, future) {
                error.write_unraisable(py, Some(future));
            }
        }
    }
    for callback in callbacks {
        run_callback(py, future, callback.bind(py));
    }
}

fn run_callback(py: Python<'_>, future: &Bound<'_, PyAny>, callback: &Bound<'_, PyAny>) {
    if let Err(error) = callback.call1((future,)) {
        if let Some(hooks) = hooks::pool(py) {
            hooks::call(py, &hooks.callback_failed, (future, error.into_value(py)));
        }
    }
}

fn state_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "PENDING",
        Status::Running => "RUNNING",
        // A treadle future notifies its waiters the moment it is cancelled.
        Status::Cancelled => "CANCELLED_AND_NOTIFIED",
        Status::Finished => "FINISHED",
    }
}

fn description(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Running => "running",
        Status::Cancelled => "cancelled",
        Status::Finished => "finished",
    }
}

impl PyFuture {
    /// Ties a new future to the executor it was submitted to, and its name for reports.
    pub(crate) fn attach(&self, executor: Arc<dyn Executor>, name: Option<Py<PyAny>>) {
        let _ = self.executor.set(executor);
        if let Some(name) = name {
            let _ = self.name.set(name);
        }
    }

    /// The executor the future was submitted to, if a pool made it.
    pub(crate) fn executor(&self) -> Option<&Arc<dyn Executor>> {
        self.executor.get()
    }

    /// The future's name for reports (`schedule(..., name=)`), if it has one.
    pub(crate) fn name_for_reports(&self) -> Option<&Py<PyAny>> {
        self.name.get()
    }

    /// A waiter reads the answer of task `task` from `answers` itself.
    pub(crate) fn answered_by(&self, answers: Weak<dyn Answers>, task: u64) {
        let _ = self.answers.set((answers, task));
    }

    /// `ledger` recorded this future's failure.
    pub(crate) fn recorded_by(&self, ledger: Arc<dyn FailureLedger>) {
        let _ = self.ledger.set(ledger);
    }

    fn condition<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyAny>> {
        self.condition
            .get_or_try_init(py, || {
                Ok::<_, PyErr>(
                    py.import("threading")?
                        .getattr("Condition")?
                        .call0()?
                        .unbind(),
                )
            })
            .map(|condition| condition.bind(py))
    }

    fn waiters<'py>(&self, py: Python<'py>) -> &Bound<'py, PyList> {
        self.waiters
            .get_or_init(py, || PyList::empty(py).unbind())
            .bind(py)
    }

    /// Tells the standard library's waiters, under `_condition`, as `Future.set_result` does.
    fn notify_waiters(&self, py: Python<'_>, future: &Bound<'_, PyAny>) -> PyResult<()> {
        let condition = self.condition(py)?;
        condition.call_method0("acquire")?;
        self.cell.waiters_notified();
        let result = (|| {
            let method = match self.cell.read(false, |status, outcome| {
                (status, outcome.map(|o| matches!(o, Outcome::Raised(_))))
            }) {
                (Status::Cancelled, _) => "add_cancelled",
                (_, Some(true)) => "add_exception",
                _ => "add_result",
            };
            for waiter in self.waiters(py).iter() {
                waiter.call_method1(method, (future,))?;
            }
            condition.call_method0("notify_all")?;
            Ok(())
        })();
        condition.call_method0("release")?;
        result
    }

    /// Waits until done (or the timeout); returns whether it is done. A pool worker waiting on a
    /// future still queued in its own pool has it run by another thread ([`block_worker`]).
    fn wait_done(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let wait = optional_wait(py, timeout)?;
        if let (Wait::Until(until), Some((answers, task))) = (wait, this.answers.get()) {
            if let Some(answers) = answers.upgrade() {
                if answers.read_for(py, &this.cell, *task, until) {
                    return Ok(true);
                }
            }
        }
        let mut _blocked = None;
        loop {
            if this.cell.is_done() {
                return Ok(true);
            }
            let Some(executor) = this.executor.get() else {
                break;
            };
            if wait == Wait::Never || !executor.is_current_worker() {
                break;
            }
            _blocked = block_worker(py, executor, std::slice::from_ref(&this.cell));
            if _blocked.is_some() {
                break;
            }
        }
        let track = Track {
            target: &*this.cell,
            kind: WaitKind::Future,
            ticket: 0,
            object: slf.as_any(),
        };
        let cell = &this.cell;
        block_until(py, wait, Some(track), |deadline| cell.wait(deadline))
    }

    /// `result()` or (`want_exception`) `exception()`.
    fn outcome_within(
        slf: &Bound<'_, Self>,
        timeout: Option<&Bound<'_, PyAny>>,
        want_exception: bool,
    ) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        if !this.cell.is_done() && !Self::wait_done(slf, timeout)? {
            return Err(PyTimeoutError::new_err(()));
        }
        this.outcome(slf.py(), want_exception)
    }

    fn outcome(&self, py: Python<'_>, want_exception: bool) -> PyResult<Py<PyAny>> {
        self.cell
            .read(true, |status, outcome| match (status, outcome) {
                (Status::Cancelled, _) => Err(CancelledError::new_err(())),
                (_, Some(Outcome::Returned(value))) if !want_exception => Ok(value.clone_ref(py)),
                (_, Some(Outcome::Returned(_))) => Ok(py.None()),
                (_, Some(Outcome::Raised(error))) if want_exception => Ok(error.clone_ref(py)),
                (_, Some(Outcome::Raised(error))) => Err(PyErr::from_value(error.bind(py).clone())),
                _ => Err(PyRuntimeError::new_err("future is not done")),
            })
    }

    pub(crate) fn set_outcome(slf: &Bound<'_, Self>, outcome: Outcome<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        match this.cell.finish(outcome) {
            Ok(done) => {
                notify(py, slf.as_any(), done);
                Ok(())
            }
            Err(_) => {
                let state = state_name(this.cell.status());
                Err(InvalidStateError::new_err(format!(
                    "{state}: {}",
                    slf.repr()?
                )))
            }
        }
    }
}

#[pymethods]
impl PyFuture {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        PyFuture {
            cell: Arc::new(Cell::new(None)),
            executor: OnceLock::new(),
            name: OnceLock::new(),
            ledger: OnceLock::new(),
            answers: OnceLock::new(),
            condition: PyOnceLock::new(),
            waiters: PyOnceLock::new(),
        }
    }

    fn __init__(&self) {}

    /// Cancel the future if it has not started; returns whether it is cancelled. With
    /// `interrupt=True`, a running task is also asked to stop (see `treadle.Cancelled`) and the
    /// future ends cancelled at once.
    #[pyo3(signature = (interrupt=false))]
    fn cancel(slf: &Bound<'_, Self>, interrupt: bool) -> bool {
        let py = slf.py();
        let this = slf.get();
        if interrupt {
            return match this.cell.interrupt(None) {
                Some(done) => {
                    notify(py, slf.as_any(), done);
                    true
                }
                None => this.cell.status() == Status::Cancelled,
            };
        }
        match this.cell.cancel() {
            Ok(Some(done)) => {
                notify(py, slf.as_any(), done);
                true
            }
            Ok(None) => true,
            Err(()) => false,
        }
    }

    /// Whether the future was cancelled.
    fn cancelled(&self) -> bool {
        self.cell.status() == Status::Cancelled
    }

    /// Whether the task is running now.
    fn running(&self) -> bool {
        self.cell.status() == Status::Running
    }

    /// Whether the future is cancelled or finished.
    fn done(&self) -> bool {
        self.cell.is_done()
    }

    /// The task's result, waiting at most `timeout` seconds (then `TimeoutError`); raises the
    /// task's exception, or `CancelledError`.
    #[pyo3(signature = (timeout=None))]
    fn result(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        Self::outcome_within(slf, timeout, false)
    }

    /// The task's exception (None if it returned), waiting as `result` does.
    #[pyo3(signature = (timeout=None))]
    fn exception(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        Self::outcome_within(slf, timeout, true)
    }

    /// Call `fn(future)` when the future is done (now, if it is).
    #[pyo3(signature = (r#fn))]
    fn add_done_callback(slf: &Bound<'_, Self>, r#fn: Bound<'_, PyAny>) {
        if let Err(callback) = slf.get().cell.add_callback(r#fn.unbind()) {
            run_callback(slf.py(), slf.as_any(), callback.bind(slf.py()));
        }
    }

    /// Call `fn(future)` when the future is done (now, if it is), as a watcher that does not
    /// retrieve the outcome (a progress bar): an exception nobody retrieves is still reported.
    #[pyo3(signature = (r#fn))]
    fn _add_watcher(slf: &Bound<'_, Self>, r#fn: Bound<'_, PyAny>) {
        if let Err(callback) = slf.get().cell.add_watcher(r#fn.unbind()) {
            run_callback(slf.py(), slf.as_any(), callback.bind(slf.py()));
        }
    }

    /// For executors: mark the future running, or return False if it was cancelled.
    fn set_running_or_notify_cancel(&self) -> PyResult<bool> {
        match self.cell.start() {
            Start::Started(job) => {
                drop(job);
                Ok(true)
            }
            Start::WasCancelled => Ok(false),
            Start::Invalid(_) => Err(PyRuntimeError::new_err("Future in unexpected state")),
        }
    }

    /// For executors: finish the future with `result`.
    fn set_result(slf: &Bound<'_, Self>, result: Py<PyAny>) -> PyResult<()> {
        Self::set_outcome(slf, Outcome::Returned(result))
    }

    /// For executors: finish the future with `exception`.
    fn set_exception(slf: &Bound<'_, Self>, exception: Py<PyAny>) -> PyResult<()> {
        Self::set_outcome(slf, Outcome::Raised(exception))
    }

    /// For executors: the program knows of the future's failure (its task was stopped on
    /// purpose), so it is not reported as an exception nobody retrieved.
    fn _mark_retrieved(&self) {
        self.cell.mark_retrieved();
    }

    /// The state as `concurrent.futures` names it (read by its `wait` and `as_completed`).
    #[getter]
    fn _state(&self) -> &'static str {
        state_name(self.cell.status_for_observers())
    }

    /// The lock `concurrent.futures.wait` takes while it installs a waiter.
    #[getter]
    fn _condition<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.cell.observe();
        self.condition(py).cloned()
    }

    /// The waiters `concurrent.futures.wait` installs.
    #[getter]
    fn _waiters<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.cell.observe();
        self.waiters(py).clone()
    }

    /// The result, if the task returned (does not count as retrieving an exception).
    #[getter]
    fn _result(&self, py: Python<'_>) -> Py<PyAny> {
        self.cell.read(false, |_, outcome| match outcome {
            Some(Outcome::Returned(value)) => value.clone_ref(py),
            _ => py.None(),
        })
    }

    /// The exception, if the task raised (does not count as retrieving it).
    #[getter]
    fn _exception(&self, py: Python<'_>) -> Py<PyAny> {
        self.cell.read(false, |_, outcome| match outcome {
            Some(Outcome::Raised(error)) => error.clone_ref(py),
            _ => py.None(),
        })
    }

    /// The task's name (`schedule(..., name=)`), or None.
    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyAny> {
        self.name
            .get()
            .map_or_else(|| py.None(), |name| name.clone_ref(py))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let this = slf.get();
        let class = slf.get_type().name()?;
        let (status, kind) = this.cell.read(false, |status, outcome| {
            let kind = match outcome {
                Some(Outcome::Returned(value)) => Some(("returned", value.bind(py).get_type())),
                Some(Outcome::Raised(error)) => Some(("raised", error.bind(py).get_type())),
                None => None,
            };
            (status, kind)
        });
        let state = description(status);
        Ok(match kind {
            Some((verb, ty)) if status == Status::Finished => {
                format!(
                    "<{class} at {} state={state} {verb} {}>",
                    address(slf.as_any()),
                    ty.name()?
                )
            }
            _ => format!("<{class} at {} state={state}>", address(slf.as_any())),
        })
    }
}
