//! `treadle.Queue`: the class, its arguments as `queue.Queue` reads them, and which path each
//! call takes: the core queue when no storage step runs Python code, else the monitor
//! (`monitored.rs`). See the folder's documentation (`mod.rs`).

use super::alias::generic_alias;
use super::errors::{shut_down, Empty, Full};
use super::items::{get_item, put_item};
use super::monitor::Monitor;
use super::wait::{park, queue_wait, run, unless_it_must_wait, Block, QueueRef};
use crate::runtime::errors::cannot_pickle;
use crate::runtime::timeout::Wait;
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicIsize, Ordering};
use treadle_core::{GetError, Order, PutError, Queue, QueueWait};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Fifo,
    Lifo,
    Priority,
}

/// The storage steps a subclass may override, as `queue.Queue` names them.
const HOOKS: [&str; 4] = ["_init", "_qsize", "_put", "_get"];

/// A FIFO queue, as `queue.Queue`; the base of `LifoQueue` and `PriorityQueue`.
#[pyclass(subclass, frozen, weakref, name = "Queue", module = "treadle")]
pub(crate) struct PyQueue {
    pub(super) kind: Kind,
    /// The whole queue in the fast mode; in the monitor mode, the items of a FIFO or LIFO queue.
    pub(super) core: Queue<Py<PyAny>>,
    /// The items of a `PriorityQueue`, a heap in heapq's layout. Taken out of the mutex while a
    /// storage step compares items (with the monitor's lock held).
    pub(super) heap: Mutex<Vec<Py<PyAny>>>,
    /// `maxsize` as the user gave it; zero or less is unbounded.
    pub(super) maxsize: AtomicIsize,
    /// Present when storage steps run Python code.
    pub(super) monitor: Option<Monitor>,
    /// Whether the storage steps are the class's own Python methods.
    pub(super) overridden: bool,
}

impl PyQueue {
    /// A queue of class `cls`, a subclass of `base` (the class among `Queue`, `LifoQueue` and
    /// `PriorityQueue` that `kind` names), whose storage steps `cls` may override.
    pub(super) fn create(
        cls: &Bound<'_, PyType>,
        base: &Bound<'_, PyType>,
        kind: Kind,
    ) -> PyResult<PyQueue> {
        let mut overridden = false;
        for hook in HOOKS {
            overridden |= !cls.getattr(hook)?.is(&base.getattr(hook)?);
        }
        let order = if kind == Kind::Lifo {
            Order::Lifo
        } else {
            Order::Fifo
        };
        Ok(PyQueue {
            kind,
            core: Queue::new(order, 0),
            heap: Mutex::new(Vec::new()),
            maxsize: AtomicIsize::new(0),
            monitor: (overridden || kind == Kind::Priority).then(Monitor::new),
            overridden,
        })
    }

    /// The core queue, if it holds the whole queue (no storage step runs Python code).
    #[inline]
    pub(super) fn fast_core(&self) -> Option<&Queue<Py<PyAny>>> {
        if self.monitor.is_none() {
            Some(&self.core)
        } else {
            None
        }
    }

    pub(super) fn bound(&self) -> usize {
        usize::try_from(self.maxsize.load(Ordering::Relaxed)).unwrap_or(0)
    }

    fn is_shut_down(&self) -> bool {
        match &self.monitor {
            Some(monitor) => monitor.is_shut_down(),
            None => self.core.is_shut_down(),
        }
    }

    /// The `ShutDown` a shut-down queue raises before it looks at its arguments, as
    /// `queue.Queue` does; otherwise `error`.
    pub(super) fn shut_down_or(&self, py: Python<'_>, error: PyErr, empty_only: bool) -> PyErr {
        if self.is_shut_down() && (!empty_only || self.core.is_empty()) {
            return shut_down(py);
        }
        error
    }

    pub(super) fn put_wait(
        &self,
        py: Python<'_>,
        block: Block,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Wait> {
        // queue.Queue reads `timeout` only when the queue is bounded.
        match queue_wait(block, timeout) {
            Err(error) if self.bound() > 0 => Err(self.shut_down_or(py, error, false)),
            Err(_) => Ok(Wait::Until(None)),
            wait => wait,
        }
    }

    pub(super) fn get_wait(
        &self,
        py: Python<'_>,
        block: Block,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Wait> {
        queue_wait(block, timeout).map_err(|error| self.shut_down_or(py, error, true))
    }
}

#[pymethods]
impl PyQueue {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*_args, **_kwargs), text_signature = "(maxsize=0)")]
    fn new(
        cls: &Bound<'_, PyType>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        PyQueue::create(cls, &cls.py().get_type::<PyQueue>(), Kind::Fifo)
    }

    #[pyo3(signature = (maxsize=0))]
    fn __init__(slf: &Bound<'_, Self>, maxsize: isize) -> PyResult<()> {
        let this = slf.get();
        this.maxsize.store(maxsize, Ordering::Relaxed);
        let dropped = this.core.reset(if this.monitor.is_some() {
            0
        } else {
            this.bound()
        });
        drop(dropped);
        drop(this.take_heap());
        if let Some(monitor) = &this.monitor {
            monitor.reset();
        }
        if this.overridden {
            slf.call_method1(intern!(slf.py(), "_init"), (maxsize,))?;
        }
        Ok(())
    }

    /// Put `item` into the queue, waiting for a free slot if `block` (at most `timeout` seconds,
    /// then `queue.Full`). Raises `ShutDown` if the queue has been shut down.
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
        let this = slf.get();
        let py = slf.py();
        let would_wait = |error: &PyErr| error.is_instance_of::<Full>(py);
        unless_it_must_wait(
            py,
            this.put_wait(py, block, timeout),
            would_wait,
            |wait| match &this.monitor {
                Some(monitor) => this.monitor_put(monitor, slf, item, wait),
                None => put_item(py, slf.as_any(), &this.core, item, wait?),
            },
        )
    }

    /// Put `item` without waiting; `queue.Full` if there is no free slot.
    fn put_nowait(slf: &Bound<'_, Self>, item: Py<PyAny>) -> PyResult<()> {
        PyQueue::put(slf, item, Block(false), None)
    }

    /// Remove and return an item, waiting for one if `block` (at most `timeout` seconds, then
    /// `queue.Empty`). Raises `ShutDown` if the queue has been shut down and is empty.
    #[pyo3(
        signature = (block=Block(true), timeout=None),
        text_signature = "($self, block=True, timeout=None)"
    )]
    fn get(
        slf: &Bound<'_, Self>,
        block: Block,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let this = slf.get();
        let py = slf.py();
        let would_wait = |error: &PyErr| error.is_instance_of::<Empty>(py);
        unless_it_must_wait(
            py,
            this.get_wait(py, block, timeout),
            would_wait,
            |wait| match &this.monitor {
                Some(monitor) => this.monitor_get(monitor, slf, wait),
                None => get_item(py, slf.as_any(), &this.core, wait?),
            },
        )
    }

    /// Remove and return an item without waiting; `queue.Empty` if there is none.
    fn get_nowait(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        PyQueue::get(slf, Block(false), None)
    }

    /// Put every item of `items`, in order, each as `put` would (waiting for free slots if
    /// `block`, until `timeout` seconds from the call). If the queue stays full,
    /// `queue.Full(n)` says how many items were put; the rest were not.
    #[pyo3(
        signature = (items, block=Block(true), timeout=None),
        text_signature = "($self, items, block=True, timeout=None)"
    )]
    fn put_many(
        slf: &Bound<'_, Self>,
        items: &Bound<'_, PyAny>,
        block: Block,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let this = slf.get();
        let py = slf.py();
        let mut items = items
            .try_iter()?
            .map(|item| item.map(Bound::unbind))
            .collect::<PyResult<VecDeque<_>>>()?;
        let total = items.len();
        let wait = this.put_wait(py, block, timeout)?;
        let full = |left: usize| Full::new_err((total - left,));
        if let Some(monitor) = &this.monitor {
            while let Some(item) = items.pop_front() {
                match this.monitor_put(monitor, slf, item, Ok(wait)) {
                    Err(error) if error.is_instance_of::<Full>(py) => {
                        return Err(full(items.len() + 1))
                    }
                    other => other?,
                }
            }
            return Ok(());
        }
        while !items.is_empty() {
            let put = run(
                py,
                QueueRef {
                    target: &this.core,
                    object: slf.as_any(),
                },
                QueueWait::NotFull,
                wait,
                |blocking, deadline| match this.core.put_many_until(&mut items, blocking, deadline)
                {
                    Err(PutError::Full(())) => None,
                    other => Some(other),
                },
            )?;
            match put {
                Some(Ok(_)) => {}
                Some(Err(_)) => return Err(shut_down(py)),
                None => return Err(full(items.len())),
            }
        }
        Ok(())
    }

    /// Remove and return a list of up to `max_items` items (at least one), waiting for the first
    /// as `get` does.
    #[pyo3(
        signature = (max_items, block=Block(true), timeout=None),
        text_signature = "($self, max_items, block=True, timeout=None)"
    )]
    fn get_many<'py>(
        slf: &Bound<'py, Self>,
        max_items: isize,
        block: Block,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let this = slf.get();
        let py = slf.py();
        let max_items = usize::try_from(max_items)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| PyValueError::new_err("max_items must be at least 1"))?;
        let wait = this.get_wait(py, block, timeout)?;
        let mut out = Vec::new();
        if let Some(monitor) = &this.monitor {
            let held = monitor.enter(py)?;
            out.push(this.monitor_get_held(monitor, slf, &held, Ok(wait))?);
            while out.len() < max_items && this.storage_len(slf)? > 0 {
                out.push(this.monitor_get_held(monitor, slf, &held, Ok(Wait::Never))?);
            }
            drop(held);
            return PyList::new(py, out);
        }
        let got = run(
            py,
            QueueRef {
                target: &this.core,
                object: slf.as_any(),
            },
            QueueWait::NotEmpty,
            wait,
            |blocking, deadline| match this
                .core
                .get_many_until(max_items, &mut out, blocking, deadline)
            {
                Err(GetError::Empty) => None,
                other => Some(other),
            },
        )?;
        match got {
            Some(Ok(_)) => PyList::new(py, out),
            Some(Err(_)) => Err(shut_down(py)),
            None => Err(Empty::new_err(())),
        }
    }

    /// Mark one item taken by `get` as processed; wakes `join` when none is left.
    fn task_done(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let too_many = || PyValueError::new_err("task_done() called too many times");
        let Some(monitor) = &this.monitor else {
            return this.core.task_done().map_err(|_| too_many());
        };
        let _held = monitor.enter(slf.py())?;
        let unfinished = monitor.unfinished_tasks();
        if unfinished == 0 {
            return Err(too_many());
        }
        monitor
            .unfinished_tasks
            .store(unfinished - 1, Ordering::Release);
        if unfinished == 1 {
            monitor.all_tasks_done.notify_all();
        }
        Ok(())
    }

    /// Wait until every item put has been processed (a `task_done` for each).
    fn join(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let py = slf.py();
        let Some(monitor) = &this.monitor else {
            park(
                py,
                QueueRef {
                    target: &this.core,
                    object: slf.as_any(),
                },
                QueueWait::AllTasksDone,
                Wait::Until(None),
                |deadline| this.core.join_until(deadline).then_some(()),
            )?;
            return Ok(());
        };
        let held = monitor.enter(py)?;
        while monitor.unfinished_tasks() > 0 {
            monitor.wait(
                py,
                slf.as_any(),
                &held,
                &monitor.all_tasks_done,
                QueueWait::AllTasksDone,
                None,
            )?;
        }
        Ok(())
    }

    /// Shut the queue down: `put` raises `ShutDown` from now on, and `get` too once the queue is
    /// empty (at once with `immediate`, which discards the items left, marking each done).
    /// Every blocked caller wakes.
    #[pyo3(signature = (immediate=false))]
    fn shutdown(slf: &Bound<'_, Self>, immediate: bool) -> PyResult<()> {
        let this = slf.get();
        let Some(monitor) = &this.monitor else {
            drop(this.core.shutdown(immediate));
            return Ok(());
        };
        let _held = monitor.enter(slf.py())?;
        monitor.shut_down.store(true, Ordering::Release);
        if immediate {
            while this.storage_len(slf)? > 0 {
                this.storage_get(slf)?;
                let unfinished = monitor.unfinished_tasks();
                monitor
                    .unfinished_tasks
                    .store(unfinished.saturating_sub(1), Ordering::Release);
            }
            monitor.all_tasks_done.notify_all();
        }
        monitor.not_empty.notify_all();
        monitor.not_full.notify_all();
        Ok(())
    }

    /// The number of items in the queue (approximate, as other threads may change it).
    fn qsize(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let this = slf.get();
        match &this.monitor {
            Some(monitor) => {
                let _held = monitor.enter(slf.py())?;
                this.storage_len(slf)
            }
            None => Ok(this.core.len()),
        }
    }

    /// Whether the queue is empty (approximate).
    fn empty(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Ok(PyQueue::qsize(slf)? == 0)
    }

    /// Whether the queue is full (approximate).
    fn full(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let bound = slf.get().bound();
        Ok(bound > 0 && PyQueue::qsize(slf)? >= bound)
    }

    /// The bound given at creation (zero or less: unbounded); may be changed.
    #[getter]
    fn get_maxsize(&self) -> isize {
        self.maxsize.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_maxsize(&self, maxsize: isize) {
        self.maxsize.store(maxsize, Ordering::Relaxed);
        match &self.monitor {
            // Putters waiting for a slot re-check the new bound.
            Some(monitor) => {
                monitor.not_full.notify_all();
            }
            None => self.core.set_maxsize(self.bound()),
        }
    }

    /// The number of items put and not yet marked done.
    #[getter]
    fn unfinished_tasks(&self) -> usize {
        match &self.monitor {
            Some(monitor) => monitor.unfinished_tasks(),
            None => self.core.unfinished_tasks(),
        }
    }

    /// Whether `shutdown()` has been called.
    #[getter]
    fn is_shutdown(&self) -> bool {
        self.is_shut_down()
    }

    /// Storage step: set up storage (the items live in Rust; nothing to do).
    fn _init(&self, maxsize: &Bound<'_, PyAny>) {
        let _ = maxsize;
    }

    /// Storage step: the number of items stored.
    fn _qsize(&self) -> usize {
        self.raw_len()
    }

    /// Storage step: store `item` (no bound, no task count).
    fn _put(&self, py: Python<'_>, item: Py<PyAny>) -> PyResult<()> {
        self.raw_put(py, item)
    }

    /// Storage step: remove and return the next item.
    fn _get(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.raw_get(py)
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
