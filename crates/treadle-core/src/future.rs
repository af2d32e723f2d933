//! `FutureCell`: the state of one task's future, behind `treadle.Future`.
//!
//! A monitor: one mutex guards the state machine (pending -> running -> finished, or pending ->
//! cancelled, or running -> cancelled/finished by an interruption), the job not yet started, the
//! outcome, the done-callbacks and the completion sinks; one condvar wakes the threads waiting
//! for the outcome, signalled only when the parked count says somebody waits. The done flag is
//! also kept in an atomic so that `done()` and the finished case of `result()` take no lock.
//!
//! Whoever moves the future out of pending takes its job, under the mutex: a worker that dequeues
//! it, a worker that waits on it and, as a last resort, runs it itself (see `pool/spare.rs`), or
//! `cancel()`. So a job runs at most once, and a cancelled job never runs.
//!
//! Completing returns what must happen next outside the mutex ([`Completed`]): the
//! done-callbacks to call (the binding calls Python with them) and whether foreign waiters may
//! have been installed. Completion sinks ([`Completions`], used by `wait` and `as_completed`) are
//! told in the core, after the mutex is dropped.
//!
//! Each future carries a cancel token (an [`Event`]): `interrupt` sets it, and a running task's
//! blocking calls watch it.

use crate::event::Event;
use crate::primitive::{lock, wait_until, AtomicBool, Condvar, Mutex, Ordering};
use crate::thread_id::ThreadId;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// The types a future carries: what runs, what it produces, what is called when it is done.
pub trait TaskTypes: 'static {
    /// The work: callable, arguments, context.
    type Job: Send;
    /// A result or an exception.
    type Value: Send;
    /// A done-callback.
    type Callback: Send;
}

/// Where a future is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not started; can be cancelled.
    Pending,
    /// Started by a thread.
    Running,
    /// Cancelled (before it ran, or interrupted while running).
    Cancelled,
    /// Returned or raised.
    Finished,
}

/// How a finished future ended.
#[derive(Debug)]
pub enum Outcome<V> {
    /// The task returned this value.
    Returned(V),
    /// The task raised this exception.
    Raised(V),
}

/// What the completer must do once the future is done, outside any lock.
#[derive(Debug)]
pub struct Completed<T: TaskTypes> {
    /// The done-callbacks, in the order they were added.
    pub callbacks: Vec<T::Callback>,
    /// Whether foreign waiters may have been installed (see [`FutureCell::observe`]).
    pub observed: bool,
    /// A job that will never run (cancelled before it started), to be dropped by the caller.
    pub job: Option<T::Job>,
}

/// What `set_running_or_notify_cancel` found.
#[derive(Debug)]
pub enum Start<J> {
    /// The future is now running on the calling thread; here is its job, if it had one.
    Started(Option<J>),
    /// It had been cancelled.
    WasCancelled,
    /// It was already running or finished.
    Invalid(Status),
}

struct Inner<T: TaskTypes> {
    status: Status,
    job: Option<T::Job>,
    outcome: Option<Outcome<T::Value>>,
    runner: Option<ThreadId>,
    callbacks: Vec<T::Callback>,
    sinks: Vec<(Arc<Completions>, usize)>,
    parked: usize,
    observed: bool,
    /// Completed while observed, and the completer has not yet notified the observers' waiters.
    notify_owed: bool,
    retrieved: bool,
    reported: bool,
}

impl<T: TaskTypes> Inner<T> {
    fn is_lost(&self) -> bool {
        matches!(self.outcome, Some(Outcome::Raised(_))) && !self.retrieved && !self.reported
    }
}

/// One future's state.
pub struct FutureCell<T: TaskTypes> {
    inner: Mutex<Inner<T>>,
    finished: Condvar,
    done: AtomicBool,
    cancel_token: Event,
}

impl<T: TaskTypes> Default for FutureCell<T> {
    fn default() -> Self {
        FutureCell::new(None)
    }
}

impl<T: TaskTypes> FutureCell<T> {
    /// A pending future, with the job to run (or none, for a future completed by hand).
    pub fn new(job: Option<T::Job>) -> Self {
        FutureCell {
            inner: Mutex::new(Inner {
                status: Status::Pending,
                job,
                outcome: None,
                runner: None,
                callbacks: Vec::new(),
                sinks: Vec::new(),
                parked: 0,
                observed: false,
                notify_owed: false,
                retrieved: false,
                reported: false,
            }),
            finished: Condvar::new(),
            done: AtomicBool::new(false),
            cancel_token: Event::new(),
        }
    }

    /// Gives a pending future its job. Returns the job back if the future is no longer pending.
    pub fn attach_job(&self, job: T::Job) -> Result<(), T::Job> {
        let mut inner = lock(&self.inner);
        if inner.status != Status::Pending {
            return Err(job);
        }
        inner.job = Some(job);
        Ok(())
    }

    /// Whether the future is cancelled or finished.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        lock(&self.inner).status
    }

    /// The cancel token: set when the task is asked to stop.
    pub fn cancel_token(&self) -> &Event {
        &self.cancel_token
    }

    /// Whether the task was asked to stop.
    #[inline]
    pub fn is_interrupted(&self) -> bool {
        self.cancel_token.is_set()
    }

    /// Moves a pending future to running on the calling thread and hands over its job: the
    /// start of a task (by a worker, or by a thread that helps), and
    /// `set_running_or_notify_cancel`.
    pub fn start(&self) -> Start<T::Job> {
        let mut inner = lock(&self.inner);
        match inner.status {
            Status::Pending => {
                inner.status = Status::Running;
                inner.runner = Some(ThreadId::current());
                Start::Started(inner.job.take())
            }
            Status::Cancelled => Start::WasCancelled,
            status => Start::Invalid(status),
        }
    }

    /// The thread running the task, while it runs.
    pub fn runner(&self) -> Option<ThreadId> {
        let inner = lock(&self.inner);
        (inner.status == Status::Running)
            .then_some(inner.runner)
            .flatten()
    }

    /// `cancel()`: a pending future becomes cancelled (`Ok(Some)`, with what to do next); a
    /// cancelled one stays so (`Ok(None)`); a running or finished one cannot be (`Err`).
    #[allow(clippy::result_unit_err)]
    pub fn cancel(&self) -> Result<Option<Completed<T>>, ()> {
        let inner = lock(&self.inner);
        match inner.status {
            Status::Pending => Ok(Some(self.complete(inner, Status::Cancelled, None))),
            Status::Cancelled => Ok(None),
            _ => Err(()),
        }
    }

    /// Asks the task to stop (sets its cancel token) and ends the future now: cancelled if
    /// `outcome` is `None`, else finished with it (a time limit's error). Works on a pending or
    /// running future; returns `None` if it was already done. The task's own outcome, when it
    /// returns, is then discarded by [`FutureCell::finish`].
    pub fn interrupt(&self, outcome: Option<Outcome<T::Value>>) -> Option<Completed<T>> {
        let inner = lock(&self.inner);
        if matches!(inner.status, Status::Cancelled | Status::Finished) {
            return None;
        }
        self.cancel_token.set();
        let status = if outcome.is_some() {
            Status::Finished
        } else {
            Status::Cancelled
        };
        Some(self.complete(inner, status, outcome))
    }

    /// Stores the task's outcome. `Err` gives it back if the future was already done (cancelled,
    /// interrupted, or set before).
    pub fn finish(&self, outcome: Outcome<T::Value>) -> Result<Completed<T>, Outcome<T::Value>> {
        let inner = lock(&self.inner);
        if matches!(inner.status, Status::Cancelled | Status::Finished) {
            return Err(outcome);
        }
        Ok(self.complete(inner, Status::Finished, Some(outcome)))
    }

    fn complete(
        &self,
        mut inner: crate::primitive::MutexGuard<'_, Inner<T>>,
        status: Status,
        outcome: Option<Outcome<T::Value>>,
    ) -> Completed<T> {
        inner.status = status;
        inner.outcome = outcome;
        inner.notify_owed = inner.observed;
        self.done.store(true, Ordering::Release);
        let wake = inner.parked > 0;
        let sinks = std::mem::take(&mut inner.sinks);
        let completed = Completed {
            callbacks: std::mem::take(&mut inner.callbacks),
            observed: inner.observed,
            job: inner.job.take(),
        };
        drop(inner);
        if wake {
            self.finished.notify_all();
        }
        for (sink, key) in sinks {
            sink.push(key);
        }
        completed
    }

    /// Waits until the future is done or `deadline` passes; returns whether it is done.
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        if spin_until(|| self.is_done()) {
            return true;
        }
        let mut inner = lock(&self.inner);
        loop {
            if self.is_done() {
                return true;
            }
            inner.parked += 1;
            let (next, timed_out) = wait_until(&self.finished, inner, deadline);
            inner = next;
            inner.parked -= 1;
            if timed_out {
                return self.is_done();
            }
        }
    }

    /// Reads the outcome (with the status) under the mutex. `retrieve` marks an exception as
    /// seen by the program, so that it is not reported as lost.
    pub fn read<R>(
        &self,
        retrieve: bool,
        f: impl FnOnce(Status, Option<&Outcome<T::Value>>) -> R,
    ) -> R {
        let mut inner = lock(&self.inner);
        if retrieve && inner.status == Status::Finished {
            inner.retrieved = true;
        }
        f(inner.status, inner.outcome.as_ref())
    }

    /// Marks the outcome as retrieved (a done-callback was added).
    pub fn mark_retrieved(&self) {
        lock(&self.inner).retrieved = true;
    }

    /// Whether the future raised and nobody retrieved the exception nor reported it yet; if so,
    /// it counts as reported from now on (a lost exception is reported once).
    pub fn take_unreported_failure(&self) -> bool {
        let mut inner = lock(&self.inner);
        let lost = inner.is_lost();
        if lost {
            inner.reported = true;
        }
        lost
    }

    /// Whether the future raised and the exception was neither retrieved nor reported yet.
    pub fn is_lost(&self) -> bool {
        lock(&self.inner).is_lost()
    }

    /// Adds a done-callback; gives it back if the future is already done (call it now).
    pub fn add_callback(&self, callback: T::Callback) -> Result<(), T::Callback> {
        lock(&self.inner).retrieved = true;
        self.add_watcher(callback)
    }

    /// As [`FutureCell::add_callback`], for a callback that only watches (a progress bar): the
    /// outcome does not count as retrieved, so a lost exception is still reported.
    pub fn add_watcher(&self, callback: T::Callback) -> Result<(), T::Callback> {
        let mut inner = lock(&self.inner);
        if matches!(inner.status, Status::Cancelled | Status::Finished) {
            return Err(callback);
        }
        inner.callbacks.push(callback);
        Ok(())
    }

    /// Whether done-callbacks (or watchers) wait for the future's completion.
    pub fn has_callbacks(&self) -> bool {
        !lock(&self.inner).callbacks.is_empty()
    }

    /// Tells `sink` the future's `key` when it is done; returns false (and subscribes nothing)
    /// if it is done already.
    pub fn subscribe(&self, sink: &Arc<Completions>, key: usize) -> bool {
        let mut inner = lock(&self.inner);
        if matches!(inner.status, Status::Cancelled | Status::Finished) {
            return false;
        }
        inner.sinks.push((Arc::clone(sink), key));
        true
    }

    /// Withdraws `sink`'s subscriptions.
    pub fn unsubscribe(&self, sink: &Arc<Completions>) {
        lock(&self.inner)
            .sinks
            .retain(|(other, _)| !Arc::ptr_eq(other, sink));
    }

    /// Notes that foreign code may install waiters on this future (the standard library's
    /// `wait` and `as_completed` do, under the future's `_condition`). From then on completion
    /// reports `observed`, and the completer takes that condition to notify them. Taken under the
    /// same mutex as the status, so a completion either happens before the observer reads the
    /// status or sees `observed`.
    pub fn observe(&self) {
        lock(&self.inner).observed = true;
    }

    /// The status as observers (the standard library's `wait`/`as_completed`, reading `_state`
    /// under `_condition`) must see it: a future completed while observed still shows `Running`
    /// until its completer, holding `_condition`, has called [`FutureCell::waiters_notified`].
    /// Otherwise an observer could count it finished *and* be notified of it by the completer.
    pub fn status_for_observers(&self) -> Status {
        let inner = lock(&self.inner);
        if inner.notify_owed {
            Status::Running
        } else {
            inner.status
        }
    }

    /// The completer, holding `_condition`, is about to notify the installed waiters.
    pub fn waiters_notified(&self) {
        lock(&self.inner).notify_owed = false;
    }
}

impl<T: TaskTypes> crate::wait_graph::WaitTarget for FutureCell<T> {
    fn owner(&self) -> Option<ThreadId> {
        self.runner()
    }
    fn is_ready(&self, _ticket: u64) -> bool {
        self.is_done()
    }
}

/// How long a waiter looks again before it parks: a trivial task's hand-off between two threads
/// is a few microseconds, less than a futex sleep and wake-up (never under loom).
pub(crate) const SPIN: std::time::Duration =
    std::time::Duration::from_micros(if cfg!(loom) { 0 } else { 30 });

/// Looks at `ready` until it holds or [`SPIN`] has passed; returns whether it held.
#[inline]
pub(crate) fn spin_until(ready: impl Fn() -> bool) -> bool {
    if ready() {
        return true;
    }
    if SPIN.is_zero() {
        return false;
    }
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        if ready() {
            return true;
        }
        if start.elapsed() >= SPIN {
            return false;
        }
        std::thread::yield_now();
    }
}

/// A queue of completed futures' keys: `wait()` and `as_completed()` subscribe one to the
/// futures they watch and take keys out in completion order.
#[derive(Default)]
pub struct Completions {
    keys: Mutex<VecDeque<usize>>,
    arrived: Condvar,
}

/// A thread waiting in `treadle.wait` / `as_completed` can go on once some future is done.
impl crate::wait_graph::WaitTarget for Completions {
    fn owner(&self) -> Option<ThreadId> {
        None
    }
    fn is_ready(&self, _ticket: u64) -> bool {
        !lock(&self.keys).is_empty()
    }
}

impl Completions {
    /// An empty queue.
    pub fn new() -> Completions {
        Completions::default()
    }

    /// Records that the future with `key` is done.
    pub fn push(&self, key: usize) {
        lock(&self.keys).push_back(key);
        self.arrived.notify_all();
    }

    /// Takes the oldest key, waiting until `deadline` for one.
    pub fn pop(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut keys = lock(&self.keys);
        loop {
            if let Some(key) = keys.pop_front() {
                return Some(key);
            }
            let (next, timed_out) = wait_until(&self.arrived, keys, deadline);
            keys = next;
            if timed_out {
                return keys.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests;
