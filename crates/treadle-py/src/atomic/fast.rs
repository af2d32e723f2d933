//! Direct entry points ([`fast_method`](crate::fast_method)) for a `Value`'s atomic counter
//! calls: `fetch_add()`, `fetch_add(delta)`, `add()`, `add(delta)` with a plain `int` delta that
//! fits in 64 bits, and `load()`. Every other call (a keyword, another kind of delta) goes to the
//! pyo3 method the direct one replaced.

use super::{int_object, small_int, PyAtomicCell};
use crate::fast_method::{instance, replace_all, returned, DirectMethod};
use pyo3::ffi;
use pyo3::prelude::*;

static FETCH_ADD: DirectMethod = DirectMethod::new(
    c"fetch_add",
    add::<true>,
    c"fetch_add($self, delta=1)\n--\n\nAdds `delta` (wrapping); the value before.",
);
static ADD: DirectMethod = DirectMethod::new(
    c"add",
    add::<false>,
    c"add($self, delta=1)\n--\n\nAdds `delta` (wrapping); the value after.",
);
static LOAD: DirectMethod = DirectMethod::new(c"load", load, c"load($self)\n--\n\nThe value.");

/// Replaces `fetch_add`, `add` and `load` of `_AtomicCell` with their direct versions.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    replace_all(&py.get_type::<PyAtomicCell>(), &[&FETCH_ADD, &ADD, &LOAD])
}

/// `fetch_add` (`BEFORE`) or `add` with no argument or one plain, 64-bit `int`.
unsafe extern "C" fn add<const BEFORE: bool>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if nargs <= 1 && kwnames.is_null() {
        // SAFETY: called by the interpreter, attached, with `slf` an instance of the class (the
        // method descriptor checks it) and `nargs` arguments in `args`.
        unsafe {
            let py = Python::assume_attached();
            let delta = if nargs == 0 {
                Some(1)
            } else {
                small_int(&Borrowed::from_ptr(py, *args))
            };
            if let Some(delta) = delta {
                let cell = instance::<PyAtomicCell>(slf);
                let delta = i128::from(delta);
                let value = if BEFORE {
                    cell.raw_fetch_add(delta)
                } else {
                    cell.raw_add(delta)
                };
                return returned(py, int_object(py, cell.ty, value));
            }
        }
    }
    let fallback = if BEFORE { &FETCH_ADD } else { &ADD };
    // SAFETY: the arguments are passed on as the interpreter gave them.
    unsafe { fallback.fall_back(slf, args, nargs, kwnames) }
}

/// `load()`.
unsafe extern "C" fn load(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if nargs == 0 && kwnames.is_null() {
        // SAFETY: as in `add`.
        unsafe {
            let py = Python::assume_attached();
            let cell = instance::<PyAtomicCell>(slf);
            return returned(py, int_object(py, cell.ty, cell.raw_load()));
        }
    }
    // SAFETY: as in `add`.
    unsafe { LOAD.fall_back(slf, args, nargs, kwnames) }
}
