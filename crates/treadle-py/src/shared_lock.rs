//! `treadle._treadle._SharedLock`: a lock, reentrant lock or semaphore in shared memory
//! (`treadle_os::shared_lock`), the native half of `treadle.multiprocessing.synchronize`'s
//! classes, as `_multiprocessing.SemLock` is of the standard library's; and
//! `OwnerDiedError`, raised once by the acquisition that finds its owner dead.

use crate::runtime::timeout::{seconds, seconds_wait, Wait};
use crate::runtime::wait::block_on;
use pyo3::exceptions::{PyAssertionError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use treadle_core::wait_graph::{Mode, WaitGraph};
use treadle_os::os_threads::fork_generation;
use treadle_os::shared_lock::{
    register, Acquire, CycleEdge, DeadOwner, Kind, ReleaseError, SharedLock, Watch, VALUE_MAX,
};

pub(crate) mod fast;

pyo3::create_exception!(
    treadle.multiprocessing,
    OwnerDiedError,
    PyRuntimeError,
    "Raised by the acquire() of a treadle.multiprocessing Lock or RLock whose owner process died \
     holding it: what the lock guarded may be half-written. Raised once, to one caller; the lock \
     is free afterwards. Attributes: pid, tid (the thread that took it) and name (the process's \
     name) of the dead owner."
);

/// A lock, reentrant lock or semaphore shared between processes: the base class of
/// `treadle.multiprocessing.synchronize`'s, so that their `acquire`, `release`, `__enter__` and
/// `__exit__` are these native methods.
#[pyclass(frozen, weakref, subclass, name = "_SharedLock", module = "treadle")]
pub(crate) struct PySharedLock {
    core: Arc<SharedLock>,
}

/// This process's `multiprocessing.current_process().name`, asked once per process.
fn process_name(py: Python<'_>) -> String {
    static NAME: Mutex<Option<(u64, String)>> = Mutex::new(None);
    let generation = fork_generation();
    if let Some((found_in, name)) = NAME.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if *found_in == generation {
            return name.clone();
        }
    }
    let name = py
        .import("multiprocessing")
        .and_then(|m| m.call_method0("current_process"))
        .and_then(|p| p.getattr("name"))
        .and_then(|n| n.extract::<String>())
        .unwrap_or_default();
    *NAME.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, name.clone()));
    name
}

fn owner_died(lock: &Bound<'_, PySharedLock>, dead: DeadOwner) -> PyErr {
    let py = lock.py();
    let who = if dead.name.is_empty() {
        format!("process {}", dead.pid)
    } else {
        format!("process {} ({:?})", dead.pid, dead.name)
    };
    let kind = match lock.get().core.kind() {
        Kind::RLock => "RLock",
        _ => "Lock",
    };
    let error = OwnerDiedError::new_err(format!(
        "{who} died holding this {kind} (thread {}): what it guarded may be half-written; the \
         lock is free again",
        dead.tid
    ));
    let value = error.value(py);
    let _ = value.setattr("pid", dead.pid);
    let _ = value.setattr("tid", dead.tid);
    let _ = value.setattr("name", dead.name);
    error
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Lock => "Lock",
        Kind::RLock => "RLock",
        Kind::Semaphore => "Semaphore",
    }
}

fn who(pid: u32, tid: u32, name: &str) -> String {
    if name.is_empty() {
        format!("process {pid} thread {tid}")
    } else {
        format!("process {pid} ({name:?}) thread {tid}")
    }
}

/// The report of a deadlock across processes: each wait, who holds what the next waits for.
fn deadlock_report(py: Python<'_>, cycle: &[CycleEdge]) -> String {
    let mut lines =
        vec!["deadlock across processes: each waits for a lock the next holds".to_owned()];
    for (i, edge) in cycle.iter().enumerate() {
        let held = &cycle[(i + cycle.len() - 1) % cycle.len()];
        let waiter_name = if i == 0 {
            process_name(py)
        } else {
            held.holder_name.clone()
        };
        lines.push(format!(
            "  {} holds {} #{} and waits for {} #{}, held by {}{}",
            who(edge.waiter.0, edge.waiter.1, &waiter_name),
            kind_name(held.kind),
            held.lock,
            kind_name(edge.kind),
            edge.lock,
            who(edge.holder.0, edge.holder.1, &edge.holder_name),
            if i == 0 { "   <- this wait raises" } else { "" },
        ));
    }
    lines.push(
        "(locks shared by processes: #n is the same lock in every process; the other waits go \
         on until this one gives up what it holds)"
            .to_owned(),
    );
    lines.join("\n")
}

/// `treadle.DeadlockError` with `report` (raise mode), or `None` once the report is issued as
/// a `DeadlockWarning` (warn mode).
fn deadlock(py: Python<'_>, report: String, mode: Mode) -> PyResult<Option<PyErr>> {
    let errors = py.import("treadle.deadlock.errors")?;
    if mode == Mode::Raise {
        let error = errors.getattr("DeadlockError")?.call1((report,))?;
        return Ok(Some(PyErr::from_value(error)));
    }
    let category = errors.getattr("DeadlockWarning")?;
    py.import("warnings")?
        .call_method1("warn", (report, category, 2))?;
    Ok(None)
}

impl PySharedLock {
    fn wrap(core: SharedLock) -> Self {
        let core = Arc::new(core);
        register(&core);
        PySharedLock { core }
    }

    /// Opens the lock in `slot` of the arena whose descriptor another process passed (the
    /// caller keeps `fd`; the lock duplicates it if it needs it).
    fn open(fd: i32, slot: usize) -> PyResult<Self> {
        if fd < 0 {
            return Err(PyValueError::new_err("bad lock descriptor"));
        }
        // SAFETY: the descriptor is only used during this call, while the caller keeps it open;
        // one that is not open fails `fstat` (EBADF) before any other use.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let core = SharedLock::open(fd, slot).map_err(|e| PyOSError::new_err(format!("{e}")))?;
        Ok(PySharedLock::wrap(core))
    }

    /// Tries once, and only where nothing but the core has work to do (no name to record).
    #[inline]
    pub(crate) fn try_acquire_quietly(&self) -> bool {
        (self.core.kind() == Kind::Semaphore || self.core.name_recorded())
            && self.core.try_acquire()
    }

    /// Whether this is an `RLock` the calling thread holds.
    #[inline]
    pub(crate) fn holds_rlock(&self) -> bool {
        self.core.kind() == Kind::RLock && self.core.is_mine()
    }

    #[inline]
    fn taken(&self, py: Python<'_>) {
        if self.core.kind() != Kind::Semaphore && !self.core.name_recorded() {
            self.core.record_name(&process_name(py));
        }
    }
}

#[pymethods]
impl PySharedLock {
    /// A new lock: `kind` 0 (Lock), 1 (RLock) or 2 (Semaphore, starting at `value`, released
    /// at most up to `maxvalue`); or, given `fd`, the lock in `slot` of the arena whose
    /// descriptor another process passed (the caller keeps `fd`).
    #[new]
    #[pyo3(signature = (kind=0, value=1, maxvalue=VALUE_MAX, *, fd=None, slot=0))]
    fn new(kind: u32, value: u32, maxvalue: u32, fd: Option<i32>, slot: usize) -> PyResult<Self> {
        if let Some(fd) = fd {
            return PySharedLock::open(fd, slot);
        }
        let kind = match kind {
            0 => Kind::Lock,
            1 => Kind::RLock,
            2 => Kind::Semaphore,
            _ => return Err(PyValueError::new_err("unrecognized kind")),
        };
        if value > maxvalue || maxvalue > VALUE_MAX {
            return Err(PyValueError::new_err("invalid value"));
        }
        // With the interpreter attached (no wait: a slot of an arena, now and then a new
        // arena), so that no fork from Python copies the carving's mutex held.
        let core = SharedLock::create(kind, value, maxvalue)
            .map_err(|e| PyOSError::new_err(format!("cannot make a shared lock: {e}")))?;
        Ok(PySharedLock::wrap(core))
    }

    /// The lock itself: `multiprocessing.synchronize`'s code and CPython's tests reach a lock's
    /// native half as `lock._semlock`.
    #[getter]
    fn _semlock<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }

    /// The descriptor of the shared memory arena the lock is in (owned by the lock: duplicate
    /// it to pass it on, with `slot()`).
    fn fd(&self) -> i32 {
        self.core.fd().as_raw_fd()
    }

    /// The lock's slot in its arena.
    fn slot(&self) -> usize {
        self.core.slot()
    }

    /// Takes the lock (or one of the semaphore's count), as `SemLock.acquire`: `timeout` None
    /// waits for ever, a negative one is 0.
    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(
        slf: &Bound<'_, Self>,
        block: bool,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let this = slf.get();
        if this.core.try_acquire() {
            this.taken(slf.py());
            return Ok(true);
        }
        if block && this.core.kind() != Kind::Semaphore && this.core.try_acquire_soon() {
            this.taken(slf.py());
            return Ok(true);
        }
        let wait = match (block, timeout) {
            (false, _) => Wait::Never,
            (true, None) => Wait::Until(None),
            (true, Some(t)) if t.is_none() => Wait::Until(None),
            (true, Some(t)) => seconds_wait(slf.py(), seconds(t)?.max(0.0))?,
        };
        let mode = WaitGraph::global().mode();
        let mut watch = Watch {
            detect: mode != Mode::Off,
            timed: wait != Wait::Until(None),
        };
        loop {
            let outcome = block_on(slf.py(), wait, None, |deadline| {
                match this.core.acquire_until(deadline, watch) {
                    Acquire::TimedOut => None,
                    other => Some(other),
                }
            })?;
            return match outcome {
                Some(Acquire::Taken) => {
                    this.taken(slf.py());
                    Ok(true)
                }
                Some(Acquire::OwnerDied(dead)) => Err(owner_died(slf, dead)),
                Some(Acquire::Deadlock(cycle)) => {
                    match deadlock(slf.py(), deadlock_report(slf.py(), &cycle), mode)? {
                        Some(error) => Err(error),
                        None => {
                            watch.detect = false; // warned: wait on, as warn mode does
                            continue;
                        }
                    }
                }
                Some(Acquire::TimedOut) | None => Ok(false),
            };
        }
    }

    /// Gives it back: `ValueError` for a lock not held or a bounded semaphore at its bound,
    /// `AssertionError` for an RLock its caller does not own (as `SemLock`).
    pub(crate) fn release(&self) -> PyResult<()> {
        self.core.release().map_err(|error| match error {
            ReleaseError::TooManyReleases => {
                PyValueError::new_err("semaphore or lock released too many times")
            }
            ReleaseError::NotOwner => {
                PyAssertionError::new_err("attempt to release recursive lock not owned by thread")
            }
        })
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let this = slf.get();
        if this.core.try_acquire() {
            this.taken(slf.py());
            return Ok(true);
        }
        PySharedLock::acquire(slf, true, None)
    }

    #[pyo3(signature = (_exc_type=None, _exc=None, _traceback=None))]
    fn __exit__(
        &self,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.release()
    }

    /// How many times this process holds it (an RLock's depth; 1 for a lock).
    fn _count(&self) -> u32 {
        self.core.count_here()
    }

    /// The semaphore's count (a lock: 1 free, 0 held).
    fn _get_value(&self) -> u32 {
        self.core.value()
    }

    /// Whether the count is zero (a lock: whether it is held).
    fn _is_zero(&self) -> bool {
        self.core.value() == 0
    }

    /// Whether the calling thread holds the lock.
    fn _is_mine(&self) -> bool {
        self.core.is_mine()
    }

    /// The holder's (pid, thread id); (0, 0) when free or a semaphore.
    fn _holder(&self) -> (u32, u32) {
        self.core.holder()
    }

    /// 0 (Lock), 1 (RLock) or 2 (Semaphore).
    #[getter]
    fn kind(&self) -> u32 {
        match self.core.kind() {
            Kind::Lock => 0,
            Kind::RLock => 1,
            Kind::Semaphore => 2,
        }
    }

    /// The semaphore's bound.
    #[getter]
    fn maxvalue(&self) -> u32 {
        self.core.maxvalue()
    }

    /// Times an acquisition found the owner dead.
    #[getter]
    fn owners_died(&self) -> u64 {
        self.core.recovered()
    }

    /// The lock's identity, the same in every process (its arena's inode number and its slot).
    #[getter]
    fn id(&self) -> u64 {
        self.core.id()
    }
}
