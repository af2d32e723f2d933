//! What the supervisor tells Python, as typed records: one frozen class per kind of event (what
//! became of a task, or of the pool) and an enum for what a cancellation did. The stub
//! (`_treadle.pyi`) names each field, so `mypy.stubtest` catches drift.
//!
//! The supervisor thread reads every result through these records, so they are made cheap to
//! read: each field is a Python object made once, when the event crosses, and a frozen class's
//! `Py` field is read by the interpreter as a plain struct member (no getter call).

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString};
use std::os::fd::{IntoRawFd, OwnedFd};
use treadle_os::{CancelOutcome, Event, Exit};

/// A task's answer: its pickled outcome and the segments of its out-of-band buffers. The base
/// of [`PyReturned`] (the payload is the value) and [`PyRaised`] (the exception and its
/// traceback text).
#[pyclass(frozen, subclass, name = "_Answer", module = "treadle")]
pub(crate) struct PyAnswer {
    #[pyo3(get)]
    task_id: Py<PyInt>,
    #[pyo3(get)]
    payload: Py<PyBytes>,
    #[pyo3(get)]
    fds: Py<PyList>,
}

/// The task returned.
#[pyclass(frozen, extends = PyAnswer, name = "_Returned", module = "treadle")]
pub(crate) struct PyReturned;

/// The task raised.
#[pyclass(frozen, extends = PyAnswer, name = "_Raised", module = "treadle")]
pub(crate) struct PyRaised;

/// The worker holding the task ended: the base of [`PyCrashed`] and [`PyTerminated`].
#[pyclass(frozen, subclass, name = "_WorkerEnded", module = "treadle")]
pub(crate) struct PyWorkerEnded {
    #[pyo3(get)]
    task_id: Py<PyInt>,
    #[pyo3(get)]
    pid: Py<PyInt>,
    /// Its exit code, or None if a signal killed it.
    #[pyo3(get)]
    exitcode: Py<PyAny>,
    /// The signal that killed it, or None.
    #[pyo3(get)]
    signal: Py<PyAny>,
}

/// The worker running the task died; the pool replaced it.
#[pyclass(frozen, extends = PyWorkerEnded, name = "_Crashed", module = "treadle")]
pub(crate) struct PyCrashed {
    /// Whether the kernel's OOM killer killed a process of this cgroup meanwhile.
    #[pyo3(get)]
    out_of_memory: Py<PyBool>,
}

/// The task's worker was stopped by `terminate_workers()` or `kill_workers()`.
#[pyclass(frozen, extends = PyWorkerEnded, name = "_Terminated", module = "treadle")]
pub(crate) struct PyTerminated;

/// The task ran past its time limit of `seconds`; its worker was killed and replaced.
#[pyclass(frozen, name = "_TimedOut", module = "treadle")]
pub(crate) struct PyTimedOut {
    #[pyo3(get)]
    task_id: Py<PyInt>,
    #[pyo3(get)]
    pid: Py<PyInt>,
    #[pyo3(get)]
    seconds: Py<PyFloat>,
}

/// The task could not be handed to a worker; `message` says why, `errno` is the operating
/// system's error number if there is one.
#[pyclass(frozen, name = "_Failed", module = "treadle")]
pub(crate) struct PyFailed {
    #[pyo3(get)]
    task_id: Py<PyInt>,
    #[pyo3(get)]
    errno: Py<PyAny>,
    #[pyo3(get)]
    message: Py<PyString>,
}

/// The pool cannot run tasks any more; `message` says why.
#[pyclass(frozen, name = "_Broken", module = "treadle")]
pub(crate) struct PyBroken {
    #[pyo3(get)]
    task_id: Py<PyInt>,
    #[pyo3(get)]
    message: Py<PyString>,
}

/// Shutdown finished: every worker has exited. The last event.
#[pyclass(frozen, name = "_Closed", module = "treadle")]
pub(crate) struct PyClosed;

/// What `_Supervisor.cancel` did.
#[pyclass(
    frozen,
    eq,
    eq_int,
    rename_all = "SCREAMING_SNAKE_CASE",
    name = "_CancelOutcome",
    module = "treadle"
)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PyCancelOutcome {
    /// The task had not been sent to a worker; it is dropped.
    Cancelled,
    /// The task is with a worker and no interruption was asked: it goes on.
    Running,
    /// The task was with a worker: skipped if not started, else its worker was killed.
    Interrupted,
    /// No such task (already finished, or never submitted).
    Unknown,
}

impl From<CancelOutcome> for PyCancelOutcome {
    fn from(outcome: CancelOutcome) -> Self {
        match outcome {
            CancelOutcome::Cancelled => PyCancelOutcome::Cancelled,
            CancelOutcome::Running => PyCancelOutcome::Running,
            CancelOutcome::Interrupted => PyCancelOutcome::Interrupted,
            CancelOutcome::Unknown => PyCancelOutcome::Unknown,
        }
    }
}

/// The event's record; the descriptors it carries are handed over to Python (as numbers that
/// `treadle._pickling.load` maps and closes).
pub(crate) fn to_python(py: Python<'_>, event: Event) -> PyResult<Bound<'_, PyAny>> {
    let int = |value: u64| PyInt::new(py, value).unbind();
    let answer = |id: u64, payload: Vec<u8>, fds: Vec<OwnedFd>| -> PyResult<PyAnswer> {
        Ok(PyAnswer {
            task_id: int(id),
            payload: PyBytes::new(py, &payload).unbind(),
            fds: PyList::new(py, fds.into_iter().map(IntoRawFd::into_raw_fd))?.unbind(),
        })
    };
    let ended = |id: u64, pid: u32, exit: Exit| {
        let (exitcode, signal) = match exit {
            Exit::Code(code) => (PyInt::new(py, code).into_any().unbind(), py.None()),
            Exit::Signal(signal) => (py.None(), PyInt::new(py, signal).into_any().unbind()),
        };
        PyWorkerEnded {
            task_id: int(id),
            pid: int(pid.into()),
            exitcode,
            signal,
        }
    };
    Ok(match event {
        Event::Returned { id, payload, fds } => {
            let record =
                PyClassInitializer::from(answer(id, payload, fds)?).add_subclass(PyReturned);
            Bound::new(py, record)?.into_any()
        }
        Event::Raised { id, payload, fds } => {
            let record = PyClassInitializer::from(answer(id, payload, fds)?).add_subclass(PyRaised);
            Bound::new(py, record)?.into_any()
        }
        Event::Crashed { id, pid, exit, oom } => {
            let out_of_memory = PyBool::new(py, oom).to_owned().unbind();
            let record = PyClassInitializer::from(ended(id, pid, exit))
                .add_subclass(PyCrashed { out_of_memory });
            Bound::new(py, record)?.into_any()
        }
        Event::Terminated { id, pid, exit } => {
            let record = PyClassInitializer::from(ended(id, pid, exit)).add_subclass(PyTerminated);
            Bound::new(py, record)?.into_any()
        }
        Event::TimedOut { id, pid, timeout } => Bound::new(
            py,
            PyTimedOut {
                task_id: int(id),
                pid: int(pid.into()),
                seconds: PyFloat::new(py, timeout.as_secs_f64()).unbind(),
            },
        )?
        .into_any(),
        Event::Failed { id, errno, reason } => Bound::new(
            py,
            PyFailed {
                task_id: int(id),
                errno: match errno {
                    Some(errno) => PyInt::new(py, errno).into_any().unbind(),
                    None => py.None(),
                },
                message: PyString::new(py, &reason).unbind(),
            },
        )?
        .into_any(),
        Event::Broken { id, reason } => Bound::new(
            py,
            PyBroken {
                task_id: int(id),
                message: PyString::new(py, &reason).unbind(),
            },
        )?
        .into_any(),
        Event::Closed => Bound::new(py, PyClosed)?.into_any(),
    })
}
