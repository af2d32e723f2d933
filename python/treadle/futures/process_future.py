"""The one place where the process pool makes and resolves its futures.

The futures are ``treadle.Future`` objects (so ``concurrent.futures.Future`` too) whose
``cancel(interrupt=True)`` cancels a task a worker is already running (its worker is killed and
replaced). Everything the pool does to a future goes through the functions below.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Protocol

from treadle._treadle import _Unretrieved
from treadle.futures.future import Future as _TreadleFuture


class _Canceller(Protocol):
    def _cancel_task(self, task_id: int, interrupt: bool) -> bool: ...
    def _task_queued(self, task_id: int) -> bool: ...


class Future(_TreadleFuture):
    """A process-pool task's future: a ``treadle.Future`` whose ``cancel(interrupt=True)`` stops
    a running task by killing its worker (which the pool replaces)."""

    def __init__(self, pool: _Canceller, task_id: int) -> None:
        # (_TreadleFuture's __init__ does nothing: the native base sets its state up in __new__.)
        self._pool = pool
        self._task_id = task_id

    def running(self) -> bool:
        """Whether the task is running: as in the standard library's process pool, a task that
        a worker holds (it runs it, or runs it next) is running, one still in the pool's queue
        is not. A task whose result is on its way counts as running until it is done."""
        return not self.done() and not self._pool._task_queued(self._task_id)

    def __repr__(self) -> str:
        text = super().__repr__()
        return text.replace("state=pending", "state=running") if self.running() else text

    def cancel(self, interrupt: bool = False) -> bool:
        """Cancels the task if no worker has started it. With ``interrupt=True``, a running
        task is stopped too: its worker is killed and replaced. Returns whether the future is
        now cancelled."""
        if self.done():
            return self.cancelled()
        if not self._pool._cancel_task(self._task_id, interrupt):
            return False
        return mark_cancelled(self)


def new_future(pool: _Canceller, task_id: int) -> Future:
    return Future(pool, task_id)


def mark_cancelled(future: _TreadleFuture) -> bool:
    """Cancels ``future`` (its state in the cell is never set running: ``running()`` asks the
    pool instead, so the plain cancel applies): waiters and callbacks are told."""
    return _TreadleFuture.cancel(future)


def set_result(future: concurrent.futures.Future, value: Any) -> None:  # type: ignore[type-arg]
    try:
        future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled meanwhile


def set_exception(
    future: Future,
    error: BaseException,
    unretrieved: _Unretrieved | None = None,
) -> None:
    """Fails the future; ``unretrieved``, the pool's record of failures, keeps it for the
    pool's ``shutdown()`` (None: a failure the program asked for, not to be reported there)."""
    try:
        future.set_exception(error)
    except concurrent.futures.InvalidStateError:
        return  # cancelled meanwhile
    if unretrieved is not None:
        unretrieved.record(future)


def set_stopped(future: Future, error: BaseException) -> None:
    """Fails ``future`` with ``error`` for a task the program stopped on purpose
    (``terminate_workers()``, ``kill_workers()``, the pool left by Ctrl-C): its caller knows,
    so it is not reported as an exception nobody retrieved, at shutdown or when it is freed."""
    set_exception(future, error)
    future._mark_retrieved()
