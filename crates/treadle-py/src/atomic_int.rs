//! `treadle.AtomicInt`: a 64-bit signed integer that threads update without a lock.
//!
//! A thin face on the core's `AtomicInt`: no operation blocks, so none detaches from the
//! interpreter; an argument or a result outside 64 signed bits raises `OverflowError` and
//! leaves the value as it was.

use crate::runtime::errors::cannot_pickle;
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use treadle_core::{AtomicInt, Overflow};

/// A 64-bit signed integer with atomic operations, shared by threads without a lock.
#[pyclass(frozen, name = "AtomicInt", module = "treadle")]
pub(crate) struct PyAtomicInt {
    core: AtomicInt,
}

fn overflow(operation: &str, overflow: Overflow, delta: i64) -> PyErr {
    PyOverflowError::new_err(format!(
        "AtomicInt.{operation}({delta}) on {}: the result does not fit in a 64-bit signed \
         integer (the value is unchanged)",
        overflow.current
    ))
}

#[pymethods]
impl PyAtomicInt {
    #[new]
    #[pyo3(signature = (value = 0))]
    fn new(value: i64) -> Self {
        PyAtomicInt {
            core: AtomicInt::new(value),
        }
    }

    /// The current value.
    fn load(&self) -> i64 {
        self.core.load()
    }

    /// Set the value.
    fn store(&self, value: i64) {
        self.core.store(value);
    }

    /// Set the value; return the value it replaced.
    fn exchange(&self, value: i64) -> i64 {
        self.core.exchange(value)
    }

    /// Add `delta`; return the new value.
    #[pyo3(signature = (delta = 1))]
    fn add(&self, delta: i64) -> PyResult<i64> {
        let before = self
            .core
            .fetch_add(delta)
            .map_err(|o| overflow("add", o, delta))?;
        // fetch_add checked that the sum fits.
        Ok(before + delta)
    }

    /// Add `delta`; return the value before the addition.
    #[pyo3(signature = (delta = 1))]
    fn fetch_add(&self, delta: i64) -> PyResult<i64> {
        self.core
            .fetch_add(delta)
            .map_err(|o| overflow("fetch_add", o, delta))
    }

    /// Subtract `delta`; return the new value.
    #[pyo3(signature = (delta = 1))]
    fn sub(&self, delta: i64) -> PyResult<i64> {
        let before = self
            .core
            .fetch_sub(delta)
            .map_err(|o| overflow("sub", o, delta))?;
        // fetch_sub checked that the difference fits.
        Ok(before - delta)
    }

    /// Subtract `delta`; return the value before the subtraction.
    #[pyo3(signature = (delta = 1))]
    fn fetch_sub(&self, delta: i64) -> PyResult<i64> {
        self.core
            .fetch_sub(delta)
            .map_err(|o| overflow("fetch_sub", o, delta))
    }

    /// Store `new` if the value is `expected`. Returns `(succeeded, previous)`: whether it
    /// stored, and the value it found (equal to `expected` when it stored).
    fn compare_exchange(&self, expected: i64, new: i64) -> (bool, i64) {
        match self.core.compare_exchange(expected, new) {
            Ok(previous) => (true, previous),
            Err(current) => (false, current),
        }
    }

    fn __int__(&self) -> i64 {
        self.core.load()
    }

    fn __index__(&self) -> i64 {
        self.core.load()
    }

    /// As an int's: false at zero (without it, `if counter:` would always be true).
    fn __bool__(&self) -> bool {
        self.core.load() != 0
    }

    fn __repr__(&self) -> String {
        format!("AtomicInt({})", self.core.load())
    }

    /// A copy sent to another process would be a second, unshared counter: refused, as a
    /// lock's pickling is.
    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Err(cannot_pickle(slf.as_any()))
    }
}
