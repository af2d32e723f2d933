//! Direct entry points ([`fast_method`](crate::fast_method)) for a shared lock's hottest calls:
//! `acquire()` and `__enter__()` that take a free lock, `release()` and `__exit__(...)` that give
//! it back. Every other call (a timeout, a lock that is held, a release that fails, the first
//! acquisition of a lock in a process, which records the process's name) goes to the pyo3
//! method the direct one replaced.

use super::PySharedLock;
use crate::fast_method::{instance, none, py_true, replace_all, DirectMethod};
use pyo3::ffi;
use pyo3::prelude::*;

static ACQUIRE: DirectMethod = DirectMethod::new(
    c"acquire",
    acquire::<false>,
    c"acquire($self, block=True, timeout=None)\n--\n\nTakes the lock (or one of the semaphore's \
      count), as `SemLock.acquire`: `timeout` None waits for ever, a negative one is 0.",
);
static ENTER: DirectMethod = DirectMethod::new(
    c"__enter__",
    acquire::<true>,
    c"__enter__($self)\n--\n\nTakes the lock, waiting as long as it takes.",
);
static RELEASE: DirectMethod = DirectMethod::new(
    c"release",
    release::<0>,
    c"release($self)\n--\n\nGives it back: `ValueError` for a lock not held or a bounded \
      semaphore at its bound, `AssertionError` for an RLock its caller does not own.",
);
static EXIT: DirectMethod = DirectMethod::new(
    c"__exit__",
    release::<3>,
    c"__exit__($self, _exc_type=None, _exc=None, _traceback=None)\n--\n\nReleases the lock.",
);

/// Replaces `acquire`, `release`, `__enter__` and `__exit__` of `_SharedLock` (and so of every
/// class made on it) with their direct versions.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let methods = [&ACQUIRE, &ENTER, &RELEASE, &EXIT];
    replace_all(&py.get_type::<PySharedLock>(), &methods)
}

/// `acquire()` (`IS_ENTER`: `__enter__()`) with no argument, of a lock free now.
unsafe extern "C" fn acquire<const IS_ENTER: bool>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if nargs == 0 && kwnames.is_null() {
        // SAFETY: called by the interpreter, attached, with `slf` an instance of the class (the
        // method descriptor checks it).
        if unsafe { instance::<PySharedLock>(slf) }.try_acquire_quietly() {
            return py_true();
        }
    }
    let fallback = if IS_ENTER { &ENTER } else { &ACQUIRE };
    // SAFETY: the arguments are passed on as the interpreter gave them.
    unsafe { fallback.fall_back(slf, args, nargs, kwnames) }
}

/// `release()` (`MAX_ARGS` 3: `__exit__(...)`, whose arguments it ignores) that succeeds.
unsafe extern "C" fn release<const MAX_ARGS: ffi::Py_ssize_t>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if nargs <= MAX_ARGS && kwnames.is_null() {
        // SAFETY: as in `acquire`.
        if unsafe { instance::<PySharedLock>(slf) }
            .core
            .release()
            .is_ok()
        {
            return none();
        }
    }
    let fallback = if MAX_ARGS == 0 { &RELEASE } else { &EXIT };
    // SAFETY: as in `acquire`.
    unsafe { fallback.fall_back(slf, args, nargs, kwnames) }
}
