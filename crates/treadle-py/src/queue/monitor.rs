//! The monitor of queues whose storage steps run Python code, or whose lock a program takes:
//! `PriorityQueue` (its comparisons), subclasses that override `_put`, `_get`, `_qsize` or
//! `_init`, and any queue once its `mutex`, `not_empty`, `not_full` or `all_tasks_done` is used
//! or an instance sets its own storage step.
//!
//! This is `queue.Queue`'s own design on treadle's primitives, with its names: a `treadle.Lock`
//! as the queue's `mutex`, held while the storage steps run (a lock other threads wait for with
//! the interpreter released, never a core mutex, so holding it across Python code cannot
//! deadlock against the GIL), and three `treadle.Condition`s over it as `not_empty`, `not_full`
//! and `all_tasks_done`, whose wait queues the monitor's own waits use. So a program that holds
//! `q.mutex` holds off every put and get, and one that waits on or notifies `q.not_empty` does so
//! with the queue's getters, as with `queue.Queue`. A waiter enqueues itself while it holds the
//! mutex and only then releases it, so a notification made under the mutex afterwards cannot be
//! missed (the argument of `treadle.Condition`).

use crate::condition::PyCondition;
use crate::lock::PyLock;
use crate::runtime::timeout::Wait;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use treadle_core::{Handover, QueueWait, WaitQueue};

use super::wait::{park, QueueRef};
use pyo3::prelude::*;

/// Lock, conditions and counters of a queue run as a monitor.
pub(crate) struct Monitor {
    /// The queue's `mutex`.
    mutex: Py<PyLock>,
    /// `not_empty`, `not_full` and `all_tasks_done` as the program sees them.
    conditions: [Py<PyCondition>; 3],
    pub(crate) not_empty: Arc<WaitQueue>,
    pub(crate) not_full: Arc<WaitQueue>,
    pub(crate) all_tasks_done: Arc<WaitQueue>,
    /// Written only with `mutex` held; atomics so that reads for `repr` and properties need not
    /// take it.
    pub(crate) unfinished_tasks: AtomicUsize,
    pub(crate) shut_down: AtomicBool,
}

/// Which of the monitor's conditions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Named {
    NotEmpty = 0,
    NotFull = 1,
    AllTasksDone = 2,
}

/// Proof that the calling thread holds the monitor's mutex; releases it when dropped.
pub(crate) struct Held<'a>(&'a Monitor);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Held is only made by `enter`, so the lock is locked and ours to release.
        let _ = self.0.mutex.get().release_raw();
    }
}

impl Monitor {
    /// A monitor with no task and not shut down.
    pub(crate) fn new(py: Python<'_>) -> PyResult<Monitor> {
        let mutex = Py::new(py, PyLock::new_at(py))?;
        let [not_empty, not_full, all_tasks_done] = [(); 3].map(|()| Arc::new(WaitQueue::new()));
        let over = |waiters: &Arc<WaitQueue>| {
            Py::new(py, PyCondition::over(mutex.clone_ref(py), waiters.clone()))
        };
        let conditions = [over(&not_empty)?, over(&not_full)?, over(&all_tasks_done)?];
        Ok(Monitor {
            mutex,
            conditions,
            not_empty,
            not_full,
            all_tasks_done,
            unfinished_tasks: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
        })
    }

    /// Takes over the tasks and shut-down state of the core queue it replaces (before anybody
    /// else can see the monitor).
    pub(crate) fn take_over(&self, handover: Handover) {
        self.unfinished_tasks
            .store(handover.unfinished_tasks, Ordering::Release);
        self.shut_down.store(handover.shut_down, Ordering::Release);
    }

    /// The queue's `mutex`, for the program.
    pub(crate) fn mutex(&self, py: Python<'_>) -> Py<PyLock> {
        self.mutex.clone_ref(py)
    }

    /// One of the queue's conditions, for the program.
    pub(crate) fn condition(&self, py: Python<'_>, which: Named) -> Py<PyCondition> {
        self.conditions[which as usize].clone_ref(py)
    }

    /// Takes the mutex, waiting with the interpreter released (a lock wait in the wait graph,
    /// owned by whichever thread holds it); Ctrl-C interrupts the wait.
    pub(crate) fn enter(&self, py: Python<'_>) -> PyResult<Held<'_>> {
        PyLock::acquire_with(self.mutex.bind(py), Wait::Until(None))?;
        Ok(Held(self))
    }

    /// One wait on `condition` (one of this monitor's), as `Condition.wait`: releases the mutex,
    /// parks until notified or `deadline`, and takes the mutex back before returning, even when
    /// interrupted (the caller's `Held` still owns it).
    pub(crate) fn wait(
        &self,
        py: Python<'_>,
        object: &Bound<'_, PyAny>,
        _held: &Held<'_>,
        condition: &WaitQueue,
        what: QueueWait,
        deadline: Option<Instant>,
    ) -> PyResult<()> {
        let waiter = condition.enqueue();
        let mutex = self.mutex.get();
        let _ = mutex.release_raw();
        let outcome = park(
            py,
            QueueRef {
                target: &*waiter,
                object,
            },
            what,
            Wait::Until(deadline),
            |deadline| waiter.wait_until(deadline).then_some(()),
        );
        // A notification spent on a waiter that leaves anyway goes to the next one, so that it is
        // not lost; the caller re-checks its condition, so an extra wake-up costs nothing.
        if !matches!(outcome, Ok(Some(()))) && !condition.withdraw(&waiter) {
            condition.notify(1);
        }
        mutex.reacquire(self.mutex.bind(py).as_any());
        outcome.map(|_| ())
    }

    /// Clears the counters for `__init__`.
    pub(crate) fn reset(&self) {
        self.unfinished_tasks.store(0, Ordering::Relaxed);
        self.shut_down.store(false, Ordering::Relaxed);
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    pub(crate) fn unfinished_tasks(&self) -> usize {
        self.unfinished_tasks.load(Ordering::Acquire)
    }
}
