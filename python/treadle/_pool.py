"""treadle's thread pool: ``ThreadPoolExecutor``, ``Future``, ``wait`` and ``as_completed``.

The API and semantics of ``concurrent.futures`` (Python 3.14's ``map(buffersize=)`` included, on
every supported Python), with the future's state, the queue and the worker loop in Rust. A
``treadle.Future`` *is* a ``concurrent.futures.Future`` and a ``treadle.ThreadPoolExecutor`` *is* a
``concurrent.futures.ThreadPoolExecutor`` (for ``isinstance``, ``asyncio.wrap_future`` and
``loop.set_default_executor``); the exceptions are the standard library's own.

On top: interruptible tasks (``cancel(interrupt=True)``, time limits), bounded submission
(``max_pending``), help mode for nested waits, a copy of the submitter's ``contextvars`` context
per task, :class:`local` cleared between tasks, and exceptions nobody retrieved reported. See
``docs/thread_pool.md``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures as _cf
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    InvalidStateError,
)
from concurrent.futures._base import DoneAndNotDoneFutures
from concurrent.futures.thread import BrokenThreadPool
from typing import Any, Literal

from treadle import _treadle
from treadle._treadle import (
    Cancelled,
    TaskTimeoutError,
    _Completions,
    _FutureBase,
    _ThreadPool,
    cancelled,
    check_cancelled,
    sleep,
)

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BrokenExecutor",
    "BrokenThreadPool",
    "Cancelled",
    "CancelledError",
    "Future",
    "InvalidStateError",
    "TaskTimeoutError",
    "ThreadPoolExecutor",
    "as_completed",
    "cancelled",
    "check_cancelled",
    "local",
    "set_unretrieved_handler",
    "sleep",
    "wait",
]

logger = logging.getLogger("treadle")
_cf_logger = logging.getLogger("concurrent.futures")


class Future(_FutureBase, _cf.Future):  # type: ignore[misc,override]
    """The result of a task: ``concurrent.futures.Future``'s API, its state in Rust.

    ``cancel(interrupt=True)`` also asks a running task to stop; ``name`` is the name given to
    ``schedule``.
    """

    __init__ = _FutureBase.__init__


# --- never silent -----------------------------------------------------------------------------

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


class _Hooks:
    """What the native side calls back into Python for."""

    @staticmethod
    def lost(exception: BaseException, name: object) -> None:
        (_unretrieved_handler or _default_unretrieved)(exception, name)

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


# --- local ------------------------------------------------------------------------------------

_locals: weakref.WeakKeyDictionary[local, tuple[tuple[Any, ...], dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


class local(threading.local):
    """A ``threading.local`` that pool workers clear between tasks, so that nothing one task
    stored is seen by the next (a subclass's ``__init__`` runs again, as in a new thread)."""

    def __new__(cls, /, *args: Any, **kwargs: Any) -> local:
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = super().__new__(cls, *args, **kwargs)
        _locals[self] = (args, kwargs)
        _treadle._locals_in_use()
        return self

    def _treadle_reset(self) -> None:
        args, kwargs = _locals.get(self, ((), {}))
        state = self.__dict__
        state.clear()
        if type(self).__init__ is not object.__init__:
            self.__init__(*args, **kwargs)  # type: ignore[misc]


# --- wait and as_completed --------------------------------------------------------------------


def wait(
    fs: Iterable[_cf.Future[Any]],
    timeout: float | None = None,
    return_when: str = ALL_COMPLETED,
    *,
    cancel_pending: bool = False,
) -> DoneAndNotDoneFutures[Any]:
    """Wait for the futures (treadle's or the standard library's) as ``concurrent.futures.wait``
    does; with ``cancel_pending=True``, cancel those not done when it returns."""
    fs = set(fs)
    order = list(fs)
    watch = _Completions(order)
    done: set[_cf.Future[Any]] = set()
    deadline = None if timeout is None else time.monotonic() + timeout
    watch.watch()
    try:
        ready = watch.ready()
        while True:
            for index in ready:
                done.add(order[index])
            if len(done) == len(order):
                break
            if return_when == FIRST_COMPLETED and done:
                break
            if return_when == FIRST_EXCEPTION and any(
                not f.cancelled() and f._exception is not None
                for f in (order[index] for index in ready)
            ):
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            arrived = watch.next(remaining)
            if arrived is None:
                break
            ready = [arrived, *watch.ready()]
    finally:
        watch.close()
    not_done = fs - done
    if cancel_pending:
        for future in not_done:
            future.cancel()
    return DoneAndNotDoneFutures(done, not_done)


def as_completed(fs: Iterable[_cf.Future[Any]], timeout: float | None = None) -> Iterator[Any]:
    """Yield the futures (treadle's or the standard library's) as they complete, as
    ``concurrent.futures.as_completed`` does."""
    end_time = None if timeout is None else timeout + time.monotonic()
    futures = list(set(fs))
    total = pending = len(futures)
    watch = _Completions(futures)
    del fs, futures
    watch.watch()
    try:
        while pending:
            ready = watch.ready()
            if not ready:
                wait_timeout = None if end_time is None else end_time - time.monotonic()
                arrived = None
                if wait_timeout is None or wait_timeout >= 0:
                    arrived = watch.next(wait_timeout)
                if arrived is None:
                    raise TimeoutError(f"{pending} (of {total}) futures unfinished")
                ready = [arrived]
            for index in ready:
                pending -= 1
                # Nothing here keeps a future once it is yielded (as the standard library's).
                yield watch.take(index)
    finally:
        watch.close()


# --- the executor -----------------------------------------------------------------------------

_executors: weakref.WeakSet[ThreadPoolExecutor] = weakref.WeakSet()


def _python_exit() -> None:
    # As concurrent.futures does: at interpreter exit, no new work, and the queued work is done.
    _treadle._interpreter_exiting()
    for executor in list(_executors):
        executor.shutdown(wait=True)


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]


def _result_or_cancel(future: Future, timeout: float | None = None) -> Any:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future


def _result_or_error(future: Future, timeout: float | None = None) -> Any:
    """The future's result, or the exception the task ended with (``CancelledError`` if it was
    cancelled), for ``return_exceptions``. A wait that runs out of time raises ``TimeoutError``
    and cancels the future, as without ``return_exceptions``."""
    try:
        try:
            return future.result(timeout)
        except CancelledError as error:
            if future.cancelled():
                return error
            raise
        except Exception as error:
            if future.done() and not future.cancelled() and future.exception(0) is error:
                return error
            future.cancel()
            raise
    finally:
        del future


class ThreadPoolExecutor(_ThreadPool, _cf.ThreadPoolExecutor):  # type: ignore[misc]  # _broken: read-only
    """``concurrent.futures.ThreadPoolExecutor``, with its engine in Rust.

    Extra keyword arguments:

    * ``max_pending``: at most this many tasks queued (not started); ``on_full`` says what a
      submission does when they are: ``"block"`` (wait for room), ``"raise"`` (``queue.Full``)
      or ``"caller_runs"`` (run the task in the submitting thread);
    * ``task_timeout``: a time limit (seconds from its start) for every task; see ``schedule``;
    * ``raise_unretrieved``: ``shutdown()`` raises an ``ExceptionGroup`` of the exceptions no one
      retrieved, instead of logging them.
    """

    _counter = itertools.count().__next__

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_pending: int | None = None,
        on_full: str = "block",
        task_timeout: float | None = None,
        raise_unretrieved: bool = False,
    ) -> None:
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)  # as in Python 3.11-3.12
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_pending is not None and max_pending <= 0:
            raise ValueError("max_pending must be greater than 0 or None")
        self._setup(max_workers, max_pending or 0, on_full, task_timeout)
        self._max_workers = max_workers
        self._thread_name_prefix = thread_name_prefix or f"ThreadPoolExecutor-{self._counter()}"
        self._initializer = initializer  # type: ignore[assignment]
        self._initargs = initargs
        self._raise_unretrieved = raise_unretrieved
        self._threads: set[threading.Thread] = set()
        self._thread_numbers = itertools.count().__next__
        self._timer: threading.Thread | None = None
        self._shutdown = False
        _executors.add(self)

    def _adjust_thread_count(self) -> None:
        # Called by submit when the queue has more work than idle workers, below max_workers.
        name = f"{self._thread_name_prefix or self}_{self._thread_numbers()}"
        thread = threading.Thread(
            name=name,
            target=_treadle._run_worker,
            args=(self._handle(), self._initializer, self._initargs),
        )
        try:
            thread.start()
        except BaseException:
            self._worker_not_started()
            raise
        self._threads.add(thread)

    def _start_timer(self) -> None:
        self._timer = threading.Thread(
            name=f"{self._thread_name_prefix}_timer",
            target=_treadle._run_timer,
            args=(self._handle(),),
            daemon=True,
        )
        self._timer.start()

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        return_exceptions: bool = False,
    ) -> Iterator[Any]:
        """``Executor.map`` (with 3.14's ``buffersize``); with ``return_exceptions=True``, a
        task's exception is yielded in its place instead of ending the iteration."""
        if buffersize is not None and not isinstance(buffersize, int):
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        end_time = None if timeout is None else timeout + time.monotonic()
        zipped = zip(*iterables, strict=False)
        if buffersize:
            fs = collections.deque(
                self.submit(fn, *args) for args in itertools.islice(zipped, buffersize)
            )
        else:
            fs = collections.deque(self.submit(fn, *args) for args in zipped)
        executor_weakref = weakref.ref(self)

        def result_iterator() -> Iterator[Any]:
            try:
                fs.reverse()
                while fs:
                    if (
                        buffersize
                        and (executor := executor_weakref())
                        and (args := next(zipped, None))
                    ):
                        fs.appendleft(executor.submit(fn, *args))
                    remaining = None if end_time is None else end_time - time.monotonic()
                    # No local name holds the future or its value while the caller has it, so
                    # that a result the caller drops is freed (as the standard library's map).
                    if return_exceptions:
                        yield _result_or_error(fs.pop(), remaining)
                    else:
                        yield _result_or_cancel(fs.pop(), remaining)
            finally:
                for future in fs:
                    future.cancel()

        return result_iterator()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``Executor.shutdown``; then (if ``wait``) reports the exceptions of tasks that
        nobody retrieved, or raises them as an ``ExceptionGroup`` if ``raise_unretrieved``."""
        self._shutdown = True
        self._shutdown_pool(cancel_futures)
        if not wait:
            return
        me = threading.current_thread()
        for thread in list(self._threads):
            if thread is not me:
                thread.join()
        lost = self._take_lost()
        if not lost:
            return
        if self._raise_unretrieved:
            raise BaseExceptionGroup(
                f"{len(lost)} task exceptions were never retrieved", [e for e, _ in lost]
            )
        for exception, name in lost:
            _Hooks.lost(exception, name)

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> Literal[False]:
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False
