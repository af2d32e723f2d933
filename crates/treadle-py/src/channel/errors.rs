//! What a channel raises: the standard library's exceptions where it raises them in the same
//! situation (`queue.Empty`, `queue.Full`, `EOFError`, `OSError`, `BrokenPipeError`,
//! `ValueError`), and `AbandonedQueueError` for a queue nobody can put to any more.

use pyo3::exceptions::{PyBrokenPipeError, PyEOFError, PyOSError, PyValueError};
use pyo3::prelude::*;

pyo3::import_exception!(queue, Empty);
pyo3::import_exception!(queue, Full);
pyo3::create_exception!(
    treadle.multiprocessing,
    AbandonedQueueError,
    PyEOFError,
    "Raised by a blocking get() (or join()) of a queue that can never be satisfied: the queue is \
     empty, every other process that held it has exited or closed it, and no other thread of \
     this process could put to it. A subclass of EOFError, as a pipe's end raises EOFError once \
     the other end is closed."
);

/// What kind of handle a channel is, which says how its errors read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `Queue`, `JoinableQueue` or `SimpleQueue`.
    Queue,
    /// A `Connection` (an end of a `Pipe`).
    Connection,
}

impl Flavor {
    /// The error of an operation on a closed handle.
    pub(crate) fn closed(self, handle: &Bound<'_, PyAny>) -> PyErr {
        match self {
            Flavor::Queue => {
                let repr = handle
                    .repr()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|_| "object".to_owned());
                PyValueError::new_err(format!("Queue {repr} is closed"))
            }
            Flavor::Connection => PyOSError::new_err("handle is closed"),
        }
    }

    /// The error of a read from a handle that only writes.
    pub(crate) fn write_only(self) -> PyErr {
        PyOSError::new_err("connection is write-only")
    }

    /// The error of a write to a handle that only reads.
    pub(crate) fn read_only(self) -> PyErr {
        PyOSError::new_err("connection is read-only")
    }

    /// The error of a blocking read that nobody can satisfy.
    pub(crate) fn abandoned(self) -> PyErr {
        match self {
            Flavor::Queue => AbandonedQueueError::new_err(
                "the queue is empty and nobody can put to it: every other process that held it \
                 has exited or closed it, and no other thread of this process is running",
            ),
            Flavor::Connection => PyEOFError::new_err(()),
        }
    }

    /// The error of a write that nobody can ever read.
    pub(crate) fn broken(self) -> PyErr {
        PyBrokenPipeError::new_err((32, "Broken pipe"))
    }
}
