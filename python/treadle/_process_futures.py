"""The one place where the process pool makes and resolves its futures.

The futures are ``concurrent.futures.Future`` objects that also take ``cancel(interrupt=True)``,
which cancels a task a worker is already running (its worker is killed and replaced). Everything
the pool does to a future goes through the functions below, so that moving to another future
type (treadle's own) changes this module only.
"""

from __future__ import annotations

import concurrent.futures
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
)
from typing import Any, Protocol


class _Canceller(Protocol):
    def _cancel_task(self, task_id: int, interrupt: bool) -> bool: ...


class Future(concurrent.futures.Future):  # type: ignore[type-arg]
    """A process-pool task's future: ``concurrent.futures.Future`` plus
    ``cancel(interrupt=True)``."""

    def __init__(self, pool: _Canceller, task_id: int) -> None:
        super().__init__()
        self._pool = pool
        self._task_id = task_id

    def cancel(self, interrupt: bool = False) -> bool:
        """Cancels the task if no worker has started it. With ``interrupt=True``, a running
        task is stopped too: its worker is killed and replaced. Returns whether the future is
        now cancelled."""
        with self._condition:
            if self._state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                return True
            if self._state == FINISHED:
                return False
        if not self._pool._cancel_task(self._task_id, interrupt):
            return False
        return mark_cancelled(self)


def new_future(pool: _Canceller, task_id: int) -> Future:
    return Future(pool, task_id)


def mark_cancelled(future: concurrent.futures.Future) -> bool:  # type: ignore[type-arg]
    """Cancels ``future`` (pending or running): waiters and callbacks are told."""
    with future._condition:  # type: ignore[attr-defined]
        if future._state == FINISHED:  # type: ignore[attr-defined]
            return False
        if future._state in (CANCELLED, CANCELLED_AND_NOTIFIED):  # type: ignore[attr-defined]
            return True
        future._state = CANCELLED_AND_NOTIFIED  # type: ignore[attr-defined]
        for waiter in future._waiters:  # type: ignore[attr-defined]
            waiter.add_cancelled(future)
        future._condition.notify_all()  # type: ignore[attr-defined]
    future._invoke_callbacks()  # type: ignore[attr-defined]
    return True


def set_result(future: concurrent.futures.Future, value: Any) -> None:  # type: ignore[type-arg]
    try:
        future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled meanwhile


def set_exception(future: concurrent.futures.Future, error: BaseException) -> None:  # type: ignore[type-arg]
    try:
        future.set_exception(error)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled meanwhile
