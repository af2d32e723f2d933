//! `_Completions`: what `treadle.wait` and `treadle.as_completed` wait on.
//!
//! It is subscribed to every treadle future watched (the core pushes the future's index when it
//! is done) and installed as a waiter on every other `concurrent.futures.Future`, the way the
//! standard library's own `wait` installs its waiters: under the future's `_condition`, after
//! looking at its `_state`. Either way, indexes come out in completion order.
//!
//! A pool worker that waits here on futures of its own pool counts as blocked, and those still
//! queued are run by other threads (`future::block_worker`), as for `result()`. The futures that
//! can never need it (done, another pool's, the standard library's) are passed over for good: a
//! cursor moves past them, so the look before each wait costs, over a whole `wait()`, one pass
//! over the futures plus a few at each wait.

use crate::future::{block_worker, Cell, Executor, PyFuture};
use crate::runtime::timeout::{optional_wait, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_on;
use parking_lot::Mutex;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use treadle_core::wait_graph::WaitKind;
use treadle_core::Completions;

/// At most this many futures of the worker's pool are told to it at each wait.
const TOLD: usize = 16;
/// How far past the first of them the look for more goes.
const LOOKAHEAD: usize = 64;

/// Watched futures of the pool the waiting thread works for, not done.
struct OwnPoolWaits {
    executor: Arc<dyn Executor>,
    waited: Vec<Arc<Cell>>,
}

/// Completion order of a set of futures.
#[pyclass(frozen, name = "_Completions", module = "treadle")]
pub(crate) struct PyCompletions {
    sink: Arc<Completions>,
    /// The futures watched; a slot is emptied when its future is taken (see `take`).
    futures: Mutex<Vec<Option<Py<PyAny>>>>,
    /// `id(future)` -> index, for the standard library's futures.
    foreign: Mutex<HashMap<usize, usize>>,
    /// The futures before this index can never be queued in the caller's pool.
    settled: AtomicUsize,
}

impl PyCompletions {
    /// The futures still watched (references taken under the mutex, used without it: the calls
    /// made on them run Python code, which may come back here).
    fn watched(&self, py: Python<'_>) -> Vec<(usize, Py<PyAny>)> {
        self.futures
            .lock()
            .iter()
            .enumerate()
            .filter_map(|(index, future)| Some((index, future.as_ref()?.clone_ref(py))))
            .collect()
    }

    /// Stops watching `future`: unsubscribes from a treadle future, or removes this waiter from
    /// a standard one's `_waiters`, under its `_condition`.
    fn unwatch(slf: &Bound<'_, Self>, future: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        if let Ok(own) = future.cast::<PyFuture>() {
            own.get().cell.unsubscribe(&this.sink);
            return Ok(());
        }
        this.foreign.lock().remove(&(future.as_ptr() as usize));
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
        removed
    }

    /// Watched futures of the pool the calling thread works for, not done (a few), with that
    /// pool; `None` if there are none (or the thread is no pool's worker).
    fn waited_in_own_pool(&self, py: Python<'_>) -> Option<OwnPoolWaits> {
        let futures = self.futures.lock();
        let mut index = self.settled.load(Ordering::Relaxed);
        let mut own: Option<Arc<dyn Executor>> = None;
        let mut waited = Vec::new();
        let mut end = futures.len();
        while index < end && waited.len() < TOLD {
            let found = futures[index].as_ref().and_then(|future| {
                let future = future.bind(py).cast::<PyFuture>().ok()?;
                let this = future.get();
                let executor = this.executor()?;
                (executor.is_current_worker() && !this.cell.is_done())
                    .then(|| (Arc::clone(executor), Arc::clone(&this.cell)))
            });
            index += 1;
            match found {
                Some((executor, cell)) => {
                    if own.is_none() {
                        end = end.min(index + LOOKAHEAD);
                    }
                    own.get_or_insert(executor);
                    waited.push(cell);
                }
                // Done, taken, or not this pool's: never waited on here again.
                None if own.is_none() => self.settled.store(index, Ordering::Relaxed),
                None => {}
            }
        }
        own.map(|executor| OwnPoolWaits { executor, waited })
    }

    fn push_foreign(&self, future: &Bound<'_, PyAny>) {
        let index = self
            .foreign
            .lock()
            .get(&(future.as_ptr() as usize))
            .copied();
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
            futures: Mutex::new(futures.into_iter().map(Some).collect()),
            foreign: Mutex::new(HashMap::new()),
            settled: AtomicUsize::new(0),
        }
    }

    /// Starts watching: futures already done are ready at once, in the order given.
    fn watch(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        for (index, future) in this.watched(py) {
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
                    this.foreign.lock().insert(future.as_ptr() as usize, index);
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
        let this = slf.get();
        let wait = optional_wait(py, timeout)?;
        let sink = &this.sink;
        let mut _blocked = None;
        if wait != Wait::Never {
            loop {
                if let Some(index) = sink.pop(Some(Instant::now())) {
                    return Ok(Some(index));
                }
                let Some(OwnPoolWaits { executor, waited }) = this.waited_in_own_pool(py) else {
                    break;
                };
                _blocked = block_worker(py, &executor, &waited);
                if _blocked.is_some() {
                    break;
                }
            }
        }
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
        for (_, future) in slf.get().watched(py) {
            Self::unwatch(slf, future.bind(py))?;
        }
        Ok(())
    }

    /// The future at `index` (one reported done), which stops being watched: nothing here
    /// keeps it any more, so that `as_completed` holds no future it has yielded.
    fn take(slf: &Bound<'_, Self>, index: usize) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let taken = slf
            .get()
            .futures
            .lock()
            .get_mut(index)
            .and_then(Option::take);
        let Some(future) = taken else {
            return Ok(py.None());
        };
        Self::unwatch(slf, future.bind(py))?;
        Ok(future)
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
