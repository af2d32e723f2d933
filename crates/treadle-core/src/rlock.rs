//! `RawRLock`: the reentrant lock behind `treadle.RLock`.
//!
//! A [`RawLock`] plus an owner and a recursion count. Only the owning thread ever writes the count,
//! and it reads the owner field only to compare it with itself: a thread sees its own identity
//! there exactly when it owns the lock, whatever other threads are doing, so relaxed accesses
//! suffice; the `RawLock` orders everything else.

use crate::lock::RawLock;
use crate::primitive::{AtomicU64, AtomicUsize, Ordering};
use crate::thread_id::ThreadId;
use crate::LockError;
use std::time::Instant;

/// A reentrant lock, owned by the thread that took it.
#[derive(Debug, Default)]
pub struct RawRLock {
    lock: RawLock,
    owner: AtomicU64,
    count: AtomicUsize,
}

/// What `release_save` hands back to `acquire_restore`: the recursion count and the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedOwnership {
    /// How many times the owner had acquired the lock.
    pub count: usize,
    /// Who owned it.
    pub owner: ThreadId,
}

impl RawRLock {
    /// A new, unowned lock.
    pub fn new() -> RawRLock {
        RawRLock::default()
    }

    /// Takes the lock (again, if the calling thread owns it), waiting until `deadline`.
    #[inline]
    pub fn acquire_until(&self, deadline: Option<Instant>) -> Result<bool, LockError> {
        let me = ThreadId::current();
        if self.owner.load(Ordering::Relaxed) == me.0 {
            let count = self.count.load(Ordering::Relaxed);
            let count = count.checked_add(1).ok_or(LockError::RecursionOverflow)?;
            self.count.store(count, Ordering::Relaxed);
            return Ok(true);
        }
        if !self.lock.acquire_until(deadline) {
            return Ok(false);
        }
        self.owner.store(me.0, Ordering::Relaxed);
        self.count.store(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Takes the lock without waiting if it is free or already the caller's.
    #[inline]
    pub fn try_acquire(&self) -> Result<bool, LockError> {
        let me = ThreadId::current();
        if self.owner.load(Ordering::Relaxed) == me.0 {
            return self.acquire_until(None);
        }
        if !self.lock.try_acquire() {
            return Ok(false);
        }
        self.owner.store(me.0, Ordering::Relaxed);
        self.count.store(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Releases one level of ownership; the lock is freed when the count reaches zero.
    #[inline]
    pub fn release(&self) -> Result<(), LockError> {
        if !self.is_owned() {
            return Err(LockError::NotOwner);
        }
        let count = self.count.load(Ordering::Relaxed) - 1;
        self.count.store(count, Ordering::Relaxed);
        if count == 0 {
            self.owner.store(0, Ordering::Relaxed);
            self.lock.release()?;
        }
        Ok(())
    }

    /// Whether the calling thread owns the lock.
    #[inline]
    pub fn is_owned(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == ThreadId::current().0
    }

    /// Whether any thread owns the lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// The owner's identity, if the lock is owned (a snapshot: it may change at once).
    pub fn owner(&self) -> Option<ThreadId> {
        match self.owner.load(Ordering::Relaxed) {
            0 => None,
            id => Some(ThreadId(id)),
        }
    }

    /// The calling thread's recursion count: zero unless it owns the lock.
    pub fn recursion_count(&self) -> usize {
        if self.is_owned() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Releases the lock completely, whatever its count, for a condition wait.
    pub fn release_save(&self) -> Result<SavedOwnership, LockError> {
        if !self.is_owned() {
            return Err(LockError::NotOwner);
        }
        let saved = SavedOwnership {
            count: self.count.load(Ordering::Relaxed),
            owner: ThreadId::current(),
        };
        self.count.store(0, Ordering::Relaxed);
        self.owner.store(0, Ordering::Relaxed);
        self.lock.release()?;
        Ok(saved)
    }

    /// Takes the lock back after [`release_save`](Self::release_save), waiting until `deadline`.
    pub fn acquire_restore(&self, saved: SavedOwnership, deadline: Option<Instant>) -> bool {
        if !self.lock.acquire_until(deadline) {
            return false;
        }
        self.owner.store(saved.owner.0, Ordering::Relaxed);
        self.count.store(saved.count, Ordering::Relaxed);
        true
    }

    /// Forces the lock to the unowned state in a forked child (`_at_fork_reinit`).
    pub fn reset_after_fork(&self) {
        self.owner.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        self.lock.reset_after_fork();
    }
}
impl crate::wait_graph::WaitTarget for RawRLock {
    fn owner(&self) -> Option<ThreadId> {
        RawRLock::owner(self)
    }
    fn is_ready(&self, _ticket: u64) -> bool {
        !self.is_locked()
    }
}
