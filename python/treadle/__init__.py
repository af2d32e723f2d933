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
from treadle._pool import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    BrokenThreadPool,
    Cancelled,
    CancelledError,
    Future,
    InvalidStateError,
    TaskTimeoutError,
    ThreadPoolExecutor,
    as_completed,
    cancelled,
    check_cancelled,
    local,
    set_unretrieved_handler,
    sleep,
    wait,
)
from treadle._treadle import (
    TIMEOUT_MAX,
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
    __version__,
)
from treadle.deadlock import (
    DeadlockError,
    DeadlockWarning,
    PotentialDeadlockWarning,
    Thread,
    dump_waits,
    main_thread,
)
from treadle.patching import patch, patched, unpatch
from treadle.process_pool import ProcessPoolExecutor, WorkerCrashedError
from treadle.queue import Empty, Full, LifoQueue, PriorityQueue, Queue, ShutDown, SimpleQueue

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
