"""``treadle.ThreadPoolExecutor``: ``concurrent.futures.ThreadPoolExecutor`` with its queue and
worker loop in Rust.

The API and semantics of ``concurrent.futures`` (Python 3.14's ``map(buffersize=)`` included, on
every supported Python). A ``treadle.ThreadPoolExecutor`` *is* a
``concurrent.futures.ThreadPoolExecutor`` (for ``isinstance`` and ``loop.set_default_executor``),
its futures are ``treadle.Future`` objects; the exceptions are the standard library's own.

On top: interruptible tasks (``cancel(interrupt=True)``, time limits), bounded submission
(``max_pending``), nested waits that finish (a worker waiting on its own pool's queued tasks gets
a spare thread to run them), a copy of the submitter's ``contextvars`` context per task,
:class:`~treadle.local` cleared between tasks, and exceptions nobody retrieved reported. Worker
threads are ``treadle.Thread`` objects, so that waiting for them in ``shutdown()`` is in the wait
graph. See ``docs/thread_pool.md``.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent import futures as _cf
from typing import Any, Literal

from treadle import _treadle
from treadle._treadle import _PoolHandle, _ThreadPool
from treadle.deadlock.threads import Thread
from treadle.futures.executor import Executor


class _WorkerThreads:
    """Starts a pool's worker threads, for a submission or for a worker that waits on its own
    pool, and keeps them for ``shutdown()`` to join. Holds no reference to the executor, so that
    the pool's workers can still start one once it is gone."""

    def __init__(
        self,
        prefix: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        max_workers: int,
    ) -> None:
        self.prefix = prefix
        self.initializer = initializer
        self.initargs = initargs
        self.threads: set[threading.Thread] = set()
        self._numbers = itertools.count().__next__
        self._prune_at = 2 * max_workers

    def start(self, handle: _PoolHandle) -> None:
        thread = Thread(
            name=f"{self.prefix}_{self._numbers()}",
            target=_treadle._run_worker,
            args=(handle, self.initializer, self.initargs),
        )
        thread.start()
        self.threads.add(thread)
        if len(self.threads) >= self._prune_at:
            # Spare threads end once not needed: forget those, so the set does not grow.
            self.threads.difference_update([t for t in self.threads if not t.is_alive()])
            self._prune_at = max(self._prune_at, 2 * len(self.threads))


class ThreadPoolExecutor(_ThreadPool, Executor, _cf.ThreadPoolExecutor):  # type: ignore[misc]  # _broken: read-only
    """``concurrent.futures.ThreadPoolExecutor``, with its engine in Rust.

    Extra keyword arguments:

    * ``max_pending``: at most this many tasks queued (not started); ``on_full`` says what a
      submission does when they are: ``"block"`` (wait for room), ``"raise"`` (``queue.Full``)
      or ``"caller_runs"`` (run the task in the submitting thread);
    * ``task_timeout``: a time limit (seconds from its start) for every task; see ``schedule``;
    * ``raise_unretrieved``: ``shutdown()`` raises an ``ExceptionGroup`` of the exceptions no one
      retrieved (of dropped futures too), instead of logging them.
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
        self._check_arguments(max_workers, initializer, task_timeout)
        if max_pending is not None and max_pending <= 0:
            raise ValueError("max_pending must be greater than 0 or None")
        self._max_workers = max_workers
        self._thread_name_prefix = thread_name_prefix or f"ThreadPoolExecutor-{self._counter()}"
        self._initializer = initializer  # type: ignore[assignment]
        self._initargs = initargs
        workers = _WorkerThreads(self._thread_name_prefix, initializer, initargs, max_workers)
        self._threads = workers.threads
        unretrieved = self._keep_unretrieved(raise_unretrieved)
        self._setup(
            max_workers, max_pending or 0, on_full, task_timeout, unretrieved, workers.start
        )
        self._timer: threading.Thread | None = None
        self._shutdown = False
        self._register_for_exit()

    def _stats_source(self) -> _PoolHandle:
        return self._handle()

    def _stats_label(self) -> str:
        return self._thread_name_prefix or super()._stats_label()

    def _start_timer(self) -> None:
        self._timer = threading.Thread(
            name=f"{self._thread_name_prefix}_timer",
            target=_treadle._run_timer,
            args=(self._handle(),),
            daemon=True,
        )
        self._timer.start()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``Executor.shutdown``; then (if ``wait``) reports the exceptions of tasks that
        nobody retrieved, or raises them as an ``ExceptionGroup`` if ``raise_unretrieved``."""
        self._shutdown = True
        self._shutdown_pool(cancel_futures)
        if not wait:
            return
        # Until no thread is left to join: a worker waiting on its own pool may start a spare
        # thread meanwhile.
        joined = {threading.current_thread()}
        while waiting := [thread for thread in list(self._threads) if thread not in joined]:
            for thread in waiting:
                thread.join()
                joined.add(thread)
        self._report_unretrieved()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> Literal[False]:
        self._leaving_with_error = exc_type is not None
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False
