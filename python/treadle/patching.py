"""Run unmodified code on treadle: ``patch()`` swaps the standard library's concurrency for
treadle's, ``unpatch()`` puts it back, ``patched()`` does both around a block.

What is replaced, for code that looks the names up after patching:

* ``threading.Lock``, ``RLock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event``,
  ``Barrier``: treadle's (so their waits are deadlock-checked and interruptible);
* ``threading.Thread``'s ``join``: every thread started after patching publishes its end, so a
  join that would close a cycle raises ``treadle.DeadlockError`` (threads started before keep the
  standard join);
* ``queue.Queue``, ``LifoQueue``, ``PriorityQueue``, ``SimpleQueue``: treadle's;
* the executors of ``concurrent.futures`` when treadle provides them, and its ``wait`` and
  ``as_completed`` (treadle's take any futures; waiting in them, a pool task whose futures are
  still queued in its own pool has them run, as ``result()`` does); with ``cluster=`` (a Dask
  scheduler's address, or ``"local"``), ``ProcessPoolExecutor`` makes ``treadle.DaskExecutor``
  pools on that cluster.
* ``multiprocessing.Process``, ``Queue``, ``SimpleQueue``, ``JoinableQueue`` and ``Pipe``, at
  module level and in every context object (``multiprocessing.get_context(method)``), are
  ``treadle.multiprocessing``'s, and the default start method, until a program sets one, is
  treadle's ``"forkserver"`` (children forked from a single-threaded copy of the process, never
  a fork of a process with threads); so are ``Lock``, ``RLock``, ``Condition``, ``Semaphore``,
  ``BoundedSemaphore``, ``Event``, ``Barrier``, ``Value``, ``Array``, ``RawValue`` and
  ``RawArray`` (a dead owner reported, not waited for); the standard library's ``Manager`` is
  made for it;
* ``multiprocessing.pool.Pool`` and ``ThreadPool`` are ``treadle.multiprocessing.pool``'s, so
  ``multiprocessing.Pool()``, every context's ``Pool()`` and ``multiprocessing.dummy.Pool()``
  (which look them up there) make treadle's pools; a ``Manager()`` is the standard library's,
  its server started as a treadle process (the context's, patched above).
* ``multiprocessing.shared_memory.SharedMemory`` and ``ShareableList``: treadle's (memfd
  segments freed with their last user, no resource tracker).

What cannot be patched: objects created before ``patch()`` (a lock made at import time stays a
``threading`` lock), names imported before patching with ``from threading import Lock``, classes
that subclassed a standard class before patching, and locks that C extensions keep for
themselves. The standard library keeps working under the patch: it looks these names up in the
same modules.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.context
import multiprocessing.pool
import queue
import threading
from collections.abc import Iterator
from typing import Any

from treadle import _treadle
from treadle import queue as treadle_queue
from treadle.deadlock import threads

__all__ = ["is_patched", "patch", "patched", "unpatch"]

_THREADING_NAMES = (
    "Lock",
    "RLock",
    "Condition",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Barrier",
)
_QUEUE_NAMES = ("Queue", "LifoQueue", "PriorityQueue", "SimpleQueue")

_MULTIPROCESSING_NAMES = ("Queue", "SimpleQueue", "JoinableQueue", "Pipe")
_POOL_NAMES = ("Pool", "ThreadPool")
#: Synchronization and shared state (``treadle.multiprocessing.synchronize``, ``sharedctypes``).
_SHARED_STATE_NAMES = (
    *("Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier"),
    *("RawValue", "RawArray", "Value", "Array"),
)
_MULTIPROCESSING_NAMES += _SHARED_STATE_NAMES

_saved: dict[tuple[Any, str], Any] = {}
_state_lock = _thread.allocate_lock()
#: Saved for a name an object did not have as its own (a context's class attribute): deleted
#: on unpatch, so that the class's shows again.
_ABSENT = object()


def _replace(target: Any, name: str, value: Any) -> None:
    key = (target, name)
    if key not in _saved:
        own = vars(target) if not isinstance(target, type) else target.__dict__
        _saved[key] = getattr(target, name) if name in own else _ABSENT
    setattr(target, name, value)


def _restore(target: Any, name: str, value: Any) -> None:
    if value is _ABSENT:
        delattr(target, name)
    else:
        setattr(target, name, value)


def _patch_thread_class() -> None:
    original_bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]
    original_join = threading.Thread.join
    original_start = threading.Thread.start

    def start(self):
        threads._start_tracked(lambda: original_start(self))

    def _bootstrap_inner(self):
        threads._run_tracked(self, lambda: original_bootstrap(self))

    def join(self, timeout=None):
        threads._join_tracked(self, timeout, lambda t: original_join(self, t))

    join.__doc__ = original_join.__doc__
    start.__doc__ = original_start.__doc__
    _replace(threading.Thread, "start", start)
    _replace(threading.Thread, "_bootstrap_inner", _bootstrap_inner)
    _replace(threading.Thread, "join", join)


def patch(*, cluster: str | None = None) -> None:
    """Replace the standard library's concurrency primitives with treadle's (idempotent).

    With ``cluster`` (a Dask scheduler's address such as ``"tcp://host:8786"``, or ``"local"``
    for a ``LocalCluster`` on this machine), every ``concurrent.futures.ProcessPoolExecutor``
    made afterwards is a ``treadle.DaskExecutor`` on that cluster (``treadle[dask]``).
    """
    with _state_lock:
        if _saved and cluster is None:
            return
        # The executors' modules and treadle's multiprocessing (and what they import: logging,
        # multiprocessing's resource tracker, Dask) load before threading is patched, so that
        # the locks they make at import are the standard ones, as when they were imported
        # before patch() was called.
        executors = _executors(cluster)
        if _saved:
            _replace(concurrent.futures, "ProcessPoolExecutor", executors["ProcessPoolExecutor"])
            return
        from treadle.multiprocessing import context as multiprocessing_context
        from treadle.multiprocessing import pool as multiprocessing_pool

        for name in _THREADING_NAMES:
            _replace(threading, name, getattr(_treadle, name))
        for name in _QUEUE_NAMES:
            _replace(queue, name, getattr(treadle_queue, name))
        for name, executor in executors.items():
            _replace(concurrent.futures, name, executor)
        _patch_multiprocessing(multiprocessing_context)
        _patch_shared_memory()
        for name in _POOL_NAMES:
            _replace(multiprocessing.pool, name, getattr(multiprocessing_pool, name))
        _patch_thread_class()
        from treadle.multiprocessing import fork_server

        fork_server.start_reserve()


def _executors(cluster: str | None) -> dict[str, Any]:
    from treadle.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait

    executors = {
        "ThreadPoolExecutor": ThreadPoolExecutor,
        "ProcessPoolExecutor": ProcessPoolExecutor,
        "wait": wait,
        "as_completed": as_completed,
    }
    if cluster is not None:
        from treadle.futures.dask_executor import cluster_pool

        executors["ProcessPoolExecutor"] = cluster_pool(cluster)
    return executors


def _patch_multiprocessing(ours: Any) -> None:
    """Swaps treadle's processes, queues and pipes into ``multiprocessing`` (``ours``: treadle's
    ``multiprocessing.context``)."""
    standard = multiprocessing.context
    for method, context in standard._concrete_contexts.items():
        treadle_context = ours._concrete_contexts.get(method)
        if treadle_context is None:
            continue
        _replace(context, "Process", treadle_context.Process)
        for name in _MULTIPROCESSING_NAMES:
            _replace(context, name, getattr(treadle_context, name))
    default = standard._default_context
    _replace(default, "Process", ours.Process)
    for name in _MULTIPROCESSING_NAMES:
        _replace(default, name, getattr(ours._default_context, name))
    # Until the program sets a start method, the default is treadle's; treadle's default
    # context follows the standard one's (set_start_method('spawn') is obeyed). Unpatching
    # puts back the start method as it was (the patched default is fixed once asked for).
    _replace(default, "_actual_context", default._actual_context)
    _replace(default, "_default_context", standard._concrete_contexts[ours.DEFAULT_METHOD])
    _replace(ours._default_context, "_follow", default)
    _replace(multiprocessing, "Process", ours.Process)
    for name in _MULTIPROCESSING_NAMES:
        _replace(multiprocessing, name, getattr(ours._default_context, name))


def _patch_shared_memory() -> None:
    """Swaps treadle's ``SharedMemory`` and ``ShareableList`` into
    ``multiprocessing.shared_memory`` (where ``multiprocessing.managers`` looks them up too)."""
    import multiprocessing.shared_memory as standard

    from treadle.multiprocessing import shared_memory as ours

    for name in ("SharedMemory", "ShareableList"):
        _replace(standard, name, getattr(ours, name))


def unpatch() -> None:
    """Put back what :func:`patch` replaced."""
    with _state_lock:
        for (target, name), value in _saved.items():
            _restore(target, name, value)
        _saved.clear()


def is_patched() -> bool:
    """Whether :func:`patch` is in effect."""
    return bool(_saved)


@contextlib.contextmanager
def patched(*, cluster: str | None = None) -> Iterator[None]:
    """``with patched(): ...`` runs the block with the standard library patched (``cluster``:
    as for :func:`patch`)."""
    already = is_patched()
    patch(cluster=cluster)
    try:
        yield
    finally:
        if not already:
            unpatch()
