//! Maps core errors to the exceptions `threading` raises in the same situation, with its messages.

use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use treadle_core::{LockError, SemaphoreError};

pyo3::import_exception!(threading, BrokenBarrierError);

pub(crate) fn lock_error(error: LockError) -> PyErr {
    match error {
        LockError::NotLocked => PyRuntimeError::new_err("release unlocked lock"),
        LockError::NotOwner => PyRuntimeError::new_err("cannot release un-acquired lock"),
        LockError::RecursionOverflow => PyOverflowError::new_err("Internal lock count overflowed"),
    }
}

pub(crate) fn semaphore_error(error: SemaphoreError) -> PyErr {
    match error {
        SemaphoreError::TooManyReleases => {
            PyValueError::new_err("Semaphore released too many times")
        }
        SemaphoreError::Overflow => PyOverflowError::new_err("Semaphore value overflowed"),
    }
}

pub(crate) fn broken_barrier() -> PyErr {
    BrokenBarrierError::new_err(())
}

/// `TypeError` for objects that hold thread state and so cannot be pickled, as `threading` says.
pub(crate) fn cannot_pickle(slf: &Bound<'_, PyAny>) -> PyErr {
    let name = slf
        .get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned());
    PyTypeError::new_err(format!("cannot pickle '{name}' object"))
}

/// `0x…` address of a Python object, for reprs.
pub(crate) fn address(slf: &Bound<'_, PyAny>) -> String {
    format!("{:#x}", slf.as_ptr() as usize)
}

/// `module.QualName` of an object's type, for reprs.
pub(crate) fn type_path(slf: &Bound<'_, PyAny>) -> String {
    let ty = slf.get_type();
    let module = ty
        .module()
        .map(|m| m.to_string())
        .unwrap_or_else(|_| "treadle".to_owned());
    let name = ty
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    format!("{module}.{name}")
}
