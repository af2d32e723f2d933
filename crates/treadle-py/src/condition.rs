//! `treadle.Condition`: a condition variable over any lock.
//!
//! The wait queue is the core's [`WaitQueue`]. The lock protocol follows `threading.Condition`:
//! over treadle's own `RLock` or `Lock` every step is a direct Rust call; over any other lock
//! (`threading.Lock`, a user's class) the lock's own `_release_save` / `_acquire_restore` /
//! `_is_owned` are used when it has them, and `release()` / `acquire()` otherwise.

use crate::lock::{PyLock, PyRLock};
use crate::runtime::errors::lock_error;
use crate::runtime::timeout::{optional_wait, seconds, seconds_wait, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_on;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyTuple};
use std::sync::Arc;
use std::time::Instant;
use treadle_core::rlock::SavedOwnership;
use treadle_core::wait_graph::WaitKind;
use treadle_core::WaitQueue;

enum LockRef {
    RLock(Py<PyRLock>),
    Lock(Py<PyLock>),
    Other(Py<PyAny>),
}

enum Saved {
    RLock(SavedOwnership),
    Lock,
    Other(Option<Py<PyAny>>),
}

/// A condition variable, as `threading.Condition`.
#[pyclass(subclass, weakref, dict, name = "Condition", module = "treadle")]
pub(crate) struct PyCondition {
    lock: LockRef,
    waiters: Arc<WaitQueue>,
}

impl PyCondition {
    /// A condition over `lock` whose waiters are `waiters`, which a queue's monitor shares.
    pub(crate) fn over(lock: Py<PyLock>, waiters: Arc<WaitQueue>) -> PyCondition {
        PyCondition {
            lock: LockRef::Lock(lock),
            waiters,
        }
    }

    fn lock_object<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match &self.lock {
            LockRef::RLock(lock) => lock.bind(py).clone().into_any(),
            LockRef::Lock(lock) => lock.bind(py).clone().into_any(),
            LockRef::Other(lock) => lock.bind(py).clone(),
        }
    }

    fn is_owned(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.lock {
            LockRef::RLock(lock) => Ok(lock.get().raw.is_owned()),
            // As threading.Condition does for a lock without owners: held means "ours".
            LockRef::Lock(lock) => Ok(lock.get().raw.is_locked()),
            LockRef::Other(lock) => {
                let lock = lock.bind(py);
                if let Ok(is_owned) = lock.getattr("_is_owned") {
                    return is_owned.call0()?.is_truthy();
                }
                if lock.call_method1("acquire", (false,))?.is_truthy()? {
                    lock.call_method0("release")?;
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    fn release_save(&self, py: Python<'_>) -> PyResult<Saved> {
        match &self.lock {
            LockRef::RLock(lock) => lock
                .get()
                .raw
                .release_save()
                .map(Saved::RLock)
                .map_err(lock_error),
            LockRef::Lock(lock) => lock
                .get()
                .raw
                .release()
                .map(|()| Saved::Lock)
                .map_err(lock_error),
            LockRef::Other(lock) => {
                let lock = lock.bind(py);
                match lock.getattr("_release_save") {
                    Ok(release_save) => Ok(Saved::Other(Some(release_save.call0()?.unbind()))),
                    Err(_) => {
                        lock.call_method0("release")?;
                        Ok(Saved::Other(None))
                    }
                }
            }
        }
    }

    fn acquire_restore(&self, py: Python<'_>, saved: Saved) -> PyResult<()> {
        match (&self.lock, saved) {
            (LockRef::RLock(lock), Saved::RLock(saved)) => {
                lock.get().restore(lock.bind(py).as_any(), saved);
                Ok(())
            }
            (LockRef::Lock(lock), Saved::Lock) => {
                lock.get().reacquire(lock.bind(py).as_any());
                Ok(())
            }
            (LockRef::Other(lock), Saved::Other(state)) => {
                let lock = lock.bind(py);
                match state {
                    Some(state) => lock.call_method1("_acquire_restore", (state,))?,
                    None => lock.call_method0("acquire")?,
                };
                Ok(())
            }
            _ => unreachable!("saved state always matches the lock it came from"),
        }
    }

    /// One `wait()`: returns whether this waiter was notified before `wait` ran out.
    fn wait_once(slf: &Bound<'_, Self>, wait: Wait) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.borrow();
        this.wait_inner(slf, py, wait)
    }

    fn wait_inner(&self, slf: &Bound<'_, Self>, py: Python<'_>, wait: Wait) -> PyResult<bool> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot wait on un-acquired lock"));
        }
        let waiter = self.waiters.enqueue();
        let saved = match self.release_save(py) {
            Ok(saved) => saved,
            Err(error) => {
                self.waiters.withdraw(&waiter);
                return Err(error);
            }
        };
        let track = Track {
            target: &*waiter,
            kind: WaitKind::Condition,
            ticket: 0,
            object: slf.as_any(),
        };
        let outcome = block_on(py, wait, Some(track), |deadline| {
            waiter.wait_until(deadline).then_some(())
        });
        let notified = match &outcome {
            Ok(Some(())) => true,
            // Timed out, unless a notifier took this waiter just as the deadline passed.
            Ok(None) => !self.waiters.withdraw(&waiter),
            Err(_) => {
                // Interrupted: a notification already spent on this waiter goes to the next one.
                if !self.waiters.withdraw(&waiter) {
                    self.waiters.notify(1);
                }
                false
            }
        };
        self.acquire_restore(py, saved)?;
        outcome.map(|_| notified)
    }
}

#[pymethods]
impl PyCondition {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Ok(PyCondition {
            lock: LockRef::RLock(Py::new(py, PyRLock::new_at(py))?),
            waiters: Arc::new(WaitQueue::new()),
        })
    }

    #[pyo3(signature = (lock=None))]
    fn __init__(&mut self, lock: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(lock) = lock.filter(|lock| !lock.is_none()) else {
            return Ok(());
        };
        self.lock = if let Ok(rlock) = lock.cast_exact::<PyRLock>() {
            LockRef::RLock(rlock.clone().unbind())
        } else if let Ok(plain) = lock.cast_exact::<PyLock>() {
            LockRef::Lock(plain.clone().unbind())
        } else {
            LockRef::Other(lock.clone().unbind())
        };
        Ok(())
    }

    /// Acquire the underlying lock, with the lock's own arguments.
    #[pyo3(signature = (*args, **kwargs))]
    fn acquire<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.lock_object(py).call_method("acquire", args, kwargs)
    }

    /// Release the underlying lock.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        match &self.lock {
            LockRef::RLock(lock) => lock.get().raw.release().map_err(lock_error),
            LockRef::Lock(lock) => lock.get().release_raw(),
            LockRef::Other(lock) => lock.bind(py).call_method0("release").map(drop),
        }
    }

    fn __enter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.lock {
            LockRef::RLock(lock) => Ok(PyBool::new(
                py,
                PyRLock::acquire_with(lock.bind(py), Wait::Until(None))?,
            )
            .to_owned()
            .into_any()),
            LockRef::Lock(lock) => Ok(PyBool::new(
                py,
                PyLock::acquire_with(lock.bind(py), Wait::Until(None))?,
            )
            .to_owned()
            .into_any()),
            LockRef::Other(lock) => lock.bind(py).call_method0("__enter__"),
        }
    }

    #[pyo3(signature = (*args))]
    fn __exit__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match &self.lock {
            LockRef::Other(lock) => lock.bind(py).call_method1("__exit__", args),
            _ => {
                self.release(py)?;
                Ok(py.None().into_bound(py))
            }
        }
    }

    fn _at_fork_reinit(&self, py: Python<'_>) -> PyResult<()> {
        self.lock_object(py).call_method0("_at_fork_reinit")?;
        self.waiters.notify_all();
        Ok(())
    }

    fn _is_owned(&self, py: Python<'_>) -> PyResult<bool> {
        self.is_owned(py)
    }

    /// As `threading.Condition` (which takes it from its lock): releases the lock however many
    /// times it is held and returns what `_acquire_restore` needs to take it back.
    fn _release_save<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.lock {
            LockRef::RLock(lock) => lock.bind(py).call_method0("_release_save"),
            LockRef::Lock(lock) => lock.get().release_raw().map(|()| py.None().into_bound(py)),
            LockRef::Other(lock) => {
                let lock = lock.bind(py);
                match lock.getattr("_release_save") {
                    Ok(release_save) => release_save.call0(),
                    Err(_) => lock
                        .call_method0("release")
                        .map(|_| py.None().into_bound(py)),
                }
            }
        }
    }

    /// As `threading.Condition`: takes the lock back as `_release_save` left it.
    fn _acquire_restore(&self, py: Python<'_>, state: &Bound<'_, PyAny>) -> PyResult<()> {
        match &self.lock {
            LockRef::RLock(lock) => lock.bind(py).call_method1("_acquire_restore", (state,))?,
            LockRef::Lock(lock) => lock.bind(py).call_method0("acquire")?,
            LockRef::Other(lock) => {
                let lock = lock.bind(py);
                match lock.getattr("_acquire_restore") {
                    Ok(acquire_restore) => acquire_restore.call1((state,))?,
                    Err(_) => lock.call_method0("acquire")?,
                }
            }
        };
        Ok(())
    }

    /// The recursion count of the underlying `RLock` (a condition used as an RLock answers as
    /// one); other locks have none.
    fn _recursion_count(&self) -> PyResult<usize> {
        match &self.lock {
            LockRef::RLock(lock) => Ok(lock.get().raw.recursion_count()),
            _ => Err(pyo3::exceptions::PyAttributeError::new_err(
                "a Condition over a lock that is not an RLock has no _recursion_count()",
            )),
        }
    }

    /// Wait until notified or until `timeout` seconds pass; returns False on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let wait = optional_wait(slf.py(), timeout)?;
        PyCondition::wait_once(slf, wait)
    }

    /// Wait until `predicate()` is true or `timeout` seconds pass; returns the last result.
    #[pyo3(signature = (predicate, timeout=None))]
    fn wait_for<'py>(
        slf: &Bound<'py, Self>,
        predicate: &Bound<'py, PyAny>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let timeout = match timeout {
            Some(obj) if !obj.is_none() => Some(seconds(obj)?),
            _ => None,
        };
        let end = timeout.map(|timeout| (Instant::now(), timeout));
        let mut result = predicate.call0()?;
        while !result.is_truthy()? {
            let wait = match end {
                None => Wait::Until(None),
                Some((start, timeout)) => {
                    let left = timeout - start.elapsed().as_secs_f64();
                    if left <= 0.0 {
                        break;
                    }
                    seconds_wait(py, left)?
                }
            };
            PyCondition::wait_once(slf, wait)?;
            result = predicate.call0()?;
        }
        Ok(result)
    }

    /// Wake up to `n` threads waiting on this condition.
    #[pyo3(signature = (n=1))]
    fn notify(&self, py: Python<'_>, n: i64) -> PyResult<()> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot notify on un-acquired lock"));
        }
        let n = usize::try_from(n).map_err(|_| {
            PyValueError::new_err("n must be a non-negative number of threads to notify")
        })?;
        self.waiters.notify(n);
        Ok(())
    }

    /// Wake every thread waiting on this condition.
    fn notify_all(&self, py: Python<'_>) -> PyResult<()> {
        if !self.is_owned(py)? {
            return Err(PyRuntimeError::new_err("cannot notify on un-acquired lock"));
        }
        self.waiters.notify_all();
        Ok(())
    }

    /// Deprecated alias of `notify_all`, as in `threading` (with its `DeprecationWarning`).
    #[pyo3(name = "notifyAll")]
    fn notify_all_alias(&self, py: Python<'_>) -> PyResult<()> {
        PyErr::warn(
            py,
            &py.get_type::<pyo3::exceptions::PyDeprecationWarning>(),
            c"notifyAll() is deprecated, use notify_all() instead",
            1,
        )?;
        self.notify_all(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<Condition({}, {})>",
            self.lock_object(py).repr()?,
            self.waiters.len()
        ))
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Err(crate::runtime::errors::cannot_pickle(slf.as_any()))
    }
}
