//! The exceptions of queues: the standard library's `queue.Empty` and `queue.Full`, and
//! `ShutDown` (the standard library's where it has one, Python 3.13+, treadle's own before).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

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

/// The `ShutDown` error to raise.
pub(crate) fn shut_down(py: Python<'_>) -> PyErr {
    match shut_down_class(py) {
        Ok(class) => PyErr::from_type(class.clone(), ()),
        Err(error) => error,
    }
}
