//! Waiting for a record, for room, or for unfinished tasks: spin, then sleep on a shared futex,
//! counted so that the other side wakes the sleeper only when there is one.

use super::layout::{Ring, SPIN};
use rustix::thread::futex;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::Instant;

/// The shortest adapted spin.
const MIN_SPIN: u32 = 16;

impl Ring {
    /// Wakes one reader sleeping for data, if one is counted.
    pub(super) fn wake_readers(&self) {
        let header = self.header();
        // The publication before this fence, or the reader's count after its own, is seen.
        fence(Ordering::SeqCst);
        if header.readers_waiting.load(Ordering::Relaxed) != 0 {
            header.data_seq.fetch_add(1, Ordering::Release);
            let _ = futex::wake(&header.data_seq, futex::Flags::empty(), 1);
        }
    }

    /// Wakes every writer sleeping for room, if one is counted.
    pub(super) fn wake_writers(&self) {
        let header = self.header();
        fence(Ordering::SeqCst);
        if header.writers_waiting.load(Ordering::Relaxed) != 0 {
            header.space_seq.fetch_add(1, Ordering::Release);
            let _ = futex::wake(&header.space_seq, futex::Flags::empty(), u32::MAX);
        }
    }

    /// Wakes every sleeper of every kind, to look again (a holder let go).
    pub(super) fn wake_all(&self) {
        let header = self.header();
        for seq in [&header.data_seq, &header.space_seq, &header.unfinished_seq] {
            seq.fetch_add(1, Ordering::SeqCst);
            let _ = futex::wake(seq, futex::Flags::empty(), u32::MAX);
        }
    }

    /// Whether a record arrives within the reader's spin (see [`SPIN`]): for a caller that
    /// would otherwise park, at some cost in bookkeeping, for a record its partner is about to
    /// put (a ping-pong between two running processes).
    pub fn data_soon(&self) -> bool {
        let spin = self.spin.load(Ordering::Relaxed);
        for _ in 0..spin {
            if !self.is_empty() {
                self.spin.store((spin * 2).min(SPIN), Ordering::Relaxed);
                return true;
            }
            std::hint::spin_loop();
        }
        self.spin.store((spin / 2).max(MIN_SPIN), Ordering::Relaxed);
        false
    }

    /// Waits until a record may be there or `deadline` passes (`false`). It may return early
    /// (then the caller looks again), never late.
    pub fn wait_for_data(&self, deadline: Option<Instant>) -> bool {
        let header = self.header();
        if self.data_soon() {
            return true;
        }
        wait_on(
            &header.data_seq,
            &header.readers_waiting,
            || !self.is_empty(),
            deadline,
            0,
        )
    }

    /// Waits until readers have taken more than `taken` records in all ([`Ring::taken`] before
    /// a put found no room), or `deadline` passes (`false`); may return early.
    pub fn wait_for_room(&self, taken: u64, deadline: Option<Instant>) -> bool {
        let header = self.header();
        wait_on(
            &header.space_seq,
            &header.writers_waiting,
            || header.got_count.load(Ordering::Acquire) != taken,
            deadline,
            SPIN,
        )
    }

    /// Waits until no task is unfinished or `deadline` passes (`false`); may return early.
    pub fn wait_unfinished(&self, deadline: Option<Instant>) -> bool {
        let header = self.header();
        wait_on(
            &header.unfinished_seq,
            &header.unfinished_waiting,
            || header.unfinished.load(Ordering::Acquire) == 0,
            deadline,
            SPIN,
        )
    }

    /// Wakes those waiting for unfinished tasks, if one is counted.
    pub(super) fn wake_joiners(&self) {
        let header = self.header();
        header.unfinished_seq.fetch_add(1, Ordering::SeqCst);
        if header.unfinished_waiting.load(Ordering::SeqCst) != 0 {
            let _ = futex::wake(&header.unfinished_seq, futex::Flags::empty(), u32::MAX);
        }
    }
}

/// The waiting protocol of every side: spin on `ready` (`spin` pauses), then count in
/// `waiting`, re-check, and sleep on `seq` (any change of `seq` since the count wakes it).
/// Returns `false` only when `deadline` passed.
fn wait_on(
    seq: &AtomicU32,
    waiting: &AtomicU32,
    ready: impl Fn() -> bool,
    deadline: Option<Instant>,
    spin: u32,
) -> bool {
    for _ in 0..spin {
        if ready() {
            return true;
        }
        std::hint::spin_loop();
    }
    let timeout = match deadline {
        Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return ready(),
        },
        None => None,
    };
    waiting.fetch_add(1, Ordering::SeqCst);
    let observed = seq.load(Ordering::SeqCst);
    if ready() {
        waiting.fetch_sub(1, Ordering::SeqCst);
        return true;
    }
    let spec = timeout.map(|left| futex::Timespec {
        tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: i64::from(left.subsec_nanos()),
    });
    let _ = futex::wait(seq, futex::Flags::empty(), observed, spec.as_ref());
    waiting.fetch_sub(1, Ordering::SeqCst);
    match deadline {
        Some(deadline) => ready() || Instant::now() < deadline,
        None => true,
    }
}
