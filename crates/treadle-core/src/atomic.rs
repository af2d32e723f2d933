//! Lock-free integers: `AtomicInt`, the 64-bit signed integer behind `treadle.AtomicInt`, and
//! ([`IntType`], in `memory`) operations on an integer of any C width in memory the caller
//! provides, behind `treadle.multiprocessing.Value`'s atomic operations.
//!
//! `AtomicInt`: every operation is one atomic instruction or a compare-and-swap loop on one `AtomicI64`,
//! sequentially consistent, so threads agree on one order of every operation on it and a
//! counter shared by threads needs no lock. Arithmetic never wraps: an `add` or `sub` whose
//! result does not fit in 64 signed bits leaves the value as it was and returns [`Overflow`],
//! which is why it is a compare-and-swap loop (retried only while other threads change the
//! value under it) and not a `fetch_add`, whose wrapped result other threads could see before
//! it was undone.

use crate::primitive::{AtomicI64, Ordering};

mod memory;

pub use memory::IntType;

/// An arithmetic operation whose result would not fit in an `i64`; the value is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    /// The value the operation found.
    pub current: i64,
}

/// A 64-bit signed integer that threads update without a lock.
///
/// `repr(transparent)` over `AtomicI64` (outside loom's model), so that an aligned `i64` in
/// memory shared between processes can be viewed as one (`AtomicI64::from_ptr`, then a pointer
/// cast) and get the same operations.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct AtomicInt {
    value: AtomicI64,
}

impl AtomicInt {
    /// An integer holding `value`.
    pub fn new(value: i64) -> AtomicInt {
        AtomicInt {
            value: AtomicI64::new(value),
        }
    }

    /// The current value.
    #[inline]
    pub fn load(&self) -> i64 {
        self.value.load(Ordering::SeqCst)
    }

    /// Replaces the value with `value`.
    #[inline]
    pub fn store(&self, value: i64) {
        self.value.store(value, Ordering::SeqCst);
    }

    /// Replaces the value with `value`; returns the value it replaced.
    #[inline]
    pub fn exchange(&self, value: i64) -> i64 {
        self.value.swap(value, Ordering::SeqCst)
    }

    /// Adds `delta`; returns the value before the addition, or [`Overflow`] (and changes nothing)
    /// when the sum does not fit.
    #[inline]
    pub fn fetch_add(&self, delta: i64) -> Result<i64, Overflow> {
        self.fetch_update(|current| current.checked_add(delta))
    }

    /// Subtracts `delta`; returns the value before the subtraction, or [`Overflow`] (and changes
    /// nothing) when the difference does not fit.
    #[inline]
    pub fn fetch_sub(&self, delta: i64) -> Result<i64, Overflow> {
        self.fetch_update(|current| current.checked_sub(delta))
    }

    /// Stores `new` if the value is `expected`. `Ok(expected)` when it did, `Err(current)` with
    /// the value found when it did not (Rust's `compare_exchange` convention).
    #[inline]
    pub fn compare_exchange(&self, expected: i64, new: i64) -> Result<i64, i64> {
        self.value
            .compare_exchange(expected, new, Ordering::SeqCst, Ordering::SeqCst)
    }

    fn fetch_update(&self, step: impl Fn(i64) -> Option<i64>) -> Result<i64, Overflow> {
        let mut current = self.value.load(Ordering::SeqCst);
        loop {
            let Some(next) = step(current) else {
                return Err(Overflow { current });
            };
            match self.value.compare_exchange_weak(
                current,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(previous) => return Ok(previous),
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
