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

from treadle import _lazy, deadlock
from treadle._treadle import (
    TIMEOUT_MAX,
    AtomicInt,
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
from treadle.deadlock.threads import Timer
from treadle.queue import Empty, Full, LifoQueue, PriorityQueue, Queue, ShutDown, SimpleQueue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from treadle import futures as futures
    from treadle import patching as patching
    from treadle import threading as threading
    from treadle.deadlock import dump_waits
    from treadle.futures import (
        ALL_COMPLETED,
        FIRST_COMPLETED,
        FIRST_EXCEPTION,
        BrokenExecutor,
        BrokenProcessPool,
        BrokenThreadPool,
        CancelledError,
        DaskExecutor,
        Executor,
        Future,
        InvalidStateError,
        ProcessPoolExecutor,
        ThreadPoolExecutor,
        TimeoutError,
        WorkerCrashedError,
        as_completed,
        local,
        set_unretrieved_handler,
        wait,
    )
    from treadle.guarded import Guarded
    from treadle.patching import patch, patched, unpatch


__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "TIMEOUT_MAX",
    "AtomicInt",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "BrokenExecutor",
    "BrokenProcessPool",
    "BrokenThreadPool",
    "Cancelled",
    "CancelledError",
    "Condition",
    "DaskExecutor",
    "DeadlockError",
    "DeadlockWarning",
    "Empty",
    "Event",
    "Executor",
    "Full",
    "Future",
    "Guarded",
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
    "TimeoutError",
    "Timer",
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
# logging, multiprocessing), the deadlock reports, patch(), the treadle.threading namespace.
_FUTURES = frozenset(
    (
        "futures",
        "ALL_COMPLETED",
        "FIRST_COMPLETED",
        "FIRST_EXCEPTION",
        "BrokenExecutor",
        "BrokenProcessPool",
        "BrokenThreadPool",
        "CancelledError",
        "DaskExecutor",
        "Executor",
        "Future",
        "InvalidStateError",
        "ProcessPoolExecutor",
        "ThreadPoolExecutor",
        "TimeoutError",
        "WorkerCrashedError",
        "as_completed",
        "local",
        "set_unretrieved_handler",
        "wait",
    )
)


def __getattr__(name: str) -> object:
    if name in _FUTURES:
        import treadle.futures as module
    elif name in ("patch", "patched", "unpatch", "patching"):
        import treadle.patching as module
    elif name == "Guarded":
        import treadle.guarded as module
    elif name == "dump_waits":
        module = deadlock
    elif name == "threading":
        import treadle.threading as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _lazy.bind(globals(), name, module)


def __dir__() -> list[str]:
    return _lazy.listing(globals(), __all__)
