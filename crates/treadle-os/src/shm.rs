//! Anonymous shared memory: a `memfd` (never named in `/dev/shm`, mode 0600) mapped shared, in a
//! fixed reservation of address space that the file grows into.
//!
//! A region is made once by one process and reaches the others as a descriptor (inherited, or
//! passed with `SCM_RIGHTS`). Every process maps the whole reservation at once
//! (`MAP_NORESERVE`: address space only); the file's size says how much of it is backed, and
//! only the backed part is ever touched, so no process takes `SIGBUS`. Growing is `ftruncate`
//! by whoever needs more; the pages appear in every mapping at once, so no process remaps.
//!
//! The memory goes back to the system when the last process that maps it or holds its
//! descriptor lets go, killed or not: nothing is left behind in a file system.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{fchmod, fstat, ftruncate, memfd_create, MemfdFlags, Mode};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
use std::io;
use std::ptr::NonNull;

/// A shared mapping of a memfd.
#[derive(Debug)]
pub struct Region {
    fd: OwnedFd,
    base: NonNull<u8>,
    reserved: usize,
}

// SAFETY: the mapping is plain shared memory that lives as long as the region; every access to
// its contents goes through atomics or through the protocols of the types built on it, which
// state their own rules.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// A new region of `initial` bytes (zeroed) in a reservation of up to `reserved` bytes.
    ///
    /// Where the system will not reserve that much address space (strict overcommit counts a
    /// `MAP_NORESERVE` mapping in full), the reservation is halved until it fits, down to
    /// `initial`; [`Region::reserved`] says what was had.
    pub fn create(name: &str, initial: usize, reserved: usize) -> io::Result<Self> {
        let fd = memfd_create(name, MemfdFlags::CLOEXEC)?;
        // A memfd starts as 0777; no other process can open it but through /proc/<pid>/fd of a
        // process that holds it, but say so in its mode too.
        fchmod(&fd, Mode::from_raw_mode(0o600))?;
        ftruncate(&fd, initial as u64)?;
        let mut reserved = reserved.max(initial);
        loop {
            match Self::map_fd(&fd, reserved) {
                Ok(base) => return Ok(Self { fd, base, reserved }),
                Err(error) if error.raw_os_error() == Some(libc::ENOMEM) && reserved > initial => {
                    reserved = (reserved / 2).max(initial);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Maps a region made by [`Region::create`] (in this or another process) from its
    /// descriptor; `reserved` must be the creator's.
    pub fn map(fd: OwnedFd, reserved: usize) -> io::Result<Self> {
        let base = Self::map_fd(&fd, reserved)?;
        Ok(Self { fd, base, reserved })
    }

    fn map_fd(fd: &OwnedFd, reserved: usize) -> io::Result<NonNull<u8>> {
        // SAFETY: a fresh shared mapping at an address the kernel chooses aliases no Rust
        // object; it is unmapped only in `drop`.
        let base = unsafe {
            mmap(
                std::ptr::null_mut(),
                reserved,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::NORESERVE,
                fd,
                0,
            )?
        };
        NonNull::new(base.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
    }

    /// The start of the mapping.
    #[inline]
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The size of the reservation.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// The backed size now.
    pub fn len(&self) -> io::Result<usize> {
        Ok(fstat(&self.fd)?.st_size as usize)
    }

    /// Whether nothing is backed.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Backs the first `len` bytes (never shrinks).
    pub fn grow_to(&self, len: usize) -> io::Result<()> {
        if len > self.reserved {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        if self.len()? < len {
            ftruncate(&self.fd, len as u64)?;
        }
        Ok(())
    }

    /// The descriptor, to pass to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `map_fd` with this address and length, and nothing
        // borrowed from it outlives the region (the types built on it hold it).
        unsafe {
            let _ = munmap(self.base.as_ptr().cast(), self.reserved);
        }
    }
}
