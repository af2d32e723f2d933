//! Direct entry points for the two hottest calls, `q.put(item)` and `q.get()`.
//!
//! A pyo3 method pays for its generality on every call: a trampoline that counts the thread as
//! attached, and an argument parser that matches positional and keyword arguments against the
//! signature. For `put(item)` and `get()` on a queue that runs in the core, that is more work than
//! the queue operation itself. So the classes' `put` and `get` are replaced by plain
//! `METH_FASTCALL` methods (made here, at module import) that handle exactly that call: one
//! positional `item`, or no argument, when the core can answer without waiting. Every other call
//! (keywords, `block`, `timeout`, a full or empty queue, a shut-down queue, a queue run as a
//! monitor) is passed unchanged to the pyo3 method it replaced, which does all the work, so the
//! two paths cannot disagree on anything but speed.
//!
//! The fast path runs no Python code, raises nothing, and drops no `Py` handle (an item the core
//! hands back is released with `Py_DECREF`, as the thread is attached), so it needs none of what
//! the trampoline provides.

use super::py_queue::PyQueue;
use super::simple::PySimpleQueue;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use std::ffi::CStr;
use std::ptr;
use treadle_core::Queue;

/// The pyo3 methods replaced, which the fast paths fall back to.
static QUEUE_PUT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static QUEUE_GET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SIMPLE_PUT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SIMPLE_GET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A method definition the interpreter may keep a pointer to for as long as the process lives.
struct MethodDef(ffi::PyMethodDef);

// SAFETY: the definition is never written after it is built; its pointers are to static data.
unsafe impl Sync for MethodDef {}

const fn method(
    name: &'static CStr,
    meth: ffi::PyCFunctionFastWithKeywords,
    doc: &'static CStr,
) -> MethodDef {
    MethodDef(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: meth,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    })
}

static QUEUE_PUT_DEF: MethodDef = method(
    c"put",
    queue_put,
    c"put($self, item, block=True, timeout=None)\n--\n\nPut `item` into the queue, waiting for a \
      free slot if `block` (at most `timeout` seconds, then `queue.Full`). Raises `ShutDown` if \
      the queue has been shut down.",
);
static QUEUE_GET_DEF: MethodDef = method(
    c"get",
    queue_get,
    c"get($self, block=True, timeout=None)\n--\n\nRemove and return an item, waiting for one if \
      `block` (at most `timeout` seconds, then `queue.Empty`). Raises `ShutDown` if the queue has \
      been shut down and is empty.",
);
static SIMPLE_PUT_DEF: MethodDef = method(
    c"put",
    simple_put,
    c"put($self, item, block=True, timeout=None)\n--\n\nPut `item` into the queue; never blocks \
      (`block` and `timeout` are accepted and ignored, as in `queue.SimpleQueue`).",
);
static SIMPLE_GET_DEF: MethodDef = method(
    c"get",
    simple_get,
    c"get($self, block=True, timeout=None)\n--\n\nRemove and return an item, waiting for one if \
      `block` (at most `timeout` seconds, then `queue.Empty`).",
);

/// Replaces `put` and `get` of `Queue` and `SimpleQueue` with their direct versions.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let queue = py.get_type::<PyQueue>();
    replace(&queue, &QUEUE_PUT_DEF, &QUEUE_PUT)?;
    replace(&queue, &QUEUE_GET_DEF, &QUEUE_GET)?;
    let simple = py.get_type::<PySimpleQueue>();
    replace(&simple, &SIMPLE_PUT_DEF, &SIMPLE_PUT)?;
    replace(&simple, &SIMPLE_GET_DEF, &SIMPLE_GET)
}

fn replace(
    class: &Bound<'_, PyType>,
    def: &'static MethodDef,
    fallback: &PyOnceLock<Py<PyAny>>,
) -> PyResult<()> {
    let py = class.py();
    // SAFETY: `ml_name` is one of the static C strings above.
    let name = unsafe { CStr::from_ptr(def.0.ml_name) }
        .to_str()
        .expect("method names are ASCII");
    // On the class itself, a method descriptor is returned as it is.
    let original = class.getattr(name)?;
    let _ = fallback.set(py, original.unbind());
    // SAFETY: `def` is static and never written; the class pointer is a live type object.
    let descriptor = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyDescr_NewMethod(class.as_type_ptr(), ptr::addr_of!(def.0).cast_mut()),
        )?
    };
    class.setattr(name, descriptor)
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
        // Unreachable: the descriptor that calls this exists only after `install` set it.
        pyo3::exceptions::PySystemError::new_err("treadle: queue method not initialised")
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

/// Puts the one positional argument into `core` if that can be done now; `None` returns.
///
/// # Safety
///
/// The thread is attached and `item` is a live object.
#[inline]
unsafe fn try_put(core: &Queue<Py<PyAny>>, item: *mut ffi::PyObject) -> bool {
    // SAFETY: the thread is attached.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `item` is a live object, borrowed from the caller; this takes a new reference.
    let item = unsafe { Bound::from_borrowed_ptr(py, item) }.unbind();
    match core.try_put(item) {
        Ok(()) => true,
        Err(
            treadle_core::PutError::Full(item)
            | treadle_core::PutError::ShutDown(item)
            | treadle_core::PutError::Diverted(item),
        ) => {
            // SAFETY: attached; releases the reference taken above without going through the
            // deferred-decref pool that dropping a `Py` outside a pyo3 call would use.
            unsafe { ffi::Py_DECREF(item.into_ptr()) };
            false
        }
    }
}

/// The reference to `None` a successful `put` returns.
fn none() -> *mut ffi::PyObject {
    // SAFETY: `Py_None` is immortal or reference-counted; either way a new reference is taken.
    unsafe {
        let none = ffi::Py_None();
        ffi::Py_INCREF(none);
        none
    }
}

macro_rules! fast_methods {
    ($put:ident, $get:ident, $class:ty, $core:expr, $put_fallback:ident, $get_fallback:ident) => {
        unsafe extern "C" fn $put(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            if nargs == 1 && kwnames.is_null() {
                // SAFETY: called by the interpreter, attached, with `slf` an instance of the
                // class (the method descriptor checks it) and one argument in `args`.
                unsafe {
                    let py = Python::assume_attached();
                    let this = Borrowed::from_ptr(py, slf).cast_unchecked::<$class>();
                    if let Some(core) = $core(this.get(), py) {
                        if try_put(core, *args) {
                            return none();
                        }
                    }
                }
            }
            // SAFETY: the arguments are passed on as the interpreter gave them.
            unsafe { call_fallback(&$put_fallback, slf, args, nargs, kwnames) }
        }

        unsafe extern "C" fn $get(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            if nargs == 0 && kwnames.is_null() {
                // SAFETY: called by the interpreter, attached, with `slf` an instance of the
                // class (the method descriptor checks it).
                unsafe {
                    let py = Python::assume_attached();
                    let this = Borrowed::from_ptr(py, slf).cast_unchecked::<$class>();
                    if let Some(core) = $core(this.get(), py) {
                        if let Ok(item) = core.try_get() {
                            return item.into_ptr();
                        }
                    }
                }
            }
            // SAFETY: the arguments are passed on as the interpreter gave them.
            unsafe { call_fallback(&$get_fallback, slf, args, nargs, kwnames) }
        }
    };
}

fast_methods!(
    queue_put,
    queue_get,
    PyQueue,
    PyQueue::fast_core,
    QUEUE_PUT,
    QUEUE_GET
);
fast_methods!(
    simple_put,
    simple_get,
    PySimpleQueue,
    PySimpleQueue::fast_core,
    SIMPLE_PUT,
    SIMPLE_GET
);
