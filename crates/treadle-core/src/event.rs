//! `Event`: the flag behind `treadle.Event`.
//!
//! The flag lives in an atomic so that `is_set()` and the already-set case of `wait()` take no lock.
//! Waiters park on a condvar guarded by a mutex that also holds a generation number, bumped by
//! every `set()` that changes the flag: a waiter returns when the flag is set *or* the generation
//! moved since it began, so a `set()` immediately followed by `clear()` still releases every thread
//! that was waiting, as `threading.Event` does.

use crate::primitive::{lock, wait_until, AtomicBool, Condvar, Mutex, Ordering};
use std::time::Instant;

/// How many times a wait reads the flag before it parks (never under loom, where spinning only
/// multiplies the interleavings).
const SPINS_BEFORE_PARKING: u32 = if cfg!(loom) { 0 } else { 1024 };

/// A flag that threads can wait to become true.
#[derive(Debug, Default)]
pub struct Event {
    flag: AtomicBool,
    generation: Mutex<u64>,
    wake: Condvar,
}

/// Where a wait on an [`Event`] started: pass it back to [`Event::wait_until`] when a wait is resumed
/// after an interruption, so that a `set()` in between is not missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTicket(u64);

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event::default()
    }

    /// Whether the flag is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut generation = lock(&self.generation);
        if !self.flag.load(Ordering::Relaxed) {
            *generation += 1;
            self.flag.store(true, Ordering::Release);
            drop(generation);
            // Waiters re-check under the mutex, so waking them after unlocking loses nothing.
            self.wake.notify_all();
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        let _generation = lock(&self.generation);
        self.flag.store(false, Ordering::Release);
    }

    /// Marks the start of a wait.
    pub fn ticket(&self) -> EventTicket {
        EventTicket(*lock(&self.generation))
    }

    /// Waits until the flag is set, or was set after `ticket` was taken, or `deadline` passes.
    /// Returns whether the event fired.
    pub fn wait_until(&self, ticket: EventTicket, deadline: Option<Instant>) -> bool {
        // The setter is often a few microseconds away (a hand-off between two threads): watch the
        // flag for a while before paying for a sleep and a wake-up. A set() and clear() both
        // within the spin are caught by the generation check below.
        for _ in 0..SPINS_BEFORE_PARKING {
            if self.is_set() {
                return true;
            }
            std::hint::spin_loop();
        }
        if self.is_set() {
            return true;
        }
        let mut generation = lock(&self.generation);
        loop {
            if self.flag.load(Ordering::Acquire) || *generation != ticket.0 {
                return true;
            }
            let (next, timed_out) = wait_until(&self.wake, generation, deadline);
            generation = next;
            if timed_out {
                return self.flag.load(Ordering::Acquire) || *generation != ticket.0;
            }
        }
    }

    /// Forces the event to the unset state in a forked child (`_at_fork_reinit`).
    pub fn reset_after_fork(&self) {
        self.flag.store(false, Ordering::Release);
    }
}
impl EventTicket {
    /// The ticket as a number, for the wait graph.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl crate::wait_graph::WaitTarget for Event {
    fn owner(&self) -> Option<crate::ThreadId> {
        None
    }
    fn is_ready(&self, ticket: u64) -> bool {
        self.is_set() || *lock(&self.generation) != ticket
    }
}
