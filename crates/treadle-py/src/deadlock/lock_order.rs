//! Lock-order mode: while `treadle.deadlock` has set its hook, every first acquisition and last
//! release of a treadle `Lock` or `RLock` is reported to it, with where the lock was made, so
//! that it can build the lockdep-style graph of orders that did not deadlock this time. Off by
//! default: one relaxed load per lock operation (`hooks::lock_order_on`).

use crate::runtime::hooks;
use pyo3::prelude::*;
use treadle_core::wait_graph::{Mode, WaitGraph};

pub(crate) use crate::runtime::hooks::lock_order_on;

/// Tells the lock-order hook that the calling thread took (`acquired`) or is giving up a lock.
#[cold]
pub(crate) fn lock_order_event(lock: &Bound<'_, PyAny>, acquired: bool) -> PyResult<()> {
    let py = lock.py();
    match hooks::lock_order(py) {
        Some(hook) => hook.bind(py).call1((lock, acquired)).map(drop),
        None => Ok(()),
    }
}

/// `_set_lock_order_hook(fn | None)`: `fn(lock, acquired)` is called on every first acquisition
/// and last release of a treadle `Lock` or `RLock` while set; `None` turns the mode off.
#[pyfunction]
pub(crate) fn _set_lock_order_hook(hook: Option<Py<PyAny>>) {
    hooks::set_lock_order(hook);
}

/// Where the Python code that called into treadle is, as `file:line`, while detection is on.
pub(crate) fn creation_site(py: Python<'_>) -> Option<Box<str>> {
    if WaitGraph::global().mode() == Mode::Off {
        return None;
    }
    // SAFETY: attached to the interpreter (we hold `py`); PyEval_GetFrame returns a borrowed
    // frame or null, and PyFrame_GetCode a new reference that `from_owned_ptr` takes over.
    unsafe {
        let frame = pyo3::ffi::PyEval_GetFrame();
        if frame.is_null() {
            return None;
        }
        let line = pyo3::ffi::PyFrame_GetLineNumber(frame);
        let code = pyo3::ffi::PyFrame_GetCode(frame);
        let code = Bound::from_owned_ptr(py, code.cast());
        let file: String = code.getattr("co_filename").ok()?.extract().ok()?;
        Some(format!("{file}:{line}").into_boxed_str())
    }
}
