//! `WaitQueue`: the queue of parked threads behind `treadle.Condition`.
//!
//! This is the condition-variable protocol of CPython's `threading.Condition`, moved to Rust: each
//! waiter enqueues a [`Waiter`] (a one-shot signal) while it still holds the user's lock, then
//! releases that lock and parks on its own signal. `notify(n)` dequeues up to `n` waiters, oldest
//! first, and fires their signals. Because a waiter is enqueued before the user's lock is released,
//! a notification sent under that lock after the waiter released it cannot be missed; because each
//! waiter has its own signal, there are no spurious wake-ups and `notify(n)` wakes exactly the `n`
//! oldest waiters.
//!
//! A waiter that stops waiting (deadline, interrupt) calls [`WaitQueue::withdraw`]: if it was still
//! queued it leaves without a notification; if a notifier had already dequeued it, the notification
//! is its own, and the caller decides whether to report success or hand it on.

use crate::primitive::{lock, wait_until, Arc, AtomicBool, Condvar, Mutex, Ordering};
use std::collections::VecDeque;
use std::time::Instant;

/// A one-shot signal that one waiting thread parks on.
#[derive(Debug, Default)]
pub struct Waiter {
    notified: Mutex<bool>,
    /// `notified`, readable without the mutex, for a waiter spinning before it parks.
    fired: AtomicBool,
    wake: Condvar,
}

/// How many times a waiter reads its signal before it parks (never under loom, where spinning
/// only multiplies the interleavings).
const SPINS_BEFORE_PARKING: u32 = if cfg!(loom) { 0 } else { 1024 };

impl Waiter {
    /// Parks until this waiter is notified or `deadline` passes; returns whether it was notified.
    pub fn wait_until(&self, deadline: Option<Instant>) -> bool {
        // The notifier is often a few microseconds away (a hand-off between two threads): watch
        // the signal for a while before paying for a sleep and a wake-up.
        for _ in 0..SPINS_BEFORE_PARKING {
            if self.fired.load(Ordering::Acquire) {
                return true;
            }
            std::hint::spin_loop();
        }
        let mut notified = lock(&self.notified);
        while !*notified {
            let (next, timed_out) = wait_until(&self.wake, notified, deadline);
            notified = next;
            if timed_out {
                return *notified;
            }
        }
        true
    }

    /// Whether this waiter has been notified.
    pub fn is_notified(&self) -> bool {
        *lock(&self.notified)
    }

    fn fire(&self) {
        *lock(&self.notified) = true;
        self.fired.store(true, Ordering::Release);
        // Notify after unlocking: the waiter re-checks the flag under the mutex, so nothing is
        // lost, and it does not wake only to block on a mutex its waker still holds.
        self.wake.notify_one();
    }
}

/// A FIFO queue of waiters, with notify-n semantics.
#[derive(Debug, Default)]
pub struct WaitQueue {
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
}

impl WaitQueue {
    /// An empty queue.
    pub fn new() -> WaitQueue {
        WaitQueue::default()
    }

    /// Enqueues a new waiter for the calling thread and returns it.
    pub fn enqueue(&self) -> Arc<Waiter> {
        let waiter = Arc::new(Waiter::default());
        lock(&self.waiters).push_back(waiter.clone());
        waiter
    }

    /// Wakes up to `n` of the oldest waiters; returns how many were woken.
    pub fn notify(&self, n: usize) -> usize {
        let mut woken = 0;
        while woken < n {
            // Dequeue under the queue's mutex, fire outside it: a woken thread that withdraws or
            // re-enqueues at once must not find the queue locked by its waker.
            let Some(waiter) = lock(&self.waiters).pop_front() else {
                break;
            };
            waiter.fire();
            woken += 1;
        }
        woken
    }

    /// Wakes every waiter; returns how many were woken.
    pub fn notify_all(&self) -> usize {
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        let woken = waiters.len();
        for waiter in waiters {
            waiter.fire();
        }
        woken
    }

    /// Removes `waiter` if it is still queued. Returns `true` if it was removed (no notification
    /// was spent on it), `false` if a notifier had already taken it.
    pub fn withdraw(&self, waiter: &Arc<Waiter>) -> bool {
        let mut waiters = lock(&self.waiters);
        match waiters
            .iter()
            .position(|queued| Arc::ptr_eq(queued, waiter))
        {
            Some(index) => {
                waiters.remove(index);
                true
            }
            None => false,
        }
    }

    /// How many waiters are queued (a snapshot).
    pub fn len(&self) -> usize {
        lock(&self.waiters).len()
    }

    /// Whether no waiter is queued (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl crate::wait_graph::WaitTarget for Waiter {
    fn owner(&self) -> Option<crate::ThreadId> {
        None
    }
    fn is_ready(&self, _ticket: u64) -> bool {
        self.is_notified()
    }
}

#[cfg(test)]
mod tests;
