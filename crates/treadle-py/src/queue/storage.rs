//! The storage steps of a queue run as a monitor (`_qsize`, `_put`, `_get`): the base class's
//! own (a deque in the core queue, or `PriorityQueue`'s heap), or the subclass's Python methods
//! when it overrides them. They run with the monitor's lock held, never under a core mutex.

use super::heap;
use super::py_queue::{Kind, PyQueue};
use pyo3::exceptions::PyIndexError;
use pyo3::intern;
use pyo3::prelude::*;
use std::sync::atomic::Ordering;

impl PyQueue {
    // The storage steps, as the base class implements them.

    pub(super) fn take_heap(&self) -> Vec<Py<PyAny>> {
        std::mem::take(&mut *self.heap.lock())
    }

    pub(super) fn restore_heap(&self, heap: Vec<Py<PyAny>>) {
        *self.heap.lock() = heap;
    }

    pub(super) fn raw_len(&self) -> usize {
        match self.kind {
            Kind::Priority => self.heap.lock().len(),
            _ => self.core.len(),
        }
    }

    pub(super) fn raw_put(&self, py: Python<'_>, item: Py<PyAny>) -> PyResult<()> {
        if self.kind != Kind::Priority {
            self.core.push_raw(item);
            return Ok(());
        }
        let mut heap = self.take_heap();
        let pushed = heap::push(py, &mut heap, item);
        self.restore_heap(heap);
        pushed.map_err(|(error, _item)| error)
    }

    pub(super) fn raw_get(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.kind != Kind::Priority {
            return self
                .core
                .pop_raw()
                .ok_or_else(|| PyIndexError::new_err("pop from an empty deque"));
        }
        let mut heap = self.take_heap();
        let popped = heap::pop(py, &mut heap);
        self.restore_heap(heap);
        popped?.ok_or_else(|| PyIndexError::new_err("index out of range"))
    }

    // The storage steps as the monitor calls them: the class's own, if it overrides them.

    pub(super) fn storage_len(&self, slf: &Bound<'_, PyQueue>) -> PyResult<usize> {
        if !self.overridden.load(Ordering::Acquire) {
            return Ok(self.raw_len());
        }
        let len: isize = slf.call_method0(intern!(slf.py(), "_qsize"))?.extract()?;
        Ok(usize::try_from(len).unwrap_or(0))
    }

    pub(super) fn storage_put(&self, slf: &Bound<'_, PyQueue>, item: Py<PyAny>) -> PyResult<()> {
        if !self.overridden.load(Ordering::Acquire) {
            return self.raw_put(slf.py(), item);
        }
        slf.call_method1(intern!(slf.py(), "_put"), (item,))?;
        Ok(())
    }

    pub(super) fn storage_get(&self, slf: &Bound<'_, PyQueue>) -> PyResult<Py<PyAny>> {
        if !self.overridden.load(Ordering::Acquire) {
            return self.raw_get(slf.py());
        }
        Ok(slf.call_method0(intern!(slf.py(), "_get"))?.unbind())
    }

    pub(super) fn storage_is_full(&self, slf: &Bound<'_, PyQueue>) -> PyResult<bool> {
        let bound = self.bound();
        Ok(bound > 0 && self.storage_len(slf)? >= bound)
    }
}
