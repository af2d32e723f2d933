//! The supervisor's I/O loop, run by one thread (the pool's supervisor thread): start the
//! workers that are missing, pack the buffers of the tasks workers have room for into
//! shared memory, wait in `ppoll` with the state unlocked, read what workers sent, reap those
//! that ended, and hand the state machine what happened. Starting workers and packing buffers
//! happen with the state unlocked: both take time (a fork, a copy), and starting may call back
//! into the binding (to capture the parent's state, or to fork the caller).
//!
//! The descriptors polled unlocked (each worker's socket and pidfd, and the waker) are shared
//! with the list of workers (`Arc`), so they stay open while the poller waits even if another
//! thread changes the state meanwhile; only this thread removes workers, so the index of each
//! worker polled is still its index when the poll returns.

use super::connection::Connection;
use super::state::Worker;
use super::task::Event;
use super::{Origin, Supervisor};
use crate::channel;
use crate::fork_server::ParentState;
use crate::frame::{self, to_worker};
use crate::oom::oom_kills;
use crate::process::Process;
use crate::segment;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a worker that hung up is looked at when the kernel has no pidfds.
const REAP_POLL: Duration = Duration::from_millis(5);

/// How long the poller lets answers gather before it waits for them, while a worker holds a
/// run of tasks that each take less: a result is read at most this much later.
const LINGER: Duration = Duration::from_micros(40);

/// What one polled descriptor stands for.
#[derive(Clone, Copy)]
enum Polled {
    /// Worker `w`'s socket.
    Socket(usize),
    /// A worker's pidfd: the reaping pass that follows the poll looks at every worker.
    Exit,
}

impl Supervisor {
    /// Runs the supervisor until something happens or `deadline` passes: returns the events
    /// (`None` only when the deadline passed with none). Called by one thread, the poller.
    pub fn poll(&self, deadline: Option<Instant>) -> Option<Vec<Event>> {
        loop {
            let mut state = self.state.lock();
            self.poller_asleep.store(false, Ordering::Relaxed);
            let pidfds_quiet = !self.pidfd_fired.swap(false, Ordering::Relaxed);
            self.tend(&mut state, pidfds_quiet);
            let events = state.take_events();
            if !events.is_empty() {
                return Some(events);
            }
            let missing = state.missing_workers(Instant::now());
            if missing > 0 {
                drop(state);
                let started = self.start_workers(missing);
                let mut state = self.state.lock();
                let now = Instant::now();
                for connection in started {
                    match connection {
                        Ok(connection) => state.workers.push(Worker::new(connection, oom_kills())),
                        Err(e) => state.start_failed(&e.to_string(), now),
                    }
                }
                state.dispatch(now);
                continue;
            }
            let lent = state.to_pack();
            if !lent.is_empty() {
                drop(state);
                let packed: Vec<_> = lent
                    .into_iter()
                    .map(|(id, buffers)| {
                        let bytes: Vec<&[u8]> = buffers.iter().map(|b| b.bytes()).collect();
                        (id, segment::pack(&bytes))
                    })
                    .collect();
                let mut state = self.state.lock();
                for (id, segment) in packed {
                    state.packed(id, segment);
                }
                state.dispatch(Instant::now());
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return None;
            }
            let mut wait_until = deadline;
            if let Some(at) = state.next_deadline() {
                wait_until = Some(wait_until.map_or(at, |until| until.min(at)));
            }
            let mut watched: Vec<(Arc<OwnedFd>, PollFlags, Polled)> = Vec::new();
            for (w, worker) in state.workers.iter().enumerate() {
                let connection = &worker.link;
                if !connection.hung_up {
                    let mut events = PollFlags::IN;
                    if connection.has_outgoing() {
                        events |= PollFlags::OUT;
                    }
                    watched.push((connection.socket.clone(), events, Polled::Socket(w)));
                }
                match connection.process.pidfd() {
                    Some(pidfd) => watched.push((pidfd.clone(), PollFlags::IN, Polled::Exit)),
                    None if connection.hung_up => {
                        let at = now + REAP_POLL;
                        wait_until = Some(wait_until.map_or(at, |until| until.min(at)));
                    }
                    None => {}
                }
            }
            let linger = state.answers_follow_within(LINGER);
            self.poller_asleep.store(true, Ordering::Relaxed);
            drop(state);
            // No spin here: while a worker runs a task, the thread that waits for its future
            // spins on this core, keeping it awake, and the poller spinning too would take turns
            // with it on the core (measured: 20 us a round trip without, 27-58 with).
            if linger && wait_until.map_or(true, |until| until > Instant::now() + LINGER) {
                // Workers busy with a run of short tasks: their answers are read a few at a
                // time, not one wake-up of this thread (and one of their writes waking it) each.
                std::thread::sleep(LINGER);
            }
            let ready = wait(&self.wake, &watched, wait_until);
            let mut state = self.state.lock();
            self.poller_asleep.store(false, Ordering::Relaxed);
            for (revents, polled) in ready {
                let Polled::Socket(w) = polled else {
                    self.pidfd_fired.store(true, Ordering::Relaxed);
                    continue;
                };
                if revents.contains(PollFlags::OUT) {
                    state.flush(w);
                }
                if revents.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                    read_from(&mut state, w);
                }
            }
        }
    }

    /// Everything that needs no waiting: kill the overdue, reap, retire, dispatch, close.
    /// `pidfds_quiet`: no pidfd polled readable since the last call.
    fn tend(&self, state: &mut super::State<Connection>, pidfds_quiet: bool) {
        let now = Instant::now();
        state.expire(now);
        let mut w = 0;
        while w < state.workers.len() {
            match state.workers[w].link.try_exit(pidfds_quiet) {
                Some(exit) => {
                    // What it sent before it ended (an initializer's failure) comes first.
                    if !state.workers[w].link.hung_up {
                        read_from(state, w);
                    }
                    state.worker_ended(w, exit, oom_kills, now);
                }
                None => w += 1,
            }
        }
        state.settle(now);
    }

    /// Starts `count` workers; a fork server's take the parent's state as it is captured once,
    /// now, for all of them.
    fn start_workers(&self, count: usize) -> Vec<io::Result<Connection>> {
        let parent = match &self.config.origin {
            Origin::ForkServer { server, state } if server.alive() => Some(state()),
            _ => None,
        };
        (0..count)
            .map(|_| self.start_worker(parent.as_ref()))
            .collect()
    }

    fn start_worker(&self, parent: Option<&io::Result<ParentState>>) -> io::Result<Connection> {
        let (ours, theirs) = channel::socket_pair()?;
        let config = &self.config;
        let fresh = || Process::spawn(&config.program, &config.args, &theirs);
        let process = match (&config.origin, parent) {
            // Whatever stops the server from forking one that takes the parent's state (it died,
            // it cannot give the parent's credentials, no pidfds), a fresh interpreter, which
            // inherits the parent as it is, may still start.
            (Origin::ForkServer { server, .. }, Some(Ok(state))) if server.alive() => {
                match Process::fork_from(server, &theirs, state) {
                    Ok(process) => process,
                    Err(_) => fresh()?,
                }
            }
            (Origin::ForkServer { .. } | Origin::Fresh, _) => fresh()?,
            (Origin::Caller(fork), _) => Process::adopt(fork(&theirs, &ours)?)?,
        };
        drop(theirs);
        let init = frame::encode(to_worker::INIT, 0, &config.init, 0)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "init payload too large"))?;
        Ok(Connection::new(process, ours, init))
    }
}

/// Reads what worker `w` sent and hands each whole frame to the state machine; whether there
/// was anything (a frame, or the worker hanging up).
pub(super) fn read_from(state: &mut super::State<Connection>, w: usize) -> bool {
    let frames = state.workers[w].link.receive();
    let read = !frames.is_empty();
    let now = Instant::now();
    for frame in frames {
        state.on_frame(w, frame.header, frame.payload, frame.fds, now);
    }
    if state.workers[w].link.hung_up {
        state.hung_up(w);
        return true;
    }
    read
}

/// `ppoll` on the waker and `watched` until one is ready or `until` passes; returns what each
/// ready descriptor stands for, with its events. The waker is reset only when it fired (a read
/// fewer per turn).
fn wait(
    waker: &channel::Waker,
    watched: &[(Arc<OwnedFd>, PollFlags, Polled)],
    until: Option<Instant>,
) -> Vec<(PollFlags, Polled)> {
    let mut fds = Vec::with_capacity(watched.len() + 1);
    fds.push(PollFd::new(waker, PollFlags::IN));
    fds.extend(
        watched
            .iter()
            .map(|(fd, events, _)| PollFd::new(&**fd, *events)),
    );
    let timeout = until.map(|until| {
        let left = until.saturating_duration_since(Instant::now());
        Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        })
    });
    if poll(&mut fds, timeout.as_ref()).is_err() {
        return Vec::new();
    }
    if !fds[0].revents().is_empty() {
        waker.reset();
    }
    fds[1..]
        .iter()
        .zip(watched)
        .filter(|(fd, _)| !fd.revents().is_empty())
        .map(|(fd, (_, _, polled))| (fd.revents(), *polled))
        .collect()
}
