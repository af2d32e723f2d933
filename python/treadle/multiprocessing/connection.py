"""``Pipe``, ``Connection`` and ``wait``: ``multiprocessing.connection``'s pipes on rings in
shared memory (one ring each way).

A ``recv`` whose other end is closed, or whose every other holder has exited, raises
``EOFError`` once nothing is left to read, as the standard library's does once the other end
is closed; it also does when the other end is still open in this process but no other thread
could send (a wait that could only hang). A ``send`` whose readers have all let go raises
``BrokenPipeError``. ``fileno()`` is an ``eventfd`` that polls readable while a message waits
(or nothing is left and nobody can send), so ``select``, ``selectors`` and :func:`wait` work
with connections as with the standard library's. ``Listener`` and ``Client`` (sockets) are the
standard library's.
"""

from __future__ import annotations

import time
from multiprocessing import AuthenticationError, BufferTooShort
from multiprocessing import connection as _standard
from multiprocessing.connection import Client, Listener
from typing import Any

from treadle._treadle import _Channel, _Ring
from treadle.multiprocessing import channel

__all__ = [
    "AuthenticationError",
    "BufferTooShort",
    "Client",
    "Connection",
    "Listener",
    "Pipe",
    "wait",
]


class Connection(_Channel):
    """One end of a :func:`Pipe`: ``send``/``recv`` objects, ``send_bytes``/``recv_bytes``
    messages, ``poll`` for one, as ``multiprocessing.connection.Connection``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("treadle's Connection objects are made by Pipe()")

    def __reduce__(self) -> tuple[Any, ...]:
        return channel.rebuild_handle, (type(self), *channel.reduce_handle(self, "connection"))

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_bytes(self, buf: Any, offset: int = 0, size: int | None = None) -> None:
        """Send the bytes of a bytes-like object (from ``offset``, ``size`` of them) as one
        message."""
        if self.closed:
            raise OSError("handle is closed")
        if not self.writable:
            raise OSError("connection is read-only")
        view = memoryview(buf)
        if view.itemsize > 1:
            view = view.cast("B")
        n = view.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        self._send_bytes(view[offset : offset + size])

    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:
        """Receive a message into the writable buffer ``buf`` (from byte ``offset``); returns
        its length. ``BufferTooShort`` (holding the message) if it does not fit."""
        if self.closed:
            raise OSError("handle is closed")
        if not self.readable:
            raise OSError("connection is write-only")
        with memoryview(buf) as view:
            itemsize = view.itemsize
            bytesize = itemsize * len(view)
            if offset < 0:
                raise ValueError("negative offset")
            if offset > bytesize:
                raise ValueError("offset too large")
            message = self.recv_bytes()
            size = len(message)
            if bytesize < offset + size:
                raise BufferTooShort(message)
            with view.cast("B") as raw:
                raw[offset : offset + size] = message
            return size


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Two connected :class:`Connection` objects: both send and receive if ``duplex``, else
    the first only receives and the second only sends."""
    if duplex:
        there, back = _Ring(), _Ring()
        first = channel.new_handle(Connection, back, there, "connection")
        second = channel.new_handle(Connection, there, back, "connection")
    else:
        ring = _Ring()
        first = channel.new_handle(Connection, ring, None, "connection")
        second = channel.new_handle(Connection, None, ring, "connection")
    return first, second  # type: ignore[return-value]


#: How often :func:`wait` asks whether a connection waited on can still receive anything.
_CHECK_EVERY = 0.2


def wait(object_list: list[Any], timeout: float | None = None) -> list[Any]:
    """The objects of ``object_list`` that are ready: readable connections (treadle's or the
    standard library's), sockets, sentinels, descriptors, as
    ``multiprocessing.connection.wait``, waiting up to ``timeout`` seconds (None: for ever) for
    one. A treadle connection (or queue) whose every writer has exited is ready too, as one
    whose other end is closed: its ``recv`` raises ``EOFError``."""
    channels = [obj for obj in object_list if isinstance(obj, _Channel)]
    if not channels:
        return _standard.wait(object_list, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = _CHECK_EVERY if deadline is None else deadline - time.monotonic()
        ready = _standard.wait(object_list, max(0.0, min(remaining, _CHECK_EVERY)))
        if ready:
            return ready
        ready = [obj for obj in channels if obj._nobody_can_write(untimed=deadline is None)]
        if ready or (deadline is not None and time.monotonic() >= deadline):
            return ready
