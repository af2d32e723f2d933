//! `Semaphore`: the counter behind `treadle.Semaphore` and `treadle.BoundedSemaphore`.
//!
//! A counter and a count of parked threads under one mutex, with a condvar to park on. Releases
//! wake as many parked threads as units they add, never more, so a release of one unit costs one
//! wake-up. A bound, when given, makes a release past the initial value an error, checked before
//! anything changes.
//!
//! The counter is a `u128` ([`Units`]): Python's semaphores count in unbounded integers, and
//! programs do start one at `2**64` or more to mean "as many as you like"; no program can take
//! 2**128 units one at a time, so no count a program could use is refused.

use crate::primitive::{lock, wait_until, Condvar, Mutex};
use std::time::Instant;

/// Errors from [`Semaphore::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemaphoreError {
    /// A bounded semaphore would go above its initial value.
    TooManyReleases,
    /// The counter would overflow.
    Overflow,
}

/// A semaphore's count of units.
pub type Units = u128;

#[derive(Debug)]
struct Counter {
    value: Units,
    parked: usize,
}

/// A counting semaphore, optionally bounded by its initial value.
#[derive(Debug)]
pub struct Semaphore {
    counter: Mutex<Counter>,
    wake: Condvar,
    bound: Option<Units>,
}

impl Semaphore {
    /// A semaphore starting at `value`; with `bounded`, releases may not take it above `value`.
    pub fn new(value: Units, bounded: bool) -> Semaphore {
        Semaphore {
            counter: Mutex::new(Counter { value, parked: 0 }),
            wake: Condvar::new(),
            bound: bounded.then_some(value),
        }
    }

    /// Takes one unit if one is available, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut counter = lock(&self.counter);
        if counter.value > 0 {
            counter.value -= 1;
            true
        } else {
            false
        }
    }

    /// Takes one unit, waiting until `deadline`. Returns whether a unit was taken.
    pub fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let mut counter = lock(&self.counter);
        loop {
            if counter.value > 0 {
                counter.value -= 1;
                return true;
            }
            counter.parked += 1;
            let (next, timed_out) = wait_until(&self.wake, counter, deadline);
            counter = next;
            counter.parked -= 1;
            if timed_out {
                if counter.value > 0 {
                    counter.value -= 1;
                    return true;
                }
                return false;
            }
        }
    }

    /// Adds `n` units and wakes up to `n` waiters.
    pub fn release(&self, n: Units) -> Result<(), SemaphoreError> {
        let mut counter = lock(&self.counter);
        let value = counter
            .value
            .checked_add(n)
            .ok_or(SemaphoreError::Overflow)?;
        if let Some(bound) = self.bound {
            if value > bound {
                return Err(SemaphoreError::TooManyReleases);
            }
        }
        counter.value = value;
        let parked = counter.parked;
        // Waiters re-check the value under the mutex, so waking them after unlocking loses
        // nothing and spares them blocking on the mutex straight away.
        drop(counter);
        if parked > 0 {
            if n >= parked as Units {
                self.wake.notify_all();
            } else {
                for _ in 0..n {
                    self.wake.notify_one();
                }
            }
        }
        Ok(())
    }

    /// The current value (a snapshot).
    pub fn value(&self) -> Units {
        lock(&self.counter).value
    }

    /// The bound, for a bounded semaphore.
    pub fn bound(&self) -> Option<Units> {
        self.bound
    }
}
impl crate::wait_graph::WaitTarget for Semaphore {
    fn owner(&self) -> Option<crate::ThreadId> {
        None
    }
    fn is_ready(&self, _ticket: u64) -> bool {
        self.value() > 0
    }
}
