//! The process supervisor behind `treadle.ProcessPoolExecutor`: it owns the worker processes,
//! hands them tasks, watches them exit, enforces task deadlines, and replaces a worker that
//! crashed, timed out or was interrupted, failing only the task it was running.
//!
//! # Model
//!
//! One mutex guards the whole state: tasks not yet sent, and per worker its channel, the tasks
//! sent to it (in order: a worker runs them one after another, so the oldest unanswered one is
//! the one running) and what is to become of it. Any thread may submit, cancel or shut down; a
//! submission is written to an idle worker's socket right away, from the submitting thread, with
//! a non-blocking send. One thread, the *poller* (the pool's supervisor thread), calls
//! [`Supervisor::poll`]: it waits in `ppoll` (with the mutex released) on every worker's socket
//! and pidfd, an eventfd other threads use to wake it, and the nearest task deadline; then it
//! reads results, reaps dead workers, kills the overdue ones, starts replacements, and returns
//! what happened as [`Event`]s for the binding to resolve futures with. Only the poller adds or
//! removes workers and closes their descriptors, so the descriptors it polls stay valid while it
//! waits unlocked; processes are spawned with the mutex released.
//!
//! # When a task starts
//!
//! A worker takes up to `prefetch` tasks at a time so that tiny tasks do not wait for a round
//! trip; more, up to [`MAX_HELD`], while its recent tasks were short: as many as it runs in about
//! [`HELD_WORK`] by its recent pace, so that a task never waits long behind others on one worker
//! while another is idle. Its oldest unanswered task counts as running from the moment the worker said it was
//! ready or answered the task before; that is when its deadline starts. A task sent but not yet
//! started that is cancelled is skipped by the worker (a `CANCEL` frame); one that is running is
//! interrupted by killing its worker, whose other, unstarted tasks go back to the front of the
//! queue.
//!
//! # Shared memory
//!
//! Descriptors travel with frames (`SCM_RIGHTS`): the binding creates anonymous `memfd` segments
//! for large buffers and the supervisor passes them on, so no segment has a name and none
//! outlives the processes that map it.

mod channel;
mod fork_server;
pub mod frame;
mod process;

pub use fork_server::ForkServer;
pub use process::{oom_kill_count, oom_kills, Exit, CHANNEL_FD};

use crate::primitive::{lock, Mutex};
use frame::{from_worker, to_worker, Header, HEADER_LEN};
use process::Process;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many workers in a row may die before saying they are ready until the pool gives up.
const START_FAILURES_TO_BREAK: u32 = 3;
/// Most tasks a worker holds, however short its tasks are.
const MAX_HELD: usize = 64;
/// About how much work (by a worker's recent pace) it may hold beyond `prefetch` tasks.
const HELD_WORK: Duration = Duration::from_millis(1);
/// Frames to one worker are written together up to this many bytes.
const COALESCE_BYTES: usize = 64 * 1024;
/// And up to this many descriptors.
const COALESCE_FDS: usize = 32;
/// How often a worker that hung up is looked at when the kernel has no pidfds.
const REAP_POLL: Duration = Duration::from_millis(5);

/// How to start a pool's workers.
#[derive(Debug, Clone)]
pub struct Config {
    /// The program (a Python interpreter) and its arguments; the worker finds its channel on
    /// descriptor [`CHANNEL_FD`].
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
    /// Where workers are forked from, when there is a fork server; workers are started with
    /// `program` when there is none or it is gone.
    pub fork_server: Option<Arc<ForkServer>>,
}

/// A task to run: its id (chosen by the caller, unique in the pool), its pickled payload, the
/// shared-memory segments that hold its large buffers, and its time limit.
#[derive(Debug)]
pub struct Task {
    /// The caller's id for it.
    pub id: u64,
    /// The frame payload.
    pub payload: Vec<u8>,
    /// Segments that travel with it.
    pub fds: Vec<OwnedFd>,
    /// How long it may run once started.
    pub timeout: Option<Duration>,
}

/// What happened to a task (or the pool), for the binding to act on.
#[derive(Debug)]
pub enum Event {
    /// The task returned: the pickled value and its segments.
    Returned {
        /// The task.
        id: u64,
        /// Pickled value.
        payload: Vec<u8>,
        /// Segments holding its out-of-band buffers.
        fds: Vec<OwnedFd>,
    },
    /// The task raised: the pickled exception and its segments.
    Raised {
        /// The task.
        id: u64,
        /// Pickled exception.
        payload: Vec<u8>,
        /// Segments holding its out-of-band buffers.
        fds: Vec<OwnedFd>,
    },
    /// The worker running the task died.
    Crashed {
        /// The task.
        id: u64,
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        exit: Exit,
        /// Whether the kernel's OOM killer killed a process of this cgroup meanwhile.
        oom: bool,
    },
    /// The task ran past its time limit; its worker was killed.
    TimedOut {
        /// The task.
        id: u64,
        /// The worker's pid.
        pid: u32,
        /// The limit.
        timeout: Duration,
    },
    /// The task's worker was stopped by [`Supervisor::terminate`].
    Terminated {
        /// The task.
        id: u64,
        /// The worker's pid.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// The pool cannot run tasks any more (workers fail to start, or the initializer failed).
    Broken {
        /// The task.
        id: u64,
        /// Why.
        reason: Arc<str>,
    },
    /// Shutdown finished: every worker has exited. The last event.
    Closed,
}

/// Why `submit` refused a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The pool is shut down.
    Closed,
    /// The pool is broken, for this reason.
    Broken(Arc<str>),
    /// The payload or descriptors do not fit a frame.
    Frame(frame::FrameError),
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task had not been sent to a worker; it is dropped.
    Cancelled,
    /// The task is with a worker and `interrupt` was not asked: it goes on.
    Running,
    /// The task was with a worker: skipped if not started, else its worker was killed.
    Interrupted,
    /// No such task (already finished, or never submitted).
    Unknown,
}

/// A task a worker holds, kept until it is answered so that it can be sent again if the worker
/// dies before starting it.
#[derive(Debug)]
struct Sent {
    task: Task,
    cancelled: bool,
}

/// Bytes (and descriptors) waiting to be written to a worker.
#[derive(Debug)]
struct Outgoing {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
    sent: usize,
}

/// What is to become of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// It takes tasks.
    Serving,
    /// It was told to exit after its tasks (recycling, shutdown).
    Retiring,
    /// It was killed; its tasks were already dealt with.
    Killed,
    /// `terminate` signalled it; its tasks fail when it ends.
    Terminating,
}

#[derive(Debug)]
struct Worker {
    process: Process,
    socket: OwnedFd,
    fate: Fate,
    ready: bool,
    hung_up: bool,
    sent: VecDeque<Sent>,
    head_started: Option<Instant>,
    outbox: VecDeque<Outgoing>,
    inbox: Vec<u8>,
    inbox_fds: VecDeque<OwnedFd>,
    dispatched: u64,
    oom_kills_at_start: Option<u64>,
    /// The recent time per task (a moving average of the time from a task's start to its
    /// answer), once the worker answered one.
    pace: Option<Duration>,
}

impl Worker {
    fn has_room(&self, config: &Config) -> bool {
        self.fate == Fate::Serving
            && self.sent.len() < self.capacity(config)
            && config
                .max_tasks_per_child
                .map_or(true, |max| self.dispatched < max)
    }

    /// How many tasks it may hold: `prefetch`, or more while its tasks are short.
    fn capacity(&self, config: &Config) -> usize {
        let base = config.prefetch.max(1);
        let Some(pace) = self.pace else { return base };
        let by_pace = HELD_WORK.as_nanos() / pace.as_nanos().max(1);
        (by_pace.min(MAX_HELD as u128) as usize).max(base)
    }

    /// Records that the running task was answered `now`.
    fn answered(&mut self, now: Instant) {
        if let Some(started) = self.head_started {
            let took = now.saturating_duration_since(started);
            self.pace = Some(match self.pace {
                None => took,
                Some(pace) => (pace * 7 + took) / 8,
            });
        }
    }

    /// Queues a frame and writes what the socket takes now.
    fn post(&mut self, bytes: Vec<u8>, fds: Vec<OwnedFd>) {
        self.queue(bytes, fds);
        self.flush();
    }

    /// Queues a frame, joining it to the last queued one when neither has left yet (descriptors
    /// may arrive before their frame's header: the reader keeps them in order).
    fn queue(&mut self, bytes: Vec<u8>, mut fds: Vec<OwnedFd>) {
        if let Some(last) = self.outbox.back_mut() {
            if last.sent == 0
                && last.bytes.len() + bytes.len() <= COALESCE_BYTES
                && last.fds.len() + fds.len() <= COALESCE_FDS
            {
                last.bytes.extend_from_slice(&bytes);
                last.fds.append(&mut fds);
                return;
            }
        }
        self.outbox.push_back(Outgoing {
            bytes,
            fds,
            sent: 0,
        });
    }

    /// Writes queued frames until the socket is full. A failed write means the worker is gone;
    /// its pidfd will say so.
    fn flush(&mut self) {
        while let Some(out) = self.outbox.front_mut() {
            let fds: &[OwnedFd] = if out.sent == 0 { &out.fds } else { &[] };
            match channel::send(&self.socket, &out.bytes[out.sent..], fds) {
                Ok(n) => {
                    out.sent += n;
                    out.fds.clear();
                    if out.sent < out.bytes.len() {
                        return;
                    }
                    self.outbox.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.outbox.clear();
                    self.hung_up = true;
                    return;
                }
            }
        }
    }

    /// The running task's deadline.
    fn deadline(&self) -> Option<Instant> {
        let head = self.sent.front()?;
        if self.fate != Fate::Serving || head.cancelled {
            return None;
        }
        self.head_started?.checked_add(head.task.timeout?)
    }

    fn mark_head_started(&mut self, now: Instant) {
        self.head_started = (self.ready && !self.sent.is_empty()).then_some(now);
    }
}

#[derive(Debug, Default)]
struct State {
    pending: VecDeque<Task>,
    workers: Vec<Worker>,
    events: Vec<Event>,
    closing: bool,
    closed_reported: bool,
    broken: Option<Arc<str>>,
    start_failures: u32,
    poller_asleep: bool,
}

/// A pool's supervisor. See the module documentation.
#[derive(Debug)]
pub struct Supervisor {
    config: Config,
    state: Mutex<State>,
    wake: OwnedFd,
}

impl Supervisor {
    /// A supervisor for `config`; workers start on the first [`Supervisor::poll`].
    pub fn new(config: Config) -> io::Result<Supervisor> {
        Ok(Supervisor {
            config,
            state: Mutex::new(State::default()),
            wake: channel::event_fd()?,
        })
    }

    /// Queues a task, writing it to an idle worker at once if there is one.
    pub fn submit(&self, task: Task) -> Result<(), SubmitError> {
        frame::encode(to_worker::TASK, 0, &[], task.fds.len()).map_err(SubmitError::Frame)?;
        if task.payload.len() > u32::MAX as usize {
            return Err(SubmitError::Frame(frame::FrameError::TooLarge));
        }
        let mut state = lock(&self.state);
        if let Some(reason) = &state.broken {
            return Err(SubmitError::Broken(reason.clone()));
        }
        if state.closing {
            return Err(SubmitError::Closed);
        }
        let timed = task.timeout.is_some();
        state.pending.push_back(task);
        let stuck = self.dispatch(&mut state);
        if state.poller_asleep && (timed || stuck || !state.pending.is_empty()) {
            channel::signal_event(&self.wake);
        }
        Ok(())
    }

    /// Cancels a task: drops it if no worker has it; with `interrupt`, skips it (not started)
    /// or kills its worker (running) too.
    pub fn cancel(&self, id: u64, interrupt: bool) -> CancelOutcome {
        let mut state = lock(&self.state);
        if let Some(at) = state.pending.iter().position(|task| task.id == id) {
            state.pending.remove(at);
            return CancelOutcome::Cancelled;
        }
        let Some((w, at)) = state.workers.iter().enumerate().find_map(|(w, worker)| {
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
        let running = at == 0 && state.workers[w].head_started.is_some();
        if running {
            state.workers[w].sent.pop_front();
            Self::kill(&mut state, w);
        } else {
            let worker = &mut state.workers[w];
            worker.sent[at].cancelled = true;
            if let Ok(bytes) = frame::encode(to_worker::CANCEL, id, &[], 0) {
                worker.post(bytes, Vec::new());
            }
        }
        self.dispatch(&mut state);
        channel::signal_event(&self.wake);
        CancelOutcome::Interrupted
    }

    /// Whether task `id` waits in the pool's queue, not yet handed to a worker.
    pub fn is_queued(&self, id: u64) -> bool {
        lock(&self.state).pending.iter().any(|task| task.id == id)
    }

    /// Stops taking tasks; the workers exit once the queued tasks are done. With
    /// `cancel_pending`, tasks no worker has yet are dropped and their ids returned.
    pub fn shutdown(&self, cancel_pending: bool) -> Vec<u64> {
        let mut state = lock(&self.state);
        state.closing = true;
        let dropped = if cancel_pending {
            state.pending.drain(..).map(|task| task.id).collect()
        } else {
            Vec::new()
        };
        channel::signal_event(&self.wake);
        dropped
    }

    /// Shuts down at once: drops the queued tasks (their ids are returned) and sends `signal`
    /// to every worker; the tasks they were running end with [`Event::Terminated`].
    pub fn terminate(&self, signal: i32) -> Vec<u64> {
        let mut state = lock(&self.state);
        state.closing = true;
        let dropped = state.pending.drain(..).map(|task| task.id).collect();
        for worker in &mut state.workers {
            if matches!(worker.fate, Fate::Serving | Fate::Retiring) {
                worker.fate = Fate::Terminating;
            }
            if worker.fate == Fate::Terminating {
                worker.process.signal(signal);
            }
        }
        channel::signal_event(&self.wake);
        dropped
    }

    /// The pids of the workers serving now.
    pub fn pids(&self) -> Vec<u32> {
        let state = lock(&self.state);
        state
            .workers
            .iter()
            .filter(|w| w.fate == Fate::Serving)
            .map(|w| w.process.pid())
            .collect()
    }

    /// Why the pool is broken, if it is.
    pub fn broken(&self) -> Option<Arc<str>> {
        lock(&self.state).broken.clone()
    }

    /// Runs the supervisor until something happens or `deadline` passes: returns the events
    /// (`None` only when the deadline passed with none). Called by one thread, the poller.
    pub fn poll(&self, deadline: Option<Instant>) -> Option<Vec<Event>> {
        loop {
            let mut state = lock(&self.state);
            state.poller_asleep = false;
            self.tend(&mut state);
            if !state.events.is_empty() {
                return Some(std::mem::take(&mut state.events));
            }
            let missing = self.missing_workers(&state);
            if missing > 0 {
                drop(state);
                let started: Vec<io::Result<Worker>> =
                    (0..missing).map(|_| self.start_worker()).collect();
                let mut state = lock(&self.state);
                for worker in started {
                    match worker {
                        Ok(worker) => state.workers.push(worker),
                        Err(e) => self.count_start_failure(&mut state, &e.to_string()),
                    }
                }
                self.dispatch(&mut state);
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return None;
            }
            let mut wait_until = deadline;
            let mut fds = vec![libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            for worker in &state.workers {
                let mut events = 0;
                if !worker.hung_up {
                    events |= libc::POLLIN;
                    if !worker.outbox.is_empty() {
                        events |= libc::POLLOUT;
                    }
                }
                let fd = if events == 0 {
                    -1
                } else {
                    worker.socket.as_raw_fd()
                };
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                let pidfd = worker.process.pidfd().map_or(-1, |fd| fd.as_raw_fd());
                fds.push(libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                let mut soonest = worker.deadline();
                if worker.process.pidfd().is_none() && worker.hung_up {
                    soonest = Some(now + REAP_POLL);
                }
                if let Some(at) = soonest {
                    wait_until = Some(wait_until.map_or(at, |until| until.min(at)));
                }
            }
            state.poller_asleep = true;
            drop(state);
            ppoll(&mut fds, wait_until);
            channel::drain_event(&self.wake);
            let mut state = lock(&self.state);
            state.poller_asleep = false;
            for (w, pair) in fds[1..].chunks(2).enumerate() {
                let worker = &mut state.workers[w];
                if pair[0].revents & libc::POLLOUT != 0 {
                    worker.flush();
                }
                if pair[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    self.read_from(&mut state, w);
                }
            }
        }
    }

    /// Everything that needs no waiting: reap, kill the overdue, retire, dispatch, close.
    fn tend(&self, state: &mut State) {
        let now = Instant::now();
        let mut w = 0;
        while w < state.workers.len() {
            let worker = &mut state.workers[w];
            if worker.deadline().is_some_and(|at| at <= now) {
                let head = worker.sent.pop_front().expect("a deadline has a task");
                let pid = worker.process.pid();
                Self::kill(state, w);
                state.events.push(Event::TimedOut {
                    id: head.task.id,
                    pid,
                    timeout: head.task.timeout.unwrap_or_default(),
                });
                continue;
            }
            let ended = match worker.process.pidfd() {
                Some(_) if !worker.hung_up && !pollin(worker.process.pidfd()) => None,
                _ => worker.process.try_exit(),
            };
            match ended {
                Some(exit) => {
                    // What it sent before it ended (an initializer's failure) comes first.
                    if !state.workers[w].hung_up {
                        self.read_from(state, w);
                    }
                    let worker = state.workers.swap_remove(w);
                    self.worker_ended(state, worker, exit);
                }
                None => w += 1,
            }
        }
        for worker in &mut state.workers {
            let spent = self
                .config
                .max_tasks_per_child
                .is_some_and(|max| worker.dispatched >= max);
            let idle = worker.sent.is_empty();
            let drained = state.closing && state.pending.is_empty();
            if worker.fate == Fate::Serving && idle && (spent || drained) {
                worker.fate = Fate::Retiring;
                if let Ok(bytes) = frame::encode(to_worker::EXIT, 0, &[], 0) {
                    worker.post(bytes, Vec::new());
                }
            }
        }
        self.dispatch(state);
        if state.closing
            && state.workers.is_empty()
            && state.pending.is_empty()
            && !state.closed_reported
        {
            state.closed_reported = true;
            state.events.push(Event::Closed);
        }
    }

    fn missing_workers(&self, state: &State) -> usize {
        // A pool shut down before its workers started still runs what was queued.
        if state.broken.is_some() || (state.closing && state.pending.is_empty()) {
            return 0;
        }
        let serving = state
            .workers
            .iter()
            .filter(|w| w.fate == Fate::Serving)
            .count();
        self.config.workers.saturating_sub(serving)
    }

    fn start_worker(&self) -> io::Result<Worker> {
        let (ours, theirs) = channel::socket_pair()?;
        let process = match &self.config.fork_server {
            // Whatever stops the server from forking one (it died, no pidfds), a fresh
            // interpreter may still start.
            Some(server) if server.alive() => match Process::fork_from(server, &theirs) {
                Ok(process) => process,
                Err(_) => Process::spawn(&self.config.program, &self.config.args, &theirs)?,
            },
            _ => Process::spawn(&self.config.program, &self.config.args, &theirs)?,
        };
        drop(theirs);
        let mut worker = Worker {
            process,
            socket: ours,
            fate: Fate::Serving,
            ready: false,
            hung_up: false,
            sent: VecDeque::new(),
            head_started: None,
            outbox: VecDeque::new(),
            inbox: Vec::new(),
            inbox_fds: VecDeque::new(),
            dispatched: 0,
            oom_kills_at_start: oom_kills(),
            pace: None,
        };
        let init = frame::encode(to_worker::INIT, 0, &self.config.init, 0)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "init payload too large"))?;
        worker.post(init, Vec::new());
        Ok(worker)
    }

    fn count_start_failure(&self, state: &mut State, why: &str) {
        state.start_failures += 1;
        if state.start_failures >= START_FAILURES_TO_BREAK {
            let reason = format!(
                "worker processes fail to start ({} in a row; last: {why})",
                state.start_failures
            );
            Self::break_pool(state, reason.into());
        }
    }

    /// Sends pending tasks to workers with room, least loaded first. Returns whether a worker
    /// was left with bytes it could not take yet (the poller must watch for POLLOUT).
    fn dispatch(&self, state: &mut State) -> bool {
        let now = Instant::now();
        while !state.pending.is_empty() {
            let Some(worker) = state
                .workers
                .iter_mut()
                .filter(|w| w.has_room(&self.config))
                .min_by_key(|w| (w.sent.len(), !w.ready))
            else {
                break;
            };
            let task = state.pending.pop_front().expect("checked non-empty");
            let bytes = match frame::encode(to_worker::TASK, task.id, &task.payload, task.fds.len())
            {
                Ok(bytes) => bytes,
                Err(_) => continue,
            };
            let fds = task
                .fds
                .iter()
                .filter_map(|fd| fd.try_clone().ok())
                .collect();
            worker.sent.push_back(Sent {
                task,
                cancelled: false,
            });
            worker.dispatched += 1;
            if worker.sent.len() == 1 {
                worker.mark_head_started(now);
            }
            worker.queue(bytes, fds);
        }
        let mut stuck = false;
        for worker in &mut state.workers {
            if !worker.outbox.is_empty() {
                worker.flush();
                stuck |= !worker.outbox.is_empty();
            }
        }
        stuck
    }

    /// Kills worker `w` whose running task was already taken off (timed out or interrupted);
    /// its other tasks never started and go back to the front of the queue.
    fn kill(state: &mut State, w: usize) {
        let worker = &mut state.workers[w];
        worker.process.signal(libc::SIGKILL);
        worker.fate = Fate::Killed;
        worker.head_started = None;
        let unstarted: Vec<Sent> = worker.sent.drain(..).filter(|s| !s.cancelled).collect();
        Self::requeue(state, unstarted.into_iter());
    }

    /// Puts tasks a worker held but never started back at the front of the queue, in order.
    fn requeue(state: &mut State, unstarted: impl DoubleEndedIterator<Item = Sent>) {
        for sent in unstarted.rev() {
            state.pending.push_front(sent.task);
        }
    }

    fn break_pool(state: &mut State, reason: Arc<str>) {
        state.broken = Some(reason.clone());
        state.closing = true;
        for task in state.pending.drain(..) {
            state.events.push(Event::Broken {
                id: task.id,
                reason: reason.clone(),
            });
        }
        for worker in &mut state.workers {
            for sent in worker.sent.drain(..).filter(|s| !s.cancelled) {
                state.events.push(Event::Broken {
                    id: sent.task.id,
                    reason: reason.clone(),
                });
            }
            worker.process.signal(libc::SIGKILL);
            worker.fate = Fate::Killed;
        }
    }

    /// Reads what worker `w` sent and acts on each whole frame.
    fn read_from(&self, state: &mut State, w: usize) {
        let mut buf = [0u8; 64 * 1024];
        let mut fds = Vec::new();
        loop {
            let worker = &mut state.workers[w];
            match channel::recv(&worker.socket, &mut buf, &mut fds) {
                Ok(0) => {
                    worker.hung_up = true;
                    break;
                }
                Ok(n) => {
                    worker.inbox.extend_from_slice(&buf[..n]);
                    worker.inbox_fds.extend(fds.drain(..));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    worker.hung_up = true;
                    break;
                }
            }
        }
        let now = Instant::now();
        let mut at = 0;
        loop {
            let worker = &mut state.workers[w];
            let Some(header) = Header::decode(&worker.inbox[at..]) else {
                break;
            };
            let end = at + HEADER_LEN + header.len as usize;
            if worker.inbox.len() < end || worker.inbox_fds.len() < header.fds as usize {
                break;
            }
            let payload = worker.inbox[at + HEADER_LEN..end].to_vec();
            let fds: Vec<OwnedFd> = worker.inbox_fds.drain(..header.fds as usize).collect();
            at = end;
            self.on_frame(state, w, header, payload, fds, now);
        }
        let worker = &mut state.workers[w];
        worker.inbox.drain(..at);
        if worker.hung_up && worker.fate != Fate::Killed {
            // Make sure a worker that closed its channel is on its way out; a process already
            // exiting keeps its own exit status.
            worker.process.signal(libc::SIGKILL);
        }
    }

    fn on_frame(
        &self,
        state: &mut State,
        w: usize,
        header: Header,
        payload: Vec<u8>,
        fds: Vec<OwnedFd>,
        now: Instant,
    ) {
        let worker = &mut state.workers[w];
        match header.kind {
            from_worker::READY => {
                worker.ready = true;
                worker.mark_head_started(now);
                state.start_failures = 0;
            }
            from_worker::INIT_FAILED => {
                let reason = String::from_utf8_lossy(&payload).into_owned();
                Self::break_pool(state, reason.into());
            }
            from_worker::RETURNED | from_worker::RAISED | from_worker::SKIPPED => {
                let Some(at) = worker.sent.iter().position(|s| s.task.id == header.task) else {
                    return;
                };
                let sent = worker.sent.remove(at).expect("position is in range");
                if at == 0 && !sent.cancelled {
                    worker.answered(now);
                }
                worker.mark_head_started(now);
                if sent.cancelled || worker.fate == Fate::Killed {
                    return;
                }
                let id = sent.task.id;
                state.events.push(match header.kind {
                    from_worker::RETURNED => Event::Returned { id, payload, fds },
                    from_worker::RAISED => Event::Raised { id, payload, fds },
                    _ => return,
                });
            }
            _ => {
                // A frame this parent never asks for: the worker is not speaking the protocol.
                worker.process.signal(libc::SIGKILL);
            }
        }
    }

    /// A worker's process has ended: fail, requeue or forget its tasks.
    fn worker_ended(&self, state: &mut State, worker: Worker, exit: Exit) {
        let pid = worker.process.pid();
        let mut sent = worker.sent.into_iter().filter(|s| !s.cancelled);
        match worker.fate {
            Fate::Killed | Fate::Retiring => {
                Self::requeue(state, sent.collect::<Vec<_>>().into_iter())
            }
            Fate::Terminating => {
                for s in sent {
                    state.events.push(Event::Terminated {
                        id: s.task.id,
                        pid,
                        exit,
                    });
                }
            }
            Fate::Serving if !worker.ready => {
                Self::requeue(state, sent.collect::<Vec<_>>().into_iter());
                self.count_start_failure(state, &describe_exit(exit));
            }
            Fate::Serving => {
                if let Some(head) = sent.next() {
                    let oom = exit == Exit::Signal(libc::SIGKILL)
                        && matches!(
                            (worker.oom_kills_at_start, oom_kills()),
                            (Some(before), Some(after)) if after > before
                        );
                    state.events.push(Event::Crashed {
                        id: head.task.id,
                        pid,
                        exit,
                        oom,
                    });
                }
                Self::requeue(state, sent.collect::<Vec<_>>().into_iter());
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let state = match self.state.get_mut() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        for worker in state.workers.drain(..) {
            worker.process.kill_and_reap();
        }
    }
}

/// "exit code 3" or "signal 9".
pub fn describe_exit(exit: Exit) -> String {
    match exit {
        Exit::Code(code) => format!("exit code {code}"),
        Exit::Signal(signal) => format!("signal {signal}"),
    }
}

fn pollin(fd: Option<&OwnedFd>) -> bool {
    let Some(fd) = fd else { return true };
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 && pfd.revents & libc::POLLIN != 0 }
}

/// `ppoll` until one descriptor is ready or `until` passes.
fn ppoll(fds: &mut [libc::pollfd], until: Option<Instant>) {
    let timeout = until.map(|until| {
        let left = until.saturating_duration_since(Instant::now());
        libc::timespec {
            tv_sec: left.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        }
    });
    let ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid slice of pollfds; `ptr` is null or points at a live timespec.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            ptr,
            std::ptr::null(),
        )
    };
}

#[cfg(test)]
mod tests;
