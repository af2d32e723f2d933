//! The ring's readiness descriptor: an `eventfd` that polls readable while a record waits, or
//! once every writer let go (a pipe at its end polls readable too), for `select()`, `poll()` and
//! `multiprocessing.connection.wait`.
//!
//! Keeping it up to date costs a system call per change of state, so it is kept only from the
//! first time anyone, in any process, asked for it (`pollable`). `signalled` mirrors whether the
//! eventfd's counter is non-zero, so that a writer signals it once, not once per record.

use super::layout::Ring;
use crate::holders::Role;
use rustix::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;

impl Ring {
    /// The readiness descriptor: readable while a record waits. From the first call on (in
    /// any process), writers and readers keep it so.
    pub fn poll_fd(&self) -> BorrowedFd<'_> {
        let header = self.header();
        if header.pollable.swap(1, Ordering::SeqCst) == 0 && !self.is_empty() {
            self.signal();
        }
        self.events.as_fd()
    }

    pub(super) fn signal(&self) {
        if self.header().signalled.swap(1, Ordering::SeqCst) == 0 {
            let _ = rustix::io::write(&self.events, &1u64.to_ne_bytes());
        }
    }

    /// After a write: keeps the descriptor readable.
    #[inline]
    pub(super) fn after_publish(&self) {
        if self.header().pollable.load(Ordering::Relaxed) != 0 {
            self.signal();
        }
    }

    /// After a take: the descriptor stops being readable once the ring is empty.
    #[inline]
    pub(super) fn after_take(&self) {
        let header = self.header();
        if header.pollable.load(Ordering::Relaxed) == 0 || !self.is_empty() {
            return;
        }
        self.unsignal();
    }

    #[cold]
    fn unsignal(&self) {
        let header = self.header();
        if header.signalled.swap(0, Ordering::SeqCst) == 1 {
            let mut sink = [0u8; 8];
            let _ = rustix::io::read(&self.events, &mut sink);
        }
        // A record published meanwhile, or no writer left: readable again.
        if !self.is_empty() || header.holders.listed_anywhere(Role::Write) == Some(0) {
            self.signal();
        }
    }
}
