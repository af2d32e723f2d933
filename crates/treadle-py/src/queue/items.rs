//! Putting into and taking from a core queue, waiting as a call allows: shared by `Queue`
//! (when it runs in the core) and `SimpleQueue`. The first try is made attached and without a
//! closure; only a call that must wait goes to the cold path.
//!
//! A `Queue` may be diverted to its monitor while a call is here (`py_queue.rs`): the call then
//! returns [`Moved`] (with the item, for a put), for the caller to make it on the monitor. A
//! `SimpleQueue` is never diverted.

use super::errors::{shut_down, Empty, Full};
use super::wait::{park, QueueRef};
use crate::runtime::timeout::Wait;
use pyo3::prelude::*;
use treadle_core::{GetError, PutError, Queue, QueueWait};

/// A call the core queue sent back: it was diverted to the queue's monitor. A put's item comes
/// back with it.
pub(crate) struct Moved<T>(pub(crate) T);

/// Puts `item` into `core`, waiting as `wait` allows.
#[inline]
pub(crate) fn put_item(
    py: Python<'_>,
    object: &Bound<'_, PyAny>,
    core: &Queue<Py<PyAny>>,
    item: Py<PyAny>,
    wait: Wait,
) -> PyResult<Result<(), Moved<Py<PyAny>>>> {
    // The first try, attached and without a closure: the common case of a queue with room.
    let item = match core.try_put(item) {
        Ok(()) => return Ok(Ok(())),
        Err(PutError::ShutDown(_item)) => return Err(shut_down(py)),
        Err(PutError::Diverted(item)) => return Ok(Err(Moved(item))),
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
) -> PyResult<Result<(), Moved<Py<PyAny>>>> {
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
                    Some(Err(PutError::ShutDown(())))
                }
                Err(PutError::Diverted(item)) => {
                    slot = Some(item);
                    Some(Err(PutError::Diverted(())))
                }
                Err(PutError::Full(item)) => {
                    slot = Some(item);
                    None
                }
            }
        },
    )?;
    // An item that was not put is dropped here, with the interpreter attached.
    match (put, slot) {
        (Some(Ok(())), _) => Ok(Ok(())),
        (Some(Err(PutError::Diverted(()))), Some(item)) => Ok(Err(Moved(item))),
        (Some(Err(_)), _) => Err(shut_down(py)),
        (None, _) => Err(Full::new_err(())),
    }
}

/// Takes an item from `core`, waiting as `wait` allows.
#[inline]
pub(crate) fn get_item(
    py: Python<'_>,
    object: &Bound<'_, PyAny>,
    core: &Queue<Py<PyAny>>,
    wait: Wait,
) -> PyResult<Result<Py<PyAny>, Moved<()>>> {
    // The first try, attached and without a closure: the common case of a queue with items.
    match core.try_get() {
        Ok(item) => Ok(Ok(item)),
        Err(GetError::ShutDown) => Err(shut_down(py)),
        Err(GetError::Diverted) => Ok(Err(Moved(()))),
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
) -> PyResult<Result<Py<PyAny>, Moved<()>>> {
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
        Some(Ok(item)) => Ok(Ok(item)),
        Some(Err(GetError::Diverted)) => Ok(Err(Moved(()))),
        Some(Err(_)) => Err(shut_down(py)),
        None => Err(Empty::new_err(())),
    }
}
