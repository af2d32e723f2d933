//! `_wire()`: the wire formats the Python side speaks with Rust, read from their one
//! definition in `treadle-os` (frame kinds and header layout, the worker's channel descriptor,
//! the fork server's requests), so that `tests/test_wire.py` can hold `treadle.multiprocessing.wire` and
//! `treadle.multiprocessing.fork_server` to them.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use treadle_os::{fork_server, frame, CHANNEL_FD};

/// `_wire()`: a dict of name -> value: every frame kind by its Python name, `HEADER_FORMAT` and
/// `HEADER_SIZE` (the frame header as `struct` spells it, and its size), `CHANNEL_FD`, and the
/// fork server's `FORK_SERVER_SPAWN`, `FORK_SERVER_WAIT`, `FORK_SERVER_PROCESS` and
/// `FORK_SERVER_MESSAGE_FORMAT`.
#[pyfunction]
pub(crate) fn _wire(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let wire = PyDict::new(py);
    for (name, kind) in frame::KINDS {
        wire.set_item(name, kind)?;
    }
    wire.set_item("HEADER_FORMAT", frame::HEADER_FORMAT)?;
    wire.set_item("HEADER_SIZE", frame::HEADER_LEN)?;
    wire.set_item("CHANNEL_FD", CHANNEL_FD)?;
    wire.set_item("FORK_SERVER_SPAWN", fork_server::SPAWN)?;
    wire.set_item("FORK_SERVER_WAIT", fork_server::WAIT)?;
    wire.set_item("FORK_SERVER_PROCESS", fork_server::PROCESS)?;
    wire.set_item("FORK_SERVER_MESSAGE_FORMAT", fork_server::MESSAGE_FORMAT)?;
    Ok(wire)
}
