//! `treadle._treadle._SharedValue`: the base class of `treadle.multiprocessing`'s `Value`
//! (`sharedctypes.Synchronized`), whose `value` is read and written natively: the lock taken,
//! the number at the `ctypes` object's address read or written, the lock given back, all in one
//! call, where the standard library's property runs a Python frame and two lock calls.
//!
//! Only for a number (an integer of a fixed width, a `float` or a `double`) behind a treadle
//! lock, and only when the lock is free or held by the caller (an `RLock` is taken again, the
//! common case under `with value.get_lock():`). Any other case (another kind of lock, a value of
//! another type, a lock held elsewhere, which must be waited for, a value to write that is not a
//! plain `int` or `float`) runs the standard library's property itself, so the two cannot differ
//! but in speed.

use crate::atomic::{int_object, int_type};
use crate::shared_lock::PySharedLock;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyInt};
use treadle_core::atomic::IntType;

/// What the number is.
#[derive(Debug, Clone, Copy)]
enum Number {
    Int(IntType),
    Float,
    Double,
}

impl Number {
    fn of(code: &str) -> PyResult<Number> {
        Ok(match code {
            "f" => Number::Float,
            "d" => Number::Double,
            _ => Number::Int(int_type(code)?),
        })
    }

    /// The integer the number is stored as.
    fn storage(self) -> IntType {
        match self {
            Number::Int(ty) => ty,
            Number::Float => IntType::U32,
            Number::Double => IntType::U64,
        }
    }
}

/// A number behind a treadle lock, read and written natively.
struct Direct {
    lock: Py<PySharedLock>,
    /// The `ctypes` object, which keeps the memory alive and in place.
    _owner: Py<PyAny>,
    address: usize,
    number: Number,
}

impl Direct {
    fn ptr(&self) -> *mut u8 {
        self.address as *mut u8
    }

    /// The number, read with the lock held.
    fn read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: `address` is aligned for the number (checked at construction) and points
        // into `_owner`'s memory, which this keeps alive and which does not move; other
        // processes write it under the same lock, or race with the program's own plain ctypes
        // access, which tears no memory of ours.
        let raw = unsafe { self.number.storage().load(self.ptr()) };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(match self.number {
            Number::Int(ty) => int_object(py, ty, raw)?,
            Number::Float => PyFloat::new(py, f64::from(f32::from_bits(raw as u32))).into_any(),
            Number::Double => PyFloat::new(py, f64::from_bits(raw as u64)).into_any(),
        })
    }

    /// `value` as the number's bits, if it is a plain `int` (that fits in 64 bits) or `float`
    /// of the number's kind; `ctypes` itself converts anything else.
    fn bits_of(&self, value: &Bound<'_, PyAny>) -> Option<u64> {
        match self.number {
            Number::Int(_) => {
                let value: i64 = value.cast_exact::<PyInt>().ok()?.extract().ok()?;
                #[allow(clippy::cast_sign_loss)]
                Some(value as u64)
            }
            Number::Float => {
                #[allow(clippy::cast_possible_truncation)]
                let value = value.cast_exact::<PyFloat>().ok()?.value() as f32;
                Some(u64::from(value.to_bits()))
            }
            Number::Double => Some(value.cast_exact::<PyFloat>().ok()?.value().to_bits()),
        }
    }

    /// Writes the number's `bits` ([`Direct::bits_of`]) with the lock held, as `ctypes` would
    /// (an integer wraps at the width).
    fn write(&self, bits: u64) {
        // SAFETY: as in `read`.
        #[allow(clippy::cast_possible_wrap)]
        unsafe {
            self.number
                .storage()
                .store(self.ptr(), i128::from(bits as i64));
        }
    }
}

/// The base of `treadle.multiprocessing.sharedctypes.Synchronized`.
#[pyclass(frozen, subclass, name = "_SharedValue", module = "treadle")]
pub(crate) struct PySharedValue {
    direct: Option<Direct>,
}

/// The standard library's `Synchronized.value` property, which every other case runs.
static STANDARD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn standard(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    Ok(STANDARD
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import("multiprocessing.sharedctypes")?
                .getattr("Synchronized")?
                .getattr("value")?
                .unbind())
        })?
        .bind(py))
}

/// `f()` with `lock` held, if that needs no wait: with an `RLock` the caller holds as it is
/// (taking it again and giving it back would only write the shared depth twice, which the
/// other processes' cores then read again), else taken now and given back; `None` if `lock`
/// must be waited for.
#[inline]
fn under_lock<T>(lock: &PySharedLock, f: impl FnOnce() -> T) -> PyResult<Option<T>> {
    if lock.holds_rlock() {
        return Ok(Some(f()));
    }
    if !lock.try_acquire_quietly() {
        return Ok(None);
    }
    let value = f();
    lock.release()?;
    Ok(Some(value))
}

#[pymethods]
impl PySharedValue {
    /// A `Value` of `obj` (a `ctypes` object) behind `lock`; `code` (`b` ... `Q`, `f`, `d`) says
    /// what number is at `address`, or `None` if `obj` is not one.
    #[new]
    #[pyo3(signature = (obj, lock, address=0, code=None))]
    fn new(
        obj: &Bound<'_, PyAny>,
        lock: &Bound<'_, PyAny>,
        address: usize,
        code: Option<&str>,
    ) -> PyResult<Self> {
        let (Some(code), Ok(lock)) = (code, lock.cast::<PySharedLock>()) else {
            return Ok(PySharedValue { direct: None });
        };
        let number = Number::of(code)?;
        if address == 0 || address % number.storage().size() != 0 {
            return Err(PyValueError::new_err("misaligned value"));
        }
        Ok(PySharedValue {
            direct: Some(Direct {
                lock: lock.clone().unbind(),
                _owner: obj.clone().unbind(),
                address,
                number,
            }),
        })
    }

    /// The value, read under the lock.
    #[getter]
    fn value<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if let Some(direct) = &slf.get().direct {
            if let Some(value) = under_lock(direct.lock.get(), || direct.read(py))? {
                return value;
            }
        }
        standard(py)?.call_method1("__get__", (slf,))
    }

    /// Sets the value, under the lock.
    #[setter]
    fn set_value(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if let Some(direct) = &slf.get().direct {
            if let Some(bits) = direct.bits_of(value) {
                if under_lock(direct.lock.get(), || direct.write(bits))?.is_some() {
                    return Ok(());
                }
            }
        }
        standard(py)?.call_method1("__set__", (slf, value))?;
        Ok(())
    }
}
