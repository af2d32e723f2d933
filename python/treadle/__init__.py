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

__all__ = [
    "TIMEOUT_MAX",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Empty",
    "Event",
    "Full",
    "LifoQueue",
    "Lock",
    "PriorityQueue",
    "Queue",
    "RLock",
    "Semaphore",
    "ShutDown",
    "SimpleQueue",
    "__version__",
]
