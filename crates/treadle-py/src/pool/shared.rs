//! A thread pool's state shared by the executor object, its workers and its timer: the core's
//! `Pool`, the policy for a full queue, the deadlines of running tasks, the failures to report at
//! shut-down and how to start a worker thread; and which pool, if any, the calling thread works
//! for.

use crate::future::{Cell, PyTask};
use crate::runtime::{cancel, hooks};
use crate::unretrieved::Unretrieved;
use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use treadle_core::{Pool, SubmitError};

pyo3::import_exception!(concurrent.futures.thread, BrokenThreadPool);
pyo3::import_exception!(queue, Full);

pub(crate) const BROKEN: &str =
    "A thread initializer failed, the thread pool is not usable anymore";

/// Set once a `treadle.local` exists: workers then clear them between tasks.
static LOCALS_IN_USE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The pool whose worker this thread is.
    static WORKER_OF: RefCell<Option<Arc<PoolShared>>> = const { RefCell::new(None) };
}

/// What `max_pending` does when the queue is full.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFull {
    Block,
    Raise,
    CallerRuns,
}

/// A pool's state shared by the executor object, its workers and its timer.
pub(crate) struct PoolShared {
    pub(crate) core: Pool<PyTask>,
    pub(crate) on_full: OnFull,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) timer_started: AtomicBool,
    /// Running futures with a time limit: the future object and the limit in seconds.
    pub(crate) timed: Mutex<HashMap<usize, (Py<PyAny>, f64)>>,
    /// Futures that raised, to report at shut-down those nobody retrieved.
    pub(crate) unretrieved: Arc<Unretrieved>,
    /// `start_worker(handle)`, given by the executor: starts one worker thread (it holds no
    /// reference to the executor, so that a worker can start one after the executor is gone).
    pub(crate) start_worker: Py<PyAny>,
}

/// A running future's key in `PoolShared::timed`.
pub(crate) fn key(cell: &Arc<Cell>) -> usize {
    Arc::as_ptr(cell) as usize
}

impl PoolShared {
    pub(crate) fn start_deadline(
        &self,
        py: Python<'_>,
        cell: &Arc<Cell>,
        future: &Py<PyAny>,
        limit: Duration,
    ) {
        let entry = (future.clone_ref(py), limit.as_secs_f64());
        self.timed.lock().insert(key(cell), entry);
        self.core.add_deadline(Instant::now() + limit, cell);
    }

    pub(crate) fn end_deadline(&self, cell: &Arc<Cell>) {
        let entry = self.timed.lock().remove(&key(cell));
        drop(entry);
    }

    pub(crate) fn submit_error(&self, error: SubmitError) -> PyErr {
        if self.core.is_broken() {
            return BrokenThreadPool::new_err(BROKEN);
        }
        match error {
            SubmitError::ShutDown => {
                PyRuntimeError::new_err("cannot schedule new futures after shutdown")
            }
            SubmitError::Full => Full::new_err("the pool's max_pending tasks are queued"),
        }
    }
}

/// The pool the calling thread works for, if it is a worker.
pub(crate) fn current_worker_pool() -> Option<Arc<PoolShared>> {
    WORKER_OF.with(|worker| worker.borrow().clone())
}

/// Whether the calling thread is one of `pool`'s workers.
pub(crate) fn is_worker_of(pool: &PoolShared) -> bool {
    WORKER_OF.with(|worker| {
        worker
            .borrow()
            .as_ref()
            .is_some_and(|own| std::ptr::eq(Arc::as_ptr(own), pool))
    })
}

/// On a pool worker, about to start a task (not nested in another): clear `treadle.local`s.
pub(crate) fn clear_locals(py: Python<'_>) {
    if LOCALS_IN_USE.load(Ordering::Relaxed)
        && cancel::current().is_none()
        && WORKER_OF.with(|worker| worker.borrow().is_some())
    {
        if let Some(hooks) = hooks::pool(py) {
            hooks::call(py, &hooks.clear_locals, ());
        }
    }
}

/// Makes the calling thread one of `pool`'s workers (`None`: no longer).
pub(crate) fn set_worker_of(pool: Option<Arc<PoolShared>>) {
    WORKER_OF.with(|worker| *worker.borrow_mut() = pool);
}

/// `_locals_in_use()`: a `treadle.local` was made.
#[pyfunction]
pub(crate) fn _locals_in_use() {
    LOCALS_IN_USE.store(true, Ordering::Relaxed);
}
