//! `treadle._treadle._AtomicCell`: lock-free operations on a `ctypes` integer
//! (`treadle.multiprocessing`'s `Value`s), `treadle_core::atomic` on the object's address. The
//! cell holds the object, so the memory outlives it.

pub(crate) mod fast;

use crate::runtime::timeout::optional_wait;
use crate::runtime::wait::block_until;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::sync::atomic::AtomicU32;
use treadle_core::atomic::IntType;
use treadle_os::futex_word;

/// The integer type of a fixed-width type code (`b`, `B`, `h`, `H`, `i`, `I`, `q`, `Q`).
pub(crate) fn int_type(code: &str) -> PyResult<IntType> {
    Ok(match code {
        "b" => IntType::I8,
        "B" => IntType::U8,
        "h" => IntType::I16,
        "H" => IntType::U16,
        "i" => IntType::I32,
        "I" => IntType::U32,
        "q" => IntType::I64,
        "Q" => IntType::U64,
        _ => {
            return Err(PyValueError::new_err(format!(
                "atomic operations need an integer type code, not {code:?}"
            )))
        }
    })
}

/// `value`, an integer of type `ty`, as a Python `int`, made from 64 bits (an `i128` goes
/// through a slow byte-array conversion); an error (no memory) is returned, never a panic, as
/// the direct entry points, which have no trampoline to catch one, need.
pub(crate) fn int_object(py: Python<'_>, ty: IntType, value: i128) -> PyResult<Bound<'_, PyAny>> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // SAFETY: attached; each constructor returns a new reference, or null with an error set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            match ty {
                IntType::U64 => pyo3::ffi::PyLong_FromUnsignedLongLong(value as u64),
                _ => pyo3::ffi::PyLong_FromLongLong(value as i64),
            },
        )
    }
}

/// `obj` as a plain `int` that fits in 64 bits, if it is one (no error is raised or left).
#[inline]
pub(crate) fn small_int(obj: &Bound<'_, PyAny>) -> Option<i64> {
    if !obj.is_exact_instance_of::<pyo3::types::PyInt>() {
        return None;
    }
    let mut overflow = 0;
    // SAFETY: the thread is attached (`obj` is bound) and `obj` is an `int`, for which the
    // call fails only by overflow, which it reports in `overflow` without setting an error.
    let value = unsafe { pyo3::ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &raw mut overflow) };
    (overflow == 0).then_some(value)
}

/// An integer argument of an atomic operation: a plain `int` that fits in 64 bits read directly,
/// any other through `__index__` and a 128-bit conversion (slow, and raising what `int()`
/// would); pyo3's own 128-bit conversion goes through a byte array every time.
#[derive(Clone, Copy)]
pub(crate) struct Int(i128);

impl FromPyObject<'_, '_> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        match small_int(&obj) {
            Some(value) => Ok(Int(i128::from(value))),
            None => obj.extract().map(Int),
        }
    }
}

/// An integer in memory that `owner` keeps alive, operated on atomically.
#[pyclass(frozen, name = "_AtomicCell", module = "treadle")]
pub(crate) struct PyAtomicCell {
    _owner: Py<PyAny>,
    address: usize,
    ty: IntType,
    /// How long `wait_while` watches before it sleeps, adapted to how waits went.
    spin: futex_word::Spin,
}

impl PyAtomicCell {
    fn ptr(&self) -> *mut u8 {
        self.address as *mut u8
    }

    #[inline]
    fn raw_load(&self) -> i128 {
        // SAFETY: `address` is aligned (checked) and points into `owner`'s memory, which the
        // cell keeps alive and which does not move; other processes reach it only through
        // these same atomic operations or plain ctypes reads and writes, a race of the
        // program's own that tears no memory of ours.
        unsafe { self.ty.load(self.ptr()) }
    }

    /// Adds `delta` (wrapping); the value before.
    #[inline]
    fn raw_fetch_add(&self, delta: i128) -> i128 {
        // SAFETY: as in `raw_load`.
        unsafe { self.ty.fetch_add(self.ptr(), delta) }
    }

    /// Adds `delta` (wrapping); the value after.
    #[inline]
    fn raw_add(&self, delta: i128) -> i128 {
        self.ty.wrap(self.raw_fetch_add(delta) + delta)
    }

    /// The cell as a futex word (a 32-bit integer only).
    fn word(&self) -> PyResult<&AtomicU32> {
        if !matches!(self.ty, IntType::I32 | IntType::U32) {
            return Err(PyTypeError::new_err(
                "only a 32-bit integer can be waited on",
            ));
        }
        // SAFETY: a 4-byte aligned integer (checked at construction) in memory `owner` keeps
        // alive and in place for as long as `self` lives, which outlives the borrow; every
        // access to it is atomic or the program's own race (see `load`).
        Ok(unsafe { AtomicU32::from_ptr(self.ptr().cast()) })
    }
}

#[pymethods]
impl PyAtomicCell {
    /// The integer of type `code` at `address`, inside `owner` (a `ctypes` object, which
    /// must stay where it is as long as it lives, as one made on a buffer does).
    #[new]
    fn new(owner: Py<PyAny>, address: usize, code: &str) -> PyResult<Self> {
        let ty = int_type(code)?;
        if address == 0 || address % ty.size() != 0 {
            return Err(PyValueError::new_err("misaligned integer"));
        }
        Ok(PyAtomicCell {
            _owner: owner,
            address,
            ty,
            spin: futex_word::Spin::default(),
        })
    }

    /// The value.
    fn load<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        int_object(py, self.ty, self.raw_load())
    }

    /// Sets the value (wrapped to the width).
    fn store(&self, value: Int) {
        // SAFETY: as in `raw_load`.
        unsafe { self.ty.store(self.ptr(), value.0) };
    }

    /// Adds `delta` (wrapping); the value before.
    #[pyo3(signature = (delta=Int(1)))]
    fn fetch_add<'py>(&self, py: Python<'py>, delta: Int) -> PyResult<Bound<'py, PyAny>> {
        int_object(py, self.ty, self.raw_fetch_add(delta.0))
    }

    /// Adds `delta` (wrapping); the value after.
    #[pyo3(signature = (delta=Int(1)))]
    fn add<'py>(&self, py: Python<'py>, delta: Int) -> PyResult<Bound<'py, PyAny>> {
        int_object(py, self.ty, self.raw_add(delta.0))
    }

    /// Waits, detached and interruptible, while the value (a 32-bit integer) is `expected`, for
    /// at most `timeout` seconds (`None`: no limit); whether it changed.
    #[pyo3(signature = (expected, timeout=None))]
    fn wait_while(
        &self,
        py: Python<'_>,
        expected: i128,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let word = self.word()?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let expected = self.ty.wrap(expected) as u32;
        let wait = optional_wait(py, timeout)?;
        block_until(py, wait, None, |deadline| {
            futex_word::wait_while(word, expected, deadline, &self.spin)
        })
    }

    /// Wakes every thread, in any process, waiting in `wait_while` on this value.
    fn wake_all(&self) -> PyResult<()> {
        futex_word::wake_all(self.word()?);
        Ok(())
    }

    /// Sets the value to `new` if it is `expected`: whether it did, and the value found
    /// (`treadle.AtomicInt.compare_exchange`'s convention).
    fn compare_exchange<'py>(
        &self,
        py: Python<'py>,
        expected: Int,
        new: Int,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        // SAFETY: as in `raw_load`.
        let (swapped, found) =
            match unsafe { self.ty.compare_exchange(self.ptr(), expected.0, new.0) } {
                Ok(found) => (true, found),
                Err(found) => (false, found),
            };
        Ok((swapped, int_object(py, self.ty, found)?))
    }
}
