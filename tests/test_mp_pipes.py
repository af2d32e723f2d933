"""treadle.multiprocessing's pipes: Connection's methods and errors as the standard library's,
across processes, EOFError when nobody can send, BrokenPipeError when nobody can receive, and
connection.wait over treadle's connections and the standard library's objects together."""

from __future__ import annotations

import array
import multiprocessing
import multiprocessing.connection
import pickle
import select
import signal
import threading
import time

import _mp_tasks as tasks
import pytest
from _mp_tasks import WAIT, joined, run_fresh, start

from treadle.multiprocessing.connection import BufferTooShort, Connection, Pipe, wait


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_objects_and_bytes_cross_to_a_child_and_back(method):
    ours, theirs = Pipe()
    child = start(tasks.echo, theirs, method=method)
    theirs.close()
    for obj in (1, "two", [3.0], None.__class__, b"x" * 300_000):
        ours.send(obj)
        assert ours.recv() == obj
    ours.send(None)
    assert joined(child) and child.exitcode == 0
    with pytest.raises(EOFError):
        ours.recv()


def test_send_bytes_takes_offset_and_size_in_bytes_of_any_buffer():
    a, b = Pipe()
    message = b"abcdefghijklmnopqrstuvwxyz"
    a.send_bytes(message)
    a.send_bytes(message, 5)
    a.send_bytes(message, 7, 8)
    a.send_bytes(message, 26)
    a.send_bytes(array.array("i", [1, 2, 3]), 4)
    assert [b.recv_bytes() for _ in range(5)] == [
        message,
        message[5:],
        message[7:15],
        b"",
        array.array("i", [2, 3]).tobytes(),
    ]
    for args in ((27,), (22, 5), (26, 1), (-1,), (4, -1)):
        with pytest.raises(ValueError):
            a.send_bytes(message, *args)


def test_recv_bytes_into_fills_a_buffer_or_raises_buffer_too_short():
    a, b = Pipe()
    numbers = array.array("i", range(4))
    buffer = array.array("i", [0] * 10)
    a.send_bytes(numbers)
    assert b.recv_bytes_into(buffer, 3 * buffer.itemsize) == 16
    assert list(buffer) == [0, 0, 0, 0, 1, 2, 3, 0, 0, 0]
    a.send_bytes(b"x" * 50)
    with pytest.raises(BufferTooShort) as raised:
        b.recv_bytes_into(bytearray(40))
    assert raised.value.args == (b"x" * 50,)


def test_recv_bytes_refuses_a_message_longer_than_maxlength():
    a, b = Pipe()
    a.send_bytes(b"12345")
    with pytest.raises(ValueError, match="negative maxlength"):
        b.recv_bytes(-1)
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(3)
    assert not b.readable


def test_a_one_way_pipe_reads_at_one_end_and_writes_at_the_other():
    reader, writer = Pipe(duplex=False)
    writer.send(1)
    assert reader.recv() == 1
    assert (reader.readable, reader.writable, writer.readable, writer.writable) == (
        True,
        False,
        False,
        True,
    )
    with pytest.raises(OSError, match="read-only"):
        reader.send(2)
    with pytest.raises(OSError, match="write-only"):
        writer.recv()
    with pytest.raises(OSError, match="write-only"):
        writer.poll()


def test_poll_waits_for_a_message_as_long_as_asked():
    a, b = Pipe()
    assert b.poll() is False
    assert b.poll(-1) is False
    began = time.monotonic()
    assert b.poll(0.1) is False
    assert time.monotonic() - began >= 0.09
    threading.Timer(0.05, a.send_bytes, (b"",)).start()
    assert b.poll(WAIT) is True
    assert b.poll() is True  # an empty message is a message
    assert b.recv_bytes() == b""


def test_a_closed_connection_refuses_everything_and_says_it_is_closed():
    a, b = Pipe()
    with a, b:
        a.send(1729)
        assert b.recv() == 1729
        assert not a.closed
    assert a.closed and b.closed
    for call in (a.recv, lambda: a.send(1), a.fileno, a.poll):
        with pytest.raises(OSError, match="handle is closed"):
            call()
    a.close()  # again: nothing


def test_recv_raises_eof_at_once_when_the_other_end_is_closed_and_nothing_is_left():
    a, b = Pipe()
    a.send("last")
    a.close()
    assert b.recv() == "last"
    assert b.poll() is True  # readable, as a pipe at its end
    began = time.monotonic()
    with pytest.raises(EOFError):
        b.recv()
    assert time.monotonic() - began < 0.1


def test_recv_raises_eof_when_the_other_end_closes_while_it_waits():
    a, b = Pipe()
    threading.Timer(0.1, a.close).start()
    with pytest.raises(EOFError):
        b.recv()


def test_recv_raises_eof_within_a_second_when_the_sender_is_killed():
    ours, theirs = Pipe()
    child = start(tasks.send_then_kill_self, theirs)
    theirs.close()
    assert ours.recv() == "last words"
    began = time.monotonic()
    with pytest.raises(EOFError):
        ours.recv()
    assert time.monotonic() - began < 1.0
    assert joined(child) and child.exitcode == -signal.SIGKILL


def test_recv_raises_eof_when_only_this_thread_could_send():
    # Both ends here, no other thread (a fresh interpreter: this one may have threads of
    # earlier tests): the standard library's recv would wait for ever.
    assert run_fresh(
        """
        import time
        from treadle.multiprocessing import Pipe
        a, b = Pipe()
        began = time.monotonic()
        try:
            b.recv()
        except EOFError:
            print(time.monotonic() - began < 1.0)
        print(b.poll(0.3))  # a wait with a deadline is not a hang: it times out
        """
    ) == ["True", "False"]


def test_send_raises_broken_pipe_when_every_reader_closed():
    reader, writer = Pipe(duplex=False)
    reader.close()
    with pytest.raises(BrokenPipeError):
        writer.send("nobody listens")


def test_a_connection_passes_through_a_connection_to_a_running_process():
    control, theirs = Pipe()
    child = start(tasks.recv_handle_and_send, theirs)
    reader, writer = Pipe(duplex=False)
    control.send(writer)
    writer.close()
    assert reader.recv() == "hello from the child"
    assert control.recv() == "done"
    assert joined(child)
    with pytest.raises(EOFError):
        reader.recv()


def test_a_connection_pickles_for_a_running_process_as_the_standard_library_does():
    a, _b = Pipe()
    data = pickle.dumps(a)  # through the resource sharer: no spawning process needed
    assert isinstance(pickle.loads(data), Connection)


def test_fileno_polls_readable_while_a_message_waits_and_at_the_end():
    a, b = Pipe()
    fd = b.fileno()
    assert select.select([fd], [], [], 0)[0] == []
    a.send(1)
    assert select.select([fd], [], [], 0)[0] == [fd]
    b.recv()
    assert select.select([fd], [], [], 0)[0] == []
    a.close()
    assert select.select([fd], [], [], 0)[0] == [fd]


def test_wait_returns_what_is_ready_among_connections_and_sentinels():
    reader, writer = Pipe(duplex=False)
    standard_reader, standard_writer = multiprocessing.Pipe(duplex=False)
    assert wait([reader, standard_reader], timeout=0.05) == []
    standard_writer.send(1)
    assert wait([reader, standard_reader], timeout=WAIT) == [standard_reader]
    standard_reader.recv()
    writer.send(2)
    assert wait([reader, standard_reader], timeout=WAIT) == [reader]
    child = start(time.sleep, 0.05)
    assert wait([child.sentinel], timeout=WAIT) == [child.sentinel]
    # The standard library's wait takes treadle's connections too.
    assert multiprocessing.connection.wait([reader], timeout=WAIT) == [reader]


def test_wait_counts_a_connection_whose_sender_was_killed_as_ready():
    ours, theirs = Pipe()
    child = start(tasks.send_then_kill_self, theirs)
    theirs.close()
    assert ours.recv() == "last words"
    assert wait([ours], timeout=WAIT) == [ours]
    with pytest.raises(EOFError):
        ours.recv()
    assert joined(child)


def test_connections_are_not_made_directly():
    with pytest.raises(TypeError, match="made by Pipe"):
        Connection(3)


def test_a_pipe_holds_no_file_in_dev_shm():
    before = tasks.dev_shm()
    pipes = [Pipe() for _ in range(10)]
    assert tasks.dev_shm() == before
    del pipes
