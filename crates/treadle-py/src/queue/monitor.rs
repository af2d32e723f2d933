//! The monitor of queues whose storage steps run Python code: `PriorityQueue` (its comparisons)
//! and subclasses that override `_put`, `_get`, `_qsize` or `_init`.
//!
//! This is `queue.Queue`'s own design on treadle's primitives: a [`RawLock`] as the queue's mutex,
//! held while the storage steps run (it is a lock other threads wait for with the interpreter
//! released, never a core mutex, so holding it across Python code cannot deadlock against the
//! GIL), and three [`WaitQueue`]s as the conditions `not_empty`, `not_full` and `all_tasks_done`.
//! A waiter enqueues itself while it holds the mutex and only then releases it, so a notification
//! made under the mutex afterwards cannot be missed (the argument of `treadle.Condition`).

use crate::runtime::wait::{block_uninterrupted, block_until};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;
use treadle_core::{QueueWait, RawLock, WaitQueue};

use super::wait::{park, QueueRef};
use pyo3::prelude::*;

/// Lock, conditions and counters of a queue run as a monitor.
pub(crate) struct Monitor {
    mutex: RawLock,
    pub(crate) not_empty: WaitQueue,
    pub(crate) not_full: WaitQueue,
    pub(crate) all_tasks_done: WaitQueue,
    /// Written only with `mutex` held; atomics so that reads for `repr` and properties need not
    /// take it.
    pub(crate) unfinished_tasks: AtomicUsize,
    pub(crate) shut_down: AtomicBool,
}

/// Proof that the calling thread holds the monitor's mutex; releases it when dropped.
pub(crate) struct Held<'a>(&'a Monitor);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Held is only made by `enter`, so the lock is locked and ours to release.
        let _ = self.0.mutex.release();
    }
}

impl Monitor {
    pub(crate) fn new() -> Monitor {
        Monitor {
            mutex: RawLock::new(),
            not_empty: WaitQueue::new(),
            not_full: WaitQueue::new(),
            all_tasks_done: WaitQueue::new(),
            unfinished_tasks: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
        }
    }

    /// Takes the mutex, waiting with the interpreter released; Ctrl-C interrupts the wait.
    pub(crate) fn enter(&self, py: Python<'_>) -> PyResult<Held<'_>> {
        if !self.mutex.try_acquire() {
            // A lock wait, not a queue wait: its owner is whichever thread runs a storage step.
            block_until(
                py,
                crate::runtime::timeout::Wait::Until(None),
                None,
                |deadline| self.mutex.acquire_until(deadline),
            )?;
        }
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
        let _ = self.mutex.release();
        let outcome = park(
            py,
            QueueRef {
                target: &*waiter,
                object,
            },
            what,
            crate::runtime::timeout::Wait::Until(deadline),
            |deadline| waiter.wait_until(deadline).then_some(()),
        );
        // A notification spent on a waiter that leaves anyway goes to the next one, so that it is
        // not lost; the caller re-checks its condition, so an extra wake-up costs nothing.
        if !matches!(outcome, Ok(Some(()))) && !condition.withdraw(&waiter) {
            condition.notify(1);
        }
        if !self.mutex.try_acquire() {
            block_uninterrupted(py, || self.mutex.acquire_until(None));
        }
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
