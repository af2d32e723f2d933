//! `treadle.Semaphore` and `treadle.BoundedSemaphore`.

use crate::runtime::errors::{address, cannot_pickle, semaphore_error, type_path};
use crate::runtime::timeout::{optional_wait, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_until;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use treadle_core::wait_graph::WaitKind;
use treadle_core::Semaphore;

/// A counting semaphore, as `threading.Semaphore`.
#[pyclass(subclass, weakref, name = "Semaphore", module = "treadle")]
pub(crate) struct PySemaphore {
    core: Semaphore,
}

fn initial_value(value: i64) -> PyResult<usize> {
    usize::try_from(value)
        .map_err(|_| PyValueError::new_err("semaphore initial value must be >= 0"))
}

#[pymethods]
impl PySemaphore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        PySemaphore {
            core: Semaphore::new(1, false),
        }
    }

    #[pyo3(signature = (value=1))]
    fn __init__(&mut self, value: i64) -> PyResult<()> {
        self.core = Semaphore::new(initial_value(value)?, false);
        Ok(())
    }

    /// Take one unit, blocking or not, with an optional timeout; returns whether it was taken.
    #[pyo3(signature = (blocking=true, timeout=None))]
    fn acquire(
        slf: &Bound<'_, Self>,
        blocking: bool,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.borrow();
        let timeout = timeout.filter(|t| !t.is_none());
        if !blocking && timeout.is_some() {
            return Err(PyValueError::new_err(
                "can't specify timeout for non-blocking acquire",
            ));
        }
        let wait = if blocking {
            optional_wait(py, timeout)?
        } else {
            Wait::Never
        };
        let core = &this.core;
        if core.try_acquire() {
            return Ok(true);
        }
        if wait == Wait::Never {
            return Ok(false);
        }
        let track = Track {
            target: core,
            kind: WaitKind::Semaphore,
            ticket: 0,
            object: slf.as_any(),
        };
        block_until(py, wait, Some(track), |deadline| {
            core.acquire_until(deadline)
        })
    }

    /// Add `n` units, waking up to `n` waiting threads.
    #[pyo3(signature = (n=1))]
    fn release(&self, n: i64) -> PyResult<()> {
        if n < 1 {
            return Err(PyValueError::new_err("n must be one or more"));
        }
        let n = usize::try_from(n).map_err(|_| PyValueError::new_err("n is too large"))?;
        self.core.release(n).map_err(semaphore_error)
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
        PySemaphore::acquire(slf, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(1)
    }

    /// The current value (CPython keeps it in `_value`).
    #[getter]
    fn _value(&self) -> usize {
        self.core.value()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let this = slf.borrow();
        let value = match this.core.bound() {
            Some(bound) => format!("{}/{bound}", this.core.value()),
            None => this.core.value().to_string(),
        };
        format!(
            "<{} at {}: value={value}>",
            type_path(slf.as_any()),
            address(slf.as_any())
        )
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Err(cannot_pickle(slf.as_any()))
    }
}

/// A semaphore whose releases may not take it above its initial value, as
/// `threading.BoundedSemaphore`.
#[pyclass(extends = PySemaphore, subclass, weakref, name = "BoundedSemaphore", module = "treadle")]
pub(crate) struct PyBoundedSemaphore;

#[pymethods]
impl PyBoundedSemaphore {
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyClassInitializer<Self> {
        PyClassInitializer::from(PySemaphore::new(args, kwargs)).add_subclass(PyBoundedSemaphore)
    }

    #[pyo3(signature = (value=1))]
    fn __init__(mut slf: PyRefMut<'_, Self>, value: i64) -> PyResult<()> {
        slf.as_super().core = Semaphore::new(initial_value(value)?, true);
        Ok(())
    }
}
