//! The threads of a thread pool: a worker's loop ([`_run_worker`]) and the timer's
//! ([`_run_timer`]). Both are the targets of real `threading` threads that the Python class
//! starts; both park detached, published in the wait graph as parked, so that a process
//! stalled with idle workers around is still recognised as stalled.

use super::job::run_job;
use super::shared::{key, set_worker_of, BrokenThreadPool, PoolShared, BROKEN};
use crate::future::notify;
use crate::runtime::cancel::TaskTimeoutError;
use crate::runtime::hooks;
use crate::runtime::threads::register_current_thread;
use crate::runtime::tracking::{publish, Track, Tracked};
use crate::stats::PyExecutorStats;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::sync::Arc;
use std::time::Instant;
use treadle_core::pool::WorkerTimer;
use treadle_core::pool::{WAITING_AS_SPARE, WAITING_FOR_DEADLINE, WAITING_FOR_WORK};
use treadle_core::stats::TaskEnd;
use treadle_core::wait_graph::{Mode, WaitGraph, WaitKind};
use treadle_core::{Next, Outcome, Start};

/// A worker's or the timer's handle on the pool (it does not keep the executor alive).
#[pyclass(frozen, name = "_PoolHandle", module = "treadle")]
pub(crate) struct PyPoolHandle(pub(crate) Arc<PoolShared>);

#[pymethods]
impl PyPoolHandle {
    /// The pool's statistics now, also once the executor is gone (`treadle run --stats`).
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyExecutorStats>> {
        crate::stats::to_python(py, self.0.core.stats().snapshot())
    }
}

/// Starts one worker thread for `pool`, already counted in its core's workers (uncounted again
/// if it cannot be started).
pub(crate) fn start_worker(py: Python<'_>, pool: &Arc<PoolShared>) -> PyResult<()> {
    let handle = PyPoolHandle(Arc::clone(pool));
    if let Err(error) = pool.start_worker.bind(py).call1((handle,)) {
        pool.core.worker_exited();
        return Err(error);
    }
    Ok(())
}

struct WorkerGuard<'a> {
    pool: &'a PoolShared,
    /// Still counted in the pool's workers (a retiring spare thread is no longer).
    counted: bool,
    /// Its side of the pool's statistics, once it takes tasks (None when they are off).
    timer: Option<WorkerTimer>,
}

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.pool.core.worker_exited();
        }
        if let Some(timer) = self.timer.take() {
            self.pool.core.stats().worker_ended(timer);
        }
        set_worker_of(None);
    }
}

/// The calling thread's name (`threading.current_thread().name`), for the pool's statistics.
fn thread_name(py: Python<'_>) -> String {
    py.import("threading")
        .and_then(|threading| threading.call_method0("current_thread"))
        .and_then(|thread| thread.getattr("name"))
        .and_then(|name| name.extract())
        .unwrap_or_else(|_| String::from("?"))
}

/// A worker thread's body: run the initializer, then queued futures until the pool is shut
/// down and drained.
#[pyfunction]
pub(crate) fn _run_worker(
    py: Python<'_>,
    handle: &Bound<'_, PyPoolHandle>,
    initializer: &Bound<'_, PyAny>,
    initargs: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    let shared = Arc::clone(&handle.get().0);
    register_current_thread();
    let mut guard = WorkerGuard {
        pool: &shared,
        counted: true,
        timer: None,
    };
    if !initializer.is_none() {
        if let Err(error) = initializer.call1(initargs) {
            if let Some(hooks) = hooks::pool(py) {
                hooks::call(py, &hooks.initializer_failed, (error.into_value(py),));
            }
            for cell in shared.core.break_pool() {
                let error = BrokenThreadPool::new_err(BROKEN).into_value(py).into_any();
                if let Some(mut done) = cell.interrupt(Some(Outcome::Raised(error))) {
                    shared.core.stats().task_ended(TaskEnd::Raised, 1);
                    if let Some(job) = done.job.take() {
                        notify(py, job.future.bind(py), done);
                    }
                }
            }
            return Ok(());
        }
    }
    set_worker_of(Some(Arc::clone(&shared)));
    if shared.core.stats().enabled() {
        guard.timer = shared.core.stats().worker_started(thread_name(py));
    }
    shared.core.worker_idle();
    loop {
        let mut next = match shared.core.next(Some(Instant::now())) {
            // Published while idle, so that a process stalled with idle workers around is still
            // recognised as stalled (they can act only once work arrives).
            Next::Idle => park(py, handle, &shared, WAITING_FOR_WORK, || {
                shared.core.next(None)
            }),
            next => next,
        };
        if let Next::Spare = next {
            // A thread too many since a blocked worker woke: aside until one blocks again.
            next = park(py, handle, &shared, WAITING_AS_SPARE, || {
                shared.core.wait_as_spare()
            });
        }
        match next {
            Next::Run(cell) => {
                match (cell.start(), &mut guard.timer) {
                    (Start::Started(Some(job)), None) => {
                        run_job(py, Some(&*shared), &cell, job);
                    }
                    (Start::Started(Some(job)), Some(timer)) => {
                        let timing = timer.task_starts();
                        let end = run_job(py, Some(&*shared), &cell, job);
                        timer.task_ends(timing, end);
                    }
                    (Start::WasCancelled, Some(timer)) => timer.task_skipped(),
                    _ => {}
                }
                shared.core.worker_idle();
            }
            Next::Idle | Next::Spare => {}
            Next::Exit => return Ok(()),
            Next::Retire => {
                guard.counted = false;
                return Ok(());
            }
        }
    }
}

/// The timer thread's body: interrupt tasks at their deadline until the pool is shut down and
/// no deadline is left.
#[pyfunction]
pub(crate) fn _run_timer(py: Python<'_>, handle: &Bound<'_, PyPoolHandle>) {
    let shared = Arc::clone(&handle.get().0);
    loop {
        let due = park(py, handle, &shared, WAITING_FOR_DEADLINE, || {
            shared.core.expired(None)
        });
        let Some(due) = due else {
            break;
        };
        for cell in due {
            let entry = shared
                .timed
                .lock()
                .get(&key(&cell))
                .map(|(future, limit)| (future.clone_ref(py), *limit));
            let Some((future, limit)) = entry else {
                continue;
            };
            let error =
                TaskTimeoutError::new_err(format!("the task ran past its time limit of {limit} s"));
            let error = error.into_value(py).into_any();
            if let Some(done) = cell.interrupt(Some(Outcome::Raised(error))) {
                shared.core.stats().task_timed_out();
                shared.unretrieved.record(py, future.bind(py));
                notify(py, future.bind(py), done);
            }
        }
    }
}

/// Parks one of the pool's own threads in `wait`, detached and published in the wait graph as
/// parked (see `WaitTarget for Pool`). The wait is withdrawn the moment `wait` returns, before
/// the thread re-attaches: it has then taken a task (or a deadline), so the pool's target is not
/// ready any more, and a record left standing until the interpreter let the thread back in (it
/// may wait long for it) would show it idle, and the process stalled, while it is about to run.
fn park<R: Send>(
    py: Python<'_>,
    handle: &Bound<'_, PyPoolHandle>,
    shared: &PoolShared,
    ticket: u64,
    wait: impl FnOnce() -> R + Send,
) -> R {
    let parked = parked_in_graph(py, handle, shared, ticket);
    py.detach(|| {
        let outcome = wait();
        if let Some(parked) = &parked {
            parked.wait_ended();
        }
        outcome
    })
}

/// Publishes one of the pool's own threads as parked (see `WaitTarget for Pool`), while the
/// returned guard lives. `None` when deadlock detection is off.
fn parked_in_graph<'a>(
    py: Python<'_>,
    handle: &'a Bound<'_, PyPoolHandle>,
    shared: &'a PoolShared,
    ticket: u64,
) -> Option<Tracked<'a>> {
    let graph = WaitGraph::global();
    if graph.mode() == Mode::Off {
        return None;
    }
    let track = Track {
        target: &shared.core,
        kind: WaitKind::Queue,
        ticket,
        object: handle.as_any(),
    };
    // Untimed: an idle worker cannot act by itself; nor can the timer without deadlines.
    publish(py, graph, &track, false).ok()
}
