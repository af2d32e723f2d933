//! `_wire()`: the wire formats the Python side speaks with Rust, read from their one
//! definition in `treadle-os` (frame kinds and header layout, the worker's channel descriptor,
//! the layout of a frame's shared-memory segment, the fork server's requests), so that
//! `tests/test_wire.py` can hold `treadle.multiprocessing.wire`, `.segments` and `.fork_server`
//! to them.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use treadle_os::{fork_server, frame, segment, CHANNEL_FD};

/// `_wire()`: a dict of name -> value: every frame kind by its Python name, `HEADER_FORMAT` and
/// `HEADER_SIZE` (the frame header as `struct` spells it, and its size), `CHANNEL_FD`, the
/// segment's `SEGMENT_ALIGN`, `SEGMENT_COUNT_FORMAT` and `SEGMENT_ENTRY_FORMAT`, and the fork
/// server's `FORK_SERVER_SPAWN`, `FORK_SERVER_WAIT`, `FORK_SERVER_PROCESS`,
/// `FORK_SERVER_REQUEST_FORMAT` and `FORK_SERVER_REPLY_FORMAT`.
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
    wire.set_item("FORK_SERVER_REQUEST_FORMAT", fork_server::REQUEST_FORMAT)?;
    wire.set_item("FORK_SERVER_REPLY_FORMAT", fork_server::REPLY_FORMAT)?;
    wire.set_item("SEGMENT_ALIGN", segment::ALIGN)?;
    wire.set_item("SEGMENT_COUNT_FORMAT", segment::COUNT_FORMAT)?;
    wire.set_item("SEGMENT_ENTRY_FORMAT", segment::ENTRY_FORMAT)?;
    Ok(wire)
}
