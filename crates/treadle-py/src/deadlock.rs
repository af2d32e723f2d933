//! Deadlock detection's Python side: which Python thread is which, what each waits on, and how a
//! verdict of the core's wait graph becomes `treadle.DeadlockError`.
//!
//! The graph itself (cycles through owned waits, stalls of the whole process) is in
//! `treadle_core::wait_graph`. Here: a [`Track`] names what a wait is on, for the graph (a
//! `WaitTarget`) and for the report (the Python object); [`publish`] puts it in the graph and
//! checks for an owned cycle; the report is built by a Python function that the `treadle` package
//! registers (`_set_reporter`), so that formatting lives in Python and this crate does not import
//! the package above it.

use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use treadle_core::wait_graph::{Edge, Mode, Published, Stall, WaitGraph, WaitKind, WaitTarget};
use treadle_core::{Event, ThreadId};
use treadle_os::os_threads;

/// What a wait is on.
pub(crate) struct Track<'a, 'py> {
    pub(crate) target: &'a dyn WaitTarget,
    pub(crate) kind: WaitKind,
    pub(crate) ticket: u64,
    pub(crate) object: &'a Bound<'py, PyAny>,
}

/// treadle thread number -> `threading.get_ident()`, for every thread that has waited in treadle.
static IDENTS: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);
/// The reverse: `threading.get_ident()` -> treadle thread number.
static THREADS: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);
/// treadle thread number -> the kernel's id of the thread (`gettid`), to tell the interpreter's
/// parked threads from threads made by C code.
static NATIVE_IDS: Mutex<Option<HashMap<u64, i32>>> = Mutex::new(None);
/// treadle thread number -> the object it waits on now, for reports.
static WAITING_ON: Mutex<Option<HashMap<u64, Py<PyAny>>>> = Mutex::new(None);
/// The main thread's treadle number, once known.
static MAIN_THREAD: AtomicU64 = AtomicU64::new(0);
static REPORTER: Mutex<Option<Py<PyAny>>> = Mutex::new(None);

fn with_map<K, V, R>(
    map: &Mutex<Option<HashMap<K, V>>>,
    f: impl FnOnce(&mut HashMap<K, V>) -> R,
) -> R {
    f(map.lock().get_or_insert_with(HashMap::new))
}

struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        with_map(&NATIVE_IDS, |native| native.remove(&self.0));
        if let Some(ident) = with_map(&IDENTS, |idents| idents.remove(&self.0)) {
            // A later thread may already have the same ident (they are reused): leave its entry.
            with_map(&THREADS, |threads| {
                if threads.get(&ident) == Some(&self.0) {
                    threads.remove(&ident);
                }
            });
        }
    }
}

/// The calling thread's `threading.get_ident()`: cheap (no thread-local lookup), so that a
/// lock can record its holder on every acquisition.
#[inline]
pub(crate) fn current_ident() -> u64 {
    // SAFETY: PyThread_get_thread_ident has no preconditions; it is pthread_self() on POSIX.
    unsafe { pyo3::ffi::PyThread_get_thread_ident() as u64 }
}

/// The treadle thread number of the thread with `threading.get_ident()` `ident`, if that thread
/// has ever waited in treadle (every thread in a cycle has).
pub(crate) fn thread_of_ident(ident: u64) -> Option<ThreadId> {
    with_map(&THREADS, |threads| threads.get(&ident).copied()).map(ThreadId)
}

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    // Removes the thread's entry when the OS thread ends.
    static REGISTRATION: Cell<Option<Registration>> = const { Cell::new(None) };
}

/// Records the calling thread's Python identity (once per thread) and returns its number.
pub(crate) fn register_current_thread() -> ThreadId {
    let me = ThreadId::current();
    if !REGISTERED.with(Cell::get) {
        let ident = current_ident();
        with_map(&IDENTS, |idents| idents.insert(me.0, ident));
        with_map(&THREADS, |threads| threads.insert(ident, me.0));
        with_map(&NATIVE_IDS, |native| {
            native.insert(me.0, os_threads::current_thread_id())
        });
        if crate::wait::is_main_thread() {
            MAIN_THREAD.store(me.0, Ordering::Relaxed);
        }
        REGISTERED.with(|registered| registered.set(true));
        REGISTRATION.with(|registration| registration.set(Some(Registration(me.0))));
    }
    me
}

fn ident_of(thread: Option<ThreadId>) -> Option<u64> {
    let thread = thread?;
    with_map(&IDENTS, |idents| idents.get(&thread.0).copied())
}

/// A wait in the graph. Dropping it withdraws the wait.
pub(crate) struct Tracked<'a> {
    published: Published<'a>,
    graph: &'a WaitGraph,
    reported: bool,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        let thread = self.published.thread();
        let object = with_map(&WAITING_ON, |waiting| waiting.remove(&thread.0));
        drop(object);
    }
}

impl Tracked<'_> {
    /// Whether the cycle check at publication already reported (in warn mode).
    pub(crate) fn reported_cycle(&self) -> bool {
        self.reported
    }

    /// Hands `edges` to the reporter; in raise mode, the error to end the wait with.
    pub(crate) fn report(&self, py: Python<'_>, edges: &[Edge], verdict: &str) -> PyResult<()> {
        let mode = self.graph.mode();
        let Some(error) = call_reporter(py, edges, verdict, mode)? else {
            return Ok(());
        };
        if mode == Mode::Raise {
            Err(PyErr::from_value(error))
        } else {
            Ok(())
        }
    }

    /// A wait with a deadline ran out: if it was part of a cycle, that is worth a log line.
    /// For the periodic look of a parked wait: reports a cycle through this thread that a wait
    /// which cannot fail (a condition's re-acquire) closed; in raise mode, the error to end this
    /// wait with. Whether one was found.
    pub(crate) fn report_unraised_cycle(&self, py: Python<'_>) -> PyResult<bool> {
        match self.graph.find_unraised_cycle(self.published.thread()) {
            Some(cycle) => self.report(py, &cycle, "cycle").map(|()| true),
            None => Ok(false),
        }
    }

    pub(crate) fn timed_out(&self, py: Python<'_>) {
        if let Some(cycle) = self.graph.find_cycle(self.published.thread()) {
            if let Err(error) = call_reporter(py, &cycle, "timeout", Mode::Warn) {
                error.write_unraisable(py, None);
            }
        }
    }
}

/// Publishes the calling thread's wait and checks it for an owned cycle, which in raise mode
/// ends the wait with `DeadlockError` at once.
pub(crate) fn publish<'a>(
    py: Python<'_>,
    graph: &'a WaitGraph,
    track: &Track<'a, '_>,
    timed: bool,
) -> PyResult<Tracked<'a>> {
    let mut tracked = publish_unchecked(graph, track, timed);
    if timed {
        return Ok(tracked);
    }
    let me = tracked.published.thread();
    if let Some(cycle) = graph.find_cycle(me) {
        // A plain Lock may be released by any thread: waiting on one's own Lock is a deadlock
        // only if no other thread is left to release it, which is the stall check's question.
        let self_wait_on_lock = cycle.len() == 1 && cycle[0].kind == WaitKind::Lock;
        if !self_wait_on_lock && !cycle.iter().any(|edge| edge.timed) {
            tracked.report(py, &cycle, "cycle")?;
            tracked.reported = true;
        }
    }
    Ok(tracked)
}

/// Publishes the calling thread's wait with no cycle check: for a wait that cannot fail (a
/// condition's re-acquire), whose cycles the other participants report when they look.
pub(crate) fn publish_unchecked<'a>(
    graph: &'a WaitGraph,
    track: &Track<'a, '_>,
    timed: bool,
) -> Tracked<'a> {
    let me = register_current_thread();
    with_map(&WAITING_ON, |waiting| {
        waiting.insert(me.0, track.object.clone().unbind())
    });
    // SAFETY: the `Published` lives in the returned `Tracked`, which the caller drops before the
    // wait returns, while `track.target` (borrowed for 'a) is still alive.
    let published = unsafe { graph.publish(track.target, track.kind, timed, track.ticket) };
    Tracked {
        published,
        graph,
        reported: false,
    }
}

/// Whether every live thread is parked in treadle with nothing ready: a stall to confirm.
pub(crate) fn suspect_stall(py: Python<'_>, graph: &WaitGraph) -> PyResult<Option<Stall>> {
    static COUNT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let count = COUNT.import(py, "_thread", "_count")?;
    let live: usize = count.call0()?.extract::<usize>()? + 1;
    let Some(stall) = graph.find_stall(live) else {
        return Ok(None);
    };
    if foreign_threads_could_wake(&stall, live) || signal_handlers_could_wake(py)? {
        return Ok(None);
    }
    Ok(Some(stall))
}

/// Whether a thread outside the stall could wake one of its waiters. Besides the `live`
/// interpreter threads, parked in the stall, the process may have threads made by C code (a
/// library's worker pool, a callback thread); each could call back into Python, unless it
/// sleeps in an untimed futex wait, from which only another thread wakes it (an idle pool
/// thread). See `treadle_os::os_threads`.
fn foreign_threads_could_wake(stall: &Stall, live: usize) -> bool {
    let Some(tids) = os_threads::thread_ids() else {
        return false; // not Linux: nothing to go on, as before threads could be counted
    };
    if tids.len() <= live {
        return false;
    }
    let parked: Vec<i32> = with_map(&NATIVE_IDS, |native| {
        stall
            .threads()
            .filter_map(|thread| native.get(&thread.0).copied())
            .collect()
    });
    tids.iter()
        .filter(|tid| !parked.contains(tid))
        .any(|&tid| !os_threads::sleeps_until_woken(tid))
}

/// A Python signal handler (other than the default SIGINT one) may set an event or release a
/// lock in the main thread: with one installed, a parked main thread is not hopeless.
fn signal_handlers_could_wake(py: Python<'_>) -> PyResult<bool> {
    let signal = py.import("signal")?;
    let default_int = signal.getattr("default_int_handler")?;
    for signum in signal.call_method0("valid_signals")?.try_iter()? {
        let handler = match signal.call_method1("getsignal", (signum?,)) {
            Ok(handler) => handler,
            Err(_) => continue,
        };
        if handler.is_callable() && !handler.is(&default_int) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn edges_to_python<'py>(py: Python<'py>, edges: &[Edge]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for edge in edges {
        let object = with_map(&WAITING_ON, |waiting| {
            waiting
                .get(&edge.waiter.0)
                .map(|object| object.clone_ref(py))
        });
        list.append((
            ident_of(Some(edge.waiter)),
            edge.kind.name(),
            object,
            ident_of(edge.owner),
            edge.timed,
        ))?;
    }
    Ok(list)
}

fn call_reporter<'py>(
    py: Python<'py>,
    edges: &[Edge],
    verdict: &str,
    mode: Mode,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let reporter = REPORTER.lock().as_ref().map(|r| r.clone_ref(py));
    let Some(reporter) = reporter else {
        return Ok(None);
    };
    let edges = edges_to_python(py, edges)?;
    let result = reporter.bind(py).call1((edges, verdict, mode_name(mode)))?;
    Ok((!result.is_none()).then_some(result))
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Off => "off",
        Mode::Warn => "warn",
        Mode::Raise => "raise",
    }
}

/// `_set_reporter(fn)`: `fn(edges, verdict, mode)` builds the report; it returns the exception
/// to raise, or None. Each edge is `(waiter_ident, kind, waited_object, owner_ident, timed)`.
#[pyfunction]
pub(crate) fn _set_reporter(reporter: Py<PyAny>) {
    *REPORTER.lock() = Some(reporter);
}

/// `set_mode("raise" | "warn" | "off")`.
#[pyfunction]
pub(crate) fn set_mode(mode: &str) -> PyResult<()> {
    let mode = match mode {
        "raise" => Mode::Raise,
        "warn" => Mode::Warn,
        "off" => Mode::Off,
        other => {
            return Err(PyValueError::new_err(format!(
                "deadlock mode must be 'raise', 'warn' or 'off', not {other:?}"
            )))
        }
    };
    WaitGraph::global().set_mode(mode);
    Ok(())
}

/// The current deadlock-detection mode.
#[pyfunction]
pub(crate) fn get_mode() -> &'static str {
    mode_name(WaitGraph::global().mode())
}

/// Every wait published now, as `(waiter_ident, kind, waited_object, owner_ident, timed)`.
#[pyfunction]
pub(crate) fn _waits(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    edges_to_python(py, &WaitGraph::global().snapshot())
}

/// Where the Python code that called into treadle is, as `file:line`, while detection is on.
pub(crate) fn creation_site(py: Python<'_>) -> Option<Box<str>> {
    if WaitGraph::global().mode() == Mode::Off {
        return None;
    }
    // SAFETY: attached to the interpreter (we hold `py`); PyEval_GetFrame returns a borrowed
    // frame or null, and PyFrame_GetCode a new reference that `from_owned_ptr` takes over.
    unsafe {
        let frame = pyo3::ffi::PyEval_GetFrame();
        if frame.is_null() {
            return None;
        }
        let line = pyo3::ffi::PyFrame_GetLineNumber(frame);
        let code = pyo3::ffi::PyFrame_GetCode(frame);
        let code = Bound::from_owned_ptr(py, code.cast());
        let file: String = code.getattr("co_filename").ok()?.extract().ok()?;
        Some(format!("{file}:{line}").into_boxed_str())
    }
}

/// The end of a thread, as `treadle.Thread.join` and `treadle.main_thread().join` wait for it.
#[pyclass(frozen, name = "_ThreadDone", module = "treadle")]
pub(crate) struct PyThreadDone {
    done: Event,
    owner: AtomicU64,
    main: bool,
}

impl WaitTarget for PyThreadDone {
    fn owner(&self) -> Option<ThreadId> {
        let owner = if self.main {
            MAIN_THREAD.load(Ordering::Relaxed)
        } else {
            self.owner.load(Ordering::Relaxed)
        };
        (owner != 0).then_some(ThreadId(owner))
    }
    fn is_ready(&self, _ticket: u64) -> bool {
        self.done.is_set()
    }
}

#[pymethods]
impl PyThreadDone {
    #[new]
    #[pyo3(signature = (main=false))]
    fn new(main: bool) -> Self {
        PyThreadDone {
            done: Event::new(),
            owner: AtomicU64::new(0),
            main,
        }
    }

    /// Called by the thread itself when it starts running.
    fn bind_current(&self) {
        let me = register_current_thread();
        self.owner.store(me.0, Ordering::Relaxed);
    }

    /// Called by the thread itself when its target has returned (or raised).
    fn finish(&self) {
        self.done.set();
    }

    fn is_done(&self) -> bool {
        self.done.is_set()
    }

    /// Waits for the thread's end; `thread` is what the report names.
    #[pyo3(signature = (thread, timeout=None))]
    fn wait(
        slf: &Bound<'_, Self>,
        thread: &Bound<'_, PyAny>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.done.is_set() {
            return Ok(true);
        }
        let wait = crate::timeout::optional_wait(py, timeout)?;
        let ticket = this.done.ticket();
        let track = Track {
            target: this,
            kind: WaitKind::Join,
            ticket: ticket.value(),
            object: thread,
        };
        crate::wait::block_until(py, wait, Some(track), |deadline| {
            this.done.wait_until(ticket, deadline)
        })
    }
}

/// This thread's treadle number (for tests and reports).
#[pyfunction]
pub(crate) fn _current_thread_number() -> u64 {
    register_current_thread().0
}

/// Lock-order mode: whether acquisitions and releases of treadle's locks are reported to the
/// hook `treadle.deadlock` installs. Off by default; one relaxed load per operation when off.
static LOCK_ORDER: AtomicBool = AtomicBool::new(false);
static LOCK_ORDER_HOOK: Mutex<Option<Py<PyAny>>> = Mutex::new(None);

/// Whether lock-order mode is on.
#[inline]
pub(crate) fn lock_order_on() -> bool {
    LOCK_ORDER.load(Ordering::Relaxed)
}

/// Tells the lock-order hook that the calling thread took (`acquired`) or is giving up a lock.
#[cold]
pub(crate) fn lock_order_event(lock: &Bound<'_, PyAny>, acquired: bool) -> PyResult<()> {
    let py = lock.py();
    let hook = LOCK_ORDER_HOOK.lock().as_ref().map(|h| h.clone_ref(py));
    match hook {
        Some(hook) => hook.bind(py).call1((lock, acquired)).map(drop),
        None => Ok(()),
    }
}

/// `_set_lock_order_hook(fn | None)`: `fn(lock, acquired)` is called on every first acquisition
/// and last release of a treadle `Lock` or `RLock` while set; `None` turns the mode off.
#[pyfunction]
pub(crate) fn _set_lock_order_hook(hook: Option<Py<PyAny>>) {
    let on = hook.is_some();
    *LOCK_ORDER_HOOK.lock() = hook;
    LOCK_ORDER.store(on, Ordering::Relaxed);
}

/// `_thread_starting(starting)`: `Thread.start()` brackets the start of a thread with it, so that
/// no stall is judged while a thread exists that the interpreter does not count yet.
#[pyfunction]
pub(crate) fn _thread_starting(starting: bool) {
    WaitGraph::global().thread_starting(starting);
}
