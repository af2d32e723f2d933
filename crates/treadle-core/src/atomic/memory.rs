//! Operations on an integer in memory the caller provides (a `ctypes` value in shared
//! memory, for `treadle.multiprocessing.Value`): load, store, add and compare-and-exchange, as
//! the processor's atomic instructions do them, so that a counter shared by processes needs no
//! lock.
//!
//! Arithmetic wraps at the integer's width, as C's (and `ctypes`') does. Values cross the API as
//! `i128`, wide enough for every width signed or not; a value is truncated to the width on the
//! way in and read back with the type's sign on the way out. Every operation is sequentially
//! consistent.

use std::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
    Ordering::SeqCst,
};

/// An integer's machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntType {
    /// `int8_t`.
    I8,
    /// `uint8_t`.
    U8,
    /// `int16_t`.
    I16,
    /// `uint16_t`.
    U16,
    /// `int32_t`.
    I32,
    /// `uint32_t`.
    U32,
    /// `int64_t`.
    I64,
    /// `uint64_t`.
    U64,
}

macro_rules! on_type {
    ($ty:expr, $ptr:expr, |$atomic:ident, $int:ident| $body:expr) => {
        match $ty {
            IntType::I8 => on_type!(@one AtomicI8, i8, $ptr, $atomic, $int, $body),
            IntType::U8 => on_type!(@one AtomicU8, u8, $ptr, $atomic, $int, $body),
            IntType::I16 => on_type!(@one AtomicI16, i16, $ptr, $atomic, $int, $body),
            IntType::U16 => on_type!(@one AtomicU16, u16, $ptr, $atomic, $int, $body),
            IntType::I32 => on_type!(@one AtomicI32, i32, $ptr, $atomic, $int, $body),
            IntType::U32 => on_type!(@one AtomicU32, u32, $ptr, $atomic, $int, $body),
            IntType::I64 => on_type!(@one AtomicI64, i64, $ptr, $atomic, $int, $body),
            IntType::U64 => on_type!(@one AtomicU64, u64, $ptr, $atomic, $int, $body),
        }
    };
    (@one $atomic_ty:ident, $int_ty:ident, $ptr:expr, $atomic:ident, $int:ident, $body:expr) => {{
        // SAFETY: the caller of the public function guarantees what `from_ptr` asks: `ptr` is
        // valid, aligned for this width, and only accessed atomically while the call lasts.
        let $atomic = unsafe { $atomic_ty::from_ptr($ptr.cast()) };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let $int = |value: i128| value as $int_ty;
        $body
    }};
}

impl IntType {
    /// The integer's size in bytes.
    pub fn size(self) -> usize {
        match self {
            IntType::I8 | IntType::U8 => 1,
            IntType::I16 | IntType::U16 => 2,
            IntType::I32 | IntType::U32 => 4,
            IntType::I64 | IntType::U64 => 8,
        }
    }

    /// `value` truncated to the width and read back with the type's sign (C's conversion).
    pub fn wrap(self, value: i128) -> i128 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        match self {
            IntType::I8 => i128::from(value as i8),
            IntType::U8 => i128::from(value as u8),
            IntType::I16 => i128::from(value as i16),
            IntType::U16 => i128::from(value as u16),
            IntType::I32 => i128::from(value as i32),
            IntType::U32 => i128::from(value as u32),
            IntType::I64 => i128::from(value as i64),
            IntType::U64 => i128::from(value as u64),
        }
    }

    /// The integer at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` points to a live integer of this type, aligned to its size, that every other
    /// access reads or writes atomically (or not at all) for the duration of the call.
    pub unsafe fn load(self, ptr: *mut u8) -> i128 {
        on_type!(self, ptr, |atomic, _int| i128::from(atomic.load(SeqCst)))
    }

    /// Stores `value` (truncated to the width) at `ptr`.
    ///
    /// # Safety
    ///
    /// As [`IntType::load`].
    pub unsafe fn store(self, ptr: *mut u8, value: i128) {
        on_type!(self, ptr, |atomic, int| atomic.store(int(value), SeqCst))
    }

    /// Adds `delta` (wrapping) to the integer at `ptr`; the value before.
    ///
    /// # Safety
    ///
    /// As [`IntType::load`].
    pub unsafe fn fetch_add(self, ptr: *mut u8, delta: i128) -> i128 {
        on_type!(self, ptr, |atomic, int| i128::from(
            atomic.fetch_add(int(delta), SeqCst)
        ))
    }

    /// Stores `new` at `ptr` if the integer there is `current` (both truncated to the width):
    /// `Ok` with the value before if it was, `Err` with the value found otherwise.
    ///
    /// # Safety
    ///
    /// As [`IntType::load`].
    pub unsafe fn compare_exchange(
        self,
        ptr: *mut u8,
        current: i128,
        new: i128,
    ) -> Result<i128, i128> {
        on_type!(self, ptr, |atomic, int| atomic
            .compare_exchange(int(current), int(new), SeqCst, SeqCst)
            .map(i128::from)
            .map_err(i128::from))
    }
}

#[cfg(test)]
mod tests {
    use crate::atomic::memory::IntType;

    #[test]
    fn add_wraps_at_the_width_and_keeps_the_sign() {
        let mut cell: i32 = i32::MAX;
        let ptr = std::ptr::from_mut(&mut cell).cast::<u8>();
        // SAFETY: `cell` lives, is aligned and is only touched through these calls.
        unsafe {
            assert_eq!(IntType::I32.fetch_add(ptr, 1), i128::from(i32::MAX));
            assert_eq!(IntType::I32.load(ptr), i128::from(i32::MIN));
            IntType::I32.store(ptr, -5);
            assert_eq!(IntType::I32.compare_exchange(ptr, -5, 7), Ok(-5));
            assert_eq!(IntType::I32.compare_exchange(ptr, -5, 9), Err(7));
        }
        assert_eq!(cell, 7);
    }

    #[test]
    fn unsigned_values_read_back_unsigned() {
        let mut cell: u64 = 0;
        let ptr = std::ptr::from_mut(&mut cell).cast::<u8>();
        // SAFETY: as above.
        unsafe {
            assert_eq!(IntType::U64.fetch_add(ptr, -1), 0);
            assert_eq!(IntType::U64.load(ptr), i128::from(u64::MAX));
        }
    }
}
