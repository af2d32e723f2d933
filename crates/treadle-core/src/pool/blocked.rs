//! A worker blocked on futures of its own pool, as the pool counts it, and what the pool tells
//! it to do (see `spare.rs` for the protocol).

use super::queued::Queued;
use crate::future::{FutureCell, TaskTypes};
use crate::thread_id::ThreadId;
use std::collections::VecDeque;
use std::sync::Arc;

/// The most threads a pool runs beyond `max_workers` for workers blocked on it (as
/// `ForkJoinPool`'s default maximum of spare threads).
pub const MAX_SPARE_WORKERS: usize = 256;

/// What a worker about to wait on futures of its own pool does (see [`super::Pool::worker_blocks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// Wait: the futures are running, or idle workers will take them first.
    Wait,
    /// Start one more thread (already counted in the pool's workers), then wait: it will take
    /// them. If it cannot be started, call [`super::Pool::worker_exited`] and help instead.
    StartThread,
    /// No thread can be added: run one of the queued futures on this thread, then look again.
    Help,
}

/// A worker waiting on futures of its own pool, and which ones.
pub(super) struct BlockedWorker<T: TaskTypes> {
    pub(super) thread: ThreadId,
    waiting_on: Vec<Arc<FutureCell<T>>>,
}

impl<T: TaskTypes> BlockedWorker<T> {
    pub(super) fn new(thread: ThreadId, waiting_on: &[Arc<FutureCell<T>>]) -> Self {
        BlockedWorker {
            thread,
            waiting_on: waiting_on.to_vec(),
        }
    }

    /// Whether it still waits: none of the futures it waits for is done.
    pub(super) fn is_blocked(&self) -> bool {
        !self.waiting_on.iter().any(|cell| cell.is_done())
    }
}

/// Moves the futures of `waited` that are in `queue` to its front, in `waited`'s order; returns
/// how many there were. One future (a `result()`) is looked for from the back, where a task's
/// own submissions are.
pub(super) fn promote<T: TaskTypes>(
    queue: &mut VecDeque<Queued<T>>,
    waited: &[Arc<FutureCell<T>>],
) -> usize {
    if let [one] = waited {
        let Some(at) = queue.iter().rposition(|q| Arc::ptr_eq(&q.cell, one)) else {
            return 0;
        };
        if let Some(queued) = queue.remove(at) {
            queue.push_front(queued);
        }
        return 1;
    }
    let mut found: Vec<Option<Queued<T>>> = (0..waited.len()).map(|_| None).collect();
    let mut kept = VecDeque::with_capacity(queue.len());
    for queued in queue.drain(..) {
        match waited.iter().position(|w| Arc::ptr_eq(w, &queued.cell)) {
            Some(at) => found[at] = Some(queued),
            None => kept.push_back(queued),
        }
    }
    *queue = kept;
    let mut count = 0;
    for queued in found.into_iter().rev().flatten() {
        queue.push_front(queued);
        count += 1;
    }
    count
}
