//! `treadle.Lock` and `treadle.RLock`.

use crate::deadlock::lock_order::{creation_site, lock_order_event, lock_order_on};
use crate::runtime::errors::{address, cannot_pickle, lock_error, type_path};
use crate::runtime::threads::{current_ident, thread_of_ident};
use crate::runtime::timeout::{lock_wait, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_until;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::sync::atomic::{AtomicU64, Ordering};
use treadle_core::rlock::SavedOwnership;
use treadle_core::wait_graph::{WaitKind, WaitTarget};
use treadle_core::{RawLock, RawRLock, ThreadId};

/// A primitive lock, as `threading.Lock`: not reentrant, releasable by any thread.
#[pyclass(frozen, weakref, name = "Lock", module = "treadle")]
pub(crate) struct PyLock {
    pub(crate) raw: RawLock,
    /// The `threading.get_ident()` of the thread that last acquired the lock, while it is held:
    /// the owner for the wait graph. (An ident, not a treadle thread number: reading it costs no
    /// thread-local lookup on the fast path.)
    holder: AtomicU64,
    /// Where the lock was created (`file:line`), while deadlock detection is on.
    origin: Option<Box<str>>,
}

impl WaitTarget for PyLock {
    fn owner(&self) -> Option<ThreadId> {
        match self.holder.load(Ordering::Relaxed) {
            0 => None,
            ident => thread_of_ident(ident),
        }
    }
    fn is_ready(&self, _ticket: u64) -> bool {
        !self.raw.is_locked()
    }
}

impl PyLock {
    pub(crate) fn new_at(py: Python<'_>) -> Self {
        PyLock {
            raw: RawLock::new(),
            holder: AtomicU64::new(0),
            origin: creation_site(py),
        }
    }

    #[inline]
    fn try_take(&self) -> bool {
        let got = self.raw.try_acquire();
        if got {
            self.holder.store(current_ident(), Ordering::Relaxed);
        }
        got
    }

    pub(crate) fn acquire_with(slf: &Bound<'_, Self>, wait: Wait) -> PyResult<bool> {
        let this = slf.get();
        if this.try_take() {
            return Ok(true);
        }
        if wait == Wait::Never {
            return Ok(false);
        }
        let track = Track {
            target: this,
            kind: WaitKind::Lock,
            ticket: 0,
            object: slf.as_any(),
        };
        let got = block_until(slf.py(), wait, Some(track), |deadline| {
            this.raw.acquire_until(deadline)
        })?;
        if got {
            this.holder.store(ThreadId::current().0, Ordering::Relaxed);
        }
        Ok(got)
    }

    /// Releases the lock (from any thread).
    #[inline]
    pub(crate) fn release_raw(&self) -> PyResult<()> {
        self.holder.store(0, Ordering::Relaxed);
        self.raw.release().map_err(lock_error)
    }

    /// Re-takes the lock, `object`, after a condition wait: with no interruption and no error,
    /// in the wait graph while it waits.
    pub(crate) fn reacquire(&self, object: &Bound<'_, PyAny>) {
        if !self.raw.try_acquire() {
            let track = Track {
                target: self,
                kind: WaitKind::Reacquire,
                ticket: 0,
                object,
            };
            crate::runtime::wait::block_reacquire(object.py(), track, || {
                self.raw.acquire_until(None)
            });
        }
        self.holder.store(current_ident(), Ordering::Relaxed);
    }
}

#[pymethods]
impl PyLock {
    #[new]
    fn new(py: Python<'_>) -> Self {
        PyLock::new_at(py)
    }

    /// Acquire the lock, blocking or not, with an optional timeout in seconds.
    #[pyo3(signature = (blocking=None, timeout=None))]
    fn acquire(
        slf: &Bound<'_, Self>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if blocking.is_none() && timeout.is_none() && slf.get().try_take() {
            return acquired(slf.as_any(), true, true);
        }
        let wait = lock_wait(slf.py(), blocking, timeout)?;
        let got = PyLock::acquire_with(slf, wait)?;
        acquired(slf.as_any(), got, true)
    }

    /// Release the lock; `RuntimeError` if it is not locked.
    fn release(slf: &Bound<'_, Self>) -> PyResult<()> {
        releasing(slf.as_any(), slf.get().raw.is_locked())?;
        slf.get().release_raw()
    }

    /// Whether the lock is held.
    fn locked(&self) -> bool {
        self.raw.is_locked()
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
        if slf.get().try_take() {
            return acquired(slf.as_any(), true, true);
        }
        let got = PyLock::acquire_with(slf, Wait::Until(None))?;
        acquired(slf.as_any(), got, true)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(slf: &Bound<'_, Self>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        PyLock::release(slf)
    }

    fn _at_fork_reinit(&self) {
        self.holder.store(0, Ordering::Relaxed);
        self.raw.reset_after_fork();
    }

    /// Where the lock was created, if deadlock detection was on then.
    #[getter]
    fn _created_at(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let state = if slf.get().raw.is_locked() {
            "locked"
        } else {
            "unlocked"
        };
        format!(
            "<{state} {} object at {}>",
            type_path(slf.as_any()),
            address(slf.as_any())
        )
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Err(cannot_pickle(slf.as_any()))
    }
}

/// A reentrant lock, as `threading.RLock`: owned by the thread that took it, which may take it
/// again and must release it as many times.
#[pyclass(frozen, weakref, subclass, name = "RLock", module = "treadle")]
pub(crate) struct PyRLock {
    pub(crate) raw: RawRLock,
    origin: Option<Box<str>>,
}

impl PyRLock {
    pub(crate) fn new_at(py: Python<'_>) -> Self {
        PyRLock {
            raw: RawRLock::new(),
            origin: creation_site(py),
        }
    }

    pub(crate) fn acquire_with(slf: &Bound<'_, Self>, wait: Wait) -> PyResult<bool> {
        let this = slf.get();
        if this.raw.try_acquire().map_err(lock_error)? {
            return Ok(true);
        }
        if wait == Wait::Never {
            return Ok(false);
        }
        let track = Track {
            target: &this.raw,
            kind: WaitKind::RLock,
            ticket: 0,
            object: slf.as_any(),
        };
        let mut error = None;
        let got = block_until(slf.py(), wait, Some(track), |deadline| {
            match this.raw.acquire_until(deadline) {
                Ok(got) => got,
                Err(e) => {
                    error = Some(e);
                    true
                }
            }
        })?;
        match error {
            Some(e) => Err(lock_error(e)),
            None => Ok(got),
        }
    }

    /// Re-takes the lock, `object`, after `release_save`, whatever happens, with the interpreter
    /// released and in the wait graph while it waits.
    pub(crate) fn restore(&self, object: &Bound<'_, PyAny>, saved: SavedOwnership) {
        let deadline = Some(std::time::Instant::now());
        if !self.raw.acquire_restore(saved, deadline) {
            let track = Track {
                target: &self.raw,
                kind: WaitKind::Reacquire,
                ticket: 0,
                object,
            };
            crate::runtime::wait::block_reacquire(object.py(), track, || {
                self.raw.acquire_restore(saved, None)
            });
        }
    }
}

#[pymethods]
impl PyRLock {
    /// Arguments are ignored, as `threading.RLock` ignores them (a subclass's `__init__` takes
    /// its own); on Python 3.13 and later, passing them to `RLock` itself is deprecated there,
    /// and warns here too.
    #[new]
    #[classmethod]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(
        cls: &Bound<'_, pyo3::types::PyType>,
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let py = cls.py();
        let given = !args.is_empty() || kwargs.is_some_and(|kwargs| !kwargs.is_empty());
        if given && cls.is(py.get_type::<PyRLock>()) && py.version_info() >= (3, 13) {
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyDeprecationWarning>(),
                c"Passing arguments to RLock is deprecated and will be removed in 3.15",
                1,
            )?;
        }
        Ok(PyRLock::new_at(py))
    }

    /// Acquire the lock (again, if this thread owns it), blocking or not, with an optional timeout.
    #[pyo3(signature = (blocking=None, timeout=None))]
    fn acquire(
        slf: &Bound<'_, Self>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let wait = lock_wait(slf.py(), blocking, timeout)?;
        let got = PyRLock::acquire_with(slf, wait)?;
        acquired(slf.as_any(), got, slf.get().raw.recursion_count() == 1)
    }

    /// Release one level of ownership; `RuntimeError` if this thread does not own the lock.
    fn release(slf: &Bound<'_, Self>) -> PyResult<()> {
        let raw = &slf.get().raw;
        releasing(slf.as_any(), raw.recursion_count() == 1)?;
        raw.release().map_err(lock_error)
    }

    /// Whether any thread owns the lock.
    fn locked(&self) -> bool {
        self.raw.is_locked()
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let got = PyRLock::acquire_with(slf, Wait::Until(None))?;
        acquired(slf.as_any(), got, slf.get().raw.recursion_count() == 1)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(slf: &Bound<'_, Self>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        PyRLock::release(slf)
    }

    /// Where the lock was created, if deadlock detection was on then.
    #[getter]
    fn _created_at(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    fn _is_owned(&self) -> bool {
        self.raw.is_owned()
    }

    fn _recursion_count(&self) -> usize {
        self.raw.recursion_count()
    }

    fn _release_save(&self) -> PyResult<(usize, u64)> {
        let saved = self.raw.release_save().map_err(|_| {
            pyo3::exceptions::PyRuntimeError::new_err("cannot release un-acquired lock")
        })?;
        Ok((saved.count, saved.owner.0))
    }

    fn _acquire_restore(slf: &Bound<'_, Self>, state: (usize, u64)) {
        slf.get().restore(
            slf.as_any(),
            SavedOwnership {
                count: state.0,
                owner: ThreadId(state.1),
            },
        );
    }

    fn _at_fork_reinit(&self) {
        self.raw.reset_after_fork();
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let raw = &slf.get().raw;
        let state = if raw.is_locked() {
            "locked"
        } else {
            "unlocked"
        };
        let owner = raw.owner().map_or(0, |owner| owner.0);
        let count = if raw.is_locked() {
            raw.recursion_count().max(1)
        } else {
            0
        };
        format!(
            "<{state} {} object owner={owner} count={count} at {}>",
            type_path(slf.as_any()),
            address(slf.as_any())
        )
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Err(cannot_pickle(slf.as_any()))
    }
}

/// After an acquisition attempt (`got`), the first level of it (`first`): the lock-order hook, if that mode is on.
#[inline]
fn acquired(lock: &Bound<'_, PyAny>, got: bool, first: bool) -> PyResult<bool> {
    if got && first && lock_order_on() {
        lock_order_event(lock, true)?;
    }
    Ok(got)
}

/// Before a last release: the lock-order hook, if that mode is on.
#[inline]
fn releasing(lock: &Bound<'_, PyAny>, last: bool) -> PyResult<()> {
    if last && lock_order_on() {
        lock_order_event(lock, false)?;
    }
    Ok(())
}
