//! `treadle.Lock` and `treadle.RLock`.

use crate::errors::{address, cannot_pickle, lock_error, type_path};
use crate::timeout::{lock_wait, Wait};
use crate::wait::block_until;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use treadle_core::rlock::SavedOwnership;
use treadle_core::{RawLock, RawRLock, ThreadId};

/// A primitive lock, as `threading.Lock`: not reentrant, releasable by any thread.
#[pyclass(frozen, weakref, name = "Lock", module = "treadle")]
pub(crate) struct PyLock {
    pub(crate) raw: RawLock,
}

impl PyLock {
    pub(crate) fn acquire_with(&self, py: Python<'_>, wait: Wait) -> PyResult<bool> {
        if self.raw.try_acquire() {
            return Ok(true);
        }
        if wait == Wait::Never {
            return Ok(false);
        }
        block_until(py, wait, |deadline| self.raw.acquire_until(deadline))
    }
}

#[pymethods]
impl PyLock {
    #[new]
    pub(crate) fn new() -> Self {
        PyLock {
            raw: RawLock::new(),
        }
    }

    /// Acquire the lock, blocking or not, with an optional timeout in seconds.
    #[pyo3(signature = (blocking=None, timeout=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if blocking.is_none() && timeout.is_none() && self.raw.try_acquire() {
            return Ok(true);
        }
        let wait = lock_wait(py, blocking, timeout)?;
        self.acquire_with(py, wait)
    }

    /// Release the lock; `RuntimeError` if it is not locked.
    fn release(&self) -> PyResult<()> {
        self.raw.release().map_err(lock_error)
    }

    /// Whether the lock is held.
    fn locked(&self) -> bool {
        self.raw.is_locked()
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire_with(py, Wait::Until(None))
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    fn _at_fork_reinit(&self) {
        self.raw.reset_after_fork();
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
#[pyclass(frozen, weakref, name = "RLock", module = "treadle")]
pub(crate) struct PyRLock {
    pub(crate) raw: RawRLock,
}

impl PyRLock {
    pub(crate) fn acquire_with(&self, py: Python<'_>, wait: Wait) -> PyResult<bool> {
        if self.raw.try_acquire().map_err(lock_error)? {
            return Ok(true);
        }
        if wait == Wait::Never {
            return Ok(false);
        }
        let mut error = None;
        let got = block_until(py, wait, |deadline| {
            match self.raw.acquire_until(deadline) {
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

    /// Re-takes the lock after `release_save`, whatever happens, with the interpreter released.
    pub(crate) fn restore(&self, py: Python<'_>, saved: SavedOwnership) {
        let deadline = Some(std::time::Instant::now());
        if !self.raw.acquire_restore(saved, deadline) {
            crate::wait::block_uninterrupted(py, || self.raw.acquire_restore(saved, None));
        }
    }
}

#[pymethods]
impl PyRLock {
    #[new]
    fn new() -> Self {
        PyRLock {
            raw: RawRLock::new(),
        }
    }

    /// Acquire the lock (again, if this thread owns it), blocking or not, with an optional timeout.
    #[pyo3(signature = (blocking=None, timeout=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let wait = lock_wait(py, blocking, timeout)?;
        self.acquire_with(py, wait)
    }

    /// Release one level of ownership; `RuntimeError` if this thread does not own the lock.
    fn release(&self) -> PyResult<()> {
        self.raw.release().map_err(lock_error)
    }

    /// Whether any thread owns the lock.
    fn locked(&self) -> bool {
        self.raw.is_locked()
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire_with(py, Wait::Until(None))
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
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

    fn _acquire_restore(&self, py: Python<'_>, state: (usize, u64)) {
        self.restore(
            py,
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
