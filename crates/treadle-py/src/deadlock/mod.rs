//! Deadlock detection's Python controls: the mode, the reporter's registration, the snapshot of
//! every wait (`_waits`), the bracket around a thread's start, and the pieces that live in
//! their own files: a thread's end as a wait target ([`thread_done`]) and lock-order mode
//! ([`lock_order`]).
//!
//! The detection itself is below: the graph in `treadle_core::wait_graph`, and each wait's
//! publication and verdicts in `crate::runtime::tracking`, which hands verdicts to the reporter
//! registered here (`hooks::set_reporter`); this module is never imported by the runtime.

pub(crate) mod lock_order;
pub(crate) mod thread_done;

use crate::runtime::hooks;
use crate::runtime::threads::register_current_thread;
use crate::runtime::tracking::{edges_to_python, mode_name};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use treadle_core::wait_graph::{Mode, WaitGraph};

/// `_set_reporter(fn)`: `fn(edges, verdict, mode)` builds the report; it returns the exception
/// to raise, or None. Each edge is `(waiter_ident, kind, waited_object, owner_ident, timed)`.
#[pyfunction]
pub(crate) fn _set_reporter(reporter: Py<PyAny>) {
    hooks::set_reporter(reporter);
}

/// `set_mode("raise" | "warn" | "off")`.
#[pyfunction]
pub(crate) fn set_mode(mode: &str) -> PyResult<()> {
    let mode = match mode {
        "raise" => Mode::Raise,
        "warn" => Mode::Warn,
        "off" => Mode::Off,
        other => {
            return Err(PyValueError::new_err(format!(
                "deadlock mode must be 'raise', 'warn' or 'off', not {other:?}"
            )))
        }
    };
    WaitGraph::global().set_mode(mode);
    Ok(())
}

/// The current deadlock-detection mode.
#[pyfunction]
pub(crate) fn get_mode() -> &'static str {
    mode_name(WaitGraph::global().mode())
}

/// Every wait published now, as `(waiter_ident, kind, waited_object, owner_ident, timed)`.
#[pyfunction]
pub(crate) fn _waits(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    edges_to_python(py, &WaitGraph::global().snapshot())
}

/// This thread's treadle number (for tests and reports).
#[pyfunction]
pub(crate) fn _current_thread_number() -> u64 {
    register_current_thread().0
}

/// `_thread_starting(starting)`: `Thread.start()` brackets the start of a thread with it, so that
/// no stall is judged while a thread exists that the interpreter does not count yet.
#[pyfunction]
pub(crate) fn _thread_starting(starting: bool) {
    WaitGraph::global().thread_starting(starting);
}
