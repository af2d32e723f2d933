//! Lock-free operations on a `ctypes` integer (`treadle.multiprocessing`'s `Value`s):
//! `treadle_core::atomic` on the object's address, which the Python caller takes from an object
//! it holds alive for the call.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use treadle_core::atomic::IntType;

/// The integer type of a `ctypes` type code of this platform (`ctypes._SimpleCData._type_`).
fn int_type(code: &str) -> PyResult<IntType> {
    Ok(match code {
        "b" => IntType::I8,
        "B" => IntType::U8,
        "h" => IntType::I16,
        "H" => IntType::U16,
        "i" => IntType::I32,
        "I" => IntType::U32,
        "l" | "q" => IntType::I64,
        "L" | "Q" => IntType::U64,
        _ => {
            return Err(PyValueError::new_err(format!(
                "atomic operations need an integer value, not type code {code:?}"
            )))
        }
    })
}

/// The checked pointer: non-null and aligned for the type.
fn pointer(address: usize, ty: IntType) -> PyResult<*mut u8> {
    if address == 0 || address % ty.size() != 0 {
        return Err(PyValueError::new_err("misaligned integer"));
    }
    Ok(address as *mut u8)
}

/// The integer of type `code` at `address`.
#[pyfunction]
pub(crate) fn _atomic_load(address: usize, code: &str) -> PyResult<i128> {
    let ty = int_type(code)?;
    let ptr = pointer(address, ty)?;
    // SAFETY: the caller (treadle.multiprocessing.sharedctypes) passes the address of a ctypes
    // integer of this type that it holds alive for the call; it is aligned (checked) and other
    // processes reach it only through these same atomic operations or plain ctypes access,
    // whose tearing is the program's own race, not memory unsafety for us.
    Ok(unsafe { ty.load(ptr) })
}

/// Stores `value` (wrapped to the width) at `address`.
#[pyfunction]
pub(crate) fn _atomic_store(address: usize, code: &str, value: i128) -> PyResult<()> {
    let ty = int_type(code)?;
    let ptr = pointer(address, ty)?;
    // SAFETY: as in `_atomic_load`.
    unsafe { ty.store(ptr, value) };
    Ok(())
}

/// Adds `delta` (wrapping) at `address`; the value before.
#[pyfunction]
pub(crate) fn _atomic_fetch_add(address: usize, code: &str, delta: i128) -> PyResult<i128> {
    let ty = int_type(code)?;
    let ptr = pointer(address, ty)?;
    // SAFETY: as in `_atomic_load`.
    Ok(unsafe { ty.fetch_add(ptr, delta) })
}

/// Stores `new` at `address` if `expected` is there: (whether it was, the value found).
#[pyfunction]
pub(crate) fn _atomic_compare_exchange(
    address: usize,
    code: &str,
    expected: i128,
    new: i128,
) -> PyResult<(bool, i128)> {
    let ty = int_type(code)?;
    let ptr = pointer(address, ty)?;
    // SAFETY: as in `_atomic_load`.
    Ok(match unsafe { ty.compare_exchange(ptr, expected, new) } {
        Ok(found) => (true, found),
        Err(found) => (false, found),
    })
}
