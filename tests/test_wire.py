"""The wire formats are defined once, in Rust (``crates/treadle-os``): the worker's wire module,
its shared-memory codec and the fork server, which do not use treadle's native module to speak,
must say exactly what Rust does."""

from __future__ import annotations

import errno
import os
import pickle
import socket
import struct
import threading

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
    "FORK_SERVER_PROCESS",
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
    assert _forkserver.PROCESS == WIRE["FORK_SERVER_PROCESS"]


def _process_request(reply: tuple[int, int]) -> tuple[tuple, dict]:
    """Has Rust's client send a ``PROCESS`` request (the parent's state, start-up data and a
    descriptor) to a socket the test reads as the server reads it, and answers ``reply``: what
    the server read, and what ``spawn_process`` returned or raised."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client = _treadle._ForkServer(ours.detach(), os.getpid())
    outcome: dict = {}

    def ask(passed: int) -> None:
        try:
            outcome["pid"] = client.spawn_process(
                _forkserver.parent_state(), b"start-up data", [passed]
            )
        except OSError as error:
            outcome["error"] = error
        outcome["alive"] = client.alive()

    with theirs, open(os.devnull) as passed:
        asking = threading.Thread(target=ask, args=(passed.fileno(),))
        asking.start()
        theirs.settimeout(30)
        header, fds = _forkserver._receive(theirs, _forkserver.REQUEST.size)
        kind, pid, length = _forkserver.REQUEST.unpack(header)
        payload, more = _forkserver._receive(theirs, length)
        state, data, cwd, rest = _forkserver._split(payload, fds + more)
        try:
            read = {
                "kind": kind,
                "pid": pid,
                "state": state,
                "data": data,
                "cwd": _forkserver._identity(cwd),
                "passed": [
                    os.path.samestat(os.fstat(fd), os.fstat(passed.fileno())) for fd in rest
                ],
            }
        finally:
            _forkserver._close([cwd, *rest])
        theirs.sendall(_forkserver.REPLY.pack(*reply))
        asking.join(30)
    assert not asking.is_alive()
    return read, outcome


def test_a_process_request_is_framed_as_the_fork_server_reads_it() -> None:
    read, outcome = _process_request((4242, 0))
    assert read["kind"] == _forkserver.PROCESS and read["pid"] == 0
    # The parent's state first (the same as for a SPAWN), then the kind's own.
    assert read["state"]["environ"] == dict(os.environb)
    assert read["state"]["uids"] == os.getresuid()
    here = os.stat(".")
    assert read["cwd"] == (here.st_dev, here.st_ino)
    assert read["data"] == b"start-up data"
    assert read["passed"] == [True]
    assert outcome == {"pid": 4242, "alive": True}


def test_a_refused_process_request_raises_and_the_server_stays_alive() -> None:
    # The server answered: it could not fork that child (popen then spawns one instead).
    _, outcome = _process_request((-1, errno.EPERM))
    assert isinstance(outcome["error"], OSError)
    assert outcome["alive"] is True


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


def test_a_worker_looks_for_its_next_frame_less_each_time_none_comes_then_not_at_all() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        channel = _worker.Channel(theirs)
        assert channel.spin == _worker.SPIN_MOST
        looks = []
        while channel.spin:
            looks.append(channel.spin)
            assert not channel._arrives_soon()
            assert len(looks) < 64
        assert looks == sorted(looks, reverse=True)
        assert not channel._arrives_soon()  # no look at all: it sleeps at once


def test_a_worker_looking_for_its_next_frame_sees_one_that_is_there() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        channel = _worker.Channel(theirs)
        ours.sendall(_worker.HEADER.pack(1, _worker.TASK, 0, 0, 7) + b"x")
        assert channel._arrives_soon()
        assert channel.next_frame() == (_worker.TASK, 7, b"x", [])
