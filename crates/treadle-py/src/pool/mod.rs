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

mod job;
mod nested;
mod shared;
mod worker;

pub(crate) use shared::_locals_in_use;
pub(crate) use worker::{_run_timer, _run_worker, PyPoolHandle};

use crate::future::{notify, Job, PyFuture};
use crate::runtime::hooks;
use crate::runtime::timeout::Wait;
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_on;
use crate::unretrieved::PyUnretrieved;
use job::{copy_context, run_job_counted};
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use shared::{OnFull, PoolShared, BROKEN};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use treadle_core::pool::WAITING_FOR_ROOM;
use treadle_core::stats::TaskEnd;
use treadle_core::wait_graph::WaitKind;
use treadle_core::{Pool, Start, SubmitError};

/// Set when the interpreter begins to exit: no new submissions, as in the standard library.
static INTERPRETER_EXITING: AtomicBool = AtomicBool::new(false);

/// `_interpreter_exiting()`: refuse new submissions from now on.
#[pyfunction]
pub(crate) fn _interpreter_exiting() {
    INTERPRETER_EXITING.store(true, Ordering::Relaxed);
}

/// A new `treadle.Future` (the Python class the package registered) for a pool.
fn new_future<'py>(
    py: Python<'py>,
    pool: &Arc<PoolShared>,
    name: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyFuture>> {
    let class = hooks::pool(py)
        .map(|hooks| &hooks.future_class)
        .ok_or_else(|| PyRuntimeError::new_err("treadle is not initialised"))?;
    let future = class.bind(py).call0()?.cast_into::<PyFuture>()?;
    future
        .get()
        .attach(Arc::clone(pool) as Arc<dyn crate::future::Executor>, name);
    Ok(future)
}

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
                shared.core.stats().submission_run_by_caller();
                if let Start::Started(Some(job)) = cell.start() {
                    run_job_counted(py, shared, cell, job);
                }
                return Ok(future);
            }
            Err(SubmitError::Full) if shared.on_full == OnFull::Block => {
                let core = &shared.core;
                // In the wait graph, ownerless (any worker may make room): a pool whose every
                // worker blocks here, submitting to it, is a stall, reported as a deadlock.
                // Such a worker is given no spare thread and does not run the task itself:
                // the bound is the program's own limit on the work in flight.
                let track = Track {
                    target: core,
                    kind: WaitKind::Submit,
                    ticket: WAITING_FOR_ROOM,
                    object: slf.as_any(),
                };
                block_on(py, Wait::Until(None), Some(track), |deadline| {
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
            worker::start_worker(py, shared)?;
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

    /// Called once by `__init__` with its checked arguments, where the pool's failures go
    /// (`unretrieved`) and `start_worker(handle)`, which starts one worker thread.
    fn _setup(
        &self,
        max_workers: usize,
        max_pending: usize,
        on_full: &str,
        task_timeout: Option<f64>,
        unretrieved: &Bound<'_, PyUnretrieved>,
        start_worker: Py<PyAny>,
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
            unretrieved: Arc::clone(&unretrieved.get().0),
            start_worker,
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
        let stats = shared.core.stats();
        stats.task_ended(TaskEnd::Cancelled, drained.len() as u64);
        for cell in drained {
            if let Ok(Some(mut done)) = cell.cancel() {
                if let Some(job) = done.job.take() {
                    notify(py, job.future.bind(py), done);
                }
            }
        }
        Ok(())
    }

    /// A handle for the timer thread.
    fn _handle(&self) -> PyResult<PyPoolHandle> {
        Ok(PyPoolHandle(Arc::clone(self.shared()?)))
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
