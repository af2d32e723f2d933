"""The wire formats are defined once, in Rust (``crates/treadle-os``): the worker's wire module,
its shared-memory codec and the fork server, which do not use treadle's native module to speak,
must say exactly what Rust does."""

from __future__ import annotations

import os
import pickle
import struct

from treadle import _treadle
from treadle.multiprocessing import fork_server as _forkserver
from treadle.multiprocessing import segments as _segments
from treadle.multiprocessing import wire as _worker

WIRE = _treadle._wire()
LAYOUT = {
    "HEADER_FORMAT",
    "HEADER_SIZE",
    "CHANNEL_FD",
    "SEGMENT_ALIGN",
    "SEGMENT_COUNT_FORMAT",
    "SEGMENT_ENTRY_FORMAT",
    "FORK_SERVER_SPAWN",
    "FORK_SERVER_WAIT",
    "FORK_SERVER_REQUEST_FORMAT",
    "FORK_SERVER_REPLY_FORMAT",
}
#: Rust's frame kinds: every other name it gives.
RUST_KINDS = sorted(set(WIRE) - LAYOUT)

FRAME_KINDS = [
    "INIT",
    "TASK",
    "CANCEL",
    "EXIT",
    "READY",
    "RETURNED",
    "RAISED",
    "INIT_FAILED",
    "SKIPPED",
]


def test_the_worker_reads_and_writes_rusts_frame_header() -> None:
    assert _worker.HEADER.format == WIRE["HEADER_FORMAT"]
    assert _worker.HEADER.size == WIRE["HEADER_SIZE"]
    assert struct.calcsize(str(WIRE["HEADER_FORMAT"])) == WIRE["HEADER_SIZE"]


def test_the_worker_knows_every_frame_kind_by_rusts_number() -> None:
    for name in RUST_KINDS:
        assert getattr(_worker, name, None) == WIRE[name], f"{name}: worker and Rust disagree"
    assert len({WIRE[name] for name in RUST_KINDS}) == len(RUST_KINDS), "two kinds share a number"


def test_rust_knows_the_frame_kinds_the_protocol_has() -> None:
    assert RUST_KINDS == sorted(FRAME_KINDS)


def test_the_worker_finds_its_channel_where_rust_puts_it() -> None:
    assert _worker.CHANNEL_FD == WIRE["CHANNEL_FD"]


def test_the_fork_server_speaks_rusts_requests() -> None:
    assert _forkserver.REQUEST.format == WIRE["FORK_SERVER_REQUEST_FORMAT"]
    assert _forkserver.REPLY.format == WIRE["FORK_SERVER_REPLY_FORMAT"]
    assert _forkserver.SPAWN == WIRE["FORK_SERVER_SPAWN"]
    assert _forkserver.WAIT == WIRE["FORK_SERVER_WAIT"]


def test_segments_are_laid_out_as_rust_lays_them_out() -> None:
    assert _segments.ALIGN == WIRE["SEGMENT_ALIGN"]
    assert _segments.COUNT.format == WIRE["SEGMENT_COUNT_FORMAT"]
    assert _segments.ENTRY.format == WIRE["SEGMENT_ENTRY_FORMAT"]


def test_a_segment_gives_back_every_buffer_it_packs() -> None:
    buffers = [bytes([i % 256]) * (1000 + 4093 * i) for i in range(300)] + [b""]
    fd = _segments.pack([pickle.PickleBuffer(b) for b in buffers])
    assert os.fstat(fd).st_size % _segments.ALIGN == 0
    views = _segments.map_segments([fd])
    assert [bytes(v) for v in views] == buffers
