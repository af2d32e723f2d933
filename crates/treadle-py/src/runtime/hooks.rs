//! The registry of what the `treadle` package hands down at import: the Python callables the
//! bindings call back, each in a typed slot (none is looked up by method name), set once by the
//! module that owns it.
//!
//! This is how the lower layers reach Python code above them (the deadlock report's
//! formatting, the pool's logging, `treadle.local`'s reset) without importing it: they read a
//! slot here, and the slot is empty until the package filled it.

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the thread pool and futures call back, set by `treadle.futures.future` with `_set_pool_hooks`.
pub(crate) struct PoolHooks {
    /// The Python class of futures (`treadle.Future`), which pools instantiate.
    pub(crate) future_class: Py<PyType>,
    /// `lost(exception, name)`: a failed future's exception that nobody retrieved.
    pub(crate) lost: Py<PyAny>,
    /// `callback_failed(future, exception)`: a done-callback raised.
    pub(crate) callback_failed: Py<PyAny>,
    /// `initializer_failed(exception)`: a worker's initializer raised.
    pub(crate) initializer_failed: Py<PyAny>,
    /// `clear_locals()`: reset every `treadle.local` before a worker's next task.
    pub(crate) clear_locals: Py<PyAny>,
}

static POOL: PyOnceLock<PoolHooks> = PyOnceLock::new();
/// `reporter(edges, verdict, mode)`: builds a deadlock report; set by `treadle.deadlock`.
static REPORTER: Mutex<Option<Py<PyAny>>> = Mutex::new(None);
/// `hook(lock, acquired)`: lock-order mode's observer; set by `treadle.deadlock`.
static LOCK_ORDER: Mutex<Option<Py<PyAny>>> = Mutex::new(None);
/// Whether [`LOCK_ORDER`] is set: one relaxed load per lock operation when it is not.
static LOCK_ORDER_ON: AtomicBool = AtomicBool::new(false);

/// Sets the pool hooks; only once.
pub(crate) fn set_pool(py: Python<'_>, hooks: PoolHooks) -> PyResult<()> {
    POOL.set(py, hooks)
        .map_err(|_| PyRuntimeError::new_err("pool hooks are already set"))
}

/// The pool hooks, once set.
pub(crate) fn pool(py: Python<'_>) -> Option<&PoolHooks> {
    POOL.get(py)
}

/// Calls `hook(*args)`; an error in a hook is unraisable (it must not hide what the caller was
/// doing, such as a task's own outcome).
pub(crate) fn call<'py>(py: Python<'py>, hook: &Py<PyAny>, args: impl pyo3::call::PyCallArgs<'py>) {
    if let Err(error) = hook.bind(py).call1(args) {
        error.write_unraisable(py, None);
    }
}

/// Sets the deadlock reporter.
pub(crate) fn set_reporter(reporter: Py<PyAny>) {
    *REPORTER.lock() = Some(reporter);
}

/// The deadlock reporter, if set.
pub(crate) fn reporter(py: Python<'_>) -> Option<Py<PyAny>> {
    REPORTER.lock().as_ref().map(|r| r.clone_ref(py))
}

/// Sets (or, with `None`, clears) the lock-order hook.
pub(crate) fn set_lock_order(hook: Option<Py<PyAny>>) {
    let on = hook.is_some();
    *LOCK_ORDER.lock() = hook;
    LOCK_ORDER_ON.store(on, Ordering::Relaxed);
}

/// Whether a lock-order hook is set.
#[inline]
pub(crate) fn lock_order_on() -> bool {
    LOCK_ORDER_ON.load(Ordering::Relaxed)
}

/// The lock-order hook, if set.
pub(crate) fn lock_order(py: Python<'_>) -> Option<Py<PyAny>> {
    LOCK_ORDER.lock().as_ref().map(|h| h.clone_ref(py))
}
