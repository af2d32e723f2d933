//! `treadle.SimpleQueue`: an unbounded FIFO queue, as `queue.SimpleQueue`.
//!
//! The core's [`Queue`] with no bound; it never uses task accounting or shut-down. `put` never
//! blocks, so it is safe to call from `__del__` and signal handlers, like the C `SimpleQueue`
//! (no Python code runs while the core mutex is held, so a re-entrant put cannot deadlock).

use super::alias::generic_alias;
use super::items::{get_item, put_item, Moved};
use super::wait::{queue_wait, Block};
use crate::runtime::errors::cannot_pickle;
use crate::runtime::timeout::Wait;
use pyo3::exceptions::PySystemError;
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyType};
use treadle_core::{Order, Queue};

/// An unbounded FIFO queue, as `queue.SimpleQueue`.
#[pyclass(subclass, frozen, weakref, name = "SimpleQueue", module = "treadle")]
pub(crate) struct PySimpleQueue {
    core: Queue<Py<PyAny>>,
}

impl PySimpleQueue {
    /// The core queue, for the direct `put` and `get` (`queue/fast.rs`).
    #[inline]
    pub(crate) fn fast_core(&self, _py: Python<'_>) -> Option<&Queue<Py<PyAny>>> {
        Some(&self.core)
    }
}

/// The outcome of a core-queue call: a `SimpleQueue` is never diverted to a monitor.
fn never_moved<T, M>(outcome: PyResult<Result<T, Moved<M>>>) -> PyResult<T> {
    outcome?.map_err(|_| PySystemError::new_err("treadle: a SimpleQueue has no monitor"))
}

#[pymethods]
impl PySimpleQueue {
    #[new]
    fn new() -> Self {
        PySimpleQueue {
            core: Queue::new(Order::Fifo, 0),
        }
    }

    /// Put `item` into the queue; never blocks (`block` and `timeout` are accepted and ignored,
    /// as in `queue.SimpleQueue`).
    #[pyo3(
        signature = (item, block=Block(true), timeout=None),
        text_signature = "($self, item, block=True, timeout=None)"
    )]
    fn put(
        slf: &Bound<'_, Self>,
        item: Py<PyAny>,
        block: Block,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let _ = (block, timeout);
        never_moved(put_item(
            slf.py(),
            slf.as_any(),
            &slf.get().core,
            item,
            Wait::Never,
        ))
    }

    /// Put `item` into the queue; never blocks.
    fn put_nowait(slf: &Bound<'_, Self>, item: Py<PyAny>) -> PyResult<()> {
        PySimpleQueue::put(slf, item, Block(false), None)
    }

    /// Remove and return an item, waiting for one if `block` (at most `timeout` seconds, then
    /// `queue.Empty`).
    #[pyo3(
        signature = (block=Block(true), timeout=None),
        text_signature = "($self, block=True, timeout=None)"
    )]
    fn get(
        slf: &Bound<'_, Self>,
        block: Block,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let wait = queue_wait(block, timeout)?;
        never_moved(get_item(slf.py(), slf.as_any(), &slf.get().core, wait))
    }

    /// Remove and return an item without waiting; `queue.Empty` if there is none.
    fn get_nowait(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        PySimpleQueue::get(slf, Block(false), None)
    }

    /// Whether the queue is empty (approximate).
    fn empty(&self) -> bool {
        self.core.is_empty()
    }

    /// The number of items in the queue (approximate).
    fn qsize(&self) -> usize {
        self.core.len()
    }

    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        generic_alias(cls, item)
    }

    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Err(cannot_pickle(slf.as_any()))
    }
}
