"""Threads whose joins are in the wait graph: :class:`Thread`, :class:`Timer`,
:func:`main_thread`, and the tracked ``start``/``run``/``join`` that ``treadle.patch()`` puts into
``threading.Thread``.

A thread publishes its end (a ``_ThreadDone``) for its whole life, so that ``join()`` is an owned
wait: a join that closes a cycle raises :class:`~treadle.DeadlockError` at once.
"""

from __future__ import annotations

import _thread
import threading
import time

from treadle import _treadle
from treadle._treadle import _ThreadDone

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any


def _run_tracked(thread: threading.Thread, bootstrap_inner) -> None:
    """A thread's life, with its end published for deadlock-checked joins."""
    done = _ThreadDone()
    thread._treadle_done = done  # type: ignore[attr-defined]
    done.bind_current()
    try:
        bootstrap_inner()
    finally:
        done.finish()


def _start_tracked(start) -> None:
    """``thread.start()``: until the new thread runs, the interpreter does not count it among
    the live threads, so no stall is judged meanwhile (its starter waits for it in treadle)."""
    _treadle._thread_starting(True)
    try:
        start()
    finally:
        _treadle._thread_starting(False)


def _join_tracked(thread: threading.Thread, timeout: float | None, join) -> None:
    """``thread.join(timeout)``, waiting for the thread's end in the wait graph first."""
    if threading.current_thread() is thread:
        raise RuntimeError("cannot join current thread")
    if thread is threading.main_thread():
        main_thread().join(timeout)
        return
    done = getattr(thread, "_treadle_done", None)
    if done is None or not thread._started.is_set():  # type: ignore[attr-defined]
        join(timeout)  # not started, or started before tracking: the stdlib's own join
        return
    start = time.monotonic()
    if not done.wait(thread, timeout):
        return
    if timeout is not None:
        timeout = max(0.0, timeout - (time.monotonic() - start))
    join(timeout)


class Thread(threading.Thread):
    """A ``threading.Thread`` whose ``join()`` takes part in deadlock detection.

    A thread that joins a thread which (directly or through others) waits for it raises
    :class:`DeadlockError` instead of hanging. Everything else is ``threading.Thread``.
    """

    def start(self) -> None:
        _start_tracked(super().start)

    def _bootstrap_inner(self):
        _run_tracked(self, super()._bootstrap_inner)  # type: ignore[misc]

    def join(self, timeout: float | None = None) -> None:
        _join_tracked(self, timeout, super().join)


class Timer(Thread, threading.Timer):
    """``threading.Timer`` as a :class:`Thread`: calls ``function(*args, **kwargs)`` after
    ``interval`` seconds unless ``cancel()`` is called first.

    Its wait is a ``treadle.Event``'s (interruptible, and in the wait graph: a timed wait, so a
    process with a pending timer is never judged stalled) and its ``join()`` is deadlock-checked.
    It is a ``threading.Timer`` too, for ``isinstance``.
    """

    def __init__(
        self,
        interval: float,
        function: Callable[..., object],
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(interval, function, args, kwargs)
        self.finished = _treadle.Event()


class _MainThread:
    """The main thread, with a ``join()`` that takes part in deadlock detection."""

    def __init__(self) -> None:
        self._thread = threading.main_thread()
        self._done = _ThreadDone(main=True)
        # threading releases joiners of the main thread when the interpreter begins to shut
        # down, before it joins the other threads; so does this.
        threading._register_atexit(self._done.finish)  # type: ignore[attr-defined]

    def join(self, timeout: float | None = None) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("cannot join current thread")
        self._done.wait(self._thread, timeout)

    def __getattr__(self, name: str):
        return getattr(self._thread, name)

    def __repr__(self) -> str:
        return repr(self._thread)


_main: _MainThread | None = None
_main_lock = _thread.allocate_lock()


def main_thread() -> _MainThread:
    """The main thread (as ``threading.main_thread()``), whose ``join()`` is deadlock-checked."""
    global _main
    with _main_lock:
        if _main is None:
            _main = _MainThread()
        return _main
