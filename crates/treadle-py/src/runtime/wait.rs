//! Blocking without holding the interpreter, without deafness to Ctrl-C, and in the wait graph.
//!
//! Every blocking wait in treadle goes through [`block_on`]: it detaches from the interpreter (so
//! other Python threads run) and parks in the core. Python runs signal handlers only in the main
//! thread, so there the wait is cut into slices of [`SIGNAL_POLL`]: between slices the thread
//! re-attaches and runs pending handlers, and a `KeyboardInterrupt` (or any exception a handler
//! raises) ends the wait, as it ends `threading.Lock.acquire`. Core waits are built to be
//! resumed, so slicing changes nothing but latency to a signal.
//!
//! A wait given a [`Track`] also takes part in deadlock detection (see `tracking.rs`): it is
//! published in the wait graph before parking and withdrawn the moment it succeeds (still
//! detached: see `Published::withdraw`), checked for an owned cycle once, and, while it has no
//! deadline, looks for a stall every [`STALL_POLL`].

use super::cancel;
use super::timeout::Wait;
use super::tracking::{self, Track};
use pyo3::prelude::*;
use std::time::{Duration, Instant};
use treadle_core::wait_graph::{Mode, Stall, WaitGraph};
use treadle_os::os_threads::is_main_thread;

/// How long the main thread parks before it looks for pending signals.
pub(crate) const SIGNAL_POLL: Duration = Duration::from_millis(20);
/// How often a tracked wait with no deadline looks for a stall of the whole process.
pub(crate) const STALL_POLL: Duration = Duration::from_millis(200);
/// How long a suspected stall must last, unchanged, to be reported.
pub(crate) const STALL_GRACE: Duration = Duration::from_millis(30);

/// Calls `attempt(deadline)` with the interpreter released until it yields a value or `wait`'s
/// deadline passes (`Ok(None)`). `attempt` must return `None` only when the deadline it was given
/// has passed, and must be safe to call again after that.
pub(crate) fn block_on<T, F>(
    py: Python<'_>,
    wait: Wait,
    track: Option<Track<'_, '_>>,
    mut attempt: F,
) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Option<Instant>) -> Option<T> + Send,
{
    let deadline = match wait {
        Wait::Never => return Ok(attempt(Some(Instant::now()))),
        Wait::Until(deadline) => deadline,
    };
    // A task's waits end with `Cancelled` when the task is asked to stop.
    let task = cancel::current();
    cancel::check(task.as_deref())?;
    let main = is_main_thread();
    let graph = WaitGraph::global();
    let track = track.filter(|_| graph.mode() != Mode::Off);
    let Some(track) = track else {
        if !main && task.is_none() {
            return Ok(py.detach(|| attempt(deadline)));
        }
        return sliced(py, deadline, SIGNAL_POLL, &mut attempt, |_| {
            cancel::check(task.as_deref())?;
            Ok(Next::Poll)
        });
    };
    let tracked = tracking::publish(py, graph, &track, deadline.is_some())?;
    // Out of the graph the moment the wait succeeds, still detached.
    let mut attempt = |deadline| {
        let value = attempt(deadline);
        if value.is_some() {
            tracked.wait_ended();
        }
        value
    };
    let poll = if main || task.is_some() {
        SIGNAL_POLL.min(cancel::POLL)
    } else {
        STALL_POLL
    };
    let mut suspect: Option<Stall> = None;
    let mut reported = tracked.reported_cycle();
    let outcome = sliced(py, deadline, poll, &mut attempt, |py| {
        cancel::check(task.as_deref())?;
        if deadline.is_some() || reported {
            return Ok(Next::Poll);
        }
        if tracked.report_unraised_cycle(py)? {
            reported = true;
            return Ok(Next::Poll);
        }
        if let Some(stall) = suspect.take() {
            if let Some(edges) = graph.confirm_stall(&stall) {
                reported = true;
                tracked.report(py, &edges, "stall")?;
            }
            return Ok(Next::Poll);
        }
        suspect = tracking::suspect_stall(py, graph)?;
        Ok(if suspect.is_some() {
            Next::Soon
        } else {
            Next::Poll
        })
    });
    if outcome.as_ref().is_ok_and(Option::is_none) {
        tracked.timed_out(py);
    }
    outcome
}

/// When the next slice ends.
enum Next {
    /// After the usual poll interval.
    Poll,
    /// After [`STALL_GRACE`]: a suspected stall is to be confirmed.
    Soon,
}

/// The slicing loop: park for at most `poll` at a time, and between slices run signal handlers
/// (main thread) and `between`, which may end the wait with an error or ask for a short slice.
fn sliced<T, F, B>(
    py: Python<'_>,
    deadline: Option<Instant>,
    poll: Duration,
    attempt: &mut F,
    mut between: B,
) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Option<Instant>) -> Option<T> + Send,
    B: FnMut(Python<'_>) -> PyResult<Next>,
{
    let main = is_main_thread();
    let mut next = poll;
    loop {
        let slice_end = Instant::now() + next;
        let slice = match deadline {
            Some(deadline) if deadline <= slice_end => Some(deadline),
            _ => Some(slice_end),
        };
        if let Some(value) = py.detach(|| attempt(slice)) {
            return Ok(Some(value));
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(None);
        }
        if main {
            py.check_signals()?;
        }
        next = match between(py)? {
            Next::Poll => poll,
            Next::Soon => STALL_GRACE,
        };
    }
}

/// [`block_on`] for the common case of an attempt that succeeds or not.
pub(crate) fn block_until<F>(
    py: Python<'_>,
    wait: Wait,
    track: Option<Track<'_, '_>>,
    mut attempt: F,
) -> PyResult<bool>
where
    F: FnMut(Option<Instant>) -> bool + Send,
{
    Ok(block_on(py, wait, track, |deadline| attempt(deadline).then_some(()))?.is_some())
}

/// Re-takes a lock that a condition wait gave up: no deadline, no interruption and no error (the
/// lock must be held again before any exception can reach the caller), but published in the wait
/// graph while it waits, so that a cycle it closes is reported by another participant (see
/// `WaitGraph::find_unraised_cycle`).
pub(crate) fn block_reacquire<F>(py: Python<'_>, track: Track<'_, '_>, attempt: F)
where
    F: FnOnce() -> bool + Send,
{
    let graph = WaitGraph::global();
    if graph.mode() == Mode::Off {
        py.detach(attempt);
        return;
    }
    let tracked = tracking::publish_unchecked(graph, &track, false);
    py.detach(|| {
        attempt();
        tracked.wait_ended();
    });
    drop(tracked);
}
