//! Waiting for a 32-bit word in shared memory to change, and waking those who wait: the futex
//! calls, shared between processes (no `FUTEX_PRIVATE_FLAG`), for words whose protocol lives
//! elsewhere (`treadle.multiprocessing.Barrier`'s generation).

use rustix::thread::futex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Pauses a waiter watches the word for before it sleeps (about 12 us here): the other side of
/// a hand-off between processes is usually that close, and a futex sleep and wake-up cost more.
pub const SPIN: u32 = 1024;

/// Sleeps while `word` holds `expected`, until `deadline` (`None`: no limit); whether the word
/// changed (`false`: the deadline passed with it unchanged). May wake early and look again.
pub fn wait_while(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    for _ in 0..SPIN {
        if word.load(Ordering::Relaxed) != expected {
            return true;
        }
        std::hint::spin_loop();
    }
    loop {
        if word.load(Ordering::SeqCst) != expected {
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
