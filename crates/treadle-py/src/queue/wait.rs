//! How a queue call waits: `block` and `timeout` read as `queue.Queue` reads them, and every
//! blocking queue wait parked through the runtime's `block_on`, published in the wait graph.

pub(crate) use crate::runtime::timeout::Block;
use crate::runtime::timeout::{check_max, deadline_after, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_on;
use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use std::time::Instant;
use treadle_core::wait_graph::{WaitKind, WaitTarget};
use treadle_core::QueueWait;

/// What a queue wait is on: for the wait graph, and the Python object for its reports.
#[derive(Clone, Copy)]
pub(crate) struct QueueRef<'a, 'py> {
    pub(crate) target: &'a dyn WaitTarget,
    pub(crate) object: &'a Bound<'py, PyAny>,
}

/// Every blocking queue wait goes through here.
///
/// The wait is published in the wait graph (queue waits have no owner, so they are judged when
/// every live thread is parked), the interpreter released, and the wait sliced for Ctrl-C.
pub(crate) fn park<T, F>(
    py: Python<'_>,
    queue: QueueRef<'_, '_>,
    what: QueueWait,
    wait: Wait,
    attempt: F,
) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Option<Instant>) -> Option<T> + Send,
{
    let track = Track {
        target: queue.target,
        kind: WaitKind::Queue,
        ticket: what.ticket(),
        object: queue.object,
    };
    block_on(py, wait, Some(track), attempt)
}

/// Runs a core operation once without waiting and then, if `wait` allows, parked until it
/// succeeds or the deadline passes. `attempt(blocking, deadline)` returns `None` for "not yet".
pub(crate) fn run<T, F>(
    py: Python<'_>,
    queue: QueueRef<'_, '_>,
    what: QueueWait,
    wait: Wait,
    mut attempt: F,
) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(bool, Option<Instant>) -> Option<T> + Send,
{
    if let Some(done) = attempt(false, None) {
        return Ok(Some(done));
    }
    if wait == Wait::Never {
        return Ok(None);
    }
    park(py, queue, what, wait, |deadline| attempt(true, deadline))
}

/// `block` and `timeout` as `queue.Queue.get` reads them; a timeout too large to wait for is
/// `OverflowError`, as `threading`'s waits raise it.
pub(crate) fn queue_wait(
    Block(block): Block,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<Wait> {
    if !block {
        return Ok(Wait::Never);
    }
    let Some(timeout) = timeout.filter(|timeout| !timeout.is_none()) else {
        return Ok(Wait::Until(None));
    };
    let seconds: f64 = timeout.extract()?;
    if seconds.is_nan() {
        return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
    }
    if seconds < 0.0 {
        return Err(PyValueError::new_err(
            "'timeout' must be a non-negative number",
        ));
    }
    check_max(timeout.py(), seconds)?;
    Ok(Wait::Until(deadline_after(seconds)))
}

/// Runs `call` with `wait`, except that `queue.Queue` raises the `OverflowError` of a timeout
/// too large to wait for only once it has to wait: with such a timeout, `call` runs without
/// waiting, and the error stands if `would_wait` says it had to.
pub(crate) fn unless_it_must_wait<T>(
    py: Python<'_>,
    wait: PyResult<Wait>,
    would_wait: impl FnOnce(&PyErr) -> bool,
    call: impl FnOnce(PyResult<Wait>) -> PyResult<T>,
) -> PyResult<T> {
    match wait {
        Err(too_large) if too_large.is_instance_of::<PyOverflowError>(py) => {
            match call(Ok(Wait::Never)) {
                Err(error) if would_wait(&error) => Err(too_large),
                done => done,
            }
        }
        wait => call(wait),
    }
}
