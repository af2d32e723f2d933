"""The one base of treadle's executors: what the thread pool and the process pool share.

* The checks of the arguments every executor takes, with one rule and one message each; a time
  limit (``task_timeout``, ``schedule(timeout=)``) is None or a positive, finite number of
  seconds (``ValueError`` otherwise), in both pools.
* ``map``, with 3.14's ``buffersize``, treadle's ``return_exceptions`` and ``progress`` (a tqdm
  bar, ``progress.py``), and its result iterator, which keeps no reference to a future or a
  value once it has yielded it (as the standard library's), so that a result the caller drops
  is freed.
* ``stats()``: the executor's statistics (``ExecutorStats``), read from what
  ``_stats_source()`` gives; ``keep_stats()`` keeps every executor's source from then on, for
  ``treadle run --stats``. ``TREADLE_STATS=0`` in the environment turns them off for the pools
  made afterwards (to measure what they cost; ``treadle bench stats``).
* The at-exit registry: at interpreter exit, as ``concurrent.futures`` does, the executors take
  no new work and finish their queued work.
* Never silent: a pool records its tasks' failures (``_Unretrieved``); ``shutdown(wait=True)``
  reports those nobody retrieved, or with ``raise_unretrieved=True`` raises them as an
  ``ExceptionGroup``, dropped futures included (at interpreter exit, where nobody could catch
  it, it reports them).

A subclass provides ``submit``, ``shutdown`` and ``_stats_source``, and ``_map_tasks`` if
``map`` should not submit one task per call; it calls ``_keep_unretrieved`` as it is made and
``_report_unretrieved`` at the end of ``shutdown(wait=True)``.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures as _cf
from concurrent.futures import CancelledError
from typing import Any, Protocol

from treadle import _treadle
from treadle._treadle import ExecutorStats
from treadle.futures import progress as _progress
from treadle.futures.future import report_unretrieved

#: Submits one task of a ``map``: ``submit(executor, task)``, a future, or for a chunked map a
#: ``(future, number of calls)`` pair.
MapSubmit = Callable[[Any, Any], Any]


class StatsSource(Protocol):
    """What holds an executor's statistics: it outlives the executor object."""

    def stats(self) -> ExecutorStats: ...


def check_timeout(name: str, seconds: float | None) -> None:
    """A time limit for tasks: None (no limit) or a positive, finite number of seconds."""
    if seconds is not None and not 0 < seconds < math.inf:
        raise ValueError(f"{name} must be a positive number of seconds or None")


class Executor(_cf.Executor):
    """``concurrent.futures.Executor`` with what treadle's executors share: argument checks,
    ``map``, the at-exit registry and the reporting of exceptions nobody retrieved."""

    #: Set by ``__exit__`` when an exception leaves the ``with`` block: that exception goes on,
    #: and ``raise_unretrieved`` reports the lost ones rather than raise a group over it.
    _leaving_with_error = False

    @staticmethod
    def _check_arguments(
        max_workers: int, initializer: Callable[..., object] | None, task_timeout: float | None
    ) -> None:
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        check_timeout("task_timeout", task_timeout)

    def _register_for_exit(self) -> None:
        """Shut this executor down at interpreter exit (it is forgotten when it is freed)."""
        _live_executors.add(self)
        if _kept_stats is not None:
            _kept_stats.append((self._stats_label(), self._stats_source()))

    def stats(self) -> ExecutorStats:
        """The executor's statistics now: tasks submitted, done, failed, cancelled and timed
        out; task times and queue waits (count, mean, p50, p99, max, in seconds); each worker's
        tasks and busy fraction; for a process pool, its workers' restarts and why. Gathered in
        the core as the pool runs, at a cost too small to measure (``treadle bench stats``)."""
        return self._stats_source().stats()

    def _stats_source(self) -> StatsSource:
        raise NotImplementedError(f"{type(self).__name__} gathers no statistics")

    def _stats_label(self) -> str:
        """The executor's name in ``treadle run --stats``."""
        return f"{type(self).__name__}-{next(_stats_numbers)}"

    def _keep_unretrieved(self, raise_unretrieved: bool) -> _treadle._Unretrieved:
        """Where the pool records its tasks' failures, for ``shutdown()``; with
        ``raise_unretrieved``, a dropped future's failure stays there too."""
        self._raise_unretrieved = raise_unretrieved
        self._unretrieved = _treadle._Unretrieved(raise_unretrieved)
        return self._unretrieved

    def _report_unretrieved(self) -> None:
        """At ``shutdown(wait=True)``, once the tasks are done: reports the failures nobody
        retrieved, or raises them as a group with ``raise_unretrieved`` (not at interpreter exit,
        where nobody could catch it, nor over an exception leaving a ``with`` block)."""
        lost = self._unretrieved.take()
        if not lost:
            return
        if self._raise_unretrieved and not _exiting and not self._leaving_with_error:
            raise BaseExceptionGroup(
                f"{len(lost)} task exceptions were never retrieved", [e for e, _ in lost]
            )
        for exception, name in lost:
            report_unretrieved(exception, name)

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        return_exceptions: bool = False,
        progress: Any = None,
    ) -> Iterator[Any]:
        """``Executor.map`` (with 3.14's ``buffersize``: at most that many tasks are submitted
        ahead of the results consumed); with ``return_exceptions=True``, a task's exception is
        yielded in its place instead of ending the iteration. ``progress=True`` (or a dict of
        tqdm options, or a tqdm bar) shows a progress bar of the tasks as they end, failures and
        cancellations in its postfix; the total is known when the iterables have a length."""
        if buffersize is not None and not isinstance(buffersize, int):
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        end_time = None if timeout is None else timeout + time.monotonic()
        tasks, submit, chunked = self._map_tasks(fn, iterables, chunksize)
        collect: Callable[[Any, float | None], Any]
        collect = _result_or_error if return_exceptions else _result_or_cancel
        tracker = None
        if progress is not None:
            tracker = _progress.start(progress, _progress.total_of(iterables))
        if tracker is not None:
            submit, collect = _progress.for_map(tracker, submit, collect, chunked)
        try:
            if buffersize:
                futures = collections.deque(
                    submit(self, task) for task in itertools.islice(tasks, buffersize)
                )
            else:
                futures = collections.deque(submit(self, task) for task in tasks)
        except BaseException:
            if tracker is not None:
                tracker.close()
            raise
        more = tasks if buffersize else None
        results = _results(
            futures, more, weakref.ref(self), submit, end_time, collect, chunked, tracker
        )
        if tracker is not None:
            # Closed when the iteration ends; also when the iterator is freed unstarted.
            weakref.finalize(results, tracker.close)
        return results

    def _map_tasks(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], chunksize: int
    ) -> tuple[Iterator[Any], MapSubmit, bool]:
        """How ``map`` submits its calls: the tasks, the function that submits one, and whether
        a task is a chunk of calls whose result is the list of theirs. Here: one task a call."""

        def submit(executor: Any, args: tuple[Any, ...]) -> Any:
            return executor.submit(fn, *args)

        return zip(*iterables, strict=False), submit, False

    def _calls_submitter(self, fn: Callable[..., Any], spread: bool) -> Callable[[list[Any]], Any]:
        """Submits a chunk of calls of ``fn`` (its arguments: each one, or with ``spread`` each
        a tuple of them) as one task, whose result is the list of theirs: ``submit(chunk)``, a
        future. ``multiprocessing.pool``'s ``map`` and ``imap`` run their chunks so."""

        def submit(chunk: list[Any]) -> Any:
            return self.submit(call_chunk, fn, chunk, spread)

        return submit


def call_chunk(fn: Callable[..., Any], chunk: list[Any], spread: bool) -> list[Any]:
    """A chunk of calls, run by a worker as one task: their results, in order."""
    if spread:
        return list(itertools.starmap(fn, chunk))
    return list(map(fn, chunk))


def _results(
    futures: collections.deque[Any],
    more: Iterator[Any] | None,
    executor: weakref.ref[Executor],
    submit: MapSubmit,
    end_time: float | None,
    collect: Callable[[Any, float | None], Any],
    chunked: bool,
    tracker: _progress.Progress | None,
) -> Iterator[Any]:
    """``map``'s results in order. With ``more`` (``buffersize``), one more task is submitted
    for each result taken, as long as the executor lives. ``tracker``'s bar is closed at the
    end, however the iteration ends."""
    try:
        futures.reverse()
        while futures:
            if more is not None:
                _submit_next(futures, more, executor, submit)
            remaining = None if end_time is None else end_time - time.monotonic()
            # No local name holds the future or its value while the caller has it, so that a
            # result the caller drops is freed (as the standard library's map).
            if not chunked:
                yield collect(futures.pop(), remaining)
                continue
            chunk = _chunk_results(futures.pop(), remaining, collect)
            # Popped one by one (the chunk keeps no value the caller took), in C.
            chunk.append(_END)
            chunk.reverse()
            yield from iter(chunk.pop, _END)
    finally:
        for entry in futures:
            (entry[0] if chunked else entry).cancel()
        if tracker is not None:
            tracker.close()


def _submit_next(
    futures: collections.deque[Any],
    more: Iterator[Any],
    executor_ref: weakref.ref[Executor],
    submit: MapSubmit,
) -> None:
    executor = executor_ref()
    if executor is None:
        return
    task = next(more, _END)
    if task is not _END:
        futures.appendleft(submit(executor, task))


_END = object()


def _chunk_results(
    entry: tuple[_cf.Future[Any], int],
    timeout: float | None,
    collect: Callable[[Any, float | None], Any],
) -> list[Any]:
    """The results of a chunk's calls; with ``return_exceptions``, the chunk's exception stands
    in for each of them."""
    future, calls = entry
    del entry
    results = collect(future, timeout)
    return results if isinstance(results, list) else [results] * calls


def _result_or_cancel(future: _cf.Future[Any], timeout: float | None = None) -> Any:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future


def _result_or_error(future: _cf.Future[Any], timeout: float | None = None) -> Any:
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


_live_executors: weakref.WeakSet[Executor] = weakref.WeakSet()
_exiting = False
if os.environ.get("TREADLE_STATS", "").strip().lower() in ("0", "off", "false", "no"):
    _treadle._set_stats_enabled(False)
_stats_numbers = itertools.count()
#: Every executor's statistics, by its name, once ``keep_stats()`` was called.
_kept_stats: list[tuple[str, StatsSource]] | None = None


def keep_stats() -> list[tuple[str, StatsSource]]:
    """From now on, keep every executor's statistics (by its name), also once it is gone: the
    list returned grows as executors are made (``treadle run --stats``)."""
    global _kept_stats
    if _kept_stats is None:
        _kept_stats = []
    return _kept_stats


def _shut_down_at_exit() -> None:
    # As concurrent.futures does: at interpreter exit, no new work, and the queued work is done.
    # Thread pools go last, as when each pool had a hook of its own: work that the other pools'
    # callbacks hand them meanwhile still runs.
    global _exiting
    _exiting = True
    for thread_pools in (False, True):
        if thread_pools:
            _treadle._interpreter_exiting()
        for executor in list(_live_executors):
            if isinstance(executor, _cf.ThreadPoolExecutor) is thread_pools:
                executor.shutdown(wait=True)


# A forked child has none of its parent's pools running (their threads are the parent's): at its
# exit it shuts none of them down (one whose lock a parent's thread held at the fork would hang).
os.register_at_fork(after_in_child=_live_executors.clear)

try:
    threading._register_atexit(_shut_down_at_exit)  # type: ignore[attr-defined]
except RuntimeError:
    # First loaded while the interpreter exits: no new work, as for the pools made before.
    _treadle._interpreter_exiting()
