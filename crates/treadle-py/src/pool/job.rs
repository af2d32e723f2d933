//! Running a thread pool's job: in its submitter's `contextvars` context, with its future as
//! the thread's current task (so that it can be interrupted), under its time limit; then
//! completing its future, and saying how it ended for the pool's statistics. A worker runs jobs this way, and so does, as a last resort, a worker
//! waiting on a future still queued in its own pool when no thread can be added (`nested.rs`).

use super::shared::{clear_locals, PoolShared};
use crate::future::{notify, Cell, Job};
use crate::runtime::cancel::TaskScope;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::sync::Arc;
use treadle_core::stats::TaskEnd;
use treadle_core::{Outcome, Status};

/// Runs a job on the calling thread, in its context, with its future's cell as the current
/// task, and completes the future; returns how the task ended.
pub(crate) fn run_job(
    py: Python<'_>,
    pool: Option<&PoolShared>,
    cell: &Arc<Cell>,
    job: Job,
) -> TaskEnd {
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
    clear_locals(py);
    let outcome = {
        let _scope = TaskScope::enter(cell.clone());
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
    complete(py, pool, cell, future.bind(py), outcome)
}

/// Runs a job off a worker's loop (in its submitter's thread, or in a worker waiting on its own
/// pool) and counts how it ended in the pool's statistics.
pub(crate) fn run_job_counted(py: Python<'_>, pool: &PoolShared, cell: &Arc<Cell>, job: Job) {
    let end = run_job(py, Some(pool), cell, job);
    pool.core.stats().task_ended(end, 1);
}

/// Stores `outcome` and runs what follows; a late outcome (the future was interrupted) is
/// dropped. Returns how the task ended: as it says, or cancelled, or ended by the timer.
fn complete(
    py: Python<'_>,
    pool: Option<&PoolShared>,
    cell: &Arc<Cell>,
    future: &Bound<'_, PyAny>,
    outcome: Outcome<Py<PyAny>>,
) -> TaskEnd {
    let raised = matches!(outcome, Outcome::Raised(_));
    match cell.finish(outcome) {
        Ok(done) => {
            if raised {
                if let Some(pool) = pool {
                    pool.unretrieved.record(py, future);
                }
            }
            notify(py, future, done);
            if raised {
                TaskEnd::Raised
            } else {
                TaskEnd::Returned
            }
        }
        Err(late) => {
            drop(late);
            if cell.status() == Status::Cancelled {
                TaskEnd::Cancelled
            } else {
                TaskEnd::Ended
            }
        }
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
