//! Waiting for a child process to end (`treadle.multiprocessing`'s `Process.join`): on its
//! pidfd, detached, through the runtime's `block_on`, so that Ctrl-C interrupts it and it shows
//! in the wait graph (`dump_waits`). A child may end without any thread of this process doing
//! anything, so the wait is published as one with a deadline (a slice at a time): it is never
//! part of a stall of this process.

use crate::runtime::timeout::{deadline_after, Seconds, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_on;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};
use treadle_core::thread_id::ThreadId;
use treadle_core::wait_graph::{WaitKind, WaitTarget};
use treadle_os::channel::{readable_now, wait_readable};

/// The longest one slice of the wait parks.
const SLICE: Duration = Duration::from_millis(200);

/// A child's end, as the wait graph sees it: ownerless, ready once the pidfd polls readable.
struct ChildEnd<'fd> {
    pidfd: BorrowedFd<'fd>,
}

impl WaitTarget for ChildEnd<'_> {
    fn owner(&self) -> Option<ThreadId> {
        None
    }

    fn is_ready(&self, _ticket: u64) -> bool {
        readable_now(self.pidfd)
    }
}

/// `_wait_for_exit(pidfd, timeout, process)`: waits until the process whose pidfd is `pidfd`
/// ends, at most `timeout` seconds (None: for ever); whether it ended. `process` is the object
/// reports name.
#[pyfunction]
pub(crate) fn _wait_for_exit(
    py: Python<'_>,
    pidfd: i32,
    timeout: Seconds,
    process: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    if pidfd < 0 {
        return Err(PyValueError::new_err("negative file descriptor"));
    }
    // SAFETY: the caller's process object holds the pidfd open for the duration of the call
    // (it is closed only by `Popen.close()`, which needs the interpreter this call holds
    // between slices, and the process object outlives the call).
    let pidfd = unsafe { BorrowedFd::borrow_raw(pidfd) };
    let deadline = match timeout.0 {
        None => None,
        Some(seconds) if seconds <= 0.0 => return Ok(readable_now(pidfd)),
        Some(seconds) => deadline_after(seconds),
    };
    let target = ChildEnd { pidfd };
    loop {
        if readable_now(pidfd) {
            return Ok(true);
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            return Ok(false);
        }
        let slice_end = deadline.map_or(now + SLICE, |deadline| deadline.min(now + SLICE));
        let track = Track {
            target: &target,
            kind: WaitKind::Join,
            ticket: 0,
            object: process,
        };
        let ended = block_on(py, Wait::Until(Some(slice_end)), Some(track), |until| {
            wait_readable(pidfd, until).then_some(())
        })?;
        if ended.is_some() {
            return Ok(true);
        }
    }
}
