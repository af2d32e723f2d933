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

use crate::cancel::TaskScope;
use crate::deadlock::Track;
use crate::errors::address;
use crate::pool::{self, PoolShared};
use crate::timeout::optional_wait;
use pyo3::exceptions::{PyRuntimeError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
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

/// Hooks set by the `treadle` package: the Python class of futures, and the object whose
/// methods log a failed callback, report a lost exception, and clear `treadle.local`s.
static FUTURE_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static HOOKS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `_set_pool_hooks(future_class, hooks)`.
#[pyfunction]
pub(crate) fn _set_pool_hooks(
    py: Python<'_>,
    future_class: Py<PyType>,
    hooks: Py<PyAny>,
) -> PyResult<()> {
    FUTURE_CLASS
        .set(py, future_class)
        .map_err(|_| PyRuntimeError::new_err("pool hooks are already set"))?;
    let _ = HOOKS.set(py, hooks);
    Ok(())
}

/// Calls `hooks.<name>(*args)`; an error in a hook is unraisable (it must not hide the
/// task's own outcome).
pub(crate) fn call_hook<'py>(py: Python<'py>, name: &str, args: impl pyo3::call::PyCallArgs<'py>) {
    let Some(hooks) = HOOKS.get(py) else { return };
    if let Err(error) = hooks.bind(py).call_method1(name, args) {
        error.write_unraisable(py, None);
    }
}

/// A new `treadle.Future` (the Python class) for a pool.
pub(crate) fn new_future<'py>(
    py: Python<'py>,
    pool: &Arc<PoolShared>,
    name: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyFuture>> {
    let class = FUTURE_CLASS
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("treadle is not initialised"))?;
    let future = class.bind(py).call0()?.cast_into::<PyFuture>()?;
    let this = future.get();
    let _ = this.pool.set(Arc::clone(pool));
    if let Some(name) = name {
        let _ = this.name.set(name);
    }
    Ok(future)
}

/// The native half of `treadle.Future`.
#[pyclass(subclass, frozen, name = "_FutureBase", module = "treadle")]
pub(crate) struct PyFuture {
    pub(crate) cell: Arc<Cell>,
    pool: OnceLock<Arc<PoolShared>>,
    name: OnceLock<Py<PyAny>>,
    condition: PyOnceLock<Py<PyAny>>,
    waiters: PyOnceLock<Py<PyList>>,
}

impl Drop for PyFuture {
    fn drop(&mut self) {
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
        call_hook(py, "lost", (exception, name));
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
        call_hook(py, "callback_failed", (future, error.into_value(py)));
    }
}

/// Runs a job on the calling thread, in its context, with its future's cell as the current
/// task, and completes the future.
pub(crate) fn run_job(py: Python<'_>, pool: Option<&Arc<PoolShared>>, cell: &Arc<Cell>, job: Job) {
    let Job {
        future,
        func,
        args,
        kwargs,
        context,
        timeout,
    } = job;
    if let (Some(pool), Some(limit)) = (pool, timeout) {
        pool.start_deadline(py, cell, &future, limit);
    }
    pool::clear_locals(py);
    let outcome = {
        let _scope = TaskScope::enter(cell);
        call_in_context(py, &func, &args, kwargs.as_ref(), context.as_ref())
    };
    if let (Some(pool), Some(_)) = (pool, timeout) {
        pool.end_deadline(cell);
    }
    drop((func, args, kwargs, context));
    let outcome = match outcome {
        Ok(value) => Outcome::Returned(value),
        Err(error) => Outcome::Raised(error.into_value(py).into_any()),
    };
    complete(py, pool, cell, future.bind(py), outcome);
}

/// Stores `outcome` and runs what follows; a late outcome (the future was interrupted) is
/// dropped.
pub(crate) fn complete(
    py: Python<'_>,
    pool: Option<&Arc<PoolShared>>,
    cell: &Arc<Cell>,
    future: &Bound<'_, PyAny>,
    outcome: Outcome<Py<PyAny>>,
) {
    let raised = matches!(outcome, Outcome::Raised(_));
    match cell.finish(outcome) {
        Ok(done) => {
            if raised {
                if let Some(pool) = pool {
                    pool.record_failure(py, cell, future);
                }
            }
            notify(py, future, done);
        }
        Err(late) => drop(late),
    }
}

fn call_in_context(
    py: Python<'_>,
    func: &Py<PyAny>,
    args: &Py<PyTuple>,
    kwargs: Option<&Py<PyDict>>,
    context: Option<&Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    let Some(context) = context else {
        return Ok(func
            .bind(py)
            .call(args.bind(py), kwargs.map(|k| k.bind(py)))?
            .unbind());
    };
    // SAFETY: attached to the interpreter; `context` is a `contextvars.Context` (made by
    // `copy_context`), entered and exited on this thread around the call.
    if unsafe { PyContext_Enter(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let result = func
        .bind(py)
        .call(args.bind(py), kwargs.map(|k| k.bind(py)));
    // SAFETY: as above; the context entered just before.
    if unsafe { PyContext_Exit(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(result?.unbind())
}

extern "C" {
    fn PyContext_CopyCurrent() -> *mut pyo3::ffi::PyObject;
    fn PyContext_Enter(context: *mut pyo3::ffi::PyObject) -> std::os::raw::c_int;
    fn PyContext_Exit(context: *mut pyo3::ffi::PyObject) -> std::os::raw::c_int;
}

/// A copy of the calling thread's `contextvars` context.
pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: attached; PyContext_CopyCurrent returns a new reference or null with an error set.
    unsafe {
        let context = PyContext_CopyCurrent();
        if context.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, context).unbind())
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
    /// future still queued in its own pool runs it itself instead of parking (help mode).
    fn wait_done(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.cell.is_done() {
            return Ok(true);
        }
        if let Some(pool) = this.pool.get() {
            if pool::is_worker_of(pool) {
                if let Start::Started(Some(job)) = this.cell.start() {
                    run_job(py, Some(pool), &this.cell, job);
                    return Ok(true);
                }
            }
        }
        let wait = optional_wait(py, timeout)?;
        let track = Track {
            target: &*this.cell,
            kind: WaitKind::Future,
            ticket: 0,
            object: slf.as_any(),
        };
        let cell = &this.cell;
        crate::wait::block_until(py, wait, Some(track), |deadline| cell.wait(deadline))
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

    fn set_outcome(slf: &Bound<'_, Self>, outcome: Outcome<Py<PyAny>>) -> PyResult<()> {
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
            pool: OnceLock::new(),
            name: OnceLock::new(),
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
