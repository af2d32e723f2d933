//! `treadle.Barrier`.

use crate::runtime::errors::{address, broken_barrier, cannot_pickle, type_path};
use crate::runtime::timeout::{optional_wait, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_on;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::sync::Arc;
use treadle_core::barrier::{ARRIVING, AWAITING_RELEASE};
use treadle_core::wait_graph::WaitKind;
use treadle_core::{Arrival, Barrier};

/// A barrier for a fixed number of threads, as `threading.Barrier`.
#[pyclass(subclass, weakref, dict, name = "Barrier", module = "treadle")]
pub(crate) struct PyBarrier {
    core: Arc<Barrier>,
    action: Option<Py<PyAny>>,
    timeout: Option<Py<PyAny>>,
}

#[pymethods]
impl PyBarrier {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        PyBarrier {
            core: Arc::new(Barrier::new(1)),
            action: None,
            timeout: None,
        }
    }

    #[pyo3(signature = (parties, action=None, timeout=None))]
    fn __init__(
        &mut self,
        parties: i64,
        action: Option<Py<PyAny>>,
        timeout: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        if parties < 1 {
            return Err(PyValueError::new_err("parties must be >= 1"));
        }
        let parties =
            usize::try_from(parties).map_err(|_| PyValueError::new_err("parties is too large"))?;
        self.core = Arc::new(Barrier::new(parties));
        self.action = action;
        self.timeout = timeout;
        Ok(())
    }

    /// Wait until all parties have called `wait`; returns this thread's arrival index.
    #[pyo3(signature = (timeout=None))]
    fn wait(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let py = slf.py();
        let this = slf.borrow();
        this.wait_inner(slf, py, timeout)
    }

    /// Return the barrier to its initial state; threads waiting on it get BrokenBarrierError.
    fn reset(&self) {
        self.core.reset();
    }

    /// Break the barrier: waiting and future `wait` calls raise BrokenBarrierError.
    fn abort(&self) {
        self.core.abort();
    }

    /// The number of threads required to pass the barrier.
    #[getter]
    fn parties(&self) -> usize {
        self.core.parties()
    }

    /// The number of threads currently waiting.
    #[getter]
    fn n_waiting(&self) -> usize {
        self.core.n_waiting()
    }

    /// Whether the barrier is broken.
    #[getter]
    fn broken(&self) -> bool {
        self.core.is_broken()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let this = slf.borrow();
        let state = if this.core.is_broken() {
            "broken".to_owned()
        } else {
            format!("waiters={}/{}", this.core.n_waiting(), this.core.parties())
        };
        format!(
            "<{} at {}: {state}>",
            type_path(slf.as_any()),
            address(slf.as_any())
        )
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Err(cannot_pickle(slf.as_any()))
    }
}

impl PyBarrier {
    fn wait_inner(
        &self,
        slf: &Bound<'_, Self>,
        py: Python<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let default_timeout = self.timeout.as_ref().map(|t| t.bind(py));
        let timeout = timeout.filter(|t| !t.is_none()).or(default_timeout);
        let wait = match timeout {
            None => Wait::Until(None),
            Some(timeout) => optional_wait(py, Some(timeout))?,
        };
        let core = &self.core;
        // Arriving is not subject to the timeout, as in threading.Barrier.
        let track = |ticket| Track {
            target: &**core,
            kind: WaitKind::Barrier,
            ticket,
            object: slf.as_any(),
        };
        let arrival = block_on(py, Wait::Until(None), Some(track(ARRIVING)), |deadline| {
            core.arrive_until(deadline).transpose()
        })?
        .expect("an unbounded wait ends with a value")
        .map_err(|_| broken_barrier())?;
        match arrival {
            Arrival::Last(index) => {
                let action = match &self.action {
                    Some(action) => action.bind(py).call0().map(drop),
                    None => Ok(()),
                };
                let finished = core.finish_action(action.is_ok());
                core.leave();
                action?;
                finished.map_err(|_| broken_barrier())?;
                Ok(index)
            }
            Arrival::Waiting(index) => {
                let released = block_on(py, wait, Some(track(AWAITING_RELEASE)), |deadline| {
                    core.await_release_until(deadline)
                });
                let result = match released {
                    Ok(Some(Ok(()))) => Ok(index),
                    Ok(Some(Err(_))) => Err(broken_barrier()),
                    Ok(None) => {
                        core.abort();
                        Err(broken_barrier())
                    }
                    Err(interrupt) => Err(interrupt),
                };
                core.leave();
                result
            }
        }
    }
}
