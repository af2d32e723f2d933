//! Interruptible tasks: the task a thread runs now, and its cancel token.
//!
//! A pool worker makes its task current (a thread-local, restored afterwards, so that a task a
//! waiting worker runs itself, as a last resort, nests). `future.cancel(interrupt=True)` and a time limit
//! set the task's cancel token; then `treadle.sleep()`, `treadle.check_cancelled()`
//! (`crate::cancellation`) and every treadle blocking call made by the task raise
//! `treadle.Cancelled`. Blocking calls watch the token between slices of [`POLL`] (see
//! `wait.rs`). Code that never calls into treadle (C code, `time.sleep`) cannot be interrupted.

use pyo3::exceptions::{PyBaseException, PyTimeoutError};
use pyo3::prelude::*;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;
use treadle_core::{Event, FutureCell, TaskTypes};

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

/// A task that can be asked to stop: its cancel token is set when it is.
pub(crate) trait Interruptible: Send + Sync {
    /// The token, set once the task is asked to stop.
    fn cancel_token(&self) -> &Event;

    /// Whether the task was asked to stop.
    fn is_interrupted(&self) -> bool {
        self.cancel_token().is_set()
    }
}

impl<T: TaskTypes> Interruptible for FutureCell<T>
where
    FutureCell<T>: Send + Sync,
{
    fn cancel_token(&self) -> &Event {
        FutureCell::cancel_token(self)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<dyn Interruptible>>> = const { RefCell::new(None) };
}

/// While alive, `task` is the calling thread's current task; the previous one comes back after.
pub(crate) struct TaskScope(Option<Arc<dyn Interruptible>>);

impl TaskScope {
    pub(crate) fn enter(task: Arc<dyn Interruptible>) -> TaskScope {
        TaskScope(CURRENT.with(|current| current.replace(Some(task))))
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// The calling thread's current task, if it runs one.
pub(crate) fn current() -> Option<Arc<dyn Interruptible>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// `treadle.Cancelled`, as a task that was asked to stop raises it.
pub(crate) fn cancelled_error() -> PyErr {
    Cancelled::new_err("the task was asked to stop")
}

/// `Err(Cancelled)` if `task` was asked to stop.
pub(crate) fn check(task: Option<&dyn Interruptible>) -> PyResult<()> {
    match task {
        Some(task) if task.is_interrupted() => Err(cancelled_error()),
        _ => Ok(()),
    }
}
