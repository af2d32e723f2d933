"""What runs on a Dask worker for ``treadle.DaskExecutor``: each task, and the pool's
initializer. Workers import it by name, so treadle must be installed where they run.

A task is ``run_task(payload, key, executor, topic)``. It first tells the executor that it
started: an event on the scheduler's topic ``topic``, which the executor's client subscribes to
(its time limit counts from then, and a task that started can no longer be cancelled without
``interrupt=True``). Then it runs the payload (the callable and its arguments, pickled by the
executor as the process pool pickles them, and run by the process pool's own worker code) in
an ``_Interruptible`` kept under the task's key: ``interrupt(key)``, which the executor sends
with ``Client.run`` when it cancels a running task or the task runs out of time, makes the
task's treadle waits (``treadle.sleep``, ``check_cancelled``, locks, queues, futures) raise
``treadle.Cancelled``. Code that never waits in treadle runs on; Dask drops its result.
"""

from __future__ import annotations

import builtins
import pickle
import sys
import threading
import types
from typing import Any

from distributed import WorkerPlugin, get_worker

from treadle import _treadle
from treadle.multiprocessing import worker as _worker
from treadle.multiprocessing.wire import MAIN_NAMESPACE_MODULE

#: Marks the executor's events on the scheduler among the others on the same topic.
STARTED = "treadle-task-started"

#: The tasks running in this process, by key, each with its interrupt.
_running: dict[str, _treadle._Interruptible] = {}


class _Session:
    """What a worker process keeps for one executor: the globals that functions of its
    program's ``__main__`` share here, and the functions it unpickled (which hold those
    globals). A Dask worker outlives programs: another program's, or another run's, must
    never be seen."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        #: The values the program sent, by name: a global still bound to one may take the
        #: program's newer value; one the worker's own code assigned (an initializer's
        #: ``global``) keeps its own.
        self.given: dict[str, Any] = {}
        self.runner = _worker.Worker(None)  # type: ignore[arg-type]

    def merge(self, captured: dict[str, Any]) -> dict[str, Any]:
        """What ``treadle.multiprocessing.worker_main.merge`` does for a worker's ``__main__``,
        for this executor's globals (a Dask worker runs no program's script)."""
        for name, value in captured.items():
            current = self.namespace.get(name, _MISSING)
            if current is _MISSING or current is self.given.get(name, _MISSING):
                self.namespace[name] = self.given[name] = value
        return {}


_MISSING = object()


_sessions: dict[str, _Session] = {}
_current = threading.local()


class _MainNamespaces(types.ModuleType):
    """The module whose ``namespace`` a function of ``__main__`` unpickles with (see
    ``treadle.multiprocessing.pickling``): here, that of the executor whose task or initializer
    this thread runs."""

    #: No script runs again on a Dask worker (see ``worker_main``): never loading.
    loading = False

    @property
    def namespace(self) -> dict[str, Any]:
        return _current.session.namespace  # type: ignore[no-any-return]

    @staticmethod
    def merge(captured: dict[str, Any]) -> dict[str, Any]:
        return _current.session.merge(captured)  # type: ignore[no-any-return]


sys.modules[MAIN_NAMESPACE_MODULE] = _MainNamespaces(MAIN_NAMESPACE_MODULE)


def _enter(executor: str) -> _Session:
    session = _sessions.get(executor)
    if session is None:
        session = _sessions.setdefault(executor, _Session())
    _current.session = session
    return session


def run_task(payload: bytes, key: str, executor: str, topic: str) -> Any:
    """Runs one task of the executor ``executor`` (a call, or a chunk of ``map``'s calls)."""
    worker = get_worker()
    worker.log_event(topic, [STARTED, key, worker.address])
    session = _enter(executor)
    call = _running[key] = _treadle._Interruptible()
    try:
        return call.run(session.runner.run, payload, [])
    finally:
        _running.pop(key, None)


def forget(executor: str) -> None:
    """Drops what this process kept for ``executor``, which has shut down."""
    _sessions.pop(executor, None)


def interrupt(key: str) -> bool:
    """Asks the task ``key`` to stop, if it runs here; whether it does."""
    call = _running.get(key)
    if call is None:
        return False
    call.interrupt()
    return True


class Initializer(WorkerPlugin):  # type: ignore[misc]
    """A worker plugin that calls the executor's ``initializer(*initargs)`` once in each worker
    process, those that join later included (``Client.register_plugin``)."""

    def __init__(self, payload: bytes, executor: str) -> None:
        self.payload = payload
        self.executor = executor

    def setup(self, worker: Any) -> None:
        _enter(self.executor)
        initializer, initargs = pickle.loads(self.payload)
        initializer(*initargs)
