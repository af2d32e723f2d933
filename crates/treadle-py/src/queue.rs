//! `treadle.Queue`, `treadle.LifoQueue` and `treadle.PriorityQueue`.
//!
//! A FIFO or LIFO queue whose class does not override a storage step runs entirely in the core's
//! [`Queue`]: a put or a get is one call into Rust that takes the core mutex once, and a blocked
//! thread parks in Rust with the interpreter released.
//!
//! `PriorityQueue` orders items with their own `<`, which is Python code, and a subclass that
//! overrides `_put`, `_get`, `_qsize` or `_init` asks for its own Python code to run as the
//! storage steps. Neither may run under a core mutex, so such queues run as a [`Monitor`], the
//! design of `queue.Queue` itself on treadle's lock and wait queues: the storage steps run with
//! the queue's lock held (a lock waited for with the interpreter released), and a step that raises
//! propagates to the caller with the queue as it was.
//!
//! What is not there: the attributes `queue`, `mutex`, `not_empty`, `not_full` and
//! `all_tasks_done` of `queue.Queue`. Their state lives in Rust, where code outside the queue
//! cannot reach it under the queue's own lock; `docs/queues.md` says how to port code that uses
//! them.

mod fast;
mod heap;
mod monitor;

pub(crate) use fast::install as install_fast_methods;

use crate::runtime::errors::cannot_pickle;
use crate::runtime::timeout::{deadline_after, Wait};
use crate::runtime::tracking::Track;
use crate::runtime::wait::block_on;
use monitor::{Held, Monitor};
use parking_lot::Mutex;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;
use treadle_core::wait_graph::{WaitKind, WaitTarget};
use treadle_core::{GetError, Order, PutError, Queue, QueueWait};

pyo3::import_exception!(queue, Empty);
pyo3::import_exception!(queue, Full);
pyo3::create_exception!(
    treadle,
    ShutDown,
    pyo3::exceptions::PyException,
    "Raised when put/get is called on a queue that has been shut down (queue.ShutDown on \
     Python 3.13 and later)."
);

static SHUT_DOWN: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The class raised for a shut-down queue: the standard library's `queue.ShutDown` where it exists
/// (Python 3.13+), treadle's own otherwise.
pub(crate) fn shut_down_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    SHUT_DOWN
        .get_or_try_init(py, || {
            let standard = py.import("queue")?.getattr("ShutDown");
            Ok::<_, PyErr>(match standard {
                Ok(class) => class.cast_into::<PyType>()?.unbind(),
                Err(_) => py.get_type::<ShutDown>().unbind(),
            })
        })
        .map(|class| class.bind(py))
}

fn shut_down(py: Python<'_>) -> PyErr {
    match shut_down_class(py) {
        Ok(class) => PyErr::from_type(class.clone(), ()),
        Err(error) => error,
    }
}

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

/// A `block` argument: any object, read by its truth value as `queue.Queue` reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block(pub(crate) bool);

impl FromPyObject<'_, '_> for Block {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        obj.is_truthy().map(Block)
    }
}

/// `block` and `timeout` as `queue.Queue.get` reads them.
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
    Ok(Wait::Until(deadline_after(seconds)))
}

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

/// `types.GenericAlias(cls, item)`, for `Queue[int]` in annotations.
pub(crate) fn generic_alias<'py>(
    cls: &Bound<'py, PyType>,
    item: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    cls.py()
        .import("types")?
        .getattr("GenericAlias")?
        .call1((cls, item))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fifo,
    Lifo,
    Priority,
}

/// The storage steps a subclass may override, as `queue.Queue` names them.
const HOOKS: [&str; 4] = ["_init", "_qsize", "_put", "_get"];

/// A FIFO queue, as `queue.Queue`; the base of `LifoQueue` and `PriorityQueue`.
#[pyclass(subclass, frozen, weakref, name = "Queue", module = "treadle")]
pub(crate) struct PyQueue {
    kind: Kind,
    /// The whole queue in the fast mode; in the monitor mode, the items of a FIFO or LIFO queue.
    core: Queue<Py<PyAny>>,
    /// The items of a `PriorityQueue`, a heap in heapq's layout. Taken out of the mutex while a
    /// storage step compares items (with the monitor's lock held).
    heap: Mutex<Vec<Py<PyAny>>>,
    /// `maxsize` as the user gave it; zero or less is unbounded.
    maxsize: AtomicIsize,
    /// Present when storage steps run Python code.
    monitor: Option<Monitor>,
    /// Whether the storage steps are the class's own Python methods.
    overridden: bool,
}

impl PyQueue {
    fn create(cls: &Bound<'_, PyType>, kind: Kind) -> PyResult<PyQueue> {
        let py = cls.py();
        let base = match kind {
            Kind::Fifo => py.get_type::<PyQueue>(),
            Kind::Lifo => py.get_type::<PyLifoQueue>(),
            Kind::Priority => py.get_type::<PyPriorityQueue>(),
        };
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
    fn fast_core(&self) -> Option<&Queue<Py<PyAny>>> {
        if self.monitor.is_none() {
            Some(&self.core)
        } else {
            None
        }
    }

    fn bound(&self) -> usize {
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
    fn shut_down_or(&self, py: Python<'_>, error: PyErr, empty_only: bool) -> PyErr {
        if self.is_shut_down() && (!empty_only || self.core.is_empty()) {
            return shut_down(py);
        }
        error
    }

    // The storage steps, as the base class implements them.

    fn take_heap(&self) -> Vec<Py<PyAny>> {
        std::mem::take(&mut *self.heap.lock())
    }

    fn restore_heap(&self, heap: Vec<Py<PyAny>>) {
        *self.heap.lock() = heap;
    }

    fn raw_len(&self) -> usize {
        match self.kind {
            Kind::Priority => self.heap.lock().len(),
            _ => self.core.len(),
        }
    }

    fn raw_put(&self, py: Python<'_>, item: Py<PyAny>) -> PyResult<()> {
        if self.kind != Kind::Priority {
            self.core.push_raw(item);
            return Ok(());
        }
        let mut heap = self.take_heap();
        let pushed = heap::push(py, &mut heap, item);
        self.restore_heap(heap);
        pushed.map_err(|(error, _item)| error)
    }

    fn raw_get(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
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

    fn storage_len(&self, slf: &Bound<'_, PyQueue>) -> PyResult<usize> {
        if !self.overridden {
            return Ok(self.raw_len());
        }
        let len: isize = slf.call_method0(intern!(slf.py(), "_qsize"))?.extract()?;
        Ok(usize::try_from(len).unwrap_or(0))
    }

    fn storage_put(&self, slf: &Bound<'_, PyQueue>, item: Py<PyAny>) -> PyResult<()> {
        if !self.overridden {
            return self.raw_put(slf.py(), item);
        }
        slf.call_method1(intern!(slf.py(), "_put"), (item,))?;
        Ok(())
    }

    fn storage_get(&self, slf: &Bound<'_, PyQueue>) -> PyResult<Py<PyAny>> {
        if !self.overridden {
            return self.raw_get(slf.py());
        }
        Ok(slf.call_method0(intern!(slf.py(), "_get"))?.unbind())
    }

    fn storage_is_full(&self, slf: &Bound<'_, PyQueue>) -> PyResult<bool> {
        let bound = self.bound();
        Ok(bound > 0 && self.storage_len(slf)? >= bound)
    }

    // `queue.Queue`'s algorithms, run as a monitor.

    /// `queue.Queue.put` with the bound checked against `deadline`.
    fn monitor_put(
        &self,
        monitor: &Monitor,
        slf: &Bound<'_, PyQueue>,
        item: Py<PyAny>,
        wait: PyResult<Wait>,
    ) -> PyResult<()> {
        let py = slf.py();
        let held = monitor.enter(py)?;
        if monitor.is_shut_down() {
            return Err(shut_down(py));
        }
        if self.bound() > 0 {
            match wait? {
                Wait::Never => {
                    if self.storage_is_full(slf)? {
                        return Err(Full::new_err(()));
                    }
                }
                Wait::Until(deadline) => {
                    while self.storage_is_full(slf)? {
                        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                            return Err(Full::new_err(()));
                        }
                        monitor.wait(
                            py,
                            slf.as_any(),
                            &held,
                            &monitor.not_full,
                            QueueWait::NotFull,
                            deadline,
                        )?;
                        if monitor.is_shut_down() {
                            return Err(shut_down(py));
                        }
                    }
                }
            }
        }
        self.storage_put(slf, item)?;
        monitor.unfinished_tasks.fetch_add(1, Ordering::AcqRel);
        monitor.not_empty.notify(1);
        Ok(())
    }

    /// `queue.Queue.get` with `deadline`.
    fn monitor_get(
        &self,
        monitor: &Monitor,
        slf: &Bound<'_, PyQueue>,
        wait: PyResult<Wait>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let held = monitor.enter(py)?;
        self.monitor_get_held(monitor, slf, &held, wait)
    }

    fn monitor_get_held(
        &self,
        monitor: &Monitor,
        slf: &Bound<'_, PyQueue>,
        held: &Held<'_>,
        wait: PyResult<Wait>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let shut_down_and_empty = |this: &PyQueue| -> PyResult<bool> {
            Ok(monitor.is_shut_down() && this.storage_len(slf)? == 0)
        };
        if shut_down_and_empty(self)? {
            return Err(shut_down(py));
        }
        match wait? {
            Wait::Never => {
                if self.storage_len(slf)? == 0 {
                    return Err(Empty::new_err(()));
                }
            }
            Wait::Until(deadline) => {
                while self.storage_len(slf)? == 0 {
                    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        return Err(Empty::new_err(()));
                    }
                    monitor.wait(
                        py,
                        slf.as_any(),
                        held,
                        &monitor.not_empty,
                        QueueWait::NotEmpty,
                        deadline,
                    )?;
                    if shut_down_and_empty(self)? {
                        return Err(shut_down(py));
                    }
                }
            }
        }
        let item = self.storage_get(slf)?;
        monitor.not_full.notify(1);
        Ok(item)
    }

    fn put_wait(
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

    fn get_wait(
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
        PyQueue::create(cls, Kind::Fifo)
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
        match &this.monitor {
            Some(monitor) => {
                this.monitor_put(monitor, slf, item, this.put_wait(py, block, timeout))
            }
            None => {
                let wait = this.put_wait(py, block, timeout)?;
                put_item(py, slf.as_any(), &this.core, item, wait)
            }
        }
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
        match &this.monitor {
            Some(monitor) => this.monitor_get(monitor, slf, this.get_wait(py, block, timeout)),
            None => {
                let wait = this.get_wait(py, block, timeout)?;
                get_item(py, slf.as_any(), &this.core, wait)
            }
        }
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

/// Defines a subclass of `Queue` that differs only in the order it gives items.
macro_rules! queue_subclass {
    ($(#[$doc:meta])* $rust:ident, $name:literal, $kind:expr) => {
        $(#[$doc])*
        #[pyclass(extends = PyQueue, subclass, frozen, name = $name, module = "treadle")]
        pub(crate) struct $rust;

        #[pymethods]
        impl $rust {
            #[new]
            #[classmethod]
            #[pyo3(signature = (*_args, **_kwargs), text_signature = "(maxsize=0)")]
            fn new(
                cls: &Bound<'_, PyType>,
                _args: &Bound<'_, PyTuple>,
                _kwargs: Option<&Bound<'_, PyDict>>,
            ) -> PyResult<PyClassInitializer<Self>> {
                Ok(PyClassInitializer::from(PyQueue::create(cls, $kind)?).add_subclass($rust))
            }
        }
    };
}

queue_subclass!(
    /// A LIFO queue (a stack), as `queue.LifoQueue`.
    PyLifoQueue,
    "LifoQueue",
    Kind::Lifo
);

queue_subclass!(
    /// A queue that gives the smallest item first, by the items' own `<`, as
    /// `queue.PriorityQueue`.
    PyPriorityQueue,
    "PriorityQueue",
    Kind::Priority
);
