//! Timeouts as `threading` reads them: seconds as an int or a float, `-1` (for locks) or `None`
//! (for the rest) meaning forever, and the same errors for values out of range.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyInt};
use std::time::{Duration, Instant};

static TIMEOUT_MAX: PyOnceLock<f64> = PyOnceLock::new();

/// Reads `_thread.TIMEOUT_MAX` once, so that treadle accepts exactly the timeouts `threading` does.
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    let max: f64 = py.import("_thread")?.getattr("TIMEOUT_MAX")?.extract()?;
    let _ = TIMEOUT_MAX.set(py, max);
    Ok(())
}

pub(crate) fn timeout_max() -> f64 {
    Python::attach(|py| TIMEOUT_MAX.get(py).copied().unwrap_or(f64::MAX))
}

/// Seconds from an int or a float, or `TypeError` as `_PyTime_FromSecondsObject` gives it.
pub(crate) fn seconds(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    let value = if let Ok(float) = obj.cast::<PyFloat>() {
        float.value()
    } else if obj.is_instance_of::<PyInt>() {
        obj.extract::<f64>()
            .map_err(|_| PyOverflowError::new_err("timeout value is too large"))?
    } else {
        return Err(PyTypeError::new_err(format!(
            "'{}' object cannot be interpreted as an integer",
            obj.get_type().name()?
        )));
    };
    if value.is_nan() {
        return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
    }
    Ok(value)
}

/// `OverflowError` for a timeout beyond `_thread.TIMEOUT_MAX`, as `threading` raises it.
pub(crate) fn check_max(py: Python<'_>, value: f64) -> PyResult<()> {
    if value > TIMEOUT_MAX.get(py).copied().unwrap_or(f64::MAX) {
        return Err(PyOverflowError::new_err("timeout value is too large"));
    }
    Ok(())
}

/// The instant `seconds` from now; `None` (forever) if that is beyond what `Instant` can hold.
pub(crate) fn deadline_after(seconds: f64) -> Option<Instant> {
    let seconds = seconds.max(0.0);
    Duration::try_from_secs_f64(seconds)
        .ok()
        .and_then(|duration| Instant::now().checked_add(duration))
}

/// A `block` argument: any object, read by its truth value as `queue.Queue` reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block(pub(crate) bool);

impl FromPyObject<'_, '_> for Block {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        obj.is_truthy().map(Block)
    }
}

/// A `timeout` argument that may be `None` (for ever) or seconds, read when given: the
/// default of a `timeout=0.0` parameter can then be told from an explicit `None`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seconds(pub(crate) Option<f64>);

impl FromPyObject<'_, '_> for Seconds {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        if obj.is_none() {
            return Ok(Seconds(None));
        }
        seconds(&obj).map(|value| Seconds(Some(value)))
    }
}

/// How long a blocking call may wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Wait {
    /// Do not wait: try once.
    Never,
    /// Wait until this instant, or forever if `None`.
    Until(Option<Instant>),
}

/// `Lock.acquire(blocking=True, timeout=-1)`'s arguments, with `_thread.lock`'s checks.
pub(crate) fn lock_wait(
    py: Python<'_>,
    blocking: Option<&Bound<'_, PyAny>>,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<Wait> {
    let blocking = match blocking {
        None => true,
        Some(obj) => obj.is_truthy()?,
    };
    let timeout = match timeout {
        None => -1.0,
        Some(obj) => seconds(obj)?,
    };
    if !blocking {
        if timeout != -1.0 {
            return Err(PyValueError::new_err(
                "can't specify a timeout for a non-blocking call",
            ));
        }
        return Ok(Wait::Never);
    }
    if timeout == -1.0 {
        return Ok(Wait::Until(None));
    }
    if timeout < 0.0 {
        return Err(PyValueError::new_err(
            "timeout value must be a non-negative number",
        ));
    }
    check_max(py, timeout)?;
    Ok(Wait::Until(deadline_after(timeout)))
}

/// A `timeout=None` argument (Event, Condition, Barrier, Semaphore): `None` waits forever, a
/// value of zero or less does not wait.
pub(crate) fn optional_wait(py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Wait> {
    match timeout {
        None => Ok(Wait::Until(None)),
        Some(obj) if obj.is_none() => Ok(Wait::Until(None)),
        Some(obj) => seconds_wait(py, seconds(obj)?),
    }
}

/// A timeout in seconds, as above, already read.
pub(crate) fn seconds_wait(py: Python<'_>, seconds: f64) -> PyResult<Wait> {
    if seconds <= 0.0 {
        return Ok(Wait::Never);
    }
    check_max(py, seconds)?;
    Ok(Wait::Until(deadline_after(seconds)))
}
