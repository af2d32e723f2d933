//! The supervisor's state machine: the tasks no worker has yet, what each worker holds, and what
//! every happening (a submission, a cancellation, a frame from a worker, a worker's end, a
//! deadline) does to them. Its output is [`Event`]s for the binding, and frames and signals for
//! workers.
//!
//! It does no I/O of its own: a worker is reached through a [`Link`] (queue a frame, write what
//! the socket takes, send a signal), so its rules are tested with a fake link and no process
//! (`state/tests.rs`); `connection.rs` is the real link and `poller.rs` drives it.
//!
//! # Invariants
//!
//! - A task is in exactly one place: `pending`, one worker's `sent`, or handed back (in an
//!   event, or as an id dropped by `shutdown`/`terminate`/`cancel`). Only a task in `sent` that
//!   was cancelled is kept without being reported again: the worker still answers it
//!   (`SKIPPED`, or a late result), and that answer is swallowed.
//! - A worker runs the tasks it holds one after another, so the oldest unanswered one is the one
//!   running. It counts as started from the moment the worker said it was ready or answered the
//!   task before (`head_started`), and its deadline counts from then: a task that waits behind
//!   others on the same worker is not charged for their time.
//! - A task cancelled with `interrupt` is stopped, never left to run: killed with its worker if
//!   it counts as started, else sent a `CANCEL`. The pool's view lags the worker's (a `READY` or
//!   the answer before it may not be read yet, and the worker reads a `CANCEL` only between
//!   tasks), so such a task may be running all the same: once the worker is known to have
//!   reached it, it must answer `SKIPPED` within `SKIP_GRACE` or it is killed.
//! - Only a `Serving` worker is given tasks; one that was killed has its unstarted tasks put
//!   back at the front of the queue, in order, before anything else is dispatched.
//! - `Closed` is the last event, reported once: after shutdown, when no worker is left and
//!   nothing is pending.
//! - A task's lent buffers are packed (by the poller, `to_pack` then `packed`) only while a
//!   worker has room for it (or will have next: one task per worker is packed ahead), and a
//!   task whose buffers are still lent is never sent: it stops dispatching until it is packed,
//!   so tasks leave in the order they came. A worker holds at most `prefetch` tasks that carry
//!   buffers, so the segments that exist are bounded by the workers, not by the queue.
//! - A failed write to a worker never leaves a task waiting for an answer that cannot come: the
//!   tasks of the failed write fail ([`Event::Failed`]), the worker is killed, and its other
//!   tasks follow the usual rules (unless the worker had already hung up: its exit then says
//!   what became of it).
//! - Only a worker's own failure to start (it exits or faults before it is ready, it cannot be
//!   started) counts towards breaking the pool, with a growing wait before each next start; a
//!   worker killed from outside before it was ready is simply replaced.
//!
//! The pool's statistics (`tally.rs`) are counted here, where each thing happens: a task that
//! returned or raised, was cancelled (queued, skipped or interrupted) or dropped at shutdown,
//! timed out, crashed its worker, failed (its buffers or its write), failed with the pool or
//! with `terminate`.

use super::tally::{Restart, Tally, WorkerTally};
use super::task::{Buffers, CancelOutcome, Event, LentBuffers, SubmitError, Task};
use crate::frame::{self, from_worker, to_worker, Header};
use crate::process::Exit;
use rustix::process::Signal;
use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use treadle_core::stats::Snapshot;

/// How many times in a row workers may fail to start (by their own doing) until the pool gives
/// up.
const START_FAILURES_TO_BREAK: u32 = 3;
/// Tasks with large buffers packed ahead per worker, beyond those it has room for.
const PACKED_AHEAD: usize = 1;
/// How long the start after a failed one waits; it doubles with each failure in a row.
const START_BACKOFF: Duration = Duration::from_millis(100);
/// Most tasks a worker holds, however short its tasks are.
const MAX_HELD: usize = 64;
/// About how much work (by a worker's recent pace) it may hold beyond `prefetch` tasks.
const HELD_WORK: Duration = Duration::from_millis(1);
/// How long a worker has to skip a task cancelled with `interrupt` once it is known to have
/// reached it, before it is taken to be running it and killed.
const SKIP_GRACE: Duration = Duration::from_millis(50);

/// Which workers a dispatch sends tasks to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Those holding fewer than `prefetch` tasks, up to `prefetch`: a submission's own
    /// dispatch. A worker that holds its next task already is topped up by the poller when it
    /// answers, many tasks in one write, rather than one write per submission (a system call
    /// in the submitting thread, and a wake-up of the worker's read, per task).
    Hungry,
    /// Every worker low enough to be topped up, up to its capacity.
    UpToCapacity,
}

/// How the state machine reaches a worker.
pub(crate) trait Link {
    /// The worker's pid.
    fn pid(&self) -> u32;
    /// Queues a frame (about `task`, for a task's frame) to be written with the next
    /// [`Link::flush`].
    fn queue(&mut self, bytes: Vec<u8>, fds: Vec<OwnedFd>, task: Option<u64>);
    /// Writes what the worker takes now; returns whether bytes are left for later, or what
    /// failed.
    fn flush(&mut self) -> Result<bool, SendFailure>;
    /// Sends `signal` to the worker's process.
    fn signal(&self, signal: Signal);
}

/// A write to a worker that failed.
#[derive(Debug)]
pub(crate) struct SendFailure {
    /// What the kernel said.
    pub(crate) error: io::Error,
    /// The tasks whose frames were, wholly or in part, in the failed write.
    pub(crate) tasks: Vec<u64>,
}

impl SendFailure {
    /// Whether the worker closed its end (it is ending).
    fn peer_gone(&self) -> bool {
        matches!(
            self.error.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        )
    }
}

/// The parts of a pool's configuration the rules need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How many workers to keep serving.
    pub(crate) workers: usize,
    /// How many tasks a worker may hold at once (at least 1).
    pub(crate) prefetch: usize,
    /// Replace a worker after it ran this many tasks.
    pub(crate) max_tasks_per_child: Option<u64>,
}

/// A task a worker holds, kept until it is answered so that it can be sent again if the worker
/// dies before starting it.
#[derive(Debug)]
struct Sent {
    task: Task,
    cancelled: bool,
    queued_at: Instant,
    /// Whether its start was counted (its wait recorded).
    started: bool,
}

/// A task no worker has, and since when it waits.
#[derive(Debug)]
struct Queued {
    task: Task,
    queued_at: Instant,
}

/// What is to become of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// It takes tasks.
    Serving,
    /// It was told to exit after its tasks (recycling, shutdown).
    Retiring,
    /// It was killed; its tasks were already dealt with.
    Killed,
    /// `terminate` signalled it; its tasks fail when it ends.
    Terminating,
}

/// One worker: its link and what the rules know of it.
#[derive(Debug)]
pub(crate) struct Worker<L> {
    pub(crate) link: L,
    fate: Fate,
    ready: bool,
    sent: VecDeque<Sent>,
    head_started: Option<Instant>,
    dispatched: u64,
    oom_kills_at_start: Option<u64>,
    /// The recent time per task (a moving average of the time from a task's start to its
    /// answer), once the worker answered one.
    pace: Option<Duration>,
    /// Whether it closed its end of the channel (it is ending): it takes nothing more.
    hung_up: bool,
    /// Why it was killed, if the pool killed it.
    killed_for: Option<Restart>,
    tally: WorkerTally,
}

impl<L: Link> Worker<L> {
    /// A worker just started (its `INIT` frame already queued); `oom_kills` is the cgroup's
    /// OOM-kill count now.
    pub(crate) fn new(link: L, oom_kills: Option<u64>) -> Worker<L> {
        Worker {
            link,
            fate: Fate::Serving,
            ready: false,
            sent: VecDeque::new(),
            head_started: None,
            dispatched: 0,
            oom_kills_at_start: oom_kills,
            pace: None,
            hung_up: false,
            killed_for: None,
            tally: WorkerTally::new(Instant::now()),
        }
    }

    #[cfg(test)]
    pub(crate) fn fate(&self) -> Fate {
        self.fate
    }

    /// Whether it may take one more task (one that carries large buffers, if `with_buffers`).
    fn has_room(&self, limits: &Limits, with_buffers: bool) -> bool {
        self.fate == Fate::Serving
            && !self.hung_up
            && self.sent.len() < self.capacity(limits, with_buffers)
            && limits
                .max_tasks_per_child
                .map_or(true, |max| self.dispatched < max)
    }

    /// Whether it is low enough to be topped up: at most half its capacity held. A worker
    /// holding many short tasks is refilled in one write of many frames, not one frame per
    /// answer (a write, and a wake-up of the worker's read, per task otherwise).
    fn wants_more(&self, limits: &Limits) -> bool {
        self.sent.len() <= self.capacity(limits, false) / 2
    }

    /// How many more tasks that carry large buffers it may take now.
    fn room_for_buffers(&self, limits: &Limits) -> usize {
        if !self.has_room(limits, true) {
            return 0;
        }
        self.capacity(limits, true) - self.sent.len()
    }

    /// How many tasks it may hold: `prefetch`, or more while its tasks are short (but never more
    /// than `prefetch` if the next carries large buffers: their segments would pile up).
    fn capacity(&self, limits: &Limits, with_buffers: bool) -> usize {
        let base = limits.prefetch.max(1);
        let Some(pace) = self.pace.filter(|_| !with_buffers) else {
            return base;
        };
        let by_pace = HELD_WORK.as_nanos() / pace.as_nanos().max(1);
        (by_pace.min(MAX_HELD as u128) as usize).max(base)
    }

    /// Records that the running task was answered `now`: how long it took.
    fn answered(&mut self, now: Instant) -> Option<Duration> {
        let took = now.saturating_duration_since(self.head_started?);
        self.pace = Some(match self.pace {
            None => took,
            Some(pace) => (pace * 7 + took) / 8,
        });
        Some(took)
    }

    /// The running task's deadline; for a task cancelled with `interrupt` that the worker has
    /// reached, when it is killed unless it skipped the task.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let head = self.sent.front()?;
        if self.fate != Fate::Serving {
            return None;
        }
        let started = self.head_started?;
        if head.cancelled {
            return started.checked_add(SKIP_GRACE);
        }
        started.checked_add(head.task.timeout?)
    }

    /// The task at the head starts now, if the worker is ready; returns since when it waited,
    /// the first time it starts.
    fn mark_head_started(&mut self, now: Instant) -> Option<Instant> {
        self.head_started = (self.ready && !self.sent.is_empty()).then_some(now);
        self.head_started?;
        let head = self.sent.front_mut()?;
        if head.started || head.cancelled {
            return None;
        }
        head.started = true;
        Some(head.queued_at)
    }
}

/// A pool's tasks and workers. See the module documentation.
#[derive(Debug)]
pub(crate) struct State<L> {
    limits: Limits,
    pending: VecDeque<Queued>,
    pub(crate) workers: Vec<Worker<L>>,
    events: Vec<Event>,
    closing: bool,
    closed_reported: bool,
    broken: Option<Arc<str>>,
    start_failures: u32,
    /// No worker starts before this, after a start failure.
    next_start: Option<Instant>,
    tally: Tally,
}

impl<L: Link> State<L> {
    pub(crate) fn new(limits: Limits) -> State<L> {
        State {
            limits,
            pending: VecDeque::new(),
            workers: Vec::new(),
            events: Vec::new(),
            closing: false,
            closed_reported: false,
            broken: None,
            start_failures: 0,
            next_start: None,
            tally: Tally::new(),
        }
    }

    /// Queues a task and dispatches it if a worker has room. `Ok(true)` when the poller must
    /// look: a worker was left with bytes to write, the task has a deadline, or it waits with
    /// buffers to pack. A plain task that waits needs nothing of the poller until a worker
    /// answers, which wakes it anyway: waking it for each such task cost a turn of the poller
    /// per task while the program queued tasks faster than the workers ran them.
    pub(crate) fn submit(&mut self, task: Task, now: Instant) -> Result<bool, SubmitError> {
        if let Some(reason) = &self.broken {
            return Err(SubmitError::Broken(reason.clone()));
        }
        if self.closing {
            return Err(SubmitError::ShutDown);
        }
        let timed = task.timeout.is_some();
        // A task whose buffers are lent is never sent before the poller packs them.
        let to_pack = matches!(task.buffers, Buffers::Lent(_));
        self.tally.submitted += 1;
        self.pending.push_back(Queued {
            task,
            queued_at: now,
        });
        let stuck = self.dispatch_to(now, Fill::Hungry);
        Ok(timed || stuck || to_pack)
    }

    /// Cancels a task: drops it if no worker has it; with `interrupt`, kills its worker
    /// (running) or has it skipped (not known to be running; see the module's invariants).
    pub(crate) fn cancel(&mut self, id: u64, interrupt: bool, now: Instant) -> CancelOutcome {
        if let Some(at) = self.pending.iter().position(|queued| queued.task.id == id) {
            self.pending.remove(at);
            self.tally.cancelled += 1;
            return CancelOutcome::Cancelled;
        }
        let Some((w, at)) = self.workers.iter().enumerate().find_map(|(w, worker)| {
            let at = worker
                .sent
                .iter()
                .position(|sent| sent.task.id == id && !sent.cancelled)?;
            Some((w, at))
        }) else {
            return CancelOutcome::Unknown;
        };
        if !interrupt {
            return CancelOutcome::Running;
        }
        self.tally.cancelled += 1;
        let running = at == 0 && self.workers[w].head_started.is_some();
        if running {
            self.workers[w].sent.pop_front();
            self.kill(w, Restart::Interrupted);
        } else {
            self.workers[w].sent[at].cancelled = true;
            if let Ok(bytes) = frame::encode(to_worker::CANCEL, id, &[], 0) {
                self.post(w, bytes);
            }
        }
        self.dispatch(now);
        CancelOutcome::Interrupted
    }

    /// Whether task `id` waits in the queue, not yet handed to a worker.
    pub(crate) fn is_queued(&self, id: u64) -> bool {
        self.pending.iter().any(|queued| queued.task.id == id)
    }

    /// Stops taking tasks; with `cancel_pending`, drops the queued ones and returns their ids.
    pub(crate) fn shutdown(&mut self, cancel_pending: bool) -> Vec<u64> {
        self.closing = true;
        if cancel_pending {
            self.drop_pending()
        } else {
            Vec::new()
        }
    }

    /// Stops at once: drops the queued tasks (their ids are returned) and sends `signal` to
    /// every worker; the tasks they hold end with [`Event::Terminated`].
    pub(crate) fn terminate(&mut self, signal: Signal) -> Vec<u64> {
        self.closing = true;
        let dropped = self.drop_pending();
        for worker in &mut self.workers {
            if matches!(worker.fate, Fate::Serving | Fate::Retiring) {
                worker.fate = Fate::Terminating;
            }
            if worker.fate == Fate::Terminating {
                worker.link.signal(signal);
            }
        }
        dropped
    }

    /// Drops the queued tasks (cancelled) and returns their ids.
    fn drop_pending(&mut self) -> Vec<u64> {
        self.tally.cancelled += self.pending.len() as u64;
        self.pending
            .drain(..)
            .map(|queued| queued.task.id)
            .collect()
    }

    /// The pool's figures now; None when it gathers none.
    pub(crate) fn stats(&self, now: Instant) -> Option<Snapshot> {
        let live = self
            .workers
            .iter()
            .map(|worker| (&worker.tally, worker.link.pid()));
        self.tally.snapshot(live, now)
    }

    /// The pids of the workers serving now.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.workers
            .iter()
            .filter(|w| w.fate == Fate::Serving)
            .map(|w| w.link.pid())
            .collect()
    }

    /// Why the pool is broken, if it is.
    pub(crate) fn broken(&self) -> Option<Arc<str>> {
        self.broken.clone()
    }

    /// The events since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Takes out, of the events since the last call, the values returned with no descriptors
    /// (in order); the others stay for [`State::take_events`].
    pub(crate) fn take_plain_returns(&mut self) -> Vec<Event> {
        let (plain, rest) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|event| matches!(event, Event::Returned { fds, .. } if fds.is_empty()));
        self.events = rest;
        plain
    }

    /// Whether events wait for [`State::take_events`].
    pub(crate) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Puts `events`, taken out but not handled, back after those waiting.
    pub(crate) fn give_back(&mut self, events: Vec<Event>) {
        self.events.extend(events);
    }

    /// Whether tasks wait in the queue (no worker has room for them, or their buffers wait to
    /// be packed).
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The worker that holds task `id` (sent to it, not yet answered), if one does.
    pub(crate) fn holder_of(&self, id: u64) -> Option<usize> {
        self.workers
            .iter()
            .position(|worker| worker.sent.iter().any(|sent| sent.task.id == id))
    }

    /// How many workers to start now to have `limits.workers` serving (none while a start
    /// failure's wait lasts).
    pub(crate) fn missing_workers(&self, now: Instant) -> usize {
        if self.next_start.is_some_and(|at| now < at) {
            return 0;
        }
        self.workers_short()
    }

    /// How many workers short of `limits.workers` serving the pool is.
    fn workers_short(&self) -> usize {
        // A pool shut down before its workers started still runs what was queued.
        if self.broken.is_some() || (self.closing && self.pending.is_empty()) {
            return 0;
        }
        let serving = self
            .workers
            .iter()
            .filter(|w| w.fate == Fate::Serving)
            .count();
        self.limits.workers.saturating_sub(serving)
    }

    /// A worker failed to start by its own doing (it could not be started, or it exited or
    /// faulted before it was ready): the next start waits, and enough failures in a row break
    /// the pool.
    pub(crate) fn start_failed(&mut self, why: &str, now: Instant) {
        self.start_failures += 1;
        if self.start_failures >= START_FAILURES_TO_BREAK {
            let reason = format!(
                "worker processes fail to start ({} in a row; last: {why})",
                self.start_failures
            );
            self.break_pool(reason.into());
            return;
        }
        let wait = START_BACKOFF * 2u32.pow(self.start_failures - 1);
        self.next_start = Some(now + wait);
    }

    /// The lent buffers of the tasks workers have room for now, and of one more task per
    /// worker (packed ahead, so that a worker that answers gets its next task at once), to be
    /// packed into segments (with the state unlocked: it copies them) before the tasks are
    /// sent; see [`State::packed`]. Only the head of the queue that workers could take before
    /// the poller looks again is looked at (as many tasks as they may hold, and those packed
    /// ahead): the poller runs this at every turn, and a long queue of tasks without buffers
    /// behind them would make each turn cost as much as the queue is long.
    pub(crate) fn to_pack(&self) -> Vec<(u64, LentBuffers)> {
        let serving = || {
            self.workers
                .iter()
                .filter(|w| w.fate == Fate::Serving && !w.hung_up)
        };
        let mut room: usize = serving()
            .map(|w| w.room_for_buffers(&self.limits) + PACKED_AHEAD)
            .sum();
        let window: usize = serving()
            .map(|w| w.capacity(&self.limits, false) + PACKED_AHEAD)
            .sum();
        let mut lent = Vec::new();
        for Queued { task, .. } in self.pending.iter().take(window) {
            if room == 0 {
                break;
            }
            match &task.buffers {
                Buffers::None => {}
                Buffers::Packed(_) => room -= 1,
                Buffers::Lent(buffers) => {
                    room -= 1;
                    lent.push((task.id, buffers.clone()));
                }
            }
        }
        lent
    }

    /// Task `id`'s buffers were packed into `segment` (or could not be: the task fails). A task
    /// cancelled meanwhile is no longer here, and its segment is dropped.
    pub(crate) fn packed(&mut self, id: u64, segment: io::Result<OwnedFd>) {
        let Some(at) = self.pending.iter().position(|queued| queued.task.id == id) else {
            return;
        };
        match segment {
            Ok(fd) => self.pending[at].task.buffers = Buffers::Packed(fd),
            Err(error) => {
                self.pending.remove(at);
                self.tally.failed += 1;
                self.events.push(Event::Failed {
                    id,
                    errno: error.raw_os_error(),
                    reason: format!(
                        "its large buffers could not be put in shared memory ({error})"
                    )
                    .into(),
                });
            }
        }
    }

    /// Kills the workers whose running task is past its deadline; each such task ends with
    /// [`Event::TimedOut`]. A worker that did not skip a task cancelled with `interrupt` in
    /// time is running it: it is killed too (the task's future is cancelled already).
    pub(crate) fn expire(&mut self, now: Instant) {
        for w in 0..self.workers.len() {
            let worker = &mut self.workers[w];
            if worker.deadline().is_some_and(|at| at <= now) {
                let head = worker.sent.pop_front().expect("a deadline has a task");
                if head.cancelled {
                    self.kill(w, Restart::Interrupted);
                    continue;
                }
                let pid = worker.link.pid();
                self.kill(w, Restart::TimedOut);
                self.tally.timed_out += 1;
                self.events.push(Event::TimedOut {
                    id: head.task.id,
                    pid,
                    timeout: head.task.timeout.unwrap_or_default(),
                });
            }
        }
    }

    /// Whether a worker holds more short tasks than the one it runs: its next answers follow
    /// within `within` of one another, so the poller lets a few gather before it reads them.
    pub(crate) fn answers_follow_within(&self, within: Duration) -> bool {
        self.workers.iter().any(|worker| {
            worker.fate == Fate::Serving
                && !worker.hung_up
                && worker.sent.len() >= 2
                && worker.pace.is_some_and(|pace| pace < within)
        })
    }

    /// The soonest deadline of a running task, or the end of a start failure's wait when
    /// workers are to be started.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let start = self.next_start.filter(|_| self.workers_short() > 0);
        self.workers
            .iter()
            .filter_map(Worker::deadline)
            .chain(start)
            .min()
    }

    /// Everything that follows a change and needs no waiting: retire the workers that are done,
    /// dispatch, and report `Closed` when it is time. Returns whether a worker was left with
    /// bytes it could not take yet.
    pub(crate) fn settle(&mut self, now: Instant) -> bool {
        let drained = self.closing && self.pending.is_empty();
        for w in 0..self.workers.len() {
            let worker = &mut self.workers[w];
            let spent = self
                .limits
                .max_tasks_per_child
                .is_some_and(|max| worker.dispatched >= max);
            let idle = worker.sent.is_empty();
            if worker.fate == Fate::Serving && idle && (spent || drained) {
                worker.fate = Fate::Retiring;
                if let Ok(bytes) = frame::encode(to_worker::EXIT, 0, &[], 0) {
                    self.post(w, bytes);
                }
            }
        }
        let stuck = self.dispatch(now);
        if self.closing
            && self.workers.is_empty()
            && self.pending.is_empty()
            && !self.closed_reported
        {
            self.closed_reported = true;
            self.events.push(Event::Closed);
        }
        stuck
    }

    /// Sends pending tasks to workers with room, least loaded first, in order (a task whose
    /// buffers are not packed yet waits for the poller, and the tasks behind it with it).
    /// Returns whether a worker was left with bytes it could not take yet (the poller must watch
    /// for it to take more).
    pub(crate) fn dispatch(&mut self, now: Instant) -> bool {
        self.dispatch_to(now, Fill::UpToCapacity)
    }

    /// As [`State::dispatch`], to the workers `fill` says.
    fn dispatch_to(&mut self, now: Instant, fill: Fill) -> bool {
        let limits = self.limits;
        let hungry = limits.prefetch.max(1);
        // Those low enough to take tasks at this call are filled up to their capacity.
        let topped_up: Vec<bool> = self
            .workers
            .iter()
            .map(|worker| worker.wants_more(&limits))
            .collect();
        while let Some(Queued { task: front, .. }) = self.pending.front() {
            let with_buffers = match &front.buffers {
                Buffers::Lent(_) => break,
                buffers => buffers.any(),
            };
            let Some(w) = (0..self.workers.len())
                .filter(|&w| {
                    topped_up[w]
                        && self.workers[w].has_room(&limits, with_buffers)
                        && (fill == Fill::UpToCapacity || self.workers[w].sent.len() < hungry)
                })
                .min_by_key(|&w| (self.workers[w].sent.len(), !self.workers[w].ready))
            else {
                break;
            };
            let Queued { task, queued_at } = self.pending.pop_front().expect("checked non-empty");
            let frame = match &task.buffers {
                Buffers::Packed(segment) => segment.try_clone().map(|fd| vec![fd]),
                _ => Ok(Vec::new()),
            }
            .map_err(|e| {
                (
                    e.raw_os_error(),
                    format!("its segment could not be passed on ({e})"),
                )
            })
            .and_then(|fds| {
                frame::encode(to_worker::TASK, task.id, &task.payload, fds.len())
                    .map(|bytes| (bytes, fds))
                    .map_err(|e| (None, format!("it does not fit a frame: {e}")))
            });
            let (bytes, fds) = match frame {
                Ok(frame) => frame,
                Err((errno, reason)) => {
                    self.tally.failed += 1;
                    self.events.push(Event::Failed {
                        id: task.id,
                        errno,
                        reason: reason.into(),
                    });
                    continue;
                }
            };
            let id = task.id;
            let worker = &mut self.workers[w];
            worker.sent.push_back(Sent {
                task,
                cancelled: false,
                queued_at,
                started: false,
            });
            worker.dispatched += 1;
            if worker.sent.len() == 1 {
                if let Some(queued_at) = worker.mark_head_started(now) {
                    self.tally.started(queued_at, now);
                }
            }
            worker.link.queue(bytes, fds, Some(id));
        }
        let mut stuck = false;
        for w in 0..self.workers.len() {
            stuck |= self.flush(w);
        }
        stuck
    }

    /// Writes what worker `w` takes now; returns whether bytes are left for later. A failed
    /// write is dealt with here (see [`State::channel_failed`]).
    pub(crate) fn flush(&mut self, w: usize) -> bool {
        match self.workers[w].link.flush() {
            Ok(left) => left,
            Err(failure) => {
                self.channel_failed(w, failure);
                false
            }
        }
    }

    /// Queues a frame that is about no task (a `CANCEL`, an `EXIT`) for worker `w` and writes
    /// what it takes now.
    fn post(&mut self, w: usize, bytes: Vec<u8>) {
        self.workers[w].link.queue(bytes, Vec::new(), None);
        self.flush(w);
    }

    /// A write to worker `w` failed. If the worker hung up, it is ending: the tasks of the
    /// failed write never reached it and go back to the queue, and its exit decides what becomes
    /// of those it had (it is killed to make sure). Otherwise the channel cannot be trusted any
    /// more: the tasks of the failed write and the one running fail with the error, the worker is
    /// killed, and its other tasks go back to the queue.
    fn channel_failed(&mut self, w: usize, failure: SendFailure) {
        let worker = &mut self.workers[w];
        if worker.fate == Fate::Killed {
            return;
        }
        if failure.peer_gone() {
            worker.link.signal(Signal::KILL);
            worker.hung_up = true;
            let head = worker.sent.front().map(|sent| sent.task.id);
            let mut undelivered = Vec::new();
            let mut kept = VecDeque::new();
            for sent in worker.sent.drain(..) {
                if failure.tasks.contains(&sent.task.id) {
                    if !sent.cancelled {
                        undelivered.push(sent);
                    }
                } else {
                    kept.push_back(sent);
                }
            }
            worker.sent = kept;
            if worker.sent.front().map(|sent| sent.task.id) != head {
                worker.head_started = None;
            }
            self.requeue(undelivered);
            return;
        }
        let mut lost = failure.tasks;
        if let Some(head) = worker.sent.front() {
            if worker.head_started.is_some() && !lost.contains(&head.task.id) {
                lost.push(head.task.id);
            }
        }
        let reason: Arc<str> = format!(
            "the channel to its worker (pid {}) failed ({}); the worker was killed and replaced",
            worker.link.pid(),
            failure.error
        )
        .into();
        let errno = failure.error.raw_os_error();
        let events = &mut self.events;
        let tally = &mut self.tally;
        worker.sent.retain(|sent| {
            if !lost.contains(&sent.task.id) {
                return true;
            }
            if !sent.cancelled {
                tally.failed += 1;
                events.push(Event::Failed {
                    id: sent.task.id,
                    errno,
                    reason: reason.clone(),
                });
            }
            false
        });
        self.kill(w, Restart::Crashed);
    }

    /// Kills worker `w` whose running task was already taken off (timed out or interrupted);
    /// its other tasks never started and go back to the front of the queue.
    fn kill(&mut self, w: usize, why: Restart) {
        let worker = &mut self.workers[w];
        worker.link.signal(Signal::KILL);
        worker.fate = Fate::Killed;
        worker.killed_for = Some(why);
        worker.head_started = None;
        let unstarted: Vec<Sent> = worker.sent.drain(..).filter(|s| !s.cancelled).collect();
        self.requeue(unstarted);
    }

    /// Puts tasks a worker held but never started back at the front of the queue, in order.
    fn requeue(&mut self, unstarted: impl IntoIterator<Item = Sent>) {
        let unstarted: Vec<Sent> = unstarted.into_iter().collect();
        for sent in unstarted.into_iter().rev() {
            self.pending.push_front(Queued {
                task: sent.task,
                queued_at: sent.queued_at,
            });
        }
    }

    fn break_pool(&mut self, reason: Arc<str>) {
        self.broken = Some(reason.clone());
        self.closing = true;
        for queued in self.pending.drain(..) {
            self.tally.failed += 1;
            self.events.push(Event::Broken {
                id: queued.task.id,
                reason: reason.clone(),
            });
        }
        self.next_start = None;
        for worker in &mut self.workers {
            for sent in worker.sent.drain(..).filter(|s| !s.cancelled) {
                self.tally.failed += 1;
                self.events.push(Event::Broken {
                    id: sent.task.id,
                    reason: reason.clone(),
                });
            }
            worker.link.signal(Signal::KILL);
            worker.fate = Fate::Killed;
        }
    }

    /// Worker `w` closed its channel: it takes nothing more; make sure it is on its way out (a
    /// process already exiting keeps its own exit status).
    pub(crate) fn hung_up(&mut self, w: usize) {
        let worker = &mut self.workers[w];
        worker.hung_up = true;
        if worker.fate != Fate::Killed {
            worker.link.signal(Signal::KILL);
        }
    }

    /// A whole frame from worker `w`.
    pub(crate) fn on_frame(
        &mut self,
        w: usize,
        header: Header,
        payload: Vec<u8>,
        fds: Vec<OwnedFd>,
        now: Instant,
    ) {
        let worker = &mut self.workers[w];
        match header.kind {
            from_worker::READY => {
                worker.ready = true;
                if let Some(queued_at) = worker.mark_head_started(now) {
                    self.tally.started(queued_at, now);
                }
                self.start_failures = 0;
                self.next_start = None;
            }
            from_worker::INIT_FAILED => {
                let reason = String::from_utf8_lossy(&payload).into_owned();
                self.break_pool(reason.into());
            }
            from_worker::RETURNED | from_worker::RAISED | from_worker::SKIPPED => {
                let Some(at) = worker.sent.iter().position(|s| s.task.id == header.task) else {
                    return;
                };
                let sent = worker.sent.remove(at).expect("position is in range");
                if at == 0 && !sent.cancelled {
                    if let Some(took) = worker.answered(now) {
                        self.tally.ran(&mut worker.tally, took);
                    }
                }
                if let Some(queued_at) = worker.mark_head_started(now) {
                    self.tally.started(queued_at, now);
                }
                if sent.cancelled || worker.fate == Fate::Killed {
                    return;
                }
                let id = sent.task.id;
                self.events.push(match header.kind {
                    from_worker::RETURNED => {
                        self.tally.done += 1;
                        Event::Returned { id, payload, fds }
                    }
                    from_worker::RAISED => {
                        self.tally.failed += 1;
                        Event::Raised { id, payload, fds }
                    }
                    _ => return,
                });
            }
            _ => {
                // A frame this parent never asks for: the worker is not speaking the protocol.
                worker.link.signal(Signal::KILL);
            }
        }
    }

    /// Worker `w`'s process has ended: its tasks fail, go back to the queue or are forgotten,
    /// by its fate. `oom_kills` reads the cgroup's OOM-kill count now (only for a crash).
    pub(crate) fn worker_ended(
        &mut self,
        w: usize,
        exit: Exit,
        oom_kills: impl FnOnce() -> Option<u64>,
        now: Instant,
    ) {
        let worker = self.workers.swap_remove(w);
        let pid = worker.link.pid();
        let spent = self
            .limits
            .max_tasks_per_child
            .is_some_and(|max| worker.dispatched >= max);
        let why = match worker.fate {
            Fate::Killed => worker.killed_for,
            Fate::Retiring => spent.then_some(Restart::Recycled),
            Fate::Terminating => None,
            Fate::Serving => Some(Restart::Crashed),
        };
        self.tally.worker_ended(&worker.tally, pid, why, now);
        let mut sent = worker.sent.into_iter().filter(|s| !s.cancelled);
        match worker.fate {
            Fate::Killed | Fate::Retiring => self.requeue(sent),
            Fate::Terminating => {
                for s in sent {
                    self.tally.failed += 1;
                    self.events.push(Event::Terminated {
                        id: s.task.id,
                        pid,
                        exit,
                    });
                }
            }
            Fate::Serving if !worker.ready => {
                // It ran nothing. Killed from outside, it is just replaced; ended by its own
                // doing, it failed to start.
                self.requeue(sent);
                if exit.by_its_own_doing() {
                    self.start_failed(&exit.describe(), now);
                }
            }
            Fate::Serving => {
                if let Some(head) = sent.next() {
                    let oom = exit == Exit::Signal(Signal::KILL.as_raw())
                        && matches!(
                            (worker.oom_kills_at_start, oom_kills()),
                            (Some(before), Some(after)) if after > before
                        );
                    self.tally.failed += 1;
                    self.events.push(Event::Crashed {
                        id: head.task.id,
                        pid,
                        exit,
                        oom,
                    });
                }
                self.requeue(sent);
            }
        }
    }
}

#[cfg(test)]
mod tests;
