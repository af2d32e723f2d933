//! The process supervisor behind `treadle.ProcessPoolExecutor`: it owns the worker processes,
//! hands them tasks, watches them exit, enforces task deadlines, and replaces a worker that
//! crashed, timed out or was interrupted, failing only the task it was running.
//!
//! # Model
//!
//! One job per file:
//!
//! - `state.rs`: the rules. Tasks not yet sent, and per worker the tasks sent to it (in order: a
//!   worker runs them one after another, so the oldest unanswered one is the one running) and
//!   what is to become of it; what a submission, a cancellation, a frame, an exit or a deadline
//!   does to them. No I/O: workers are reached through a `Link`.
//! - `connection.rs`: a live worker, its process and its end of the channel (the real `Link`).
//! - `poller.rs`: the I/O loop, [`Supervisor::poll`].
//! - `task.rs`: what goes in (a [`Task`]) and what comes out ([`Event`]s, refusals, the outcome of
//!   a cancellation).
//! - `tally.rs`: the pool's statistics, which the state machine counts ([`Supervisor::stats`]).
//!
//! One mutex guards the state. Any thread may submit, cancel or shut down; a submission is
//! written to an idle worker's socket right away, from the submitting thread, with a
//! non-blocking send. Other threads may read what workers sent, too, with non-blocking reads
//! under the mutex: a submission while tasks wait for room and the poller is away from `ppoll`
//! (its thread waiting for the interpreter), so that workers are topped up; a thread waiting on
//! a task's answer ([`Supervisor::take_returned`]), so that it needs no other thread woken.
//! One thread, the *poller* (the pool's supervisor thread), calls [`Supervisor::poll`]: it
//! waits in `ppoll` (with the mutex released) on every worker's socket and pidfd, an eventfd
//! other threads use to wake it, and the nearest task deadline; then it
//! reads results, reaps dead workers, kills the overdue ones, starts replacements, and returns
//! what happened as [`Event`]s for the binding to resolve futures with. Only the poller adds or
//! removes workers; the descriptors it polls unlocked are shared (`Arc`) with its list, so a
//! worker removed meanwhile cannot close one under it. Processes are spawned with the mutex
//! released.
//!
//! # When a task starts
//!
//! A worker takes up to `prefetch` tasks at a time so that tiny tasks do not wait for a round
//! trip; more, up to `MAX_HELD`, while its recent tasks were short: as many as it runs in about
//! `HELD_WORK` by its recent pace, so that a task never waits long behind others on one worker
//! while another is idle. Its oldest unanswered task counts as running from the moment the worker said it was
//! ready or answered the task before; that is when its deadline starts. A task sent but not yet
//! started that is cancelled is skipped by the worker (a `CANCEL` frame); one that is running is
//! interrupted by killing its worker, whose other, unstarted tasks go back to the front of the
//! queue.
//!
//! # Shared memory
//!
//! A task's large buffers are lent by the binding (pickle protocol 5's out-of-band buffers) and
//! stay the caller's until a worker has room for the task: only then does the poller copy them,
//! with the state unlocked, into one anonymous `memfd` segment (`segment.rs`), which travels with
//! the task's frame (`SCM_RIGHTS`) and stays with the task until it is answered. So a queue of
//! any length holds no copy and no descriptor; a worker holds at most `prefetch` tasks that carry
//! buffers. No segment has a name and none outlives the processes that map it.
//!
//! # Starting workers
//!
//! [`Origin`] says where a pool's workers come from: fresh interpreters (fork-and-exec), a fork
//! server (given the parent's state of the moment at each start, captured by the binding; a
//! fresh interpreter when the server is gone or cannot give that state), or forks of this very
//! process made by the binding (the caller asked for the `fork` start method). A worker that ends
//! before it is ready by its own doing (an exit, a crash) is a start failure: the next start
//! waits (`START_BACKOFF`, doubling), and [`START_FAILURES_TO_BREAK`](state) in a row break the
//! pool. One killed from outside (`SIGKILL`, `SIGTERM`) is not: its tasks go back to the queue and
//! a replacement starts at once.

mod connection;
mod poller;
mod state;
mod tally;
mod task;

pub use task::{Buffers, CancelOutcome, Event, LentBuffers, OutOfBand, SubmitError, Task};

use crate::channel::Waker;
use crate::fork_server::{ForkServer, ParentState};
use crate::frame::FrameError;
use connection::Connection;
use parking_lot::Mutex;
use rustix::process::Signal;
use state::{Limits, State};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use treadle_core::stats::Snapshot;

/// How to start a pool's workers.
#[derive(Debug, Clone)]
pub struct Config {
    /// The program (a Python interpreter) and its arguments; the worker finds its channel on
    /// descriptor [`crate::process::CHANNEL_FD`].
    pub program: OsString,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// How many workers to keep running.
    pub workers: usize,
    /// Replace a worker after it ran this many tasks.
    pub max_tasks_per_child: Option<u64>,
    /// The `INIT` frame's payload, sent to every worker first.
    pub init: Vec<u8>,
    /// How many tasks a worker may hold at once (at least 1).
    pub prefetch: usize,
    /// Where workers come from.
    pub origin: Origin,
}

/// Captures the parent's state now, for a worker forked from a fork server to take.
pub type CaptureState = Arc<dyn Fn() -> io::Result<ParentState> + Send + Sync>;

/// Forks this process into a worker that serves the first descriptor (its end of the channel)
/// and closes the second (the pool's end) in the child; returns the worker's pid.
pub type ForkCaller = Arc<dyn Fn(&OwnedFd, &OwnedFd) -> io::Result<u32> + Send + Sync>;

/// Where a pool's workers come from.
#[derive(Clone)]
pub enum Origin {
    /// Fresh interpreters: `program args...`, started by fork-and-exec.
    Fresh,
    /// Forks of a fork server, each taking the parent's state as `state` captures it at its
    /// start; fresh interpreters when the server is gone or cannot give that state.
    ForkServer {
        /// The server.
        server: Arc<ForkServer>,
        /// Captures the parent's state.
        state: CaptureState,
    },
    /// Forks of this process (the `fork` start method), made by `fork`.
    Caller(ForkCaller),
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Fresh => f.write_str("Fresh"),
            Origin::ForkServer { server, .. } => f
                .debug_struct("ForkServer")
                .field("server", server)
                .finish_non_exhaustive(),
            Origin::Caller(_) => f.write_str("Caller"),
        }
    }
}

/// A pool's supervisor. See the module documentation.
#[derive(Debug)]
pub struct Supervisor {
    config: Config,
    state: Mutex<State<Connection>>,
    /// Whether the poller waits in `ppoll` (written and read with `state` locked).
    poller_asleep: AtomicBool,
    wake: Waker,
    /// Whether a pidfd polled readable since the poller last looked at every worker's exit (the
    /// poller's alone; atomic only because the supervisor is shared).
    pidfd_fired: AtomicBool,
    /// When the supervisor was made: [`Supervisor::read_at`] counts from it.
    created: Instant,
    /// When a submission last read the workers' answers for the poller (nanoseconds since
    /// `created`; written with `state` locked).
    read_at: AtomicU64,
}

/// How often, at most, submissions read the workers' answers while the poller cannot (a
/// worker topped up holds about 1 ms of tasks, refilled once down to half of it).
const READ_EVERY: std::time::Duration = std::time::Duration::from_micros(100);

impl Supervisor {
    /// A supervisor for `config`; workers start on the first [`Supervisor::poll`].
    pub fn new(config: Config) -> io::Result<Supervisor> {
        let limits = Limits {
            workers: config.workers,
            prefetch: config.prefetch,
            max_tasks_per_child: config.max_tasks_per_child,
        };
        Ok(Supervisor {
            config,
            state: Mutex::new(State::new(limits)),
            poller_asleep: AtomicBool::new(false),
            wake: Waker::new()?,
            pidfd_fired: AtomicBool::new(true),
            created: Instant::now(),
            read_at: AtomicU64::new(0),
        })
    }

    /// Queues a task, writing it to an idle worker at once if there is one.
    pub fn submit(&self, task: Task) -> Result<(), SubmitError> {
        if task.payload.len() > u32::MAX as usize {
            return Err(SubmitError::Frame(FrameError::TooLarge));
        }
        let mut state = self.state.lock();
        let now = Instant::now();
        let mut needs_poller = state.submit(task, now)?;
        if state.has_pending() && !self.poller_asleep.load(Ordering::Relaxed) {
            needs_poller |= self.read_for_poller(&mut state, now);
        }
        if needs_poller && self.poller_asleep.load(Ordering::Relaxed) {
            self.wake.wake();
        }
        Ok(())
    }

    /// While tasks wait for room and the poller is not in `ppoll` (busy, or its thread waiting
    /// for the interpreter, which a thread submitting in a loop holds for milliseconds at a
    /// time), a submission reads what the workers answered, at most once per [`READ_EVERY`],
    /// and tops them up, as the poller would: workers would otherwise run out of tasks while
    /// their answers wait in their sockets. The events stay for the poller. Returns whether a
    /// worker was left with bytes it could not take yet.
    fn read_for_poller(&self, state: &mut State<Connection>, now: Instant) -> bool {
        let at = now.saturating_duration_since(self.created).as_nanos() as u64;
        let last = self.read_at.load(Ordering::Relaxed);
        if at.saturating_sub(last) < READ_EVERY.as_nanos() as u64 {
            return false;
        }
        self.read_at.store(at, Ordering::Relaxed);
        for w in 0..state.workers.len() {
            if !state.workers[w].link.hung_up {
                poller::read_from(state, w);
            }
        }
        state.settle(now)
    }

    /// Reads, without waiting and in place of the poller, for a thread that waits on task `id`:
    /// what the worker holding the task sent. Takes out and returns the values returned with no
    /// descriptors (the commonest answer), for the caller to resolve; everything else stays for
    /// the poller, which is woken for it. Returns nothing when the poller holds the state, or
    /// when no worker holds the task (it is queued, or answered already).
    ///
    /// A waiter that reads its answer itself spares the round trip a wake-up of the poller
    /// (which still wakes, as the worker's write is polled, but off the waiter's path).
    pub fn take_returned(&self, id: u64) -> Vec<Event> {
        let Some(mut state) = self.state.try_lock() else {
            return Vec::new();
        };
        let Some(w) = state.holder_of(id) else {
            return Vec::new();
        };
        if state.workers[w].link.hung_up || !poller::read_from(&mut state, w) {
            return Vec::new();
        }
        // What the poller does after it reads: the worker may take more tasks now.
        let stuck = state.settle(Instant::now());
        let returned = state.take_plain_returns();
        let hung_up = state.workers[w].link.hung_up;
        if (stuck || hung_up || state.has_events()) && self.poller_asleep.load(Ordering::Relaxed) {
            self.wake.wake();
        }
        returned
    }

    /// Hands events that [`Supervisor::take_returned`] took out, and the caller could not
    /// resolve, to the poller.
    pub fn give_back(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut state = self.state.lock();
        state.give_back(events);
        if self.poller_asleep.load(Ordering::Relaxed) {
            self.wake.wake();
        }
    }

    /// Cancels a task: drops it if no worker has it; with `interrupt`, skips it (not started)
    /// or kills its worker (running) too.
    pub fn cancel(&self, id: u64, interrupt: bool) -> CancelOutcome {
        let outcome = self.state.lock().cancel(id, interrupt, Instant::now());
        if outcome == CancelOutcome::Interrupted {
            self.wake.wake();
        }
        outcome
    }

    /// Whether task `id` waits in the pool's queue, not yet handed to a worker.
    pub fn is_queued(&self, id: u64) -> bool {
        self.state.lock().is_queued(id)
    }

    /// Stops taking tasks; the workers exit once the queued tasks are done. With
    /// `cancel_pending`, tasks no worker has yet are dropped and their ids returned.
    pub fn shutdown(&self, cancel_pending: bool) -> Vec<u64> {
        let dropped = self.state.lock().shutdown(cancel_pending);
        self.wake.wake();
        dropped
    }

    /// Shuts down at once: drops the queued tasks (their ids are returned) and sends `signal`
    /// to every worker; the tasks they were running end with [`Event::Terminated`].
    pub fn terminate(&self, signal: Signal) -> Vec<u64> {
        let dropped = self.state.lock().terminate(signal);
        self.wake.wake();
        dropped
    }

    /// The pids of the workers serving now.
    pub fn pids(&self) -> Vec<u32> {
        self.state.lock().pids()
    }

    /// The pool's statistics now; None when it was made while they were off.
    pub fn stats(&self) -> Option<Snapshot> {
        self.state.lock().stats(Instant::now())
    }

    /// Why the pool is broken, if it is.
    pub fn broken(&self) -> Option<Arc<str>> {
        self.state.lock().broken()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for worker in self.state.get_mut().workers.drain(..) {
            worker.link.process.kill_and_reap();
        }
    }
}

#[cfg(test)]
mod tests;
