//! Direct entry points for the two hottest calls, `q.put(item)` and `q.get()`
//! ([`fast_method`](crate::fast_method)).
//!
//! The classes' `put` and `get` are replaced (at module import) by direct methods that handle
//! exactly that call: one positional `item`, or no argument, when the core can answer without
//! waiting. Every other call (keywords, `block`, `timeout`, a full or empty queue, a shut-down
//! queue, a queue run as a monitor) goes to the pyo3 method they replaced.

use super::py_queue::PyQueue;
use super::simple::PySimpleQueue;
use crate::fast_method::{instance, none, replace_all, DirectMethod};
use pyo3::ffi;
use pyo3::prelude::*;
use treadle_core::Queue;

static QUEUE_PUT: DirectMethod = DirectMethod::new(
    c"put",
    queue_put,
    c"put($self, item, block=True, timeout=None)\n--\n\nPut `item` into the queue, waiting for a \
      free slot if `block` (at most `timeout` seconds, then `queue.Full`). Raises `ShutDown` if \
      the queue has been shut down.",
);
static QUEUE_GET: DirectMethod = DirectMethod::new(
    c"get",
    queue_get,
    c"get($self, block=True, timeout=None)\n--\n\nRemove and return an item, waiting for one if \
      `block` (at most `timeout` seconds, then `queue.Empty`). Raises `ShutDown` if the queue has \
      been shut down and is empty.",
);
static SIMPLE_PUT: DirectMethod = DirectMethod::new(
    c"put",
    simple_put,
    c"put($self, item, block=True, timeout=None)\n--\n\nPut `item` into the queue; never blocks \
      (`block` and `timeout` are accepted and ignored, as in `queue.SimpleQueue`).",
);
static SIMPLE_GET: DirectMethod = DirectMethod::new(
    c"get",
    simple_get,
    c"get($self, block=True, timeout=None)\n--\n\nRemove and return an item, waiting for one if \
      `block` (at most `timeout` seconds, then `queue.Empty`).",
);

/// Replaces `put` and `get` of `Queue` and `SimpleQueue` with their direct versions.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    replace_all(&py.get_type::<PyQueue>(), &[&QUEUE_PUT, &QUEUE_GET])?;
    replace_all(&py.get_type::<PySimpleQueue>(), &[&SIMPLE_PUT, &SIMPLE_GET])
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
                    if let Some(core) = $core(instance::<$class>(slf), py) {
                        if try_put(core, *args) {
                            return none();
                        }
                    }
                }
            }
            // SAFETY: the arguments are passed on as the interpreter gave them.
            unsafe { $put_fallback.fall_back(slf, args, nargs, kwnames) }
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
                    if let Some(core) = $core(instance::<$class>(slf), py) {
                        if let Ok(item) = core.try_get() {
                            return item.into_ptr();
                        }
                    }
                }
            }
            // SAFETY: the arguments are passed on as the interpreter gave them.
            unsafe { $get_fallback.fall_back(slf, args, nargs, kwnames) }
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
