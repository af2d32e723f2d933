"""``treadle.futures``: a drop-in for ``concurrent.futures``, on treadle's engines.

``ThreadPoolExecutor`` and ``ProcessPoolExecutor`` (one base, ``executor``, holds what they
share), ``Future``, ``wait`` and ``as_completed``, the standard library's exceptions, constants
and ``Executor`` (the abstract base, the standard library's own object: both pools are
instances of it), and treadle's additions: interruptible tasks (``Cancelled``, ``check_cancelled``,
``cancelled``, ``sleep``), time limits (``TaskTimeoutError``), crashed workers
(``WorkerCrashedError``), ``local``, ``set_unretrieved_handler``, progress bars
(``map(progress=...)``, ``as_completed(progress=...)``) and statistics (``executor.stats()``:
``ExecutorStats``, ``TimeStats``, ``WorkerStats``, ``WorkerRestarts``). The process pool (with
``concurrent.futures.process`` and ``multiprocessing``) loads on first use, and so does
``DaskExecutor`` (the same API on a Dask cluster), which imports Dask only when one is made.

Modules: ``future`` (``Future``, never-silent reporting), ``task_local``, ``progress`` (tqdm
bars), ``waiting`` (``wait``, ``as_completed``), ``executor`` (the base), ``thread`` (the thread
pool), ``process`` and ``process_future`` (the process pool and its futures), ``dask_executor``,
``dask_worker`` and ``dask_stats`` (the Dask executor, what its workers run, its statistics).
"""

from __future__ import annotations

from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Executor,
    InvalidStateError,
    TimeoutError,
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
    from types import ModuleType

    from treadle.futures.dask_executor import DaskExecutor
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
    "DaskExecutor",
    "Executor",
    "ExecutorStats",
    "Future",
    "InvalidStateError",
    "ProcessPoolExecutor",
    "TaskTimeoutError",
    "ThreadPoolExecutor",
    "TimeStats",
    "TimeoutError",
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
    # PEP 562: the process pool and the Dask executor load on first use.
    module: ModuleType
    if name == "DaskExecutor":
        import treadle.futures.dask_executor as module
    elif name in ("ProcessPoolExecutor", "WorkerCrashedError", "BrokenProcessPool"):
        import treadle.futures.process as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    return _lazy.bind(globals(), name, module)


def __dir__() -> list[str]:
    return _lazy.listing(globals(), __all__)
