"""``treadle.multiprocessing``: work across processes, a drop-in for ``multiprocessing``.

Processes (``Process``, ``current_process``, ``parent_process``, ``active_children``, the
contexts), queues (``Queue``, ``JoinableQueue``, ``SimpleQueue``) and pipes (``Pipe``,
``connection``) with the standard library's names and semantics, on shared-memory channels;
what treadle does not change is the standard library's (locks, shared values, ``Pool``,
``Manager``). Modules, from the top:

- ``context`` (the start methods, ``Process``, and the standard library's names), ``popen``
  (how treadle starts a child), ``queues`` and ``connection`` (the queues and pipes);
- the transport, below the process pool (``treadle.futures.process``): ``channel`` (pickling
  for channels, passing them to other processes, forks), ``fork_server`` (where children are
  forked from), ``worker`` (a pool's worker), ``pickling`` (the pool's pickling), ``wire`` and
  ``segments`` (frames between a pool and a worker; large buffers in shared memory).

Nothing is imported here (PEP 562): a pool's worker imports the transport modules through this
package, and ``import treadle`` stays as cheap as ``import threading``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from treadle.multiprocessing.connection import Pipe
    from treadle.multiprocessing.queues import (
        AbandonedQueueError,
        JoinableQueue,
        Queue,
        SimpleQueue,
    )

_QUEUES = frozenset(("Queue", "JoinableQueue", "SimpleQueue", "AbandonedQueueError"))

__all__ = ["AbandonedQueueError", "JoinableQueue", "Pipe", "Queue", "SimpleQueue"]


def __getattr__(name: str) -> object:
    from treadle import _lazy

    if name in _QUEUES:
        import treadle.multiprocessing.queues as module
    elif name == "Pipe":
        import treadle.multiprocessing.connection as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _lazy.bind(globals(), name, module)


def __dir__() -> list[str]:
    from treadle import _lazy

    return _lazy.listing(globals(), __all__)
