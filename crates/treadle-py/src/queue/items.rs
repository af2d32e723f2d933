//! Putting into and taking from a core queue, waiting as a call allows: shared by `Queue`
//! (when it runs in the core) and `SimpleQueue`. The first try is made attached and without a
//! closure; only a call that must wait goes to the cold path.

use super::errors::{shut_down, Empty, Full};
use super::wait::{park, QueueRef};
use crate::runtime::timeout::Wait;
use pyo3::prelude::*;
use treadle_core::{GetError, PutError, Queue, QueueWait};

/// Puts `item` into `core`, waiting as `wait` allows.
#[inline]
pub(crate) fn put_item(
    py: Python<'_>,
    object: &Bound<'_, PyAny>,
    core: &Queue<Py<PyAny>>,
    item: Py<PyAny>,
    wait: Wait,
) -> PyResult<()> {
    // The first try, attached and without a closure: the common case of a queue with room.
    let item = match core.try_put(item) {
        Ok(()) => return Ok(()),
        Err(PutError::ShutDown(_item)) => return Err(shut_down(py)),
        Err(PutError::Full(item)) if wait != Wait::Never => item,
        Err(PutError::Full(_item)) => return Err(Full::new_err(())),
    };
    put_item_blocking(py, object, core, item, wait)
}

#[cold]
#[inline(never)]
fn put_item_blocking(
    py: Python<'_>,
    object: &Bound<'_, PyAny>,
    core: &Queue<Py<PyAny>>,
    item: Py<PyAny>,
    wait: Wait,
) -> PyResult<()> {
    let mut slot = Some(item);
    let put = park(
        py,
        QueueRef {
            target: core,
            object,
        },
        QueueWait::NotFull,
        wait,
        |deadline| {
            let item = slot.take()?;
            match core.put_until(item, deadline) {
                Ok(()) => Some(Ok(())),
                Err(PutError::ShutDown(item)) => {
                    slot = Some(item);
                    Some(Err(()))
                }
                Err(PutError::Full(item)) => {
                    slot = Some(item);
                    None
                }
            }
        },
    )?;
    // An item that was not put is dropped here, with the interpreter attached.
    match put {
        Some(Ok(())) => Ok(()),
        Some(Err(())) => Err(shut_down(py)),
        None => Err(Full::new_err(())),
    }
}

/// Takes an item from `core`, waiting as `wait` allows.
#[inline]
pub(crate) fn get_item(
    py: Python<'_>,
    object: &Bound<'_, PyAny>,
    core: &Queue<Py<PyAny>>,
    wait: Wait,
) -> PyResult<Py<PyAny>> {
    // The first try, attached and without a closure: the common case of a queue with items.
    match core.try_get() {
        Ok(item) => Ok(item),
        Err(GetError::ShutDown) => Err(shut_down(py)),
        Err(GetError::Empty) if wait != Wait::Never => get_item_blocking(py, object, core, wait),
        Err(GetError::Empty) => Err(Empty::new_err(())),
    }
}

#[cold]
#[inline(never)]
fn get_item_blocking(
    py: Python<'_>,
    object: &Bound<'_, PyAny>,
    core: &Queue<Py<PyAny>>,
    wait: Wait,
) -> PyResult<Py<PyAny>> {
    let got = park(
        py,
        QueueRef {
            target: core,
            object,
        },
        QueueWait::NotEmpty,
        wait,
        |deadline| match core.get_until(deadline) {
            Err(GetError::Empty) => None,
            other => Some(other),
        },
    )?;
    match got {
        Some(Ok(item)) => Ok(item),
        Some(Err(_)) => Err(shut_down(py)),
        None => Err(Empty::new_err(())),
    }
}
