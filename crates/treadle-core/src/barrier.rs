//! `Barrier`: the rendezvous behind `treadle.Barrier`.
//!
//! The state machine is CPython's `threading.Barrier` (filling -> draining -> filling, with
//! resetting and broken), with one state added: `RunningAction`. CPython runs the barrier's action
//! while holding the barrier's lock; treadle runs it (Python code) with no core lock held, so that
//! a thread holding the interpreter can never wait on a core lock held by a thread that wants the
//! interpreter back. While the action runs, arrivals wait as they do while the barrier drains, and
//! waiters keep waiting; `abort()` in that window breaks the barrier, and the arrival that ran the
//! action then reports it broken too.
//!
//! A wait is split into steps that each take a deadline and can be resumed, so that the caller may
//! wait in slices: [`Barrier::arrive_until`], then either [`Barrier::finish_action`] (for the last
//! arrival) or [`Barrier::await_release_until`], and finally [`Barrier::leave`].

use crate::primitive::{lock, wait_until, Condvar, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Filling,
    RunningAction,
    Draining,
    Resetting,
    Broken,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    count: usize,
}

/// The barrier is broken (aborted, reset while waited on, timed out, or its action failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierError;

/// How a thread arrived at the barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Not the last: call [`Barrier::await_release_until`]. The index is `wait()`'s return value.
    Waiting(usize),
    /// The last of the parties: run the action (if any), then call [`Barrier::finish_action`].
    Last(usize),
}

/// A barrier for a fixed number of parties.
#[derive(Debug)]
pub struct Barrier {
    parties: usize,
    state: Mutex<State>,
    wake: Condvar,
}

impl Barrier {
    /// A barrier for `parties` threads (at least one).
    pub fn new(parties: usize) -> Barrier {
        assert!(parties >= 1, "a barrier needs at least one party");
        Barrier {
            parties,
            state: Mutex::new(State {
                phase: Phase::Filling,
                count: 0,
            }),
            wake: Condvar::new(),
        }
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// Step 1: waits (until `deadline`) for the barrier to accept arrivals, then arrives.
    /// `Ok(None)` means the deadline passed first; the call may be repeated.
    pub fn arrive_until(&self, deadline: Option<Instant>) -> Result<Option<Arrival>, BarrierError> {
        let mut state = lock(&self.state);
        loop {
            match state.phase {
                Phase::Filling => break,
                Phase::Broken => return Err(BarrierError),
                Phase::RunningAction | Phase::Draining | Phase::Resetting => {
                    let (next, timed_out) = wait_until(&self.wake, state, deadline);
                    state = next;
                    if timed_out && state.phase != Phase::Filling {
                        if state.phase == Phase::Broken {
                            return Err(BarrierError);
                        }
                        return Ok(None);
                    }
                }
            }
        }
        let index = state.count;
        state.count += 1;
        if index + 1 == self.parties {
            state.phase = Phase::RunningAction;
            Ok(Some(Arrival::Last(index)))
        } else {
            Ok(Some(Arrival::Waiting(index)))
        }
    }

    /// Step 2 for the last arrival: the action ran (`action_ok`) or failed. Releases the others,
    /// or breaks the barrier. Call [`Barrier::leave`] afterwards in either case.
    pub fn finish_action(&self, action_ok: bool) -> Result<(), BarrierError> {
        let mut state = lock(&self.state);
        if !action_ok {
            state.phase = Phase::Broken;
            self.wake.notify_all();
            return Err(BarrierError);
        }
        match state.phase {
            Phase::RunningAction => {
                state.phase = Phase::Draining;
                self.wake.notify_all();
                Ok(())
            }
            _ => Err(BarrierError),
        }
    }

    /// Step 2 for the others: waits (until `deadline`) for the barrier to release them.
    /// `None` means the deadline passed first; the caller retries or calls [`Barrier::abort`].
    pub fn await_release_until(
        &self,
        deadline: Option<Instant>,
    ) -> Option<Result<(), BarrierError>> {
        let mut state = lock(&self.state);
        loop {
            match state.phase {
                Phase::Draining => return Some(Ok(())),
                Phase::Broken | Phase::Resetting => return Some(Err(BarrierError)),
                Phase::Filling | Phase::RunningAction => {
                    let (next, timed_out) = wait_until(&self.wake, state, deadline);
                    state = next;
                    if timed_out && matches!(state.phase, Phase::Filling | Phase::RunningAction) {
                        return None;
                    }
                }
            }
        }
    }

    /// Step 3, always: the thread leaves the barrier. The last one out of a draining or resetting
    /// barrier opens it for the next round.
    pub fn leave(&self) {
        let mut state = lock(&self.state);
        state.count -= 1;
        if state.count == 0 && matches!(state.phase, Phase::Draining | Phase::Resetting) {
            state.phase = Phase::Filling;
            self.wake.notify_all();
        }
    }

    /// Returns the barrier to its initial state; threads waiting on it get [`BarrierError`].
    pub fn reset(&self) {
        let mut state = lock(&self.state);
        if state.count > 0 {
            if matches!(state.phase, Phase::Filling | Phase::Broken) {
                state.phase = Phase::Resetting;
            }
        } else {
            state.phase = Phase::Filling;
        }
        self.wake.notify_all();
    }

    /// Breaks the barrier: current and future waits fail until [`Barrier::reset`].
    pub fn abort(&self) {
        let mut state = lock(&self.state);
        state.phase = Phase::Broken;
        self.wake.notify_all();
    }

    /// How many threads are waiting for the barrier to fill.
    pub fn n_waiting(&self) -> usize {
        let state = lock(&self.state);
        if state.phase == Phase::Filling {
            state.count
        } else {
            0
        }
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        lock(&self.state).phase == Phase::Broken
    }
}

/// Wait-graph ticket of [`Barrier::arrive_until`].
pub const ARRIVING: u64 = 0;
/// Wait-graph ticket of [`Barrier::await_release_until`].
pub const AWAITING_RELEASE: u64 = 1;

impl crate::wait_graph::WaitTarget for Barrier {
    fn owner(&self) -> Option<crate::ThreadId> {
        None
    }
    fn is_ready(&self, ticket: u64) -> bool {
        let phase = lock(&self.state).phase;
        if ticket == ARRIVING {
            matches!(phase, Phase::Filling | Phase::Broken)
        } else {
            !matches!(phase, Phase::Filling | Phase::RunningAction)
        }
    }
}

#[cfg(test)]
mod tests;
