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
from treadle._queue import Empty, Full, LifoQueue, PriorityQueue, Queue, ShutDown, SimpleQueue
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
from treadle.process_pool import ProcessPoolExecutor, TaskTimeoutError, WorkerCrashedError

__all__ = [
    "TIMEOUT_MAX",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "DeadlockError",
    "DeadlockWarning",
    "Empty",
    "Event",
    "Full",
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
    "WorkerCrashedError",
    "__version__",
    "deadlock",
    "dump_waits",
    "main_thread",
]
