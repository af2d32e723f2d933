//! `treadle.Event`.

use crate::condition::PyCondition;
use crate::lock::PyLock;
use crate::runtime::errors::{address, cannot_pickle, type_path};
use crate::runtime::timeout::optional_wait;
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_until;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use treadle_core::wait_graph::WaitKind;
use treadle_core::Event;

/// An event flag, as `threading.Event`.
#[pyclass(frozen, subclass, weakref, dict, name = "Event", module = "treadle")]
pub(crate) struct PyEvent {
    core: Event,
    /// `threading.Event` exposes its `Condition(Lock())` as `_cond`, and CPython's tests (and some
    /// subclasses) lock it. treadle's flag does not need it; it is made on first use, for them.
    compat_cond: PyOnceLock<Py<PyAny>>,
}

#[pymethods]
impl PyEvent {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        PyEvent {
            core: Event::new(),
            compat_cond: PyOnceLock::new(),
        }
    }

    fn __init__(&self) {}

    /// Whether the flag is set.
    fn is_set(&self) -> bool {
        self.core.is_set()
    }

    /// Deprecated alias of `is_set`, as in `threading` (with its `DeprecationWarning`).
    #[pyo3(name = "isSet")]
    fn is_set_alias(&self, py: Python<'_>) -> PyResult<bool> {
        PyErr::warn(
            py,
            &py.get_type::<pyo3::exceptions::PyDeprecationWarning>(),
            c"isSet() is deprecated, use is_set() instead",
            1,
        )?;
        Ok(self.core.is_set())
    }

    /// Set the flag and wake every waiting thread.
    fn set(&self) {
        self.core.set();
    }

    /// Clear the flag.
    fn clear(&self) {
        self.core.clear();
    }

    /// Wait until the flag is set or `timeout` seconds pass; returns whether it was set.
    #[pyo3(signature = (timeout=None))]
    fn wait(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let core = &slf.get().core;
        if core.is_set() {
            return Ok(true);
        }
        let wait = optional_wait(slf.py(), timeout)?;
        let ticket = core.ticket();
        let track = Track {
            target: core,
            kind: WaitKind::Event,
            ticket: ticket.value(),
            object: slf.as_any(),
        };
        block_until(slf.py(), wait, Some(track), |deadline| {
            core.wait_until(ticket, deadline)
        })
    }

    fn _at_fork_reinit(&self, py: Python<'_>) -> PyResult<()> {
        self.core.reset_after_fork();
        if let Some(cond) = self.compat_cond.get(py) {
            cond.bind(py).call_method0("_at_fork_reinit")?;
        }
        Ok(())
    }

    #[getter]
    fn _cond(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.compat_cond
            .get_or_try_init(py, || {
                let lock = Bound::new(py, PyLock::new_at(py))?;
                let cond = py.get_type::<PyCondition>().call1((lock,))?;
                Ok::<_, PyErr>(cond.unbind())
            })
            .map(|cond| cond.clone_ref(py))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let state = if slf.get().core.is_set() {
            "set"
        } else {
            "unset"
        };
        format!(
            "<{} at {}: {state}>",
            type_path(slf.as_any()),
            address(slf.as_any())
        )
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Err(cannot_pickle(slf.as_any()))
    }
}
