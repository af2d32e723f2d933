//! The calls that let a task stop when asked: `treadle.sleep`, `treadle.check_cancelled` and
//! `treadle.cancelled` (see `runtime::cancel` for the token they read), and `_Interruptible`,
//! which makes a call outside any pool a task that can be asked to stop.

use crate::runtime::cancel::{cancelled_error, check, current, Interruptible, TaskScope};
use crate::runtime::timeout::{self, Wait};
use crate::runtime::wait::block_on;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::sync::Arc;
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

/// A call that another thread can ask to stop, outside any pool: `run(fn, *args, **kwargs)`
/// makes it the calling thread's current task while `fn` runs, so that once `interrupt()` is
/// called, `treadle.sleep`, `treadle.check_cancelled` and every treadle wait inside it raise
/// `treadle.Cancelled`. The Dask executor's workers run each task in one.
#[pyclass(frozen, name = "_Interruptible", module = "treadle")]
pub(crate) struct PyInterruptible {
    token: Arc<Token>,
}

/// The cancel token of an `_Interruptible`.
struct Token(Event);

impl Interruptible for Token {
    fn cancel_token(&self) -> &Event {
        &self.0
    }
}

#[pymethods]
impl PyInterruptible {
    #[new]
    fn new() -> Self {
        PyInterruptible {
            token: Arc::new(Token(Event::new())),
        }
    }

    /// Asks the call to stop (before it starts, too): its treadle waits raise
    /// `treadle.Cancelled`.
    fn interrupt(&self) {
        self.token.0.set();
    }

    /// Whether `interrupt()` was called.
    #[getter]
    fn interrupted(&self) -> bool {
        self.token.is_interrupted()
    }

    /// Calls `fn(*args, **kwargs)` as the calling thread's current task and returns its result.
    #[pyo3(signature = (r#fn, /, *args, **kwargs))]
    fn run(
        &self,
        r#fn: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let _scope = TaskScope::enter(self.token.clone());
        r#fn.call(args, kwargs).map(Bound::unbind)
    }
}
