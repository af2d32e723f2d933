"""``multiprocessing.pool``'s ``Pool`` and ``ThreadPool`` on treadle's executors.

The standard library's pool runs three threads of its own (tasks, results, workers) around
pipes; this one is a thin layer over an executor: ``Pool`` over the process pool
(``treadle.futures.process``: a worker that dies fails its own task with
``WorkerCrashedError`` and is replaced, ``terminate()`` kills the workers at once), ``ThreadPool``
over the thread pool. What is left here is ``multiprocessing.pool``'s interface:

* a task (``apply_async``) is one future of the executor; a ``map`` is a future per chunk of
  ``chunksize`` calls (the standard library's default chunk size), run by the worker as one
  task; ``imap``/``imap_unordered`` submit their chunks from a thread of their own that reads
  the iterable, as the standard library's task thread does, so that an endless or slow iterable
  does not hold the caller;
* a result (``AsyncResult``, ``MapResult``, ``IMapIterator``) is resolved by the executor's
  done-callbacks, in the thread that resolves futures (the process pool's supervisor thread),
  which run the caller's ``callback`` or ``error_callback`` before the result is ready, as the
  standard library's result thread does;
* the pool's state (``RUN``, ``CLOSE``, ``TERMINATE``) and its errors (``ValueError("Pool not
  running")``, ``multiprocessing.TimeoutError``, ``MaybeEncodingError``, ``RemoteTraceback``)
  are the standard library's.

Differences (``docs/multiprocessing.md``): a task the pool could not finish fails instead of
waiting forever (its worker crashed: ``WorkerCrashedError``; the pool was terminated before it
ran: ``CancelledError``); an exception raised by a callback is logged, not lost with the
result thread.
"""

from __future__ import annotations

import collections
import copyreg
import itertools
import logging
import multiprocessing
import os
import queue
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import TimeoutError as _TimeoutError
from multiprocessing.pool import (  # type: ignore[attr-defined]
    CLOSE,
    INIT,
    RUN,
    TERMINATE,
    MaybeEncodingError,
    RemoteTraceback,
)
from multiprocessing.pool import (
    ApplyResult as _StandardApplyResult,
)
from multiprocessing.pool import (
    IMapIterator as _StandardIMapIterator,
)
from multiprocessing.pool import (
    IMapUnorderedIterator as _StandardIMapUnorderedIterator,
)
from multiprocessing.pool import (
    MapResult as _StandardMapResult,
)
from typing import Any

from treadle._treadle import Event
from treadle.futures import progress as _progress
from treadle.futures.process import ProcessPoolExecutor
from treadle.futures.thread import ThreadPoolExecutor
from treadle.futures.waiting import wait as _wait_for
from treadle.multiprocessing.worker import PoolWorkerStart

__all__ = [
    "AsyncResult",
    "BrokenProcessPool",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "Pool",
    "ThreadPool",
]

_logger = logging.getLogger(__name__)
_new_object = object.__new__
_pool_numbers = itertools.count(1)


def _remote_error(exception: BaseException) -> BaseException:
    """A process-pool task's exception as ``multiprocessing.pool`` gives it: the worker's
    traceback as a ``RemoteTraceback`` cause, a result that could not be pickled as a
    ``MaybeEncodingError``."""
    unpicklable = getattr(exception, "unpicklable_result", None)
    if isinstance(unpicklable, str):
        wrapped = MaybeEncodingError(exception, None)
        wrapped.value = unpicklable
        return wrapped
    cause = exception.__cause__
    tb = getattr(cause, "tb", None)
    if isinstance(tb, str) and type(cause) is not RemoteTraceback:
        exception.__cause__ = RemoteTraceback(tb)
    return exception


def _outcome(future: Any) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, exception)`` of a done future; the exception counts as
    retrieved (the result holds it for its ``get()``)."""
    if future.cancelled():
        return False, CancelledError("the pool was terminated before the task ran")
    exception = future._exception
    if exception is None:
        return True, future._result
    future._mark_retrieved()
    return False, _remote_error(exception)


def _call(callback: Callable[[Any], object] | None, value: Any) -> None:
    if callback is None:
        return
    try:
        callback(value)
    except Exception:
        _logger.exception("exception calling callback %r of a pool's result", callback)


class _ResultThread:
    """A pool's result thread, started when a result first has a callback: it runs the results'
    callbacks one at a time, in the order the results come, as the standard library's result
    handler thread does. So a callback never runs in the thread that submitted its task, nor
    beside another callback of the pool: libraries rely on it (joblib dispatches its next
    tasks from callbacks, with state no lock guards)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[tuple[_Result, bool, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, result: _Result, success: bool, value: Any) -> None:
        """Makes ``result`` ready, its callback called first, on the result thread."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(
                        target=self._serve, args=(self._queue,), name=self._name, daemon=True
                    )
                    thread.start()
                    self._thread = thread
        self._queue.put((result, success, value))

    @staticmethod
    def _serve(items: queue.SimpleQueue[tuple[_Result, bool, Any] | None]) -> None:
        while (item := items.get()) is not None:
            result, success, value = item
            result._set_now(success, value)
            del item, result, value

    def stop(self) -> None:
        """Lets the callbacks already queued run, then ends the thread (waiting for it, unless
        called from it)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        if thread is not threading.current_thread():
            thread.join()


class _Result(_StandardApplyResult):
    """A result that becomes ready when the pool says so (``_set``), once its callback ran (on
    the pool's result thread, if it has a callback)."""

    def __init__(
        self,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        results: _ResultThread | None = None,
    ) -> None:
        # Not the standard library's __init__: it registers with a pool's result thread.
        self._event = Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success = False
        self._value: Any = None
        #: Where its callbacks run (None: where the result comes, when it has none to run).
        self._results = results if callback is not None or error_callback is not None else None

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        self.wait(timeout)
        if not self.ready():
            raise _TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, success: bool, value: Any) -> None:
        if self._results is not None:
            self._results.run(self, success, value)
        else:
            self._set_now(success, value)

    def _set_now(self, success: bool, value: Any) -> None:
        self._success, self._value = success, value
        _call(self._callback if success else self._error_callback, value)
        self._event.set()

    def _resolve(self, future: Any) -> None:
        self._set(*_outcome(future))


class ApplyResult(_Result):
    """The result of ``apply_async``: ``ready``, ``successful``, ``wait`` and ``get``, as
    ``multiprocessing.pool.AsyncResult``'s (of which it is a subclass). Without callbacks it is
    a view of the task's future, and nothing runs in the pool's threads for it; an exception
    that nobody ``get()``s is reported when the pool is joined, as the executor's are."""

    def __init__(
        self,
        future: Any,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        results: _ResultThread | None = None,
    ) -> None:
        if callback is None and error_callback is None:
            self._future = future
            return
        super().__init__(callback, error_callback, results)
        self._future = None
        future.add_done_callback(self._resolve)

    def ready(self) -> bool:
        future = self._future
        return super().ready() if future is None else future.done()

    def successful(self) -> bool:
        future = self._future
        if future is None:
            return super().successful()
        if not future.done():
            raise ValueError(f"{self!r} not ready")
        return not future.cancelled() and future._exception is None

    def wait(self, timeout: float | None = None) -> None:
        if self._future is None:
            super().wait(timeout)
        else:
            _wait_for((self._future,), timeout)

    def get(self, timeout: float | None = None) -> Any:
        future = self._future
        if future is None:
            return super().get(timeout)
        try:
            return future.result(timeout)
        except TimeoutError:
            if not future.done():
                raise _TimeoutError from None
            raise  # the task's own
        except CancelledError:
            raise _outcome(future)[1] from None
        except BaseException as error:
            converted = _remote_error(error)
            if converted is error:
                raise
            raise converted from None


AsyncResult = ApplyResult


class MapResult(_Result, _StandardMapResult):
    """The result of ``map_async`` and ``starmap_async``: the list of the calls' results, in
    order; the first failure of a chunk fails it at once (as the standard library's)."""

    def __init__(
        self,
        length: int,
        chunks: int,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        results: _ResultThread | None = None,
    ) -> None:
        super().__init__(callback, error_callback, results)
        self._value = [None] * length
        self._number_left = chunks
        self._lock = threading.Lock()
        if chunks == 0:
            # As the standard library's: ready at once, and its callback is never called.
            self._success, self._value = True, []
            self._event.set()

    def _chunk_done(self, start: int, future: Any) -> None:
        success, value = _outcome(future)
        with self._lock:
            if self._number_left <= 0:
                return  # failed already
            if success:
                self._value[start : start + len(value)] = value
                self._number_left -= 1
                if self._number_left:
                    return
                value = self._value
            else:
                self._number_left = 0
        self._set(success, value)

    def _fail(self, error: BaseException) -> None:
        """The iterable raised while the chunks were made."""
        with self._lock:
            if self._number_left <= 0:
                return
            self._number_left = 0
        self._set(False, error)


class IMapIterator(_StandardIMapIterator):
    """The iterator of ``imap``: the results in order; ``next(timeout)`` raises
    ``multiprocessing.TimeoutError`` when none came in time."""

    def __init__(self, tracker: _progress.Progress | None = None) -> None:
        # Not the standard library's __init__: it registers with a pool's result thread.
        self._cond = threading.Condition(threading.Lock())
        #: Chunks' outcomes as they come, by index: (success, the values or the exception).
        self._arrived: dict[int, tuple[bool, Any]] = {}
        self._current: collections.deque[Any] = collections.deque()
        self._taken = 0  # chunks taken into ``_current``
        self._chunks: int | None = None  # known once the iterable is read to its end
        self._tracker = tracker

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        # The common case, without the lock: a value left of the chunk taken last (only the
        # consumers take from ``_current``, and a deque's popleft is atomic).
        try:
            return self._current.popleft()
        except IndexError:
            pass
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                try:
                    return self._current.popleft()
                except IndexError:
                    pass  # taken by other threads meanwhile
                if self._chunks is not None and self._taken >= self._chunks:
                    self._close_tracker()
                    self._cond.notify_all()  # the other threads waiting end too
                    raise StopIteration
                chunk = self._take()
                if chunk is None:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise _TimeoutError
                    self._cond.wait(remaining)
                    continue
                success, values = chunk
                self._taken += 1
                if not success:
                    raise values
                self._current.extend(values)
                # Other threads waiting on the iterator may take the chunk's other values.
                self._cond.notify_all()

    __next__ = next

    def _take(self) -> tuple[bool, Any] | None:
        return self._arrived.pop(self._taken, None)

    def _chunk_done(self, index: int, future: Any) -> None:
        self._put(index, _outcome(future))

    def _put(self, index: int, outcome: tuple[bool, Any]) -> None:
        with self._cond:
            self._arrived[index] = outcome
            self._cond.notify()

    def _set_length(self, chunks: int) -> None:
        with self._cond:
            self._chunks = chunks
            self._cond.notify_all()

    def _close_tracker(self) -> None:
        if self._tracker is not None:
            self._tracker.close()

    def __del__(self) -> None:
        self._close_tracker()


class IMapUnorderedIterator(IMapIterator, _StandardIMapUnorderedIterator):
    """The iterator of ``imap_unordered``: the results as their chunks end."""

    def _take(self) -> tuple[bool, Any] | None:
        if not self._arrived:
            return None
        return self._arrived.pop(next(iter(self._arrived)))


class _WorkerProcess:
    """What ``Pool._pool`` lists: a worker's pid, and whether it still serves."""

    def __init__(self, pool: Pool, pid: int) -> None:
        self._executor = pool._executor
        self.pid = pid

    def is_alive(self) -> bool:
        return self.pid in self._executor.worker_pids

    def __repr__(self) -> str:
        return f"<pool worker pid={self.pid}>"


def _default_context() -> Any:
    """The context a pool made without one takes, as the standard library's takes its module's
    default: ``treadle.multiprocessing``'s, which follows a start method the program set (the
    standard library's too, under ``treadle.patch()``). It lives in ``context``, above this
    module; if that was never imported, nobody set a start method, and the executor's default
    (treadle's fork server) is the one."""
    context = sys.modules.get("treadle.multiprocessing.context")
    return None if context is None else context._default_context.get_context()


def _chunks(iterable: Iterable[Any], size: int) -> Iterator[list[Any]]:
    items = iter(iterable)
    while chunk := list(itertools.islice(items, size)):
        yield chunk


class Pool:
    """``multiprocessing.Pool``: ``processes`` worker processes (``os.process_cpu_count()`` by
    default) of treadle's process pool, started by ``context``'s start method (treadle's
    default, ``"forkserver"``, when None), each running ``initializer(*initargs)`` first and
    replaced after ``maxtasksperchild`` tasks. A worker that dies is replaced and fails only
    the task it ran, with ``WorkerCrashedError``; ``terminate()`` stops running tasks at once;
    an initializer that raises fails the tasks with ``BrokenProcessPool`` (the standard
    library's pool would start a new worker for ever).
    Used as a context manager, leaving the block terminates the pool, as the standard
    library's does."""

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
    ) -> None:
        self._state = INIT  # RUN once the workers are there (__del__ warns of a RUN pool)
        if processes is None:
            processes = getattr(os, "process_cpu_count", os.cpu_count)() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int)
            or isinstance(maxtasksperchild, bool)
            or maxtasksperchild <= 0
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._check_may_have_children()
        self._processes = processes
        self._ctx = context if context is not None else _default_context()
        self._feeders: set[threading.Thread] = set()
        self._results = _ResultThread(f"{type(self).__name__}-results-{next(_pool_numbers)}")
        # A pool dropped without join() ends its result thread too.
        weakref.finalize(self, self._results.stop)
        self._executor = self._make_executor(initializer, tuple(initargs), maxtasksperchild)
        self._state = RUN

    def _check_may_have_children(self) -> None:
        # As the standard library's pool, whose workers' start() asserts it.
        assert not multiprocessing.current_process().daemon, (
            "daemonic processes are not allowed to have children"
        )

    def _make_executor(self, initializer: Any, initargs: tuple[Any, ...], maxtasks: Any) -> Any:
        # The reducers a subclass of the standard Pool gives the queues it makes in an override
        # of _setup_queues (joblib's memmapping pool: large numpy arrays travel as memory maps):
        # this pool has no such queues, and pickles its tasks and results with them instead.
        forward = getattr(self, "_forward_reducers", None)
        backward = getattr(self, "_backward_reducers", None)
        executor = ProcessPoolExecutor(
            self._processes,
            mp_context=self._ctx,
            initializer=PoolWorkerStart(initializer, backward or None),
            initargs=initargs,
            max_tasks_per_child=maxtasks,
        )
        if forward:
            executor._forward_table = {**copyreg.dispatch_table, **forward}
        return executor

    # -- one task ------------------------------------------------------------------------

    def apply(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: dict[str, Any] | None = None,
    ) -> Any:
        """``func(*args, **kwds)`` in a worker; its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: dict[str, Any] | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> ApplyResult:
        """Runs ``func(*args, **kwds)`` in a worker; an ``AsyncResult``. ``callback`` is called
        with the result, or ``error_callback`` with the exception, before it is ready."""
        if self._state != RUN:
            raise ValueError("Pool not running")
        if kwds:
            future = self._executor.submit(func, *args, **kwds)
        else:
            future = self._executor.submit(func, *args)
        if callback is None and error_callback is None:
            # As ApplyResult(future), without a call of its __init__: a view of the future.
            result = _new_object(ApplyResult)
            result._future = future
            return result
        return ApplyResult(future, callback, error_callback, self._results)

    # -- many ----------------------------------------------------------------------------

    def map(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None
    ) -> list[Any]:
        """``list(map(func, iterable))``, the calls in chunks of ``chunksize`` (by default,
        about four chunks per worker)."""
        return self._map_async(func, iterable, chunksize, False).get()

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
    ) -> list[Any]:
        """As ``map``, with ``func(*args)`` for each ``args`` of ``iterable``."""
        return self._map_async(func, iterable, chunksize, True).get()

    def map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> MapResult:
        """As ``map``; a ``MapResult`` (an ``AsyncResult`` of the list)."""
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> MapResult:
        """As ``starmap``; a ``MapResult``."""
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None,
        spread: bool,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> MapResult:
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        length = len(iterable)  # type: ignore[arg-type]
        if chunksize is None:
            chunksize, extra = divmod(length, self._processes * 4)
            if extra:
                chunksize += 1
        elif chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        chunksize = max(chunksize, 1)
        result = MapResult(length, -(-length // chunksize), callback, error_callback, self._results)
        submit = self._executor._calls_submitter(func, spread)
        start = 0
        try:
            for chunk in _chunks(iterable, chunksize):
                submit(chunk).add_done_callback(_bind(result._chunk_done, start))
                start += len(chunk)
        except Exception as error:
            # The iterable (or pickling a call) failed: so does the map, as the standard
            # library's; chunks already submitted run, their results unused.
            result._fail(error)
        return result

    def imap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        progress: Any = None,
    ) -> IMapIterator:
        """``map``'s results one by one, in order, as they come; the iterable is read by a
        thread of the pool as the tasks are submitted. ``progress=True`` (or a dict of tqdm
        options, or a bar) shows a progress bar of the calls as they end."""
        return self._imap(IMapIterator, func, iterable, chunksize, progress)

    def imap_unordered(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        progress: Any = None,
    ) -> IMapIterator:
        """As ``imap``, the results in the order their chunks end."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize, progress)

    def _imap(
        self,
        kind: type[IMapIterator],
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int,
        progress: Any,
    ) -> IMapIterator:
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        tracker = _progress.start(progress, _progress.total_of((iterable,)))
        result = kind(tracker)
        submit = self._executor._calls_submitter(func, False)
        feeder = threading.Thread(
            target=self._feed,
            args=(result, submit, iterable, chunksize, tracker),
            name=f"{type(self).__name__}-imap-feeder",
            daemon=True,
        )
        self._feeders.add(feeder)
        feeder.start()
        return result

    def _feed(
        self,
        result: IMapIterator,
        submit: Callable[[list[Any]], Any],
        iterable: Iterable[Any],
        chunksize: int,
        tracker: _progress.Progress | None,
    ) -> None:
        index = 0
        try:
            for chunk in _chunks(iterable, chunksize):
                if self._state == TERMINATE:
                    break
                future = submit(chunk)
                if tracker is not None:
                    tracker.watch(future, len(chunk))
                future.add_done_callback(_bind(result._chunk_done, index))
                index += 1
        except BaseException as error:
            result._put(index, (False, error))
            index += 1
        finally:
            result._set_length(index)
            self._feeders.discard(threading.current_thread())

    # -- the pool's life -----------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    def close(self) -> None:
        """No more tasks; the workers exit once the tasks submitted are done."""
        if self._state == RUN:
            self._state = CLOSE

    def terminate(self) -> None:
        """Stops the workers now: running tasks are stopped (their results fail with
        ``WorkerCrashedError``), queued ones are cancelled (``CancelledError``)."""
        self._state = TERMINATE
        self._stop_feeders()
        self._executor.terminate_workers()
        self._results.stop()

    def _stop_feeders(self) -> None:
        current = threading.current_thread()
        for feeder in list(self._feeders):
            if feeder is not current:
                feeder.join()

    def join(self) -> None:
        """Waits for the workers to exit, after ``close()`` or ``terminate()``."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._stop_feeders()
        self._executor.shutdown(wait=True)
        self._results.stop()  # once the callbacks of every result ran

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self) -> str:
        cls = type(self)
        return (
            f"<{cls.__module__}.{cls.__qualname__} state={self._state} pool_size={self._processes}>"
        )

    def __del__(self, _warn: Any = warnings.warn, _RUN: str = RUN) -> None:
        if getattr(self, "_state", None) == _RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)

    @property
    def _pool(self) -> list[Any]:
        """The workers serving now (``multiprocessing``'s tests read it), once they started."""
        self._wait_for_workers()
        pids = self._executor.worker_pids
        return [_WorkerProcess(self, pid) for pid in pids]

    def _repopulate_pool(self) -> None:
        """The standard library's way to replace exited workers: treadle's pool does it by
        itself, so this only waits (a bounded time) until every worker serves."""
        self._wait_for_workers()

    def _wait_for_workers(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self._executor.worker_pids) < self._processes and self._state == RUN:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)


def _bind(method: Callable[[Any, Any], None], key: Any) -> Callable[[Any], None]:
    return lambda future: method(key, future)


class ThreadPool(Pool):
    """``multiprocessing.pool.ThreadPool``: the ``Pool`` interface on a pool of ``processes``
    threads (``os.cpu_count()`` by default) of treadle's thread pool."""

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
    ) -> None:
        if processes is None:
            processes = os.cpu_count() or 1
        super().__init__(processes, initializer, initargs)

    def _check_may_have_children(self) -> None:
        pass  # threads: a daemonic process may have them

    def _make_executor(self, initializer: Any, initargs: tuple[Any, ...], maxtasks: Any) -> Any:
        return ThreadPoolExecutor(
            self._processes,
            thread_name_prefix="ThreadPool",
            initializer=initializer,
            initargs=initargs,
        )

    def terminate(self) -> None:
        """Takes no more tasks and cancels the queued ones (``CancelledError``); tasks running
        in threads finish, as in the standard library, since a thread cannot be killed."""
        self._state = TERMINATE
        self._stop_feeders()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def _pool(self) -> list[Any]:
        """One entry per thread the pool has (``processes``, as the standard library's list):
        the threads started so far, then one ``_ThreadToCome`` for each the pool starts when
        tasks come (code such as dask's reads ``len(pool._pool)`` as the pool's size)."""
        threads: list[Any] = list(self._executor._threads)
        return threads + [_ThreadToCome()] * max(0, self._processes - len(threads))


class _ThreadToCome:
    """What ``ThreadPool._pool`` lists for a thread the pool has not started yet: it starts
    one as a task comes, so it serves."""

    def is_alive(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "<pool thread, started when a task comes>"
