//! A mutex in shared memory that survives its owner's death: glibc's robust, process-shared
//! `pthread_mutex_t`.
//!
//! The kernel walks a dying thread's robust list (also on `SIGKILL`) and marks every robust
//! mutex the thread held as *owner died*, waking one waiter. The next locker is told so
//! ([`Locked::OwnerDied`]); it must bring what the mutex guards back to a consistent state and
//! call [`RobustMutex::mark_consistent`] before unlocking, or the mutex is unusable for good.
//! The owner unlocks; these mutexes are held only for short, bounded sections (a copy into or
//! out of a ring), never across a wait for another process.
//!
//! rustix has no pthread calls, so this is the crate's one use of `libc`: the robust list that
//! lets the kernel mark a dead owner's mutexes is glibc's, registered for every thread.

use std::cell::UnsafeCell;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A robust, process-shared mutex, placed in shared memory.
#[repr(C)]
pub struct RobustMutex {
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

/// How a lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    /// Normally.
    Clean,
    /// From a thread that died holding it: what it guards may be half-changed.
    OwnerDied,
}

impl RobustMutex {
    /// Initializes the mutex in place.
    ///
    /// # Safety
    /// `this` points at writable memory the size of a `RobustMutex` that no thread of any
    /// process uses yet.
    pub unsafe fn init(this: *mut RobustMutex) -> io::Result<()> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is initialized by pthread_mutexattr_init before any other use and
        // destroyed at the end; `this` is valid and unused by the caller's contract.
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let result = check(libc::pthread_mutexattr_setpshared(
                attr.as_mut_ptr(),
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|()| {
                check(libc::pthread_mutexattr_setrobust(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| check(libc::pthread_mutex_init((*this).raw.get(), attr.as_ptr())));
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            result
        }
    }

    /// Takes the mutex, waiting until `deadline` at the most (`None`: no limit). `Ok(None)`
    /// when the deadline passed first.
    pub fn lock(&self, deadline: Option<Instant>) -> io::Result<Option<Locked>> {
        match self.try_lock()? {
            Some(locked) => Ok(Some(locked)),
            None => self.lock_slow(deadline),
        }
    }

    /// Takes the mutex if it is free; `Ok(None)` when another thread holds it.
    #[inline]
    pub fn try_lock(&self) -> io::Result<Option<Locked>> {
        // SAFETY: the mutex was initialized by `init` (the region's contract) and lives as long
        // as `self`.
        let code = unsafe { libc::pthread_mutex_trylock(self.raw.get()) };
        match code {
            0 => Ok(Some(Locked::Clean)),
            libc::EOWNERDEAD => Ok(Some(Locked::OwnerDied)),
            libc::EBUSY => Ok(None),
            other => Err(io::Error::from_raw_os_error(other)),
        }
    }

    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> io::Result<Option<Locked>> {
        loop {
            // timedlock counts on CLOCK_REALTIME: wait in short slices so that a clock step
            // cannot stretch the wait, and check the monotonic deadline between them.
            let slice = Duration::from_millis(50);
            let left = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(slice),
                    _ => return Ok(None),
                },
                None => slice,
            };
            let until = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                + left;
            let spec = libc::timespec {
                tv_sec: until.as_secs() as libc::time_t,
                tv_nsec: until.subsec_nanos() as libc::c_long,
            };
            // SAFETY: as in `lock`; `spec` outlives the call.
            let code = unsafe { libc::pthread_mutex_timedlock(self.raw.get(), &spec) };
            match code {
                0 => return Ok(Some(Locked::Clean)),
                libc::EOWNERDEAD => return Ok(Some(Locked::OwnerDied)),
                libc::ETIMEDOUT | libc::EINTR => continue,
                other => return Err(io::Error::from_raw_os_error(other)),
            }
        }
    }

    /// Says that what the mutex guards is consistent again after [`Locked::OwnerDied`]; the
    /// calling thread must hold the mutex.
    pub fn mark_consistent(&self) {
        // SAFETY: called by the thread that holds the mutex after EOWNERDEAD.
        unsafe {
            libc::pthread_mutex_consistent(self.raw.get());
        }
    }

    /// Releases the mutex; the calling thread must hold it.
    pub fn unlock(&self) {
        // SAFETY: as in `lock`; the caller holds the mutex.
        unsafe {
            libc::pthread_mutex_unlock(self.raw.get());
        }
    }
}

fn check(code: libc::c_int) -> io::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code))
    }
}
