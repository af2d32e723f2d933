//! `treadle.Semaphore` and `treadle.BoundedSemaphore`.

use crate::runtime::errors::{address, cannot_pickle, semaphore_error, type_path};
use crate::runtime::timeout::{optional_wait, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_until;
use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use treadle_core::wait_graph::WaitKind;
use treadle_core::{Semaphore, Units};

/// A counting semaphore, as `threading.Semaphore`.
#[pyclass(subclass, weakref, dict, name = "Semaphore", module = "treadle")]
pub(crate) struct PySemaphore {
    core: Semaphore,
}

/// A count of units as `threading`'s semaphores take it: any int (an index), of any size, though
/// counts from 2**128 on (more than a program can ever take) are `OverflowError`; whether it is
/// negative is for the caller to refuse, with its own message.
#[derive(Clone, Copy)]
enum Count {
    Units(Units),
    Negative,
}

impl FromPyObject<'_, '_> for Count {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        // SAFETY: attached, with `obj` a live object; PyNumber_Index returns a new reference,
        // or null with the TypeError `operator.index` raises set.
        let value = unsafe {
            Bound::from_owned_ptr_or_err(obj.py(), pyo3::ffi::PyNumber_Index(obj.as_ptr()))?
        };
        if value.lt(0)? {
            return Ok(Count::Negative);
        }
        value
            .extract::<Units>()
            .map(Count::Units)
            .map_err(|_| PyOverflowError::new_err("semaphore count must be below 2**128"))
    }
}

fn initial_value(value: Count) -> PyResult<Units> {
    match value {
        Count::Units(units) => Ok(units),
        Count::Negative => Err(PyValueError::new_err(
            "semaphore initial value must be >= 0",
        )),
    }
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

    #[pyo3(signature = (value=Count::Units(1)))]
    fn __init__(&mut self, value: Count) -> PyResult<()> {
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
    #[pyo3(signature = (n=Count::Units(1)), text_signature = "($self, n=1)")]
    fn release(&self, n: Count) -> PyResult<()> {
        match n {
            Count::Units(n) if n >= 1 => self.core.release(n).map_err(semaphore_error),
            _ => Err(PyValueError::new_err("n must be one or more")),
        }
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
        PySemaphore::acquire(slf, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(Count::Units(1))
    }

    /// The current value (CPython keeps it in `_value`).
    #[getter]
    fn _value(&self) -> Units {
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

    #[pyo3(signature = (value=Count::Units(1)))]
    fn __init__(mut slf: PyRefMut<'_, Self>, value: Count) -> PyResult<()> {
        slf.as_super().core = Semaphore::new(initial_value(value)?, true);
        Ok(())
    }
}
