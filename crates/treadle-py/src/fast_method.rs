//! Direct entry points for a class's hottest calls: a plain `METH_FASTCALL` method that answers
//! one call form (`q.put(item)`, `lock.acquire()`) when the core can at once, in place of a
//! pyo3 method, which pays for its generality on every call (a trampoline that counts the thread
//! as attached, an argument parser that matches positional and keyword arguments against the
//! signature): for an operation that is one atomic instruction, more than the operation.
//!
//! Every other call is passed, unchanged, to the pyo3 method the direct one replaced, which does
//! all the work, so the two cannot disagree on anything but speed. A direct method runs no
//! Python code, raises nothing and drops no `Py` handle (an object it lets go of is released
//! with `Py_DECREF`, as the thread is attached), so it needs none of what the trampoline
//! provides.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use std::ffi::CStr;
use std::ptr;

/// A direct method: its definition, which the interpreter may keep a pointer to for as long as
/// the process lives, and the pyo3 method it replaced, which it falls back to.
pub(crate) struct DirectMethod {
    def: ffi::PyMethodDef,
    fallback: PyOnceLock<Py<PyAny>>,
}

// SAFETY: the definition is never written after it is built and its pointers are to static
// data; the fallback is set once, under `PyOnceLock`'s own synchronization.
unsafe impl Sync for DirectMethod {}

impl DirectMethod {
    /// The direct method `name` (`doc` starts with its text signature).
    pub(crate) const fn new(
        name: &'static CStr,
        meth: ffi::PyCFunctionFastWithKeywords,
        doc: &'static CStr,
    ) -> DirectMethod {
        DirectMethod {
            def: ffi::PyMethodDef {
                ml_name: name.as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunctionFastWithKeywords: meth,
                },
                ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
                ml_doc: doc.as_ptr(),
            },
            fallback: PyOnceLock::new(),
        }
    }

    /// Puts this method on `class` in place of the pyo3 method of the same name, which it
    /// keeps to fall back to.
    pub(crate) fn replace(&'static self, class: &Bound<'_, PyType>) -> PyResult<()> {
        let py = class.py();
        // SAFETY: `ml_name` is the static C string the method was made with.
        let name = unsafe { CStr::from_ptr(self.def.ml_name) }
            .to_str()
            .expect("method names are ASCII");
        // On the class itself, a method descriptor is returned as it is.
        let original = class.getattr(name)?;
        let _ = self.fallback.set(py, original.unbind());
        // SAFETY: the definition is static and never written; the class pointer is a live type
        // object.
        let descriptor = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyDescr_NewMethod(class.as_type_ptr(), ptr::addr_of!(self.def).cast_mut()),
            )?
        };
        class.setattr(name, descriptor)
    }

    /// Calls the pyo3 method replaced with `slf` and the arguments as they came.
    ///
    /// # Safety
    ///
    /// The thread is attached; `slf`, `args` (`nargs` positional values then one value per
    /// name in `kwnames`) and `kwnames` (null or a tuple) are as the interpreter passes them to
    /// a `METH_FASTCALL | METH_KEYWORDS` method.
    pub(crate) unsafe fn fall_back(
        &self,
        slf: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject {
        // SAFETY: the caller's promise, passed on.
        unsafe { call_fallback(&self.fallback, slf, args, nargs, kwnames) }
    }
}

/// Puts each of `methods` on `class` in place of the pyo3 method of the same name.
pub(crate) fn replace_all(
    class: &Bound<'_, PyType>,
    methods: &[&'static DirectMethod],
) -> PyResult<()> {
    methods.iter().try_for_each(|method| method.replace(class))
}

/// Calls `fallback` (a method descriptor) with `slf` and the arguments as they came.
///
/// # Safety
///
/// The thread is attached; `slf`, `args` (`nargs` positional values then one value per name in
/// `kwnames`) and `kwnames` (null or a tuple) are as the interpreter passes them to a
/// `METH_FASTCALL | METH_KEYWORDS` method.
unsafe fn call_fallback(
    fallback: &PyOnceLock<Py<PyAny>>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the caller is attached (this is called from the interpreter).
    let py = unsafe { Python::assume_attached() };
    let Some(fallback) = fallback.get(py) else {
        // Unreachable: the descriptor that calls this exists only after `replace` set it.
        pyo3::exceptions::PySystemError::new_err("treadle: direct method not initialised")
            .restore(py);
        return ptr::null_mut();
    };
    let keywords = if kwnames.is_null() {
        0
    } else {
        // SAFETY: a non-null `kwnames` is a tuple.
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) }
    };
    let count = usize::try_from(nargs + keywords).unwrap_or(0);
    let mut stack = [ptr::null_mut(); 8];
    let mut heap = Vec::new();
    let all: &mut [*mut ffi::PyObject] = if count < stack.len() {
        &mut stack[..=count]
    } else {
        heap.resize(count + 1, ptr::null_mut());
        &mut heap
    };
    all[0] = slf;
    if count > 0 {
        // SAFETY: `args` holds `nargs` + `keywords` values.
        all[1..].copy_from_slice(unsafe { std::slice::from_raw_parts(args, count) });
    }
    // SAFETY: a vectorcall with the method's self first, as calling a descriptor expects.
    unsafe {
        ffi::PyObject_Vectorcall(
            fallback.as_ptr(),
            all.as_ptr(),
            usize::try_from(nargs + 1).unwrap_or(1),
            kwnames,
        )
    }
}

/// The instance a direct method of class `T` is called on.
///
/// # Safety
///
/// Called from a direct method of `T`'s (so the thread is attached, and the method descriptor
/// checked that `slf` is an instance of `T`); the reference does not outlive the call.
#[inline]
pub(crate) unsafe fn instance<
    'a,
    T: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync,
>(
    slf: *mut ffi::PyObject,
) -> &'a T {
    // SAFETY: the caller's promise: attached, and `slf` a live instance of `T` for the call.
    unsafe {
        let py = Python::assume_attached();
        let bound: Borrowed<'a, 'a, T> = Borrowed::from_ptr(py, slf).cast_unchecked::<T>();
        &*std::ptr::from_ref(bound.get())
    }
}

/// What a direct method returns for `result`: a new reference, or null with the error set.
pub(crate) fn returned(py: Python<'_>, result: PyResult<Bound<'_, PyAny>>) -> *mut ffi::PyObject {
    match result {
        Ok(value) => value.into_ptr(),
        Err(error) => {
            error.restore(py);
            ptr::null_mut()
        }
    }
}

/// A new reference to `None`.
pub(crate) fn none() -> *mut ffi::PyObject {
    // SAFETY: `Py_None` is immortal or reference-counted; either way a new reference is taken.
    unsafe {
        let none = ffi::Py_None();
        ffi::Py_INCREF(none);
        none
    }
}

/// A new reference to `True`.
pub(crate) fn py_true() -> *mut ffi::PyObject {
    // SAFETY: as in `none`.
    unsafe {
        let value = ffi::Py_True();
        ffi::Py_INCREF(value);
        value
    }
}
