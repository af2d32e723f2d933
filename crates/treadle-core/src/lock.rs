//! `RawLock`: the non-reentrant lock behind `treadle.Lock`.
//!
//! The algorithm is the three-state mutex of Drepper's "Futexes Are Tricky" (mutex 2), with the
//! futex replaced by a `Mutex<()>` + `Condvar` pair so that loom can model it: the state is
//! `UNLOCKED`, `LOCKED` (no thread parked) or `CONTENDED` (some thread may be parked). Acquire and
//! release on the uncontended path are one atomic instruction each; only a release that finds
//! `CONTENDED` touches the parking mutex.
//!
//! Why no wake-up is lost: a waiter publishes `CONTENDED` with a `swap` made while it holds the
//! parking mutex, and keeps holding it until `Condvar::wait` releases it atomically. A releaser that
//! sees `CONTENDED` takes the parking mutex before notifying, so its notification cannot fall
//! between the waiter's swap and its wait. A waiter that gives up (deadline) may leave `CONTENDED`
//! behind with nobody parked; that costs one needless notification, never a missed one.
//!
//! Like `threading.Lock`, the lock has no owner: any thread may release it.

use crate::primitive::{lock, wait_until, AtomicU8, Condvar, Mutex, Ordering};
use crate::LockError;
use std::time::Instant;

const UNLOCKED: u8 = 0;
const LOCKED: u8 = 1;
const CONTENDED: u8 = 2;

/// A non-reentrant lock that any thread may release.
#[derive(Debug)]
pub struct RawLock {
    state: AtomicU8,
    parking: Mutex<()>,
    wake: Condvar,
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawLock {
    /// A new, unlocked lock.
    pub fn new() -> RawLock {
        RawLock {
            state: AtomicU8::new(UNLOCKED),
            parking: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Takes the lock if it is free, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, waiting until `deadline` (forever if `None`). Returns whether it was taken.
    #[inline]
    pub fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        self.try_acquire() || self.acquire_slow(deadline)
    }

    #[cold]
    fn acquire_slow(&self, deadline: Option<Instant>) -> bool {
        // A short spin catches the common hand-off where the holder releases within a few hundred
        // nanoseconds, without paying for a park and a wake-up.
        for _ in 0..SPIN_LIMIT {
            if self.state.load(Ordering::Relaxed) == UNLOCKED && self.try_acquire() {
                return true;
            }
            std::hint::spin_loop();
        }
        let mut guard = lock(&self.parking);
        loop {
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return true;
            }
            let (next, timed_out) = wait_until(&self.wake, guard, deadline);
            guard = next;
            if timed_out {
                return self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED;
            }
        }
    }

    /// Releases the lock, waking one waiter if any may be parked.
    #[inline]
    pub fn release(&self) -> Result<(), LockError> {
        match self.state.swap(UNLOCKED, Ordering::Release) {
            LOCKED => Ok(()),
            UNLOCKED => Err(LockError::NotLocked),
            _ => {
                self.wake_one();
                Ok(())
            }
        }
    }

    #[cold]
    fn wake_one(&self) {
        // Taking the parking mutex is what orders this wake-up after a waiter's swap-and-park;
        // notifying after dropping it spares the woken thread from blocking on it at once.
        drop(lock(&self.parking));
        self.wake.notify_one();
    }

    /// Whether the lock is held by some thread.
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }

    /// Forces the lock to the unlocked state: for a forked child, where the threads that held or
    /// waited on it no longer exist (`_at_fork_reinit`).
    pub fn reset_after_fork(&self) {
        self.state.store(UNLOCKED, Ordering::Release);
    }
}

#[cfg(not(loom))]
const SPIN_LIMIT: u32 = 64;
#[cfg(loom)]
const SPIN_LIMIT: u32 = 0;

#[cfg(test)]
mod tests;
