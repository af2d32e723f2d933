"""``treadle.Future``: ``concurrent.futures.Future``'s API with its state in Rust, awaitable in a
coroutine, and how a future is never silent: an exception nobody retrieved is reported
(``set_unretrieved_handler``), a failing done-callback is logged, as the standard library logs it.

This module registers with the native side the class of the futures pools make and the hooks it
calls back (``_Hooks``), so that they are in place as soon as a ``Future`` exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from concurrent import futures as _cf
from typing import Any

from treadle import _treadle
from treadle._treadle import _FutureBase
from treadle.futures.task_local import _locals

logger = logging.getLogger("treadle")
_cf_logger = logging.getLogger("concurrent.futures")


class Future(_FutureBase, _cf.Future):  # type: ignore[misc,override]
    """The result of a task: ``concurrent.futures.Future``'s API, its state in Rust.

    ``cancel(interrupt=True)`` also asks a running task to stop; ``name`` is the name given to
    ``schedule``. ``await future`` in a coroutine waits for it without blocking the event loop.
    """

    __init__ = _FutureBase.__init__

    def __await__(self) -> Generator[Any, None, Any]:
        """``await future``: the result (or the task's exception), in a coroutine of a running
        asyncio loop, through ``asyncio.wrap_future``. Cancelling the awaiting task cancels the
        future if it has not started; a running task goes on, and its outcome is dropped."""
        import asyncio

        return asyncio.wrap_future(self, loop=asyncio.get_running_loop()).__await__()


_unretrieved_handler: Callable[[BaseException, object], object] | None = None


def _default_unretrieved(exception: BaseException, name: object) -> None:
    task = f"task {name!r}" if name is not None else "a task"
    logger.error(
        "exception in %s was never retrieved",
        task,
        exc_info=(type(exception), exception, exception.__traceback__),
    )


def set_unretrieved_handler(
    handler: Callable[[BaseException, object], object] | None,
) -> Callable[[BaseException, object], object] | None:
    """Replace how an exception nobody retrieved is reported: ``handler(exception, task_name)``.

    ``None`` restores the default (the ``treadle`` logger, at ERROR, with the traceback).
    Returns the previous handler.
    """
    global _unretrieved_handler
    previous = _unretrieved_handler
    _unretrieved_handler = handler
    return previous


def report_unretrieved(exception: BaseException, name: object) -> None:
    """Reports the exception of a task (named ``name``, or None) that nobody retrieved."""
    (_unretrieved_handler or _default_unretrieved)(exception, name)


class _Hooks:
    """What the native side calls back into Python for."""

    @staticmethod
    def lost(exception: BaseException, name: object) -> None:
        report_unretrieved(exception, name)

    @staticmethod
    def callback_failed(future: Future, exception: BaseException) -> None:
        _cf_logger.error(
            "exception calling callback for %r",
            future,
            exc_info=(type(exception), exception, exception.__traceback__),
        )

    @staticmethod
    def initializer_failed(exception: BaseException) -> None:
        _cf_logger.critical(
            "Exception in initializer:",
            exc_info=(type(exception), exception, exception.__traceback__),
        )

    @staticmethod
    def clear_locals() -> None:
        for loc in list(_locals):
            loc._treadle_reset()


_treadle._set_pool_hooks(
    Future,
    lost=_Hooks.lost,
    callback_failed=_Hooks.callback_failed,
    initializer_failed=_Hooks.initializer_failed,
    clear_locals=_Hooks.clear_locals,
)
