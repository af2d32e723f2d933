"""Start methods and contexts: ``multiprocessing.context``'s, with treadle's ``Process`` classes,
queues and pipes.

Built on the standard library's process model: a treadle ``Process`` is a
``multiprocessing.process.BaseProcess`` (so ``current_process``, ``parent_process``,
``active_children``, ``join``, ``is_alive``, ``exitcode``, ``sentinel``, ``terminate``, ``kill``,
``close``, names, ``daemon`` and ``authkey`` are the standard library's own), whose ``Popen``
is treadle's (``popen``), and a context is a ``multiprocessing.context.BaseContext`` (so
``Manager`` and the rest are the standard library's, made for the context: a manager's server
is the context's ``Process``), whose queues, ``Pipe``, ``Pool`` (``pool.py``), locks,
semaphores, conditions, events, barriers (``synchronize``) and shared values (``sharedctypes``)
are treadle's.

Start methods: ``"forkserver"``, the default (children forked by treadle's fork server, or
fresh interpreters when there is none; never a fork of a process with threads), ``"spawn"``
and ``"fork"`` (the caller forks, as asked). A child started from the main thread dies with its
parent; with ``"forkserver"``, every child does (through the server).
"""

from __future__ import annotations

import os
from multiprocessing import context as _standard
from multiprocessing import process
from typing import Any

from treadle._treadle import _die_with_parent
from treadle.multiprocessing import connection, popen, queues, sharedctypes, synchronize

__all__ = [
    "DefaultContext",
    "ForkContext",
    "ForkProcess",
    "ForkServerContext",
    "ForkServerProcess",
    "Process",
    "SpawnContext",
    "SpawnProcess",
    "TreadleContext",
]

#: treadle's default start method, first in ``get_all_start_methods()``.
DEFAULT_METHOD = "forkserver"


class _TreadleProcess(process.BaseProcess):
    """What every treadle process class adds: in the child, before anything else, the death
    signal its parent asked for, and treadle's default start method set to its own."""

    _start_method = None  # the standard library's contexts stay as they are in the child
    _treadle_method = DEFAULT_METHOD

    def _bootstrap(self, parent_sentinel: Any = None) -> int:
        parent = getattr(self, "_treadle_die_with", None)
        if parent is not None and not _die_with_parent(parent):
            os._exit(1)  # the parent died before the child could ask to die with it
        _default_context._actual_context = _concrete_contexts[self._treadle_method]
        return super()._bootstrap(parent_sentinel)  # type: ignore[misc]


class ForkServerProcess(_TreadleProcess):
    """A process started by treadle's fork server (or as a fresh interpreter when there is
    none)."""

    _treadle_method = "forkserver"

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return popen.start(process_obj)


class SpawnProcess(_TreadleProcess):
    """A process started as a fresh interpreter."""

    _treadle_method = "spawn"

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return popen.SpawnPopen(process_obj)

    @staticmethod
    def _after_fork() -> None:
        pass  # a fresh interpreter has no forked state to reset


class ForkProcess(_TreadleProcess):
    """A process forked from the caller."""

    _treadle_method = "fork"

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return popen.ForkPopen(process_obj)


class Process(_TreadleProcess):
    """A process started by the default context's start method, as ``multiprocessing.Process``."""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        context = _default_context.get_context()
        process_obj._treadle_method = context._name  # the child's default, as its parent's
        return context.Process._Popen(process_obj)

    @staticmethod
    def _after_fork() -> None:
        return _default_context.get_context().Process._after_fork()


class TreadleContext(_standard.BaseContext):
    """A context whose queues and pipes are treadle's; the rest is the standard library's."""

    _name: str

    def Queue(self, maxsize: int = 0) -> queues.Queue:
        """A shared-memory queue (``multiprocessing.Queue``)."""
        return queues.Queue(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize: int = 0) -> queues.JoinableQueue:
        """A shared-memory queue with ``task_done`` and ``join``."""
        return queues.JoinableQueue(maxsize, ctx=self.get_context())

    def SimpleQueue(self) -> queues.SimpleQueue:
        """An unbounded shared-memory queue."""
        return queues.SimpleQueue(ctx=self.get_context())

    def Pipe(self, duplex: bool = True) -> tuple[connection.Connection, connection.Connection]:
        """Two connected ``Connection``s on shared memory."""
        return connection.Pipe(duplex)

    def Pool(
        self,
        processes: int | None = None,
        initializer: Any = None,
        initargs: Any = (),
        maxtasksperchild: int | None = None,
    ) -> Any:
        """A pool of worker processes on treadle's process pool (``pool.Pool``)."""
        from treadle.multiprocessing import pool

        return pool.Pool(processes, initializer, initargs, maxtasksperchild, self.get_context())

    def Lock(self) -> synchronize.Lock:
        """A lock across processes; a dead owner is reported, not waited for."""
        return synchronize.Lock(ctx=self.get_context())

    def RLock(self) -> synchronize.RLock:
        """A reentrant lock across processes; a dead owner is reported, not waited for."""
        return synchronize.RLock(ctx=self.get_context())

    def Condition(self, lock: Any = None) -> synchronize.Condition:
        """A condition across processes (on a new ``RLock`` if no lock is given)."""
        return synchronize.Condition(lock, ctx=self.get_context())

    def Semaphore(self, value: int = 1) -> synchronize.Semaphore:
        """A semaphore across processes."""
        return synchronize.Semaphore(value, ctx=self.get_context())

    def BoundedSemaphore(self, value: int = 1) -> synchronize.BoundedSemaphore:
        """A bounded semaphore across processes."""
        return synchronize.BoundedSemaphore(value, ctx=self.get_context())

    def Event(self) -> synchronize.Event:
        """An event across processes."""
        return synchronize.Event(ctx=self.get_context())

    def Barrier(
        self, parties: int, action: Any = None, timeout: float | None = None
    ) -> synchronize.Barrier:
        """A barrier across processes."""
        return synchronize.Barrier(parties, action, timeout, ctx=self.get_context())

    def RawValue(self, typecode_or_type: Any, *args: Any) -> Any:
        """A ``ctypes`` object in shared memory."""
        return sharedctypes.RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type: Any, size_or_initializer: Any) -> Any:
        """A ``ctypes`` array in shared memory."""
        return sharedctypes.RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
        """A ``ctypes`` object in shared memory behind a lock."""
        return sharedctypes.Value(typecode_or_type, *args, lock=lock, ctx=self.get_context())

    def Array(self, typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
        """A ``ctypes`` array in shared memory behind a lock."""
        return sharedctypes.Array(
            typecode_or_type, size_or_initializer, lock=lock, ctx=self.get_context()
        )

    def get_context(self, method: str | None = None) -> TreadleContext:
        if method is None:
            return self
        try:
            return _concrete_contexts[method]
        except KeyError:
            raise ValueError(f"cannot find context for {method!r}") from None

    def get_all_start_methods(self) -> list[str]:
        return [DEFAULT_METHOD, "spawn", "fork"]


class ForkServerContext(TreadleContext):
    _name = "forkserver"
    Process = ForkServerProcess


class SpawnContext(TreadleContext):
    _name = "spawn"
    Process = SpawnProcess


class ForkContext(TreadleContext):
    _name = "fork"
    Process = ForkProcess


class DefaultContext(TreadleContext):
    """The module-level context: its start method is treadle's default until set."""

    Process = Process
    #: While ``treadle.patch()`` is in force: the standard library's default context, whose
    #: start method (treadle's until the program sets one) this context follows.
    _follow: Any = None

    def __init__(self, default: TreadleContext) -> None:
        self._default_context = default
        self._actual_context: TreadleContext | None = None

    def get_context(self, method: str | None = None) -> TreadleContext:
        if method is None:
            if self._actual_context is None and self._follow is not None:
                return super().get_context(self._follow.get_start_method())
            if self._actual_context is None:
                self._actual_context = self._default_context
            return self._actual_context
        return super().get_context(method)

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        if self._actual_context is not None and not force:
            raise RuntimeError("context has already been set")
        if method is None and force:
            self._actual_context = None
            return
        self._actual_context = self.get_context(method)

    def get_start_method(self, allow_none: bool = False) -> str | None:
        if self._actual_context is None and self._follow is not None:
            return self._follow.get_start_method(allow_none)
        if self._actual_context is None:
            if allow_none:
                return None
            self._actual_context = self._default_context
        return self._actual_context._name


_concrete_contexts: dict[str, TreadleContext] = {
    "forkserver": ForkServerContext(),
    "spawn": SpawnContext(),
    "fork": ForkContext(),
}
_default_context = DefaultContext(_concrete_contexts[DEFAULT_METHOD])
