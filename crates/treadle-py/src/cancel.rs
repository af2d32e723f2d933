//! Interruptible tasks: the task a thread runs now, and the calls that let it stop when asked.
//!
//! A pool worker makes its task current (a thread-local, restored afterwards, so a task run by a
//! helping worker inside another's wait nests). `future.cancel(interrupt=True)` and a time limit
//! set the task's cancel token; then `treadle.sleep()`, `treadle.check_cancelled()` and every
//! treadle blocking call made by the task raise `treadle.Cancelled`. Blocking calls watch the
//! token between slices of [`POLL`] (see `wait.rs`); `sleep` parks on the token itself and wakes
//! at once. Code that never calls into treadle (C code, `time.sleep`) cannot be interrupted.

use crate::future::Cell as FutureCell;
use crate::timeout::Wait;
use pyo3::exceptions::{PyBaseException, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;
use treadle_core::Event;

/// How often a blocking call made by a task looks at the task's cancel token.
pub(crate) const POLL: Duration = Duration::from_millis(20);

pyo3::create_exception!(
    treadle,
    Cancelled,
    PyBaseException,
    "Raised inside a task that was asked to stop (``cancel(interrupt=True)`` or its time limit)."
);
pyo3::create_exception!(
    treadle,
    TaskTimeoutError,
    PyTimeoutError,
    "The exception of a future whose task ran past its time limit."
);

thread_local! {
    static CURRENT: RefCell<Option<Arc<FutureCell>>> = const { RefCell::new(None) };
}

/// While alive, `cell` is the calling thread's current task; the previous one comes back after.
pub(crate) struct TaskScope(Option<Arc<FutureCell>>);

impl TaskScope {
    pub(crate) fn enter(cell: &Arc<FutureCell>) -> TaskScope {
        TaskScope(CURRENT.with(|current| current.replace(Some(Arc::clone(cell)))))
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// The calling thread's current task, if it runs one.
pub(crate) fn current() -> Option<Arc<FutureCell>> {
    CURRENT.with(|current| current.borrow().clone())
}

fn cancelled_error() -> PyErr {
    Cancelled::new_err("the task was asked to stop")
}

/// `Err(Cancelled)` if `task` was asked to stop.
pub(crate) fn check(task: Option<&FutureCell>) -> PyResult<()> {
    match task {
        Some(task) if task.is_interrupted() => Err(cancelled_error()),
        _ => Ok(()),
    }
}

/// Raise `treadle.Cancelled` if the current task was asked to stop.
#[pyfunction]
pub(crate) fn check_cancelled() -> PyResult<()> {
    check(current().as_deref())
}

/// Whether the current task was asked to stop (False outside a task).
#[pyfunction]
pub(crate) fn cancelled() -> bool {
    current().is_some_and(|task| task.is_interrupted())
}

/// Sleep `seconds`, as `time.sleep`, but in a task wake at once and raise `treadle.Cancelled`
/// if the task is asked to stop.
#[pyfunction]
pub(crate) fn sleep(py: Python<'_>, seconds: &Bound<'_, PyAny>) -> PyResult<()> {
    let seconds = crate::timeout::seconds(seconds)?;
    if seconds < 0.0 {
        return Err(PyValueError::new_err("sleep length must be non-negative"));
    }
    let wait = Wait::Until(crate::timeout::deadline_after(seconds));
    let task = current();
    let never = Event::new();
    let token = task.as_deref().map_or(&never, FutureCell::cancel_token);
    let ticket = token.ticket();
    let woken = crate::wait::block_on(py, wait, None, |deadline| {
        token.wait_until(ticket, deadline).then_some(())
    })?;
    if woken.is_some() {
        return Err(cancelled_error());
    }
    Ok(())
}
