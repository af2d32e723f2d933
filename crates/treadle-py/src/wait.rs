//! Blocking without holding the interpreter, and without deafness to Ctrl-C.
//!
//! Every blocking wait in treadle goes through [`block_on`]: it detaches from the interpreter (so
//! other Python threads run) and parks in the core. Python runs signal handlers only in the main
//! thread, so there the wait is cut into slices of [`SIGNAL_POLL`]: between slices the thread
//! re-attaches and runs pending handlers, and a `KeyboardInterrupt` (or any exception a handler
//! raises) ends the wait, as it ends `threading.Lock.acquire`. Other threads park in one piece.
//! Core waits are built to be resumed, so slicing changes nothing but latency to a signal.

use crate::timeout::Wait;
use pyo3::prelude::*;
use std::time::{Duration, Instant};

/// How long the main thread parks before it looks for pending signals.
pub(crate) const SIGNAL_POLL: Duration = Duration::from_millis(20);

/// Whether the calling thread is the process's main thread, the one Python runs signal handlers in.
/// (After `fork()`, the forking thread is the child's main thread, and this still holds.)
fn is_main_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and getpid have no preconditions and cannot fail.
        unsafe { libc::gettid() == libc::getpid() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// Calls `attempt(deadline)` with the interpreter released until it yields a value or `wait`'s
/// deadline passes (`Ok(None)`). `attempt` must return `None` only when the deadline it was given
/// has passed, and must be safe to call again after that.
pub(crate) fn block_on<T, F>(py: Python<'_>, wait: Wait, mut attempt: F) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Option<Instant>) -> Option<T> + Send,
{
    let deadline = match wait {
        Wait::Never => return Ok(attempt(Some(Instant::now()))),
        Wait::Until(deadline) => deadline,
    };
    if !is_main_thread() {
        return Ok(py.detach(|| attempt(deadline)));
    }
    loop {
        let slice_end = Instant::now() + SIGNAL_POLL;
        let slice = match deadline {
            Some(deadline) if deadline <= slice_end => Some(deadline),
            _ => Some(slice_end),
        };
        if let Some(value) = py.detach(|| attempt(slice)) {
            return Ok(Some(value));
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}

/// [`block_on`] for the common case of an attempt that succeeds or not.
pub(crate) fn block_until<F>(py: Python<'_>, wait: Wait, mut attempt: F) -> PyResult<bool>
where
    F: FnMut(Option<Instant>) -> bool + Send,
{
    Ok(block_on(py, wait, |deadline| attempt(deadline).then_some(()))?.is_some())
}

/// Waits with no deadline and no interruption: for re-taking a lock that a condition wait gave
/// up, which must happen before any exception can be raised to the caller.
pub(crate) fn block_uninterrupted<F>(py: Python<'_>, attempt: F) -> bool
where
    F: FnOnce() -> bool + Send,
{
    py.detach(attempt)
}
