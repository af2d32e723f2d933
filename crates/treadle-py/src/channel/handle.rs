//! `treadle._treadle._Channel`: a handle on the ring it reads from and the ring it writes to,
//! with the methods of `multiprocessing`'s queues and connections.

use super::codec::{self, Encoded, Raw, Target, Want};
use super::errors::{Empty, Flavor, Full};
use super::ring::PyRing;
use super::wait::{
    nobody_can_finish, nobody_can_read, nobody_can_write, readers_all_closed, writers_all_closed,
    Parked, Side, Waiter,
};
use crate::runtime::timeout::{deadline_after, Block, Seconds, Wait};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use treadle_os::holders::Role;
use treadle_os::ring::{PutError, Ring};

/// Payloads at least this long are copied into a ring with the interpreter released.
const DETACHED_COPY: usize = 1 << 20;

/// One side of a handle: a ring, and the Python object that holds it.
struct End {
    ring: Arc<Ring>,
    object: Py<PyRing>,
}

/// What a bound handle reads and writes.
struct Ends {
    rx: Option<End>,
    tx: Option<End>,
    flavor: Flavor,
    /// Puts count unfinished tasks (JoinableQueue).
    joinable: bool,
    /// Whether the handle's roles are counted in its rings' tables (until closed).
    attached: AtomicBool,
    /// Whether its parent counts it for this process (it may not have yet when it is let go).
    adopted: bool,
}

impl Ends {
    /// The distinct rings, each with the roles this handle has on it.
    fn roles(&self) -> Vec<(&Arc<Ring>, bool, bool)> {
        match (&self.rx, &self.tx) {
            (Some(rx), Some(tx)) if Arc::ptr_eq(&rx.ring, &tx.ring) => {
                vec![(&rx.ring, true, true)]
            }
            (rx, tx) => rx
                .iter()
                .map(|end| (&end.ring, true, false))
                .chain(tx.iter().map(|end| (&end.ring, false, true)))
                .collect(),
        }
    }

    fn attach(&self) {
        for (ring, read, write) in self.roles() {
            if read {
                ring.attach(Role::Read);
            }
            if write {
                ring.attach(Role::Write);
            }
        }
        self.attached.store(true, Ordering::Release);
    }

    fn detach(&self) {
        if !self.attached.swap(false, Ordering::AcqRel) {
            return;
        }
        for (ring, read, write) in self.roles() {
            for (role, held) in [(Role::Read, read), (Role::Write, write)] {
                if !held {
                    continue;
                }
                if self.adopted {
                    ring.detach_adopted(role);
                } else {
                    ring.detach(role);
                }
            }
        }
    }
}

/// A handle on a channel: the native base of `Queue`, `JoinableQueue`, `SimpleQueue` and
/// `Connection` (`treadle.multiprocessing`).
#[pyclass(subclass, frozen, weakref, name = "_Channel", module = "treadle")]
pub(crate) struct PyChannel {
    ends: OnceLock<Ends>,
    closed: AtomicBool,
    /// A message longer than `recv_bytes(maxlength)` left the stream unreadable.
    unreadable: AtomicBool,
    /// Something was put through this handle (the standard library's queue differs once used).
    used: AtomicBool,
}

impl Drop for PyChannel {
    fn drop(&mut self) {
        if let Some(ends) = self.ends.get() {
            ends.detach();
        }
    }
}

/// `block` and `timeout` as `multiprocessing`'s queues read them: `timeout=None` waits for
/// ever, a timeout of zero or less does not wait.
fn mp_wait(Block(block): Block, Seconds(timeout): Seconds) -> Wait {
    match (block, timeout) {
        (false, _) => Wait::Never,
        (true, None) => Wait::Until(None),
        (true, Some(seconds)) if seconds > 0.0 => Wait::Until(deadline_after(seconds)),
        (true, Some(_)) => Wait::Never,
    }
}

fn os_error(error: std::io::Error) -> PyErr {
    PyOSError::new_err(error.to_string())
}

impl PyChannel {
    fn ends(&self, slf: &Bound<'_, PyAny>) -> PyResult<&Ends> {
        let ends = self
            .ends
            .get()
            .ok_or_else(|| PyRuntimeError::new_err("the channel handle is not bound"))?;
        if self.closed.load(Ordering::Relaxed) {
            return Err(ends.flavor.closed(slf));
        }
        Ok(ends)
    }

    fn reader<'a>(&'a self, slf: &Bound<'_, PyAny>) -> PyResult<(&'a Ends, &'a Arc<Ring>)> {
        let ends = self.ends(slf)?;
        match &ends.rx {
            Some(end) if !self.unreadable.load(Ordering::Relaxed) => Ok((ends, &end.ring)),
            _ => Err(ends.flavor.write_only()),
        }
    }

    fn writer<'a>(&'a self, slf: &Bound<'_, PyAny>) -> PyResult<(&'a Ends, &'a Arc<Ring>)> {
        let ends = self.ends(slf)?;
        match &ends.tx {
            Some(end) => Ok((ends, &end.ring)),
            None => Err(ends.flavor.read_only()),
        }
    }

    /// The ring `qsize` and friends look at (closed or not, as the standard library's).
    fn any_ring(&self) -> PyResult<&Arc<Ring>> {
        let ends = self
            .ends
            .get()
            .ok_or_else(|| PyRuntimeError::new_err("the channel handle is not bound"))?;
        Ok(&ends.rx.as_ref().or(ends.tx.as_ref()).expect("bound").ring)
    }

    /// Writes `records` (encoded objects), waiting for room as `wait` allows; false when the
    /// wait ran out.
    fn send_records(
        slf: &Bound<'_, PyAny>,
        ends: &Ends,
        tx: &Ring,
        encoded: &[Encoded<'_>],
        wait: Wait,
    ) -> PyResult<bool> {
        let py = slf.py();
        let flavor = ends.flavor;
        if flavor == Flavor::Connection && readers_all_closed(tx) {
            return Err(flavor.broken());
        }
        let parts: Vec<_> = encoded.iter().map(Encoded::parts).collect();
        let records: Vec<(u32, &[&[u8]])> = encoded
            .iter()
            .zip(&parts)
            .map(|(encoded, parts)| (encoded.kind(), parts.as_slice()))
            .collect();
        let large = encoded.iter().map(Encoded::len).sum::<usize>() >= DETACHED_COPY;
        let mut done = 0;
        let mut waiter: Option<Waiter<'_, '_>> = None;
        loop {
            let taken = tx.taken();
            let rest = &records[done..];
            let mut outcome = if large {
                py.detach(|| tx.try_put_many(rest, ends.joinable, true))
            } else {
                tx.try_put_many(rest, ends.joinable, false)
            };
            if let Err((put, PutError::Busy)) = outcome {
                // Another writer holds the lock (for as long as it copies a record in).
                outcome = py
                    .detach(|| tx.try_put_many(&rest[put..], ends.joinable, true))
                    .map(|more| put + more)
                    .map_err(|(more, error)| (put + more, error));
            }
            let error = match outcome {
                Ok(_) => return Ok(true),
                Err((put, error)) => {
                    done += put;
                    error
                }
            };
            match error {
                PutError::Full | PutError::Busy => {}
                PutError::TooLarge => {
                    return Err(PyValueError::new_err(format!(
                        "the message does not fit in the channel, which holds at most {} bytes",
                        tx.capacity()
                    )))
                }
                PutError::Os(error) => return Err(os_error(error)),
            }
            if waiter.is_none() {
                waiter = Waiter::new(slf, wait);
            }
            let Some(waiter) = waiter.as_mut() else {
                return Ok(false);
            };
            match waiter.park(tx, Side::Room, |deadline| tx.wait_for_room(taken, deadline))? {
                Parked::Woken => {}
                Parked::TimedOut => return Ok(false),
                Parked::CheckDue => {
                    if flavor == Flavor::Connection && nobody_can_read(tx) {
                        return Err(flavor.broken());
                    }
                }
            }
        }
    }

    /// Takes the oldest record now, if there is one.
    fn try_take<'py>(
        py: Python<'py>,
        rx: &Ring,
        want: Want,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(peeked) = rx.peek() else {
            return Ok(None);
        };
        let target = Target::prepare(py, Some(peeked))?;
        let spot = target.spot();
        let mut raw: Option<Raw> = None;
        let taken = rx
            .take_many(1, false, |kind, pieces| raw = Some(spot.fill(kind, pieces)))
            .map_err(os_error)?;
        if taken == 0 && !rx.is_empty() {
            // Another reader holds the lock (for as long as it copies a record out).
            raw = py
                .detach(move || {
                    let mut raw = None;
                    rx.take_many(1, true, |kind, pieces| raw = Some(spot.fill(kind, pieces)))
                        .map(|_| raw)
                })
                .map_err(os_error)?;
        }
        match raw {
            Some(raw) => codec::decode(py, raw, target, want).map(Some),
            None => Ok(None),
        }
    }

    /// Takes a record, waiting as `wait` allows; `None` when the wait ran out.
    fn receive<'py>(
        slf: &Bound<'py, PyAny>,
        ends: &Ends,
        rx: &Ring,
        wait: Wait,
        want: Want,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let mut waiter: Option<Waiter<'_, '_>> = None;
        loop {
            if let Some(value) = Self::try_take(py, rx, want)? {
                return Ok(Some(value));
            }
            if writers_all_closed(rx) {
                return Err(ends.flavor.abandoned());
            }
            if waiter.is_none() {
                if wait != Wait::Never && py.detach(|| rx.data_soon()) {
                    continue; // the other side was that close: no need to park
                }
                waiter = Waiter::new(slf, wait);
            }
            let Some(waiter) = waiter.as_mut() else {
                return Ok(None);
            };
            match waiter.park(rx, Side::Data, |deadline| rx.wait_for_data(deadline))? {
                Parked::Woken => {}
                Parked::TimedOut => return Ok(None),
                Parked::CheckDue => {
                    if nobody_can_write(py, rx, waiter.untimed())? {
                        return Err(ends.flavor.abandoned());
                    }
                }
            }
        }
    }

    fn put_one(
        slf: &Bound<'_, Self>,
        item: &Bound<'_, PyAny>,
        wait: Wait,
        label: &str,
    ) -> PyResult<()> {
        let this = slf.get();
        let (ends, tx) = this.writer(slf.as_any())?;
        let encoded = codec::encode(item, label)?;
        if !this.used.load(Ordering::Relaxed) {
            this.used.store(true, Ordering::Relaxed);
        }
        if Self::send_records(slf.as_any(), ends, tx, std::slice::from_ref(&encoded), wait)? {
            Ok(())
        } else {
            Err(Full::new_err(()))
        }
    }

    fn get_one<'py>(slf: &Bound<'py, Self>, wait: Wait) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let (ends, rx) = this.reader(slf.as_any())?;
        Self::receive(slf.as_any(), ends, rx, wait, Want::Object)?.ok_or_else(|| Empty::new_err(()))
    }
}

#[pymethods]
impl PyChannel {
    #[new]
    #[classmethod]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        _cls: &Bound<'_, PyType>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> Self {
        PyChannel {
            ends: OnceLock::new(),
            closed: AtomicBool::new(false),
            unreadable: AtomicBool::new(false),
            used: AtomicBool::new(false),
        }
    }

    /// Makes this handle read from `rx` and write to `tx` (either may be None, not both).
    /// `kind` is "queue", "joinable" or "connection". Its roles are counted in the rings'
    /// tables of holders, unless `adopted` (the process that sent it counted them for this
    /// one); `arrived` says that the rings counted it in transit.
    #[pyo3(signature = (rx, tx, kind, *, adopted=false, arrived=false))]
    fn _bind(
        &self,
        rx: Option<Bound<'_, PyRing>>,
        tx: Option<Bound<'_, PyRing>>,
        kind: &str,
        adopted: bool,
        arrived: bool,
    ) -> PyResult<()> {
        let (flavor, joinable) = match kind {
            "queue" => (Flavor::Queue, false),
            "joinable" => (Flavor::Queue, true),
            "connection" => (Flavor::Connection, false),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "unknown channel kind {kind:?}"
                )))
            }
        };
        if rx.is_none() && tx.is_none() {
            return Err(PyValueError::new_err("a channel handle reads or writes"));
        }
        let end = |ring: Bound<'_, PyRing>| End {
            ring: ring.get().core.clone(),
            object: ring.unbind(),
        };
        let ends = Ends {
            rx: rx.map(end),
            tx: tx.map(end),
            flavor,
            joinable,
            attached: AtomicBool::new(false),
            adopted,
        };
        // Counted as a holder before it stops counting in transit: never neither.
        if adopted {
            ends.attached.store(true, Ordering::Release);
        } else {
            ends.attach();
        }
        if arrived {
            for (ring, _, _) in ends.roles() {
                ring.handle_arrived();
            }
        }
        self.ends
            .set(ends)
            .map_err(|_| PyRuntimeError::new_err("the channel handle is already bound"))
    }

    /// The rings this handle reads from and writes to.
    fn _rings(&self, py: Python<'_>) -> (Option<Py<PyRing>>, Option<Py<PyRing>>) {
        match self.ends.get() {
            Some(ends) => (
                ends.rx.as_ref().map(|end| end.object.clone_ref(py)),
                ends.tx.as_ref().map(|end| end.object.clone_ref(py)),
            ),
            None => (None, None),
        }
    }

    /// Before this process forks: each ring counts the child's copy of this handle in transit.
    fn _fork_prepare(&self) {
        if let Some(ends) = self.ends.get() {
            if ends.attached.load(Ordering::Acquire) && !self.closed.load(Ordering::Relaxed) {
                for (ring, _, _) in ends.roles() {
                    ring.send_handle();
                }
            }
        }
    }

    /// In a child just forked: the handle copied from the parent counts for this process.
    fn _fork_child(&self) {
        if let Some(ends) = self.ends.get() {
            if ends.attached.load(Ordering::Acquire) && !self.closed.load(Ordering::Relaxed) {
                ends.attach();
                for (ring, _, _) in ends.roles() {
                    ring.handle_arrived();
                }
            }
        }
    }

    /// Stops counting this handle for this process, without closing it (a fork server's
    /// copies, which it never uses).
    fn _forget(&self) {
        if let Some(ends) = self.ends.get() {
            ends.detach();
        }
    }

    /// Put `item` into the queue, waiting for room if `block` (at most `timeout` seconds, then
    /// `queue.Full`).
    #[pyo3(
        signature = (item, block=Block(true), timeout=Seconds(None)),
        text_signature = "($self, item, block=True, timeout=None)"
    )]
    fn put(
        slf: &Bound<'_, Self>,
        item: &Bound<'_, PyAny>,
        block: Block,
        timeout: Seconds,
    ) -> PyResult<()> {
        let wait = mp_wait(block, timeout);
        Self::put_one(slf, item, wait, "the item")
    }

    /// Put `item` into the queue without waiting; `queue.Full` if there is no room.
    fn put_nowait(slf: &Bound<'_, Self>, item: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::put_one(slf, item, Wait::Never, "the item")
    }

    /// Put each of `items`, in order, as few steps as room allows.
    #[pyo3(
        signature = (items, block=Block(true), timeout=Seconds(None)),
        text_signature = "($self, items, block=True, timeout=None)"
    )]
    fn put_many(
        slf: &Bound<'_, Self>,
        items: &Bound<'_, PyAny>,
        block: Block,
        timeout: Seconds,
    ) -> PyResult<()> {
        let wait = mp_wait(block, timeout);
        let this = slf.get();
        let (ends, tx) = this.writer(slf.as_any())?;
        let mut encoded = Vec::new();
        for (i, item) in items.try_iter()?.enumerate() {
            encoded.push(codec::encode(&item?, &format!("items[{i}]"))?);
        }
        if Self::send_records(slf.as_any(), ends, tx, &encoded, wait)? {
            Ok(())
        } else {
            Err(Full::new_err(()))
        }
    }

    /// Remove and return an item, waiting for one if `block` (at most `timeout` seconds, then
    /// `queue.Empty`).
    #[pyo3(
        signature = (block=Block(true), timeout=Seconds(None)),
        text_signature = "($self, block=True, timeout=None)"
    )]
    fn get<'py>(
        slf: &Bound<'py, Self>,
        block: Block,
        timeout: Seconds,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait = mp_wait(block, timeout);
        Self::get_one(slf, wait)
    }

    /// Remove and return an item without waiting; `queue.Empty` if there is none.
    fn get_nowait<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::get_one(slf, Wait::Never)
    }

    /// Remove and return up to `max_items` items, oldest first, waiting for the first one if
    /// `block` (as `get`); the others are those there now.
    #[pyo3(
        signature = (max_items, block=Block(true), timeout=Seconds(None)),
        text_signature = "($self, max_items, block=True, timeout=None)"
    )]
    fn get_many<'py>(
        slf: &Bound<'py, Self>,
        max_items: usize,
        block: Block,
        timeout: Seconds,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let wait = mp_wait(block, timeout);
        let this = slf.get();
        let (ends, rx) = this.reader(slf.as_any())?;
        let list = PyList::empty(py);
        if max_items == 0 {
            return Ok(list);
        }
        let first = Self::receive(slf.as_any(), ends, rx, wait, Want::Object)?
            .ok_or_else(|| Empty::new_err(()))?;
        list.append(first)?;
        let none = Target::prepare(py, None)?.spot();
        let mut raws = Vec::new();
        rx.take_many(max_items - 1, true, |kind, pieces| {
            raws.push(none.fill(kind, pieces))
        })
        .map_err(os_error)?;
        for raw in raws {
            list.append(codec::decode(
                py,
                raw,
                Target::prepare(py, None)?,
                Want::Object,
            )?)?;
        }
        Ok(list)
    }

    /// Send `obj` to the other end.
    fn send(slf: &Bound<'_, Self>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::put_one(slf, obj, Wait::Until(None), "the object")
    }

    /// Receive an object; `EOFError` when nothing is left and nobody can send.
    fn recv<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::get_one(slf, Wait::Until(None))
    }

    /// Sends the bytes of `data` (any C-contiguous buffer) as one message.
    fn _send_bytes(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let this = slf.get();
        let (ends, tx) = this.writer(slf.as_any())?;
        let encoded = codec::message(data)?;
        Self::send_records(
            slf.as_any(),
            ends,
            tx,
            std::slice::from_ref(&encoded),
            Wait::Until(None),
        )?;
        Ok(())
    }

    /// Receive a message's bytes; `EOFError` when nothing is left and nobody can send;
    /// `OSError` if it is longer than `maxlength` (the connection is then unreadable).
    #[pyo3(signature = (maxlength=None))]
    fn recv_bytes<'py>(
        slf: &Bound<'py, Self>,
        maxlength: Option<isize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let (ends, rx) = this.reader(slf.as_any())?;
        let limit = match maxlength {
            Some(n) if n < 0 => return Err(PyValueError::new_err("negative maxlength")),
            Some(n) => Some(n as usize),
            None => None,
        };
        loop {
            let value = Self::receive_bounded(slf, ends, rx, limit)?;
            if let Some(value) = value {
                return Ok(value);
            }
        }
    }

    /// Whether there is anything to read, waiting up to `timeout` seconds (None: for ever)
    /// for something; true also when nothing is left and nobody can send (a `recv` then
    /// raises `EOFError`).
    #[pyo3(
        signature = (timeout=Seconds(Some(0.0))),
        text_signature = "($self, timeout=0.0)"
    )]
    fn poll(slf: &Bound<'_, Self>, timeout: Seconds) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let (_, rx) = this.reader(slf.as_any())?;
        let wait = mp_wait(Block(true), timeout);
        let mut waiter: Option<Waiter<'_, '_>> = None;
        loop {
            if !rx.is_empty() || writers_all_closed(rx) {
                return Ok(true);
            }
            if waiter.is_none() {
                waiter = Waiter::new(slf.as_any(), wait);
            }
            let Some(waiter) = waiter.as_mut() else {
                return Ok(false);
            };
            match waiter.park(rx, Side::Data, |deadline| rx.wait_for_data(deadline))? {
                Parked::Woken => {}
                Parked::TimedOut => return Ok(false),
                Parked::CheckDue => {
                    if nobody_can_write(py, rx, waiter.untimed())? {
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// Whether a read would find nothing and nobody can write any more: what a blocking read
    /// (`untimed`: with no deadline) would end with the "abandoned" error for (`EOFError` for a
    /// connection).
    #[pyo3(signature = (untimed=false))]
    fn _nobody_can_write(slf: &Bound<'_, Self>, untimed: bool) -> PyResult<bool> {
        let this = slf.get();
        match this.ends.get().and_then(|ends| ends.rx.as_ref()) {
            Some(rx) if !this.closed.load(Ordering::Relaxed) => {
                Ok(writers_all_closed(&rx.ring) || nobody_can_write(slf.py(), &rx.ring, untimed)?)
            }
            _ => Ok(false),
        }
    }

    /// Items in the queue now (a snapshot).
    fn qsize(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Ok(slf.get().any_ring()?.len() as usize)
    }

    /// Whether the queue is empty now.
    fn empty(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Ok(slf.get().any_ring()?.is_empty())
    }

    /// Whether the queue is full now.
    fn full(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Ok(slf.get().any_ring()?.is_full())
    }

    /// A descriptor that polls readable while there is something to read (or nothing is left
    /// and nobody can send), for `select`, `poll` and `multiprocessing.connection.wait`.
    fn fileno(slf: &Bound<'_, Self>) -> PyResult<i32> {
        let this = slf.get();
        let ends = this.ends(slf.as_any())?;
        let end = ends.rx.as_ref().or(ends.tx.as_ref()).expect("bound");
        Ok(end.ring.poll_fd().as_raw_fd())
    }

    /// Count one task put to the queue as done (`JoinableQueue.task_done`: a plain queue has
    /// no such method, as the standard library's has not, which code tests for).
    fn _task_done(slf: &Bound<'_, Self>) -> PyResult<()> {
        let ring = slf.get().any_ring()?;
        if ring.task_done() {
            Ok(())
        } else {
            Err(PyValueError::new_err("task_done() called too many times"))
        }
    }

    /// Wait until every task put to the queue is done (`JoinableQueue.join`).
    fn _join(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let ends = this.ends(slf.as_any())?;
        let ring = this.any_ring()?;
        let mut waiter: Option<Waiter<'_, '_>> = None;
        loop {
            if ring.unfinished() == 0 {
                return Ok(());
            }
            let waiter = waiter.get_or_insert_with(|| {
                Waiter::new(slf.as_any(), Wait::Until(None)).expect("an untimed wait")
            });
            match waiter.park(ring, Side::Tasks, |deadline| ring.wait_unfinished(deadline))? {
                Parked::Woken | Parked::TimedOut => {}
                Parked::CheckDue => {
                    if nobody_can_finish(py, ring)? {
                        return Err(ends.flavor.abandoned());
                    }
                }
            }
        }
    }

    /// Let go of the channel: this handle reads and writes no more, and no longer counts as a
    /// reader or writer (so that readers at the other end see the end).
    fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            if let Some(ends) = self.ends.get() {
                ends.detach();
            }
        }
    }

    /// Whether anything was put through this handle.
    fn _used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the handle is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Whether the handle reads.
    #[getter]
    fn readable(&self) -> bool {
        self.ends.get().is_some_and(|ends| ends.rx.is_some())
            && !self.unreadable.load(Ordering::Relaxed)
    }

    /// Whether the handle writes.
    #[getter]
    fn writable(&self) -> bool {
        self.ends.get().is_some_and(|ends| ends.tx.is_some())
    }
}

impl PyChannel {
    /// One `recv_bytes`: a message's bytes, or `OSError` for one longer than `limit`.
    fn receive_bounded<'py>(
        slf: &Bound<'py, Self>,
        ends: &Ends,
        rx: &Ring,
        limit: Option<usize>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if let Some(limit) = limit {
            if rx.peek().is_some_and(|(len, _)| len > limit) {
                let this = slf.get();
                if ends.tx.is_some() {
                    this.unreadable.store(true, Ordering::Relaxed);
                } else {
                    this.close();
                }
                return Err(PyOSError::new_err("bad message length"));
            }
        }
        let value = Self::receive(slf.as_any(), ends, rx, Wait::Until(None), Want::Bytes)?;
        if let (Some(limit), Some(value)) = (limit, &value) {
            if value.len()? > limit {
                // Another record than the one looked at, and too long: as above.
                slf.get().unreadable.store(true, Ordering::Relaxed);
                return Err(PyOSError::new_err("bad message length"));
            }
        }
        Ok(value)
    }
}
