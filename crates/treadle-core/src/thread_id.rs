//! Identities for threads, as treadle's locks record their owners.
//!
//! Each OS thread gets a small non-zero number the first time it asks, from a process-wide counter,
//! so an identity is never reused while the process lives (unlike `pthread_t` or Python's
//! `get_ident()`, which are recycled when threads end). Zero means "no thread". A forked child's
//! only thread keeps the identity it had in the parent, which is what a lock held across `fork()`
//! expects.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// A thread's identity: never zero, never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId(pub u64);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[cfg(not(loom))]
thread_local! {
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

// loom runs its modelled threads on one OS thread, so it needs its own thread-locals.
#[cfg(loom)]
loom::thread_local! {
    static CURRENT: Cell<u64> = Cell::new(0);
}

impl ThreadId {
    /// The calling thread's identity.
    #[inline]
    pub fn current() -> ThreadId {
        CURRENT.with(|current| {
            let id = current.get();
            if id != 0 {
                return ThreadId(id);
            }
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            current.set(id);
            ThreadId(id)
        })
    }
}
