//! `Queue[int]` in annotations, as the standard library's queues allow it.

use pyo3::prelude::*;
use pyo3::types::PyType;

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
