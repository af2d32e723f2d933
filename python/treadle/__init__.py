"""treadle: Python's concurrency toolkit on a Rust core.

Drop-in replacements for ``threading``'s synchronization primitives, with the same names,
signatures, semantics and exception classes. Every blocking wait releases the GIL and stays
interruptible by Ctrl-C.

>>> import treadle
>>> lock = treadle.Lock()
>>> with lock:
...     lock.locked()
True
"""

from threading import BrokenBarrierError

from treadle import deadlock
from treadle._treadle import (
    TIMEOUT_MAX,
    Barrier,
    BoundedSemaphore,
    Cancelled,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
    TaskTimeoutError,
    __version__,
    cancelled,
    check_cancelled,
    sleep,
)
from treadle.deadlock import (
    DeadlockError,
    DeadlockWarning,
    PotentialDeadlockWarning,
    Thread,
    main_thread,
)
from treadle.queue import Empty, Full, LifoQueue, PriorityQueue, Queue, ShutDown, SimpleQueue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from treadle import patching as patching
    from treadle._pool import (
        ALL_COMPLETED,
        FIRST_COMPLETED,
        FIRST_EXCEPTION,
        BrokenExecutor,
        BrokenThreadPool,
        CancelledError,
        Future,
        InvalidStateError,
        ThreadPoolExecutor,
        as_completed,
        local,
        set_unretrieved_handler,
        wait,
    )
    from treadle.deadlock import dump_waits
    from treadle.patching import patch, patched, unpatch
    from treadle.process_pool import ProcessPoolExecutor, WorkerCrashedError


__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "TIMEOUT_MAX",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "BrokenExecutor",
    "BrokenThreadPool",
    "Cancelled",
    "CancelledError",
    "Condition",
    "DeadlockError",
    "DeadlockWarning",
    "Empty",
    "Event",
    "Full",
    "Future",
    "InvalidStateError",
    "LifoQueue",
    "Lock",
    "PotentialDeadlockWarning",
    "PriorityQueue",
    "ProcessPoolExecutor",
    "Queue",
    "RLock",
    "Semaphore",
    "ShutDown",
    "SimpleQueue",
    "TaskTimeoutError",
    "Thread",
    "ThreadPoolExecutor",
    "WorkerCrashedError",
    "__version__",
    "as_completed",
    "cancelled",
    "check_cancelled",
    "deadlock",
    "dump_waits",
    "local",
    "main_thread",
    "patch",
    "patched",
    "set_unretrieved_handler",
    "sleep",
    "unpatch",
    "wait",
]


# What a program that only makes locks does not need loads on first use (PEP 562), so that
# ``import treadle`` costs what ``import threading`` does: the pools (with concurrent.futures,
# logging, multiprocessing), the deadlock reports, patch().
_THREAD_POOL = frozenset(
    (
        "ALL_COMPLETED",
        "FIRST_COMPLETED",
        "FIRST_EXCEPTION",
        "BrokenExecutor",
        "BrokenThreadPool",
        "CancelledError",
        "Future",
        "InvalidStateError",
        "ThreadPoolExecutor",
        "as_completed",
        "local",
        "set_unretrieved_handler",
        "wait",
    )
)


def __getattr__(name: str) -> object:
    if name in _THREAD_POOL:
        import treadle._pool as module
    elif name in ("ProcessPoolExecutor", "WorkerCrashedError"):
        import treadle.process_pool as module
    elif name in ("patch", "patched", "unpatch", "patching"):
        import treadle.patching as module
    elif name == "dump_waits":
        module = deadlock
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
