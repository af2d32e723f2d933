"""``treadle.futures``: a drop-in for ``concurrent.futures``, on treadle's engines.

``ThreadPoolExecutor`` and ``ProcessPoolExecutor`` (one base, ``executor``, holds what they
share), ``Future``, ``wait`` and ``as_completed``, the standard library's exceptions and
constants, and treadle's additions: interruptible tasks (``Cancelled``, ``check_cancelled``,
``cancelled``, ``sleep``), time limits (``TaskTimeoutError``), crashed workers
(``WorkerCrashedError``), ``local``, ``set_unretrieved_handler``, progress bars
(``map(progress=...)``, ``as_completed(progress=...)``) and statistics (``executor.stats()``:
``ExecutorStats``, ``TimeStats``, ``WorkerStats``, ``WorkerRestarts``). The process pool (with
``concurrent.futures.process`` and ``multiprocessing``) loads on first use.

Modules: ``future`` (``Future``, never-silent reporting), ``task_local``, ``progress`` (tqdm
bars), ``waiting`` (``wait``, ``as_completed``), ``executor`` (the base), ``thread`` (the thread
pool), ``process`` and ``process_future`` (the process pool and its futures).
"""

from __future__ import annotations

from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    InvalidStateError,
)
from concurrent.futures.thread import BrokenThreadPool

from treadle import _lazy
from treadle._treadle import (
    Cancelled,
    ExecutorStats,
    TaskTimeoutError,
    TimeStats,
    WorkerRestarts,
    WorkerStats,
    cancelled,
    check_cancelled,
    sleep,
)
from treadle.futures.future import Future, set_unretrieved_handler
from treadle.futures.task_local import local
from treadle.futures.thread import ThreadPoolExecutor
from treadle.futures.waiting import as_completed, wait

TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures.process import BrokenProcessPool

    from treadle.futures.process import ProcessPoolExecutor, WorkerCrashedError

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BrokenExecutor",
    "BrokenProcessPool",
    "BrokenThreadPool",
    "Cancelled",
    "CancelledError",
    "ExecutorStats",
    "Future",
    "InvalidStateError",
    "ProcessPoolExecutor",
    "TaskTimeoutError",
    "ThreadPoolExecutor",
    "TimeStats",
    "WorkerCrashedError",
    "WorkerRestarts",
    "WorkerStats",
    "as_completed",
    "cancelled",
    "check_cancelled",
    "local",
    "set_unretrieved_handler",
    "sleep",
    "wait",
]


def __getattr__(name: str) -> object:
    # PEP 562: the process pool loads on first use.
    if name not in ("ProcessPoolExecutor", "WorkerCrashedError", "BrokenProcessPool"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import treadle.futures.process as module

    return _lazy.bind(globals(), name, module)


def __dir__() -> list[str]:
    return _lazy.listing(globals(), __all__)
