//! A wait's place in the wait graph, as the bindings see it: what a wait is on ([`Track`]), its
//! publication in the core's `WaitGraph` for as long as it parks ([`Tracked`]), and how a
//! verdict (a cycle, a stall) is handed to the reporter the `treadle` package registered
//! (`hooks::reporter`), which formats it and builds `treadle.DeadlockError`.
//!
//! The graph itself (cycles through owned waits, stalls of the whole process) is in
//! `treadle_core::wait_graph`; the Python-facing controls (`set_mode`, `_waits`, `_ThreadDone`,
//! lock-order mode) are in `crate::deadlock`, above this layer. Details: `docs/deadlocks.md`.

use super::hooks;
use super::threads::{ident_of, native_ids, register_current_thread, with_map};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;
use std::collections::HashMap;
use treadle_core::wait_graph::{Edge, Mode, Published, Stall, WaitGraph, WaitKind, WaitTarget};
use treadle_os::os_threads;

/// What a wait is on.
pub(crate) struct Track<'a, 'py> {
    pub(crate) target: &'a dyn WaitTarget,
    pub(crate) kind: WaitKind,
    pub(crate) ticket: u64,
    pub(crate) object: &'a Bound<'py, PyAny>,
}

/// treadle thread number -> the object it waits on now, for reports.
static WAITING_ON: Mutex<Option<HashMap<u64, Py<PyAny>>>> = Mutex::new(None);

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
    /// The wait is over: withdraws it from the graph at once, before the thread re-attaches to
    /// the interpreter (see `Published::withdraw`). Safe to call detached; the report's side
    /// table is cleared when the guard is dropped.
    pub(crate) fn wait_ended(&self) {
        self.published.withdraw();
    }

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

    /// For the periodic look of a parked wait: reports a cycle through this thread that a wait
    /// which cannot fail (a condition's re-acquire) closed; in raise mode, the error to end this
    /// wait with. Whether one was found.
    pub(crate) fn report_unraised_cycle(&self, py: Python<'_>) -> PyResult<bool> {
        match self.graph.find_unraised_cycle(self.published.thread()) {
            Some(cycle) => self.report(py, &cycle, "cycle").map(|()| true),
            None => Ok(false),
        }
    }

    /// A wait with a deadline ran out: if it was part of a cycle, that is worth a log line
    /// (not for a thread polling a `Lock` it holds itself, a signal another thread gives).
    pub(crate) fn timed_out(&self, py: Python<'_>) {
        if let Some(cycle) = self.graph.find_cycle(self.published.thread()) {
            if is_lock_used_as_a_signal(&cycle) {
                return;
            }
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
        if !is_lock_used_as_a_signal(&cycle) && !cycle.iter().any(|edge| edge.timed) {
            tracked.report(py, &cycle, "cycle")?;
            tracked.reported = true;
        }
    }
    Ok(tracked)
}

/// Whether `cycle` is a thread waiting on a `Lock` it holds itself. A plain `Lock` may be
/// released by any thread, so that is a signal another thread gives: a deadlock only if no other
/// thread is left to give it, which is the stall check's question.
fn is_lock_used_as_a_signal(cycle: &[Edge]) -> bool {
    cycle.len() == 1 && cycle[0].kind == WaitKind::Lock
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
        return false; // nothing to go on, as before threads could be counted
    };
    if tids.len() <= live {
        return false;
    }
    let parked = native_ids(stall.threads());
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

/// Edges as the reporter and `_waits()` take them:
/// `(waiter_ident, kind, waited_object, owner_ident, timed)`.
pub(crate) fn edges_to_python<'py>(
    py: Python<'py>,
    edges: &[Edge],
) -> PyResult<Bound<'py, PyList>> {
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
    let Some(reporter) = hooks::reporter(py) else {
        return Ok(None);
    };
    let edges = edges_to_python(py, edges)?;
    let result = reporter.bind(py).call1((edges, verdict, mode_name(mode)))?;
    Ok((!result.is_none()).then_some(result))
}

/// The mode as `treadle.deadlock` names it.
pub(crate) fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Off => "off",
        Mode::Warn => "warn",
        Mode::Raise => "raise",
    }
}
