//! How a channel call waits: detached, through the runtime's `block_on` (so that Ctrl-C and a
//! task's cancellation end it, and it shows in the wait graph), in slices, between which it asks
//! whether the wait can still end.
//!
//! A ring's waiter may be woken from another process, so its place in the wait graph is that of
//! a wait with a deadline: it is listed (`dump_waits`), never judged part of a stall of this
//! process. What it does instead, every [`CHECK_EVERY`] of waiting, is look at who holds the
//! ring: a reader whose ring is empty, with no live process but this one holding it for writing
//! (and no handle on its way to one), and no other thread here that could write (this process
//! holds no write handle, or this is its only thread), can never get anything: the call ends
//! with the channel's "abandoned" error (`EOFError` for a pipe). A writer to a pipe whose
//! readers are all gone ends with `BrokenPipeError`. The first check comes after [`FIRST_CHECK`],
//! so that a reader that waits briefly for a busy writer costs no look at `/proc`.

use crate::runtime::timeout::Wait;
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_on;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use std::time::{Duration, Instant};
use treadle_core::thread_id::ThreadId;
use treadle_core::wait_graph::{WaitKind, WaitTarget};
use treadle_os::holders::Role;
use treadle_os::os_threads::is_main_thread;
use treadle_os::ring::Ring;

/// How often a waiting call asks whether it can still end.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(200);
/// When it first asks.
pub(crate) const FIRST_CHECK: Duration = Duration::from_millis(100);

/// What a wait is for.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    /// A record to take.
    Data,
    /// Room to put.
    Room,
    /// No unfinished task (JoinableQueue's `join`).
    Tasks,
}

/// A channel wait as the wait graph sees it: ownerless, ready once what it waits for is there.
struct RingWait<'a> {
    ring: &'a Ring,
    side: Side,
}

impl WaitTarget for RingWait<'_> {
    fn owner(&self) -> Option<ThreadId> {
        None
    }

    fn is_ready(&self, _ticket: u64) -> bool {
        match self.side {
            Side::Data => !self.ring.is_empty(),
            Side::Room => !self.ring.is_full(),
            Side::Tasks => self.ring.unfinished() == 0,
        }
    }
}

/// How a park ended.
pub(crate) enum Parked {
    /// What was waited for may be there: look.
    Woken,
    /// Time to ask whether the wait can still end.
    CheckDue,
    /// The call's deadline passed.
    TimedOut,
}

/// The waiting part of one blocking call.
pub(crate) struct Waiter<'a, 'py> {
    object: &'a Bound<'py, PyAny>,
    deadline: Option<Instant>,
    check_at: Instant,
}

impl<'a, 'py> Waiter<'a, 'py> {
    /// A waiter for a call on `object` that may wait as `wait` says; `None` when it may not.
    pub(crate) fn new(object: &'a Bound<'py, PyAny>, wait: Wait) -> Option<Self> {
        match wait {
            Wait::Never => None,
            Wait::Until(deadline) => Some(Waiter {
                object,
                deadline,
                check_at: Instant::now() + FIRST_CHECK,
            }),
        }
    }

    /// Whether the call waits with no deadline (only such a wait can hang).
    pub(crate) fn untimed(&self) -> bool {
        self.deadline.is_none()
    }

    /// Parks (detached) until `ready(deadline)` returns true, a check is due, or the deadline
    /// passes. `ready` must return false only once the deadline it is given has passed.
    pub(crate) fn park<F>(&mut self, ring: &Ring, side: Side, mut ready: F) -> PyResult<Parked>
    where
        F: FnMut(Option<Instant>) -> bool + Send,
    {
        let py = self.object.py();
        let now = Instant::now();
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            return Ok(Parked::TimedOut);
        }
        if now >= self.check_at {
            self.check_at = now + CHECK_EVERY;
            return Ok(Parked::CheckDue);
        }
        let slice_end = self
            .deadline
            .map_or(self.check_at, |deadline| deadline.min(self.check_at));
        let target = RingWait { ring, side };
        let track = Track {
            target: &target,
            kind: WaitKind::Queue,
            ticket: 0,
            object: self.object,
        };
        let woken = block_on(py, Wait::Until(Some(slice_end)), Some(track), |deadline| {
            ready(deadline).then_some(())
        })?;
        if woken.is_some() {
            return Ok(Parked::Woken);
        }
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Ok(Parked::TimedOut);
        }
        self.check_at = Instant::now() + CHECK_EVERY;
        Ok(Parked::CheckDue)
    }
}

/// Whether the calling thread is the process's only Python thread: then nothing else here can
/// put while it waits.
pub(crate) fn only_thread(py: Python<'_>) -> PyResult<bool> {
    static COUNT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    if !is_main_thread() {
        return Ok(false);
    }
    let others: usize = COUNT.import(py, "_thread", "_count")?.call0()?.extract()?;
    Ok(others == 0)
}

/// Whether every writer cleanly let go of `ring` (one load: cheap enough before every park).
pub(crate) fn writers_all_closed(ring: &Ring) -> bool {
    ring.is_empty() && ring.listed(Role::Write) == Some(0)
}

/// Whether nobody can ever write to empty `ring` again (see the module's documentation).
/// A write handle of this process counts as long as another thread could use it, or, for a
/// wait that is not `untimed`, the waiting thread itself once its wait is over.
pub(crate) fn nobody_can_write(py: Python<'_>, ring: &Ring, untimed: bool) -> PyResult<bool> {
    if !ring.is_empty() {
        return Ok(false);
    }
    let writers = ring.writers();
    if writers.elsewhere != Some(0) {
        return Ok(false);
    }
    Ok(writers.here == 0 || (untimed && only_thread(py)?))
}

/// Whether every reader of `ring` let go (cleanly: one load).
pub(crate) fn readers_all_closed(ring: &Ring) -> bool {
    ring.listed(Role::Read) == Some(0)
}

/// Whether no live process holds `ring` for reading (this one included).
pub(crate) fn nobody_can_read(ring: &Ring) -> bool {
    ring.held_elsewhere(Role::Read) == Some(0) && ring.held_here(Role::Read) == 0
}

/// Whether the tasks of `ring` (a JoinableQueue's) can never be done: unfinished, with no live
/// process but this one holding it to take them, and no other thread here (for an untimed
/// wait, the only kind `join` has).
pub(crate) fn nobody_can_finish(py: Python<'_>, ring: &Ring) -> PyResult<bool> {
    if ring.unfinished() == 0 || ring.held_elsewhere(Role::Read) != Some(0) {
        return Ok(false);
    }
    Ok(ring.held_here(Role::Read) == 0 || only_thread(py)?)
}
