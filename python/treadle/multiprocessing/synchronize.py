"""``treadle.multiprocessing``'s locks, semaphores, conditions, events and barriers:
``multiprocessing.synchronize``'s classes on treadle's shared locks.

A lock or semaphore is a futex word in a slot of shared memory (``_treadle._SharedLock``: an
arena of 256 slots, a memfd, mode 0600, never named in ``/dev/shm``), passed to another process
as its arena's descriptor and its slot (``multiprocessing.reduction.DupFd``: to a child under
every start method, or to a pool's initializer; as the standard library's, only as a process
starts, not through a queue). A process holds one descriptor per arena, not per lock.
Waits release the interpreter and are interrupted by Ctrl-C.

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

import ctypes
import os
import threading
import weakref
from multiprocessing import context, reduction
from multiprocessing import synchronize as _standard
from typing import Any, Self

from treadle._treadle import OwnerDiedError, _AtomicCell, _SharedLock
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


class SemLock(_SharedLock, _standard.SemLock):
    """What every treadle lock and semaphore is: a ``_SharedLock`` (first in the method
    resolution order, so ``acquire``, ``release``, ``__enter__`` and ``__exit__`` are its native
    methods) that is also the standard library's ``SemLock`` and has its ``__repr__``s.
    ``_semlock`` is the lock itself, for the standard library's code that reaches for it."""

    _kind = LOCK

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Any arguments, so that a subclass may have an __init__ of its own; the lock's kind is
        # the class's.
        return super().__new__(cls, cls._kind, 1, 1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __reduce__(self) -> Any:
        # As the standard library's: only to a process being started (DupFd hands the
        # descriptor to it under every start method).
        context.assert_spawning(self)
        return _reopen, (type(self), _sent_arena(self.fd()), self.slot())


def _reopen(cls: type[SemLock], arena: _Arena, slot: int) -> SemLock:
    """The lock ``cls`` in ``slot`` of the arena another process passed."""
    return _SharedLock.__new__(cls, fd=arena.fd, slot=slot)


class _Arena:
    """A lock arena's descriptor, as a pickle carries it: once however many of the arena's
    locks the pickle holds (the pickler keeps one object once), which is what lets a child
    started by ``spawn`` inherit it (its list of descriptors to keep takes each once). In the
    receiving process it owns the descriptor received; each lock keeps a duplicate if its
    process does not map the arena yet."""

    __slots__ = ("__weakref__", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> Any:
        return _received_arena, (reduction.DupFd(self.fd),)


#: This process's arenas being pickled, by descriptor.
_sending: weakref.WeakValueDictionary[int, _Arena] = weakref.WeakValueDictionary()


def _sent_arena(fd: int) -> _Arena:
    arena = _sending.get(fd)
    if arena is None:
        arena = _sending[fd] = _Arena(fd)
    return arena


def _received_arena(fd: Any) -> _Arena:
    arena = _Arena(fd.detach())
    weakref.finalize(arena, os.close, arena.fd)
    return arena


class _CountedSemLock(SemLock):
    """A semaphore, its count the first argument (bounded by it if ``_bounded``)."""

    _kind, _bounded = SEMAPHORE, False

    def __new__(cls, value: int = 1, *args: Any, **kwargs: Any) -> Self:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        maxvalue = value if cls._bounded else SEM_VALUE_MAX
        return _SharedLock.__new__(cls, SEMAPHORE, value, maxvalue)

    def __init__(self, value: int = 1, *, ctx: Any = None) -> None:
        pass


class Semaphore(_CountedSemLock, _standard.Semaphore):
    """A counter taken by ``acquire`` and given back by ``release``, across processes."""


class BoundedSemaphore(_CountedSemLock, _standard.BoundedSemaphore):
    """A semaphore that may not be released past its initial value."""

    _bounded = True


class Lock(SemLock, _standard.Lock):
    """A lock across processes, releasable by any thread of any process."""

    _kind = LOCK

    def __init__(self, *, ctx: Any = None) -> None:
        pass


class RLock(SemLock, _standard.RLock):
    """A reentrant lock across processes, released only by the thread that holds it."""

    _kind = RLOCK

    def __init__(self, *, ctx: Any = None) -> None:
        pass


class Condition(_standard.Condition):
    """The standard library's condition, on treadle's locks and semaphores."""


class Event(_standard.Event):
    """The standard library's event, on treadle's condition and semaphore."""


class Barrier(_standard.Barrier):
    """``threading.Barrier``'s semantics across processes, by generations: the state (filling
    or broken), the count of waiters and the generation are integers in shared memory, changed
    under a treadle ``Lock``; a waiter sleeps on the generation (a futex word) without the
    lock, and the last to arrive runs the action, starts the next generation and wakes them.
    A broken generation (``abort()``, a wait that timed out, an action that raised,
    ``reset()`` with waiters) is recorded (a bit per generation, the last 32), so its waiters
    raise ``BrokenBarrierError``."""

    def __init__(
        self, parties: int, action: Any = None, timeout: float | None = None, *, ctx: Any = None
    ) -> None:
        if parties < 1:
            raise ValueError("parties must be >= 1")
        self.__setstate__((parties, action, timeout, Lock(), heap.BufferWrapper(16)))

    def __setstate__(self, state: Any) -> None:
        self._parties, self._action, self._timeout, self._lock, self._wrapper = state
        cells = (ctypes.c_uint * 4).from_buffer(self._wrapper.create_memoryview())
        state_, count, generation, broken = (
            _AtomicCell(cells, ctypes.addressof(cells) + 4 * i, "I") for i in range(4)
        )
        self._state_cell, self._count_cell = state_, count
        self._generation, self._broken_generations = generation, broken

    def __getstate__(self) -> Any:
        return (self._parties, self._action, self._timeout, self._lock, self._wrapper)

    def wait(self, timeout: float | None = None) -> int:
        """Waits until ``parties`` processes and threads wait; the arrival index (0 to
        ``parties - 1``). ``BrokenBarrierError`` if the barrier is or becomes broken, or the
        wait times out (which breaks it)."""
        if timeout is None:
            timeout = self._timeout
        with self._lock:
            if self._state_cell.load() == _BROKEN:
                raise threading.BrokenBarrierError
            generation = self._generation.load()
            index = self._count_cell.fetch_add(1)
            if index + 1 == self._parties:
                try:
                    if self._action:
                        self._action()
                except BaseException:
                    self._break()
                    raise
                self._next_generation()
                return index
        if not self._generation.wait_while(generation, timeout):
            with self._lock:
                if self._generation.load() == generation:
                    self._break()  # timed out: as threading's, the barrier breaks
        if self._broken_generations.load() & (1 << generation % 32):
            raise threading.BrokenBarrierError
        return index

    def _next_generation(self, broken: bool = False) -> None:
        # Under the lock: the generation's outcome, then the next generation.
        bit = 1 << self._generation.load() % 32
        mask = self._broken_generations.load()
        self._broken_generations.store(mask | bit if broken else mask & ~bit)
        self._count_cell.store(0)
        self._generation.fetch_add(1)
        self._generation.wake_all()

    def _break_generation(self) -> None:
        self._next_generation(broken=True)

    def _break(self) -> None:
        self._state_cell.store(_BROKEN)
        self._break_generation()

    def reset(self) -> None:
        """Back to the initial state: the processes and threads waiting raise
        ``BrokenBarrierError``."""
        with self._lock:
            if self._count_cell.load() > 0:
                self._break_generation()
            self._state_cell.store(_FILLING)

    def abort(self) -> None:
        """Breaks the barrier: its waits, now and later, raise ``BrokenBarrierError`` until
        ``reset()``."""
        with self._lock:
            self._break()

    @property
    def parties(self) -> int:
        return self._parties

    @property
    def n_waiting(self) -> int:
        return self._count_cell.load() if self._state_cell.load() == _FILLING else 0

    @property
    def broken(self) -> bool:
        return self._state_cell.load() == _BROKEN

    def __repr__(self) -> str:
        if self.broken:
            return f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}: broken>"
        return (
            f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}:"
            f" waiters={self.n_waiting}/{self.parties}>"
        )


_FILLING, _BROKEN = 0, 2
