"""``Queue``, ``JoinableQueue`` and ``SimpleQueue``: ``multiprocessing``'s queues on a ring in
shared memory. Each also derives from its ``multiprocessing.queues`` class, so that code that
checks for one (``logging.config``'s queue handlers) takes treadle's; every method used is
treadle's.

``put`` writes straight into the ring from the caller's thread: there is no feeder thread, so
nothing is left to flush when a process exits (``close``, ``join_thread`` and
``cancel_join_thread`` exist and have nothing to wait for), and an object that cannot be
pickled fails in the ``put`` that sent it. A blocking ``get`` that nothing can satisfy any more
(the queue is empty, every other process that held it has exited or closed it, and no other
thread here could put) raises :class:`AbandonedQueueError` within a second, where the standard
library's would wait for ever.
"""

from __future__ import annotations

import threading
from multiprocessing import context
from multiprocessing import queues as _standard
from typing import Any

from treadle._treadle import AbandonedQueueError, _Channel, _Ring
from treadle.multiprocessing import channel

__all__ = ["AbandonedQueueError", "JoinableQueue", "Queue", "SimpleQueue"]


class _Ends:
    """The standard library's queues expose their pipe's two ends and the locks around them,
    which its ``Pool`` uses (``_reader.recv``, ``_writer.send``, ``_reader.poll``, waiting on
    ``_reader``, ``_rlock``): here, a read-only and a write-only handle on the same ring, and
    locks of this process (a ring needs none)."""

    __slots__ = ()

    @property
    def _reader(self) -> _Channel:
        return self._end("_treadle_reader", read=True)

    @property
    def _writer(self) -> _Channel:
        return self._end("_treadle_writer", read=False)

    def _end(self: Any, name: str, read: bool) -> _Channel:
        end = self.__dict__.get(name)
        if end is None:
            ring, _ = self._rings()
            end = channel.new_handle(
                _Channel, ring if read else None, None if read else ring, "connection"
            )
            if self.closed:
                end.close()
            self.__dict__[name] = end
        return end

    def close(self: Any) -> None:
        """No more puts or gets through this handle (or its ends), and it no longer counts as
        a holder of the queue."""
        _Channel.close(self)
        for name in ("_treadle_reader", "_treadle_writer"):
            end = self.__dict__.get(name)
            if end is not None:
                end.close()

    @property
    def _rlock(self) -> Any:
        return self.__dict__.setdefault("_treadle_rlock", threading.Lock())

    @property
    def _wlock(self) -> Any:
        return self.__dict__.setdefault("_treadle_wlock", threading.Lock())


class Queue(_Ends, _Channel, _standard.Queue):
    """A process-safe FIFO queue, as ``multiprocessing.Queue``.

    ``put`` and ``get`` take ``block`` and ``timeout`` as the standard library's do (a timeout
    of zero or less does not wait); ``put_many`` and ``get_many`` move several items in one
    step each.
    """

    _kind = "queue"

    def __init__(self, maxsize: int = 0, *, ctx: Any = None) -> None:
        ring = _Ring(maxsize)
        self._bind(ring, ring, self._kind)
        channel.register(self)

    def empty(self) -> bool:
        """Whether the queue is empty now; ``OSError`` once this handle, having put, is closed
        (as the standard library's, whose close takes effect once the queue was used)."""
        if self.closed and self._used():
            raise OSError("handle is closed")
        return _Channel.empty(self)

    @property
    def _maxsize(self) -> int:
        rx, _ = self._rings()
        return rx.maxsize if rx is not None else 0

    def __reduce__(self) -> tuple[Any, ...]:
        context.assert_spawning(self)
        return channel.rebuild_handle, (type(self), *channel.reduce_handle(self, self._kind))

    def join_thread(self) -> None:
        """Does nothing but check that the queue is closed: there is no feeder thread, since
        ``put`` writes straight into shared memory."""
        if not self.closed:
            raise AssertionError(f"Queue {self!r} not closed")

    def cancel_join_thread(self) -> None:
        """Does nothing: no feeder thread holds items back at exit."""


class JoinableQueue(Queue, _standard.JoinableQueue):
    """A ``Queue`` that counts the items put to it until ``task_done()`` says each is done, so
    that ``join()`` can wait for all of them, as ``multiprocessing.JoinableQueue``."""

    _kind = "joinable"

    def task_done(self) -> None:
        """Count one item taken from the queue as done; ``ValueError`` if called more times
        than items were put."""
        self._task_done()

    def join(self) -> None:
        """Wait until every item put to the queue is done (or raise ``AbandonedQueueError``
        when nobody left could take or finish them)."""
        self._join()


class SimpleQueue(_Ends, _Channel, _standard.SimpleQueue):
    """An unbounded process-safe FIFO queue, as ``multiprocessing.SimpleQueue``."""

    def empty(self) -> bool:
        """Whether the queue is empty now; ``OSError`` once closed."""
        if self.closed:
            raise OSError("handle is closed")
        return _Channel.empty(self)

    _kind = "queue"

    def __init__(self, *, ctx: Any = None) -> None:
        ring = _Ring()
        self._bind(ring, ring, self._kind)
        channel.register(self)

    def __reduce__(self) -> tuple[Any, ...]:
        context.assert_spawning(self)
        return channel.rebuild_handle, (type(self), *channel.reduce_handle(self, self._kind))
