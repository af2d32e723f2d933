//! `treadle.Queue`: the class, its arguments as `queue.Queue` reads them, and which path each
//! call takes: the core queue while no storage step runs Python code and the program has not
//! asked for the queue's lock, else the monitor (`monitored.rs`). See the folder's
//! documentation (`mod.rs`).

use super::alias::generic_alias;
use super::errors::{shut_down, Empty, Full};
use super::items::{get_item, put_item, Moved};
use super::monitor::{Monitor, Named};
use super::wait::{park, queue_wait, run, unless_it_must_wait, Block, QueueRef};
use crate::condition::PyCondition;
use crate::lock::PyLock;
use crate::runtime::errors::cannot_pickle;
use crate::runtime::timeout::Wait;
use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use treadle_core::{Diverted, GetError, Order, PutError, Queue, QueueWait, TaskDoneError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Fifo,
    Lifo,
    Priority,
}

/// The storage steps a subclass may override, as `queue.Queue` names them.
const HOOKS: [&str; 4] = ["_init", "_qsize", "_put", "_get"];

/// A FIFO queue, as `queue.Queue`; the base of `LifoQueue` and `PriorityQueue`.
#[pyclass(subclass, frozen, weakref, dict, name = "Queue", module = "treadle")]
pub(crate) struct PyQueue {
    pub(super) kind: Kind,
    /// The whole queue in the fast mode; in the monitor mode (diverted), the items of a FIFO or
    /// LIFO queue.
    pub(super) core: Queue<Py<PyAny>>,
    /// The items of a `PriorityQueue`, a heap in heapq's layout. Taken out of the mutex while a
    /// storage step compares items (with the monitor's lock held).
    pub(super) heap: Mutex<Vec<Py<PyAny>>>,
    /// `maxsize` as the user gave it; zero or less is unbounded.
    pub(super) maxsize: AtomicIsize,
    /// Made when storage steps run Python code or the program uses the queue's lock (see
    /// [`PyQueue::monitored`]); from then on the queue is a monitor, for good.
    monitor: PyOnceLock<Monitor>,
    /// Whether the storage steps are Python methods: the class's own, or the instance's.
    pub(super) overridden: AtomicBool,
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
        let queue = PyQueue {
            kind,
            core: Queue::new(order, 0),
            heap: Mutex::new(Vec::new()),
            maxsize: AtomicIsize::new(0),
            monitor: PyOnceLock::new(),
            overridden: AtomicBool::new(overridden),
        };
        if overridden || kind == Kind::Priority {
            queue.monitored(cls.py())?;
        }
        Ok(queue)
    }

    /// The core queue, if it holds the whole queue (no storage step runs Python code).
    #[inline]
    pub(super) fn fast_core(&self, py: Python<'_>) -> Option<&Queue<Py<PyAny>>> {
        if self.monitor.get(py).is_none() {
            Some(&self.core)
        } else {
            None
        }
    }

    /// The monitor, if the queue runs as one.
    #[inline]
    pub(super) fn monitor(&self, py: Python<'_>) -> Option<&Monitor> {
        self.monitor.get(py)
    }

    /// The monitor, made now if the queue ran in the core until now: the core queue is diverted
    /// (a call that chose it just before is sent back here, and threads parked in it wake to
    /// come here) and hands its tasks and shut-down state over; its items stay, as the
    /// monitor's storage.
    pub(super) fn monitored(&self, py: Python<'_>) -> PyResult<&Monitor> {
        self.monitor.get_or_try_init(py, || {
            let monitor = Monitor::new(py)?;
            // Last, and infallible: the diversion happens once the monitor is sure to exist.
            if let Some(handover) = self.core.divert() {
                monitor.take_over(handover);
            }
            Ok(monitor)
        })
    }

    pub(super) fn bound(&self) -> usize {
        usize::try_from(self.maxsize.load(Ordering::Relaxed)).unwrap_or(0)
    }

    fn is_shut_down(&self, py: Python<'_>) -> bool {
        match self.monitor(py) {
            Some(monitor) => monitor.is_shut_down(),
            None => self.core.is_shut_down(),
        }
    }

    /// The `ShutDown` a shut-down queue raises before it looks at its arguments, as
    /// `queue.Queue` does; otherwise `error`.
    pub(super) fn shut_down_or(&self, py: Python<'_>, error: PyErr, empty_only: bool) -> PyErr {
        if self.is_shut_down(py) && (!empty_only || self.core.is_empty()) {
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

impl PyQueue {
    // Each call on the core queue while there is no monitor; a call the core sends back (the
    // queue was diverted to its monitor meanwhile) is made again on the monitor.

    fn put_with(
        &self,
        slf: &Bound<'_, Self>,
        item: Py<PyAny>,
        wait: PyResult<Wait>,
    ) -> PyResult<()> {
        let py = slf.py();
        if let Some(monitor) = self.monitor(py) {
            return self.monitor_put(monitor, slf, item, wait);
        }
        let wait = wait?;
        match put_item(py, slf.as_any(), &self.core, item, wait)? {
            Ok(()) => Ok(()),
            Err(Moved(item)) => self.monitor_put(self.monitored(py)?, slf, item, Ok(wait)),
        }
    }

    fn get_with(&self, slf: &Bound<'_, Self>, wait: PyResult<Wait>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(monitor) = self.monitor(py) {
            return self.monitor_get(monitor, slf, wait);
        }
        let wait = wait?;
        match get_item(py, slf.as_any(), &self.core, wait)? {
            Ok(item) => Ok(item),
            Err(Moved(())) => self.monitor_get(self.monitored(py)?, slf, Ok(wait)),
        }
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
        let monitor = this.monitor(slf.py());
        this.maxsize.store(maxsize, Ordering::Relaxed);
        let dropped = this
            .core
            .reset(if monitor.is_some() { 0 } else { this.bound() });
        drop(dropped);
        drop(this.take_heap());
        if let Some(monitor) = monitor {
            monitor.reset();
        }
        if this.overridden.load(Ordering::Acquire) {
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
        unless_it_must_wait(py, this.put_wait(py, block, timeout), would_wait, |wait| {
            this.put_with(slf, item, wait)
        })
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
        unless_it_must_wait(py, this.get_wait(py, block, timeout), would_wait, |wait| {
            this.get_with(slf, wait)
        })
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
        let mut monitor = this.monitor(py);
        while !items.is_empty() {
            if let Some(monitor) = monitor {
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
                Some(Err(PutError::Diverted(()))) => monitor = Some(this.monitored(py)?),
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
        let monitor = match this.monitor(py) {
            Some(monitor) => monitor,
            None => {
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
                    Some(Ok(_)) => return PyList::new(py, out),
                    Some(Err(GetError::Diverted)) => this.monitored(py)?,
                    Some(Err(_)) => return Err(shut_down(py)),
                    None => return Err(Empty::new_err(())),
                }
            }
        };
        let held = monitor.enter(py)?;
        out.push(this.monitor_get_held(monitor, slf, &held, Ok(wait))?);
        while out.len() < max_items && this.storage_len(slf)? > 0 {
            out.push(this.monitor_get_held(monitor, slf, &held, Ok(Wait::Never))?);
        }
        drop(held);
        PyList::new(py, out)
    }

    /// Mark one item taken by `get` as processed; wakes `join` when none is left.
    fn task_done(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let py = slf.py();
        let too_many = || PyValueError::new_err("task_done() called too many times");
        let monitor = match this.monitor(py) {
            Some(monitor) => monitor,
            None => match this.core.task_done() {
                Ok(()) => return Ok(()),
                Err(TaskDoneError::TooMany) => return Err(too_many()),
                Err(TaskDoneError::Diverted) => this.monitored(py)?,
            },
        };
        let _held = monitor.enter(py)?;
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
        let monitor = match this.monitor(py) {
            Some(monitor) => monitor,
            None => {
                let joined = park(
                    py,
                    QueueRef {
                        target: &this.core,
                        object: slf.as_any(),
                    },
                    QueueWait::AllTasksDone,
                    Wait::Until(None),
                    |deadline| match this.core.join_until(deadline) {
                        Ok(false) => None,
                        done => Some(done),
                    },
                )?;
                match joined {
                    Some(Err(Diverted)) => this.monitored(py)?,
                    _ => return Ok(()),
                }
            }
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
        let py = slf.py();
        let monitor = match this.monitor(py) {
            Some(monitor) => monitor,
            None => match this.core.shutdown(immediate) {
                Ok(discarded) => {
                    drop(discarded);
                    return Ok(());
                }
                Err(Diverted) => this.monitored(py)?,
            },
        };
        let _held = monitor.enter(py)?;
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
        match this.monitor(slf.py()) {
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
    fn set_maxsize(&self, py: Python<'_>, maxsize: isize) {
        self.maxsize.store(maxsize, Ordering::Relaxed);
        if self.monitor(py).is_none() {
            self.core.set_maxsize(self.bound());
        }
        // Putters waiting for a slot re-check the new bound (also those that moved to the
        // monitor while the core's bound was set).
        if let Some(monitor) = self.monitor(py) {
            monitor.not_full.notify_all();
        }
    }

    /// The number of items put and not yet marked done.
    #[getter]
    fn unfinished_tasks(&self, py: Python<'_>) -> usize {
        match self.monitor(py) {
            Some(monitor) => monitor.unfinished_tasks(),
            None => self.core.unfinished_tasks(),
        }
    }

    /// Whether `shutdown()` has been called.
    #[getter]
    fn is_shutdown(&self, py: Python<'_>) -> bool {
        self.is_shut_down(py)
    }

    /// The queue's lock, as `queue.Queue.mutex`: holding it holds off every put and get. The
    /// first use of it (or of a condition) makes the queue a monitor, for good.
    #[getter]
    fn mutex(&self, py: Python<'_>) -> PyResult<Py<PyLock>> {
        Ok(self.monitored(py)?.mutex(py))
    }

    /// The condition over `mutex` that getters wait on, as `queue.Queue.not_empty`.
    #[getter]
    fn not_empty(&self, py: Python<'_>) -> PyResult<Py<PyCondition>> {
        Ok(self.monitored(py)?.condition(py, Named::NotEmpty))
    }

    /// The condition over `mutex` that putters wait on, as `queue.Queue.not_full`.
    #[getter]
    fn not_full(&self, py: Python<'_>) -> PyResult<Py<PyCondition>> {
        Ok(self.monitored(py)?.condition(py, Named::NotFull))
    }

    /// The condition over `mutex` that `join` waits on, as `queue.Queue.all_tasks_done`.
    #[getter]
    fn all_tasks_done(&self, py: Python<'_>) -> PyResult<Py<PyCondition>> {
        Ok(self.monitored(py)?.condition(py, Named::AllTasksDone))
    }

    /// Sets an attribute; an instance's own storage step (`q._put = ...`) is honoured from now
    /// on, as `queue.Queue` honours it, by running the queue as a monitor.
    fn __setattr__(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyString>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let this = slf.get();
        let storage_step = HOOKS.contains(&name.to_str()?);
        if storage_step {
            this.monitored(slf.py())?;
        }
        // SAFETY: attached; three live objects, as `tp_setattro` receives them.
        let set = unsafe {
            pyo3::ffi::PyObject_GenericSetAttr(slf.as_ptr(), name.as_ptr(), value.as_ptr())
        };
        if set != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        if storage_step {
            this.overridden.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn __delattr__(slf: &Bound<'_, Self>, name: &Bound<'_, PyString>) -> PyResult<()> {
        // SAFETY: attached; live objects, and a null value, which asks for a deletion.
        let deleted = unsafe {
            pyo3::ffi::PyObject_GenericSetAttr(slf.as_ptr(), name.as_ptr(), std::ptr::null_mut())
        };
        if deleted != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
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
