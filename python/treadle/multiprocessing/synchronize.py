"""``treadle.multiprocessing``'s locks, semaphores, conditions, events and barriers:
``multiprocessing.synchronize``'s classes on treadle's shared locks.

A lock or semaphore is a futex word in a page of shared memory (``_treadle._SharedLock``: a
memfd, mode 0600, never named in ``/dev/shm``), passed to another process as its descriptor
(``multiprocessing.reduction.DupFd``: to a child under every start method, to a pool's
initializer, or through a queue by the resource sharer). Waits release the interpreter and
are interrupted by Ctrl-C.

What the standard library's classes do, these do, and they are instances of them
(``isinstance(lock, multiprocessing.synchronize.Lock)``): a ``Lock`` may be released by any
thread of any process, an ``RLock`` only by its owner; ``Condition``, ``Event`` and
``Barrier`` are the standard library's algorithms on treadle's locks.

A process that dies holding a ``Lock`` or ``RLock`` does not hang the others: the next
``acquire()`` (within a tenth of a second of waiting) raises :class:`OwnerDiedError`, naming the
dead process's pid and name, once, to one caller; the lock is then free. What it guarded may be
half-written: repair it under the lock (``with lock:`` in the ``except`` clause) or give up.
"""

from __future__ import annotations

from multiprocessing import reduction
from multiprocessing import synchronize as _standard
from typing import Any

from treadle._treadle import OwnerDiedError, _SharedLock
from treadle.multiprocessing import heap

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "OwnerDiedError",
    "RLock",
    "SemLock",
    "Semaphore",
]

#: The kinds of ``_SharedLock``.
LOCK, RLOCK, SEMAPHORE = 0, 1, 2
SEM_VALUE_MAX = _standard.SEM_VALUE_MAX


class SemLock(_standard.SemLock):
    """What every treadle lock and semaphore is: a ``_SharedLock`` and its methods."""

    def __init__(self, kind: int, value: int, maxvalue: int, *, ctx: Any = None) -> None:
        self._semlock = _SharedLock(kind, value, maxvalue)
        self._make_methods()

    def __getstate__(self) -> Any:
        return reduction.DupFd(self._semlock.fd())

    def __setstate__(self, state: Any) -> None:
        self._semlock = _SharedLock._open(state.detach())
        self._make_methods()


class Semaphore(SemLock, _standard.Semaphore):
    """A counter taken by ``acquire`` and given back by ``release``, across processes."""

    def __init__(self, value: int = 1, *, ctx: Any = None) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        SemLock.__init__(self, SEMAPHORE, value, SEM_VALUE_MAX, ctx=ctx)


class BoundedSemaphore(SemLock, _standard.BoundedSemaphore):
    """A semaphore that may not be released past its initial value."""

    def __init__(self, value: int = 1, *, ctx: Any = None) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        SemLock.__init__(self, SEMAPHORE, value, value, ctx=ctx)


class Lock(SemLock, _standard.Lock):
    """A lock across processes, releasable by any thread of any process."""

    def __init__(self, *, ctx: Any = None) -> None:
        SemLock.__init__(self, LOCK, 1, 1, ctx=ctx)


class RLock(SemLock, _standard.RLock):
    """A reentrant lock across processes, released only by the thread that holds it."""

    def __init__(self, *, ctx: Any = None) -> None:
        SemLock.__init__(self, RLOCK, 1, 1, ctx=ctx)


class Condition(_standard.Condition):
    """The standard library's condition, on treadle's locks and semaphores; passable to any
    process (not only to a child as it starts)."""

    def __getstate__(self) -> Any:
        return (self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore)


class Event(_standard.Event):
    """The standard library's event, on treadle's condition and semaphore."""


class Barrier(_standard.Barrier):
    """The standard library's barrier, on treadle's condition and shared memory."""

    def __init__(
        self, parties: int, action: Any = None, timeout: float | None = None, *, ctx: Any
    ) -> None:
        wrapper = heap.BufferWrapper(8)
        cond = ctx.Condition()
        self.__setstate__((parties, action, timeout, cond, wrapper))
        self._state = 0
        self._count = 0
