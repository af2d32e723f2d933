//! `treadle._treadle._Ring`: a channel's shared memory, made here or opened from the descriptors
//! another process passed (`multiprocessing.reduction.DupFd`).

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use treadle_os::holders::{start_time, Role};
use treadle_os::ring::Ring;

/// A ring reserves this much address space (not memory) for records not yet taken: a `put` to
/// an unbounded queue waits for room only once this much is outstanding.
pub(crate) const DEFAULT_CAPACITY: usize = 4 << 30;

/// A channel's shared memory.
#[pyclass(frozen, name = "_Ring", module = "treadle")]
pub(crate) struct PyRing {
    pub(crate) core: Arc<Ring>,
}

#[pymethods]
impl PyRing {
    /// A new ring holding at most `maxsize` records (zero or less: no limit) and `capacity`
    /// bytes of them.
    #[new]
    #[pyo3(signature = (maxsize=0, capacity=DEFAULT_CAPACITY))]
    fn new(py: Python<'_>, maxsize: i64, capacity: usize) -> PyResult<Self> {
        let maxsize = u64::try_from(maxsize).unwrap_or(0);
        let core = py
            .detach(|| Ring::create(capacity, maxsize))
            .map_err(|e| PyOSError::new_err(format!("cannot make a channel: {e}")))?;
        Ok(PyRing {
            core: Arc::new(core),
        })
    }

    /// Opens the ring whose descriptors are `fd` and `events`, taking them over (they are
    /// closed with the ring).
    #[staticmethod]
    fn _open(fd: i32, events: i32) -> PyResult<Self> {
        if fd < 0 || events < 0 || fd == events {
            return Err(PyValueError::new_err("bad channel descriptors"));
        }
        // SAFETY: the caller hands the two open descriptors over (documented above) and no
        // longer uses them; each is now owned only here.
        let (fd, events) = unsafe { (OwnedFd::from_raw_fd(fd), OwnedFd::from_raw_fd(events)) };
        let core = Ring::open(fd, events).map_err(|e| PyOSError::new_err(format!("{e}")))?;
        Ok(PyRing {
            core: Arc::new(core),
        })
    }

    /// The memory's and the readiness eventfd's descriptors (owned by the ring: duplicate them
    /// to pass them on).
    fn fds(&self) -> (i32, i32) {
        let (fd, events) = self.core.fds();
        (fd.as_raw_fd(), events.as_raw_fd())
    }

    /// Counts handles for process `pid`, which will open the ring and adopt them.
    fn attach_for(&self, pid: u32, read: bool, write: bool) {
        let start = start_time(pid).unwrap_or(0);
        if read {
            self.core.attach_for(pid, start, Role::Read);
        }
        if write {
            self.core.attach_for(pid, start, Role::Write);
        }
    }

    /// Counts a handle sent to a process that has not opened it yet: until it arrives, no
    /// reader concludes that nobody can write.
    fn send_handle(&self) {
        self.core.send_handle();
    }

    /// A handle counted by `send_handle` was opened, or will never be.
    fn handle_arrived(&self) {
        self.core.handle_arrived();
    }

    /// The most records the ring holds at once; 0 for no limit.
    #[getter]
    fn maxsize(&self) -> u64 {
        self.core.maxsize()
    }

    /// Bytes of records the ring may hold.
    #[getter]
    fn capacity(&self) -> usize {
        self.core.capacity()
    }

    /// Times a writer found that the previous one died in the middle of a record (the
    /// record was dropped, nothing else).
    #[getter]
    fn writers_recovered(&self) -> u64 {
        self.core.writers_recovered()
    }

    /// (read, write) handles live processes other than this one hold; None where that cannot
    /// be told.
    fn held_elsewhere(&self) -> (Option<u32>, Option<u32>) {
        (
            self.core.held_elsewhere(Role::Read),
            self.core.held_elsewhere(Role::Write),
        )
    }

    /// (read, write) handles this process holds.
    fn held_here(&self) -> (u32, u32) {
        (
            self.core.held_here(Role::Read),
            self.core.held_here(Role::Write),
        )
    }

    fn __len__(&self) -> usize {
        self.core.len() as usize
    }
}
