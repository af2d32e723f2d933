//! The one place where treadle-core reaches for blocking and atomic primitives.
//!
//! Under `cfg(loom)` these are loom's models, so `tests/loom.rs` explores every interleaving of the
//! code that uses them; otherwise they are `std`'s. Timed waits do not exist in loom's model: there,
//! a wait with a deadline times out at once, which is one of the outcomes a real timed wait can have,
//! so the timeout paths are explored too.

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};

use std::sync::PoisonError;
use std::time::Instant;

/// Locks `mutex`, ignoring poisoning: the state behind every treadle mutex is kept consistent at
/// each step, and no user code runs while one is held, so a panic cannot leave it half-updated.
/// (The bindings and `treadle-os` use `parking_lot`, which has no poisoning.)
#[inline]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// [`lock`] for a `std` mutex that loom does not model: the process-wide wait graph, a static.
#[cfg(not(loom))]
pub(crate) use lock as lock_std;

/// [`lock`] for a `std` mutex that loom does not model: the process-wide wait graph, a static.
#[cfg(loom)]
pub(crate) fn lock_std<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` until notified or until `deadline`; returns the guard and whether the
/// deadline has passed. Spurious wake-ups are possible; callers re-check their condition.
pub(crate) fn wait_until<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, T>, bool) {
    match deadline {
        None => (
            condvar.wait(guard).unwrap_or_else(PoisonError::into_inner),
            false,
        ),
        Some(deadline) => timed_wait(condvar, guard, deadline),
    }
}

#[cfg(not(loom))]
fn timed_wait<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Instant,
) -> (MutexGuard<'a, T>, bool) {
    let now = Instant::now();
    if now >= deadline {
        return (guard, true);
    }
    let guard = match condvar.wait_timeout(guard, deadline - now) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    };
    (guard, Instant::now() >= deadline)
}

#[cfg(loom)]
fn timed_wait<'a, T>(
    _condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    _deadline: Instant,
) -> (MutexGuard<'a, T>, bool) {
    (guard, true)
}
