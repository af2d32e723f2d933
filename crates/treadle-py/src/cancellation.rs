//! The calls that let a task stop when asked: `treadle.sleep`, `treadle.check_cancelled` and
//! `treadle.cancelled` (see `runtime::cancel` for the token they read).

use crate::runtime::cancel::{cancelled_error, check, current, Interruptible};
use crate::runtime::timeout::{self, Wait};
use crate::runtime::wait::block_on;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use treadle_core::Event;

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
    let seconds = timeout::seconds(seconds)?;
    if seconds < 0.0 {
        return Err(PyValueError::new_err("sleep length must be non-negative"));
    }
    let wait = Wait::Until(timeout::deadline_after(seconds));
    let task = current();
    let never = Event::new();
    let token = task.as_deref().map_or(&never, Interruptible::cancel_token);
    let ticket = token.ticket();
    let woken = block_on(py, wait, None, |deadline| {
        token.wait_until(ticket, deadline).then_some(())
    })?;
    if woken.is_some() {
        return Err(cancelled_error());
    }
    Ok(())
}
