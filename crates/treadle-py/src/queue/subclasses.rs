//! `LifoQueue` and `PriorityQueue`: `Queue` with another order of items.

use super::py_queue::{Kind, PyQueue};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};

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
                let base = cls.py().get_type::<$rust>();
                let queue = PyQueue::create(cls, &base, $kind)?;
                Ok(PyClassInitializer::from(queue).add_subclass($rust))
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
