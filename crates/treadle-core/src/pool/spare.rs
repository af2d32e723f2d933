//! A worker that waits on futures of its own pool: compensation, as work-stealing pools do it
//! (Java's `ForkJoinPool.managedBlock`).
//!
//! A worker running a task that waits on futures still queued in its own pool would, in a pool
//! whose every worker does the same, wait for itself: a fork-join tree deeper than the pool is
//! wide never finishes. Running the future inline, on the waiting thread, finishes it but shows
//! the waiting task's per-thread state to the future's task (its `threading.local` values, the
//! `RLock`s it holds, its thread's identity). So instead a worker about to wait on futures of its
//! own pool says it blocks ([`Pool::worker_blocks`]): those still queued move to the front of the
//! queue, so that the next free thread runs them before older work, and while it waits the pool
//! may have one more thread (`worker_limit`), which the caller starts when no idle worker is
//! there to take the queued work. Each blocked worker is thus replaced by one that is not, and
//! the pool keeps `max_workers` threads able to run queued work, until [`super::MAX_SPARE_WORKERS`]
//! spares run. A worker waiting on futures that are running counts too: it takes no work, and
//! what it waits for may itself wait on work queued behind.
//!
//! A blocked worker counts as such until one of the futures it waits for is done, not until it
//! has woken: the thread that ran that future, looking for work the moment it is done, must see
//! the worker as running again, or it would take older queued work (which may block in turn).
//!
//! Once the worker is running again, the pool has a thread too many: the first thread to look for work
//! then stands aside as a *spare* ([`super::Next::Spare`], [`Pool::wait_as_spare`]), taking no
//! work (else spare threads would start older queued tasks, which may block in turn, each
//! asking for a thread more), until a worker blocks again and wakes it, or it retires after
//! [`super::SPARE_KEEP_ALIVE`]. A fork-join burst thus reuses its threads.
//!
//! Why it cannot hang: a queued future is taken as soon as a thread that takes work is free; a
//! worker that blocks on queued futures either finds an idle worker (which takes them first,
//! they are at the front), wakes a spare, or gets a new thread; past [`super::MAX_SPARE_WORKERS`], it is
//! told to run one itself ([`Blocking::Help`]). The threads taking work are never fewer than the
//! limit allows while work is queued: a thread stands aside only when they are more, and a spare
//! comes back as soon as they are fewer (each change that raises the limit wakes one).

use super::blocked::{promote, BlockedWorker, Blocking};
use super::{Next, Pool, SPARE_KEEP_ALIVE};
use crate::future::{FutureCell, TaskTypes};
use crate::primitive::{lock, wait_until};
use crate::thread_id::ThreadId;
use std::sync::Arc;
use std::time::Instant;

impl<T: TaskTypes> Pool<T> {
    /// The calling worker is about to wait on `waited`, futures of this pool not done (those
    /// still queued go to the front, in `waited`'s order). Until [`Pool::worker_unblocks`], it
    /// counts as blocked while none of them is done, whatever the answer.
    pub fn worker_blocks(&self, waited: &[Arc<FutureCell<T>>]) -> Blocking {
        let mut state = lock(&self.state);
        let thread = ThreadId::current();
        state.blocked.retain(|b| b.thread != thread);
        let queued = promote(&mut state.queue, waited);
        state.blocked.push(BlockedWorker::new(thread, waited));
        if state.queue.len() <= state.idle_workers {
            return Blocking::Wait;
        }
        if state.active_workers() < state.worker_limit() {
            if state.spare_workers > 0 {
                drop(state);
                self.spares.notify_one();
                return Blocking::Wait;
            }
            state.workers += 1;
            return Blocking::StartThread;
        }
        if queued > 0 {
            // Past the spare threads, and nobody free to run what this worker waits for.
            return Blocking::Help;
        }
        Blocking::Wait
    }

    /// For a thread told to stand aside ([`Next::Spare`]): waits until the pool needs it again
    /// ([`Next::Idle`]: it looks for work with [`Pool::next`] again), it has been a spare for
    /// [`SPARE_KEEP_ALIVE`] ([`Next::Retire`]: it is no longer counted) or the pool is shut down
    /// ([`Next::Exit`]).
    pub fn wait_as_spare(&self) -> Next<T> {
        let retire_at = Instant::now() + SPARE_KEEP_ALIVE;
        let mut state = lock(&self.state);
        let mut kept_long_enough = false;
        loop {
            if state.shut_down || state.broken {
                state.spare_workers -= 1;
                return Next::Exit;
            }
            if state.active_workers() < state.worker_limit() {
                state.spare_workers -= 1;
                state.idle_workers += 1;
                return Next::Idle;
            }
            if kept_long_enough {
                state.spare_workers -= 1;
                state.workers -= 1;
                return Next::Retire;
            }
            (state, kept_long_enough) = wait_until(&self.spares, state, Some(retire_at));
        }
    }

    /// The calling worker, which called [`Pool::worker_blocks`], waits no more.
    pub fn worker_unblocks(&self) {
        let thread = ThreadId::current();
        lock(&self.state).blocked.retain(|b| b.thread != thread);
    }

    /// How many workers wait on futures of this pool now.
    pub fn blocked_workers(&self) -> usize {
        let state = lock(&self.state);
        state.blocked.iter().filter(|b| b.is_blocked()).count()
    }
}
