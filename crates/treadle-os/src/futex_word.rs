//! Waiting for a 32-bit word in shared memory to change, and waking those who wait: the futex
//! calls, shared between processes (no `FUTEX_PRIVATE_FLAG`), for words whose protocol lives
//! elsewhere (`treadle.multiprocessing.Barrier`'s generation).

use rustix::thread::futex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// The most pauses a waiter watches the word for before it sleeps (about 12 us here): the other
/// side of a hand-off between processes is often that close, and a futex sleep and wake-up cost
/// more.
pub const SPIN: u32 = 1024;
/// The fewest.
const MIN_SPIN: u32 = 16;
/// About how long [`SPIN`] pauses last here.
const SPIN_TIME: std::time::Duration = std::time::Duration::from_micros(12);

/// A waiter's spin, adapted as the ring's reader's is: a spin that saw the change doubles the
/// next, one in vain halves it, so that on a busy machine, where the other side is often not
/// running while the waiter spins, the waiter sleeps at once and gives it the core.
#[derive(Debug)]
pub struct Spin(AtomicU32);

impl Default for Spin {
    fn default() -> Self {
        Spin(AtomicU32::new(SPIN))
    }
}

impl Spin {
    /// A spin of at most `most` pauses, adapted from there.
    pub fn up_to(most: u32) -> Spin {
        Spin(AtomicU32::new(most))
    }

    /// Doubles the spin (up to `most`).
    pub fn grow(&self, most: u32) {
        let pauses = self.0.load(Ordering::Relaxed);
        self.0.store((pauses * 2).min(most), Ordering::Relaxed);
    }

    /// Watches for `ready` for the spin's pauses, then adapts it (up to `most`); whether it
    /// came.
    pub fn until(&self, most: u32, mut ready: impl FnMut() -> bool) -> bool {
        let pauses = self.0.load(Ordering::Relaxed);
        for _ in 0..pauses {
            if ready() {
                self.grow(most);
                return true;
            }
            std::hint::spin_loop();
        }
        self.0
            .store((pauses / 2).max(MIN_SPIN.min(most)), Ordering::Relaxed);
        false
    }
}

/// Sleeps while `word` holds `expected`, until `deadline` (`None`: no limit), after watching it
/// for `spin`'s pauses; whether the word changed (`false`: the deadline passed with it
/// unchanged). May wake early and look again.
pub fn wait_while(word: &AtomicU32, expected: u32, deadline: Option<Instant>, spin: &Spin) -> bool {
    if spin.until(SPIN, || word.load(Ordering::Relaxed) != expected) {
        return true;
    }
    let slept = Instant::now();
    loop {
        if word.load(Ordering::SeqCst) != expected {
            // A change that came within a full spin's time would have been seen spinning: a
            // spin that halved down on a busy machine grows back once the partner runs again.
            if slept.elapsed() < SPIN_TIME {
                spin.grow(SPIN);
            }
            return true;
        }
        let timeout = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(futex::Timespec {
                    tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                    tv_nsec: i64::from(left.subsec_nanos()),
                }),
                _ => return false,
            },
            None => None,
        };
        let _ = futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref());
    }
}

/// Wakes every thread, in any process, sleeping on `word`.
pub fn wake_all(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), u32::MAX);
}
