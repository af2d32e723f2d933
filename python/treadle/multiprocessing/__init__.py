"""``treadle.multiprocessing``: work across processes, a drop-in for ``multiprocessing``.

Processes (``Process``, ``current_process``, ``parent_process``, ``active_children``, the
contexts and start methods), queues (``Queue``, ``JoinableQueue``, ``SimpleQueue``), pipes
(``Pipe``, ``connection``) and pools (``Pool``, ``pool.ThreadPool``) with the standard
library's names and semantics, on shared-memory channels and treadle's executors; locks,
semaphores, conditions, events, barriers (``synchronize``) and shared values (``sharedctypes``)
in shared memory, a dead owner reported (``OwnerDiedError``) rather than waited for;
``shared_memory`` on memfd segments; what treadle does not change is the standard library's,
made for treadle's default context (``Manager``, whose server is a treadle process, ...).
Modules, from the top:

- ``context`` (the start methods, ``Process``, the contexts), ``pool`` (``Pool`` and
  ``ThreadPool`` on the executors), ``popen`` (how treadle starts a child), ``queues`` and
  ``connection`` (the queues and pipes);
- the transport, below the process pool (``treadle.futures.process``): ``fork_server`` (where
  children are forked from), ``child`` (a ``Process``'s child), ``worker`` (a pool's worker),
  ``channel`` (pickling for channels, passing them to other processes, forks), ``pickling``
  (the pool's pickling), ``wire`` and ``segments`` (frames between a pool and a worker; large
  buffers in shared memory).

Nothing is imported here (PEP 562): a pool's worker imports the transport modules through this
package, and ``import treadle`` stays as cheap as ``import threading``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from multiprocessing import (
        Array,
        AuthenticationError,
        Barrier,
        BoundedSemaphore,
        BufferTooShort,
        Condition,
        Event,
        Lock,
        Manager,
        Pool,
        ProcessError,
        RawArray,
        RawValue,
        RLock,
        Semaphore,
        TimeoutError,
        Value,
        active_children,
        allow_connection_pickling,
        cpu_count,
        current_process,
        freeze_support,
        get_logger,
        log_to_stderr,
        parent_process,
        set_executable,
        set_forkserver_preload,
    )

    from treadle.multiprocessing.connection import Pipe
    from treadle.multiprocessing.context import Process, _default_context
    from treadle.multiprocessing.queues import (
        AbandonedQueueError,
        JoinableQueue,
        Queue,
        SimpleQueue,
    )
    from treadle.multiprocessing.synchronize import OwnerDiedError

    get_all_start_methods = _default_context.get_all_start_methods
    get_context = _default_context.get_context
    get_start_method = _default_context.get_start_method
    set_start_method = _default_context.set_start_method

__all__ = [
    "AbandonedQueueError",
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "OwnerDiedError",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "Semaphore",
    "SimpleQueue",
    "TimeoutError",
    "Value",
    "active_children",
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_start_method",
    "log_to_stderr",
    "parent_process",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
]

_QUEUES = frozenset(("Queue", "JoinableQueue", "SimpleQueue", "AbandonedQueueError"))


def __getattr__(name: str) -> object:
    from treadle import _lazy

    if name in _QUEUES:
        import treadle.multiprocessing.queues as module
    elif name == "Pipe":
        import treadle.multiprocessing.connection as module
    elif name == "OwnerDiedError":
        import treadle.multiprocessing.synchronize as module
    elif name == "Process":
        import treadle.multiprocessing.context as module
    elif name in __all__:
        # The standard library's names, bound to treadle's default context.
        from treadle.multiprocessing import context

        value = getattr(context._default_context, name)
        globals()[name] = value
        return value
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _lazy.bind(globals(), name, module)


def __dir__() -> list[str]:
    from treadle import _lazy

    return _lazy.listing(globals(), __all__)
