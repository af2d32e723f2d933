//! `_Completions`: what `treadle.wait` and `treadle.as_completed` wait on.
//!
//! It is subscribed to every treadle future watched (the core pushes the future's index when it
//! is done) and installed as a waiter on every other `concurrent.futures.Future`, the way the
//! standard library's own `wait` installs its waiters: under the future's `_condition`, after
//! looking at its `_state`. Either way, indexes come out in completion order.

use crate::deadlock::Track;
use crate::future::PyFuture;
use crate::timeout::optional_wait;
use crate::wait::block_on;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use treadle_core::wait_graph::WaitKind;
use treadle_core::Completions;

/// Completion order of a set of futures.
#[pyclass(frozen, name = "_Completions", module = "treadle")]
pub(crate) struct PyCompletions {
    sink: Arc<Completions>,
    futures: Vec<Py<PyAny>>,
    /// `id(future)` -> index, for the standard library's futures.
    foreign: Mutex<HashMap<usize, usize>>,
}

impl PyCompletions {
    fn push_foreign(&self, future: &Bound<'_, PyAny>) {
        let index = match self.foreign.lock() {
            Ok(foreign) => foreign.get(&(future.as_ptr() as usize)).copied(),
            Err(poisoned) => poisoned
                .into_inner()
                .get(&(future.as_ptr() as usize))
                .copied(),
        };
        if let Some(index) = index {
            self.sink.push(index);
        }
    }
}

#[pymethods]
impl PyCompletions {
    #[new]
    fn new(futures: Vec<Py<PyAny>>) -> Self {
        PyCompletions {
            sink: Arc::new(Completions::new()),
            futures,
            foreign: Mutex::new(HashMap::new()),
        }
    }

    /// Starts watching: futures already done are ready at once, in the order given.
    fn watch(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        for (index, future) in this.futures.iter().enumerate() {
            let future = future.bind(py);
            if let Ok(own) = future.cast::<PyFuture>() {
                if !own.get().cell.subscribe(&this.sink, index) {
                    this.sink.push(index);
                }
                continue;
            }
            let condition = future.getattr("_condition")?;
            condition.call_method0("acquire")?;
            let installed = (|| -> PyResult<()> {
                let state: String = future.getattr("_state")?.extract()?;
                if state == "CANCELLED_AND_NOTIFIED" || state == "FINISHED" {
                    this.sink.push(index);
                } else {
                    if let Ok(mut foreign) = this.foreign.lock() {
                        foreign.insert(future.as_ptr() as usize, index);
                    }
                    future.getattr("_waiters")?.call_method1("append", (slf,))?;
                }
                Ok(())
            })();
            condition.call_method0("release")?;
            installed?;
        }
        Ok(())
    }

    /// The indexes of the futures done since the last call, without waiting.
    fn ready(&self) -> Vec<usize> {
        let now = Some(Instant::now());
        std::iter::from_fn(|| self.sink.pop(now)).collect()
    }

    /// The index of the next future to be done, waiting at most `timeout` seconds (None: no
    /// future was done in time).
    #[pyo3(signature = (timeout=None))]
    fn next(slf: &Bound<'_, Self>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
        let py = slf.py();
        let wait = optional_wait(py, timeout)?;
        let sink = &slf.get().sink;
        // In the wait graph as a wait for some future: ownerless (any of them may finish first),
        // so it counts in stall verdicts only.
        let track = Track {
            target: &**sink,
            kind: WaitKind::Future,
            ticket: 0,
            object: slf.as_any(),
        };
        block_on(py, wait, Some(track), |deadline| sink.pop(deadline))
    }

    /// Stops watching.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        for future in &this.futures {
            let future = future.bind(py);
            if let Ok(own) = future.cast::<PyFuture>() {
                own.get().cell.unsubscribe(&this.sink);
                continue;
            }
            let condition = future.getattr("_condition")?;
            condition.call_method0("acquire")?;
            let waiters = future.getattr("_waiters");
            let removed = waiters.and_then(|waiters| {
                if waiters.contains(slf)? {
                    waiters.call_method1("remove", (slf,))?;
                }
                Ok(())
            });
            condition.call_method0("release")?;
            removed?;
        }
        Ok(())
    }

    /// Waiter protocol of `concurrent.futures`: a watched future returned.
    fn add_result(&self, future: &Bound<'_, PyAny>) {
        self.push_foreign(future);
    }

    /// Waiter protocol of `concurrent.futures`: a watched future raised.
    fn add_exception(&self, future: &Bound<'_, PyAny>) {
        self.push_foreign(future);
    }

    /// Waiter protocol of `concurrent.futures`: a watched future was cancelled.
    fn add_cancelled(&self, future: &Bound<'_, PyAny>) {
        self.push_foreign(future);
    }
}
