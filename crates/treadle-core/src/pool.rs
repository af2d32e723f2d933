//! `Pool`: the thread-pool engine behind `treadle.ThreadPoolExecutor`: its queue of pending
//! futures, its worker accounting, its bound, its shut-down, and its task deadlines.
//!
//! The threads themselves are made by the binding (they are Python threads); the pool tells the
//! submitter when one more is needed and tells each worker what to do next. One mutex guards the
//! queue and the counts; `work` wakes idle workers, `room` wakes submitters blocked on a full
//! queue, each signalled only when its parked count says somebody waits.
//!
//! Spawning follows the standard library's rule: a submission starts a new worker when no idle
//! worker is left to take it and the pool is below its maximum. Here: when, after the push, more
//! futures are queued than workers are parked waiting for one (a parked worker takes at most one
//! queued future; a woken one stays counted as parked until it has re-taken the mutex, and the
//! future it will take stays queued until then, so the comparison holds at every moment).
//!
//! A worker that waits on futures of its own pool still queued must not wait for itself: it
//! counts as blocked, the futures it waits for go to the front of the queue, and the pool may run
//! one more thread while it waits (see `spare.rs`). The pool's size is therefore `max_workers`
//! threads *not blocked*. A thread beyond that once a blocked worker woke takes no work: it
//! stands aside as a spare ([`Next::Spare`]), ready for the next worker that blocks, and retires
//! after [`SPARE_KEEP_ALIVE`].
//!
//! Deadlines (per-task time limits) are a second, small monitor: a heap of (instant, future)
//! that a timer thread waits on.
//!
//! Statistics (`stats.rs`): the mutex that guards the queue also guards the count of
//! submissions and the histogram of queue waits; a submission is stamped with the clock when the
//! pool's [`Sampler`] asks for it, and the wait is recorded when a worker takes it.

use crate::future::{FutureCell, TaskTypes};
use crate::primitive::{lock, wait_until, Condvar, Mutex};
use crate::stats::Sampler;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

mod blocked;
mod queued;
mod spare;
mod stats;
pub use blocked::{Blocking, MAX_SPARE_WORKERS};
use queued::Queued;
pub use stats::{PoolStats, Timing, WorkerTimer};

/// How long a spare thread (one beyond the pool's size, started for a worker that waited on its
/// own pool and has woken since) stays idle before it ends: long enough to serve the next nested
/// wait of a fork-join burst without a new thread.
pub const SPARE_KEEP_ALIVE: Duration = Duration::from_secs(1);

struct State<T: TaskTypes> {
    queue: VecDeque<Queued<T>>,
    /// Which submissions to stamp, for the statistics of queue waits.
    sampler: Sampler,
    max_workers: usize,
    max_pending: usize,
    workers: usize,
    parked_workers: usize,
    /// Workers between two tasks (looking for work, spinning or parked), as the standard
    /// library's idle semaphore counts them: a submission they can take spawns no new worker.
    idle_workers: usize,
    parked_submitters: usize,
    /// Workers waiting on futures of this pool that were queued (see `Pool::worker_blocks`).
    blocked: Vec<blocked::BlockedWorker<T>>,
    /// Threads standing aside, taking no work (see [`Next::Spare`]); not counted as idle.
    spare_workers: usize,
    shut_down: bool,
    broken: bool,
}

impl<T: TaskTypes> State<T> {
    /// How many threads may take work now: `max_workers` not blocked, one more for each blocked
    /// worker (up to [`MAX_SPARE_WORKERS`] more).
    fn worker_limit(&self) -> usize {
        if self.blocked.is_empty() {
            return self.max_workers;
        }
        let blocked = self.blocked.iter().filter(|b| b.is_blocked()).count();
        self.max_workers + blocked.min(MAX_SPARE_WORKERS)
    }

    /// The threads that take work: all but the spares.
    fn active_workers(&self) -> usize {
        self.workers - self.spare_workers
    }
}

/// Why a submission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The pool was shut down (or broken).
    ShutDown,
    /// The pool is bounded and full, and the deadline passed.
    Full,
}

/// What a worker should do next.
pub enum Next<T: TaskTypes> {
    /// Run (or skip, if someone else claimed it) this future.
    Run(Arc<FutureCell<T>>),
    /// Nothing arrived before the deadline; ask again.
    Idle,
    /// The pool is shut down and drained: end the thread.
    Exit,
    /// The pool has more threads taking work than it needs (a worker that blocked on it woke):
    /// stand aside with [`Pool::wait_as_spare`].
    Spare,
    /// A spare thread no longer needed: end the thread (it is no longer counted).
    Retire,
}

/// A pool's queue and workers.
pub struct Pool<T: TaskTypes> {
    state: Mutex<State<T>>,
    stats: PoolStats,
    work: Condvar,
    room: Condvar,
    spares: Condvar,
    timers: Mutex<Timers<T>>,
    timer_wake: Condvar,
}

struct Timers<T: TaskTypes> {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    cells: std::collections::HashMap<u64, Weak<FutureCell<T>>>,
    next_serial: u64,
    closed: bool,
}

impl<T: TaskTypes> Pool<T> {
    /// A pool of at most `max_workers` threads and `max_pending` queued futures (0: unbounded).
    pub fn new(max_workers: usize, max_pending: usize) -> Self {
        Pool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                sampler: Sampler::default(),
                max_workers,
                max_pending,
                workers: 0,
                parked_workers: 0,
                idle_workers: 0,
                parked_submitters: 0,
                blocked: Vec::new(),
                spare_workers: 0,
                shut_down: false,
                broken: false,
            }),
            stats: PoolStats::new(),
            work: Condvar::new(),
            room: Condvar::new(),
            spares: Condvar::new(),
            timers: Mutex::new(Timers {
                heap: BinaryHeap::new(),
                cells: std::collections::HashMap::new(),
                next_serial: 0,
                closed: false,
            }),
            timer_wake: Condvar::new(),
        }
    }

    /// Queues `cell`, waiting until `deadline` for room if the pool is bounded and full.
    /// `Ok(true)` asks the caller to start one more worker (already counted in `workers`).
    pub fn submit(
        &self,
        cell: &Arc<FutureCell<T>>,
        deadline: Option<Instant>,
    ) -> Result<bool, SubmitError> {
        let mut state = lock(&self.state);
        loop {
            if state.shut_down || state.broken {
                return Err(SubmitError::ShutDown);
            }
            if state.max_pending == 0 || state.queue.len() < state.max_pending {
                break;
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(SubmitError::Full);
            }
            state.parked_submitters += 1;
            let (next, _) = wait_until(&self.room, state, deadline);
            state = next;
            state.parked_submitters -= 1;
        }
        let mut stamp = None;
        if self.stats.enabled() {
            self.stats.submitted_locked();
            if let Some(weight) = state.sampler.due() {
                let now = Instant::now();
                state.sampler.timed(now);
                stamp = Some((now, weight));
            }
        }
        state.queue.push_back(Queued {
            cell: Arc::clone(cell),
            stamp,
        });
        let needed =
            state.queue.len() > state.idle_workers && state.active_workers() < state.worker_limit();
        let wake_spare = needed && state.spare_workers > 0;
        let spawn = needed && !wake_spare;
        if spawn {
            state.workers += 1;
        }
        let wake = state.parked_workers > 0;
        drop(state);
        if wake {
            self.work.notify_one();
        }
        if wake_spare {
            self.spares.notify_one();
        }
        Ok(spawn)
    }

    /// The next future for a worker, waiting until `deadline` for one.
    /// A worker is between tasks from now until [`Pool::next`] hands it one (or tells it to
    /// exit): call after starting and after each task.
    pub fn worker_idle(&self) {
        lock(&self.state).idle_workers += 1;
    }

    /// The next future for an idle worker (see [`Pool::worker_idle`]), waiting until `deadline`
    /// for one.
    pub fn next(&self, deadline: Option<Instant>) -> Next<T> {
        if deadline.is_none() {
            // A submitter is often a few microseconds away: look again before parking.
            crate::future::spin_until(|| {
                let state = lock(&self.state);
                !state.queue.is_empty() || state.shut_down || state.broken
            });
        }
        let mut state = lock(&self.state);
        loop {
            if state.active_workers() > state.worker_limit() && !state.shut_down {
                state.idle_workers = state.idle_workers.saturating_sub(1);
                state.spare_workers += 1;
                return Next::Spare;
            }
            if let Some(Queued { cell, stamp }) = state.queue.pop_front() {
                if let Some((queued, weight)) = stamp {
                    self.stats.taken_locked(queued, weight);
                }
                state.idle_workers = state.idle_workers.saturating_sub(1);
                let wake = state.parked_submitters > 0;
                drop(state);
                if wake {
                    self.room.notify_one();
                }
                return Next::Run(cell);
            }
            if state.shut_down || state.broken {
                state.idle_workers = state.idle_workers.saturating_sub(1);
                return Next::Exit;
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Next::Idle;
            }
            state.parked_workers += 1;
            let (next, _) = wait_until(&self.work, state, deadline);
            state = next;
            state.parked_workers -= 1;
        }
    }

    /// A worker's thread has ended (or failed to start).
    pub fn worker_exited(&self) {
        let mut state = lock(&self.state);
        state.workers = state.workers.saturating_sub(1);
    }

    /// How many threads the pool counts.
    pub fn workers(&self) -> usize {
        lock(&self.state).workers
    }

    /// The pool's statistics.
    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Futures queued and not yet taken by a worker.
    pub fn pending(&self) -> usize {
        lock(&self.state).queue.len()
    }

    /// Stops taking submissions; workers finish the queue and exit. With `cancel_queued`, the
    /// queue is emptied instead and its futures returned, for the caller to cancel.
    pub fn shutdown(&self, cancel_queued: bool) -> Vec<Arc<FutureCell<T>>> {
        let mut state = lock(&self.state);
        state.shut_down = true;
        let drained = if cancel_queued {
            state.queue.drain(..).map(|queued| queued.cell).collect()
        } else {
            Vec::new()
        };
        drop(state);
        self.work.notify_all();
        self.room.notify_all();
        self.spares.notify_all();
        drained
    }

    /// Marks the pool broken (a worker's initializer failed): no more submissions, and the queue
    /// is returned for the caller to fail.
    pub fn break_pool(&self) -> Vec<Arc<FutureCell<T>>> {
        let mut state = lock(&self.state);
        state.broken = true;
        let drained = state.queue.drain(..).map(|queued| queued.cell).collect();
        drop(state);
        self.work.notify_all();
        self.room.notify_all();
        self.spares.notify_all();
        drained
    }

    /// Whether `break_pool` was called.
    pub fn is_broken(&self) -> bool {
        lock(&self.state).broken
    }

    /// Whether `shutdown` was called.
    pub fn is_shut_down(&self) -> bool {
        lock(&self.state).shut_down
    }

    /// Puts a time limit on a running future: at `deadline` the timer thread gets it back from
    /// [`Pool::expired`]. Returns whether the timer thread must be started (first deadline).
    pub fn add_deadline(&self, deadline: Instant, cell: &Arc<FutureCell<T>>) -> bool {
        let mut timers = lock(&self.timers);
        let first = timers.next_serial == 0;
        timers.next_serial += 1;
        let serial = timers.next_serial;
        timers.heap.push(Reverse((deadline, serial)));
        timers.cells.insert(serial, Arc::downgrade(cell));
        drop(timers);
        self.timer_wake.notify_all();
        first
    }

    /// For the timer thread: waits until the earliest deadline (or `until`), then returns the
    /// futures whose deadline passed and are not done. `None` when the pool is closed and no
    /// deadline is left: the timer thread ends.
    pub fn expired(&self, until: Option<Instant>) -> Option<Vec<Arc<FutureCell<T>>>> {
        let mut timers = lock(&self.timers);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(Reverse((deadline, serial))) = timers.heap.peek().copied() {
                if deadline > now {
                    break;
                }
                timers.heap.pop();
                if let Some(cell) = timers.cells.remove(&serial).and_then(|w| w.upgrade()) {
                    if !cell.is_done() {
                        due.push(cell);
                    }
                }
            }
            if !due.is_empty() {
                return Some(due);
            }
            if timers.closed && timers.heap.is_empty() {
                return None;
            }
            let next = timers.heap.peek().map(|Reverse((deadline, _))| *deadline);
            let wake_at = match (next, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if until.is_some_and(|until| now >= until) {
                return Some(Vec::new());
            }
            let (next, _) = wait_until(&self.timer_wake, timers, wake_at);
            timers = next;
        }
    }

    /// Lets the timer thread end once no deadline is left.
    pub fn close_timers(&self) {
        lock(&self.timers).closed = true;
        self.timer_wake.notify_all();
    }
}

/// Wait-graph ticket of an idle worker waiting for work.
pub const WAITING_FOR_WORK: u64 = 0;
/// Wait-graph ticket of the timer thread waiting for the next deadline.
pub const WAITING_FOR_DEADLINE: u64 = 1;
/// Wait-graph ticket of a submission waiting for room in a bounded pool's queue.
pub const WAITING_FOR_ROOM: u64 = 2;
/// Wait-graph ticket of a spare thread standing aside (see [`Next::Spare`]).
pub const WAITING_AS_SPARE: u64 = 3;

/// A pool in the wait graph: an idle worker can act once work arrives (or the pool shuts down);
/// a spare once the pool needs another thread; the timer while some task has a deadline; a
/// blocked submission once a worker took a queued future (or the pool shut down). None has an
/// owner: any worker may make room.
impl<T: TaskTypes> crate::wait_graph::WaitTarget for Pool<T>
where
    Pool<T>: Sync,
{
    fn owner(&self) -> Option<crate::ThreadId> {
        None
    }
    fn is_ready(&self, ticket: u64) -> bool {
        if ticket == WAITING_FOR_DEADLINE {
            let timers = lock(&self.timers);
            return !timers.heap.is_empty() || timers.closed;
        }
        let state = lock(&self.state);
        if state.shut_down || state.broken {
            return true;
        }
        match ticket {
            WAITING_FOR_ROOM => state.max_pending == 0 || state.queue.len() < state.max_pending,
            WAITING_AS_SPARE => state.active_workers() < state.worker_limit(),
            _ => !state.queue.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests;
