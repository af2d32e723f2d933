"""``treadle.DaskExecutor``: treadle's executor API on a Dask cluster (``distributed.Client``).

Dask schedules, moves data and reruns a task whose worker died; treadle adds what its process
pool gives on one machine: its futures (``treadle.wait``, ``as_completed``, callbacks and the
report of an exception nobody retrieved work on them unchanged), time limits, errors that say
what happened, and pickling errors at ``submit``. ``dask`` is imported when an executor is
made, never by ``import treadle``.

How a task flows. ``submit`` pickles the callable and its arguments in the caller's thread, as
the process pool does (an unpicklable part fails there, named), and submits
``dask_worker.run_task(payload, key, executor, topic)`` under a key of its own. On a worker the
task first logs an event (its key, the worker's address) to the topic of the executor's client,
named after the client, whose handler (``_StartEvents``, one per client) hands it to the executor:
the task runs now (so ``cancel()`` without ``interrupt`` can no longer stop it), there, and its
time limit starts. A coroutine on the client's event loop awaits the Dask future and hands its
outcome over too. Both go to the executor's resolver thread, never resolved on the event loop:
a done-callback may block, or wait for another of the executor's futures, which needs the loop.
The resolver gives each treadle future its result or exception, and fails a task whose time
limit passed with ``TaskTimeoutError``, asking its worker to interrupt it and the scheduler to
cancel it.

Errors. Dask's ``KilledWorker`` (the workers running a task died more often than
``distributed.scheduler.allowed-failures`` allows; until then Dask reruns it elsewhere) becomes
``WorkerCrashedError`` naming the last worker; a Dask future cancelled by anything but this
executor (the client lost its scheduler, ...) becomes ``BrokenProcessPool`` with Dask's reason.

``map(progress=...)`` is the one base's; ``stats()`` reads ``dask_stats.DaskStats``, fed where
each thing is seen (submissions and cancellations here, starts, outcomes and time limits in the
resolver thread). Design and limits: ``docs/dask.md``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import heapq
import itertools
import os
import re
import sys
import threading
import time
import uuid
import weakref
from _queue import Empty, SimpleQueue
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from types import ModuleType
from typing import Any, ClassVar

from treadle._treadle import TaskTimeoutError
from treadle.futures import process_future as _process_futures
from treadle.futures.dask_stats import DaskStats
from treadle.futures.executor import Executor
from treadle.futures.process import ProcessPoolExecutor, WorkerCrashedError, _name_of
from treadle.futures.process_future import Future
from treadle.multiprocessing import main_module as _main_module
from treadle.multiprocessing import pickling as _pickling

__all__ = ["ClusterPool", "DaskExecutor", "cluster_pool", "shared_client"]

#: What the executor asks of the cluster (an interrupt, a cancellation) gives up after this
#: long (seconds): a worker or a scheduler that does not answer must not hold the executor.
CLUSTER_CALL_TIMEOUT = 10.0

#: Across machines there is no shared memory: every buffer travels in the pickle.
_IN_BAND = sys.maxsize

_INSTALL_HINT = "pip install 'treadle[dask]'"

# The resolver thread's inbox: what happened, then the task's key.
_STARTED, _OUTCOME, _WAKE = 0, 1, 2
_executor_numbers = itertools.count(1)


def load_distributed() -> ModuleType:
    """The ``distributed`` package, or an ``ImportError`` that names treadle's extra."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError(
            "treadle's DaskExecutor needs Dask's distributed scheduler, which is not installed: "
            f"{_INSTALL_HINT}"
        ) from error
    return distributed


class _Task:
    """One task: its future, how errors name it, its limit, and what the cluster said."""

    __slots__ = (
        "dask_future",
        "deadline",
        "future",
        "label",
        "started",
        "started_at",
        "submitted_at",
        "timeout",
        "worker",
    )

    def __init__(self, future: Future, label: Any, timeout: float | None) -> None:
        self.future = future
        #: The task's name, or the callable it is named after (named when needed).
        self.label = label
        self.timeout = timeout
        self.dask_future: Any = None
        self.started = False
        self.worker: str | None = None
        self.deadline: float | None = None
        self.submitted_at = time.monotonic()
        #: When it last started (client's clock), for its time.
        self.started_at: float | None = None

    @property
    def name(self) -> str:
        return self.label if isinstance(self.label, str) else _name_of(self.label)


class _StartEvents:
    """The events tasks log as they start, for every executor on one client: one subscription
    to the client's own topic (which the scheduler forgets once the client is gone), handed to
    each executor by the id in the task's key."""

    _all: dict[str, _StartEvents] = {}
    _lock = threading.Lock()

    def __init__(self, client: Any) -> None:
        self.client = client
        self.executors: dict[str, _Tasks] = {}
        self.marker = _worker_module().STARTED

    @classmethod
    def join(cls, tasks: _Tasks) -> None:
        client = tasks.client
        with cls._lock:
            events = cls._all.get(client.id)
            if events is None:
                events = cls._all[client.id] = _StartEvents(client)
                client.subscribe_topic(client.id, events.handle)
            events.executors[tasks.id] = tasks

    @classmethod
    def leave(cls, tasks: _Tasks) -> None:
        client = tasks.client
        with cls._lock:
            events = cls._all.get(client.id)
            if events is None:
                return
            events.executors.pop(tasks.id, None)
            if events.executors:
                return
            del cls._all[client.id]
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(client.id)

    def handle(self, event: tuple[float, Any]) -> None:
        """On the client's event loop: a task started (the scheduler's own events for this
        client, such as one for each graph submitted, are dictionaries)."""
        message = event[1]
        if type(message) not in (list, tuple) or len(message) != 3 or message[0] != self.marker:
            return
        key, worker = message[1], message[2]
        tasks = self.executors.get(key.rsplit("-", 2)[-2])
        if tasks is not None:
            tasks.inbox.put((_STARTED, key, worker, time.monotonic()))


def _settled_error(
    task: _Task, status: str, outcome: Any, address: str, client_status: str
) -> BaseException:
    """The exception of a task that Dask ended with ``status`` (not ``finished``);
    ``client_status`` is the client's now."""
    distributed = sys.modules["distributed"]
    if status == "error":
        _, error, traceback = outcome
        if isinstance(error, distributed.KilledWorker):
            worker = getattr(error.last_worker, "address", error.last_worker)
            crashed = WorkerCrashedError(
                f"the Dask worker {worker} running task {task.name!r} died (the workers that "
                f"ran it died {error.allowed_failures + 1} times in all, more than the "
                "scheduler's distributed.scheduler.allowed-failures allows); the executor goes on",
                task_name=task.name,
                worker=worker,
            )
            crashed.__cause__ = error
            return crashed
        return error.with_traceback(traceback) if traceback is not None else error
    if status == "cancelled":
        reason = getattr(outcome, "reason", None)
        if reason == "scheduler-connection-lost" or client_status == "connecting":
            message = f"the connection to the Dask scheduler at {address} was lost"
        elif client_status != "running":
            message = f"the executor's Dask client is {client_status}"
        else:
            message = f"Dask cancelled it ({reason or outcome})"
        broken = BrokenProcessPool(f"task {task.name!r} did not finish: {message}")
        broken.__cause__ = outcome
        return broken
    # The watch itself failed (the client closed under it, a result that cannot be gathered).
    return outcome if isinstance(outcome, BaseException) else RuntimeError(repr(outcome))


class _Tasks:
    """An executor's tasks in flight and the thread that resolves their futures. The executor
    adds and cancels tasks from any thread; the client's event loop tells of starts and
    outcomes through ``inbox``; the resolver thread alone resolves, times out and cleans up."""

    def __init__(self, client: Any, number: int, owned: list[Any]) -> None:
        self.client = client
        self.address = client.scheduler.address if client.scheduler is not None else "?"
        self.id = uuid.uuid4().hex[:16]
        self.table: dict[str, _Task] = {}
        self.lock = threading.Lock()
        # The standard library's queue, looked up here: under treadle.patch(), queue.SimpleQueue
        # is treadle's, whose waits count in the deadlock check; this thread's wait is not one.
        self.inbox: SimpleQueue[tuple[Any, ...]] = SimpleQueue()
        self.deadlines: list[tuple[float, str]] = []
        self.unwatched: list[tuple[str, Any]] = []
        self.watching: set[asyncio.Future[None]] = set()
        self.closing = False
        #: What the executor made and closes last (its client, its LocalCluster).
        self.owned = owned
        #: The name of the initializer's worker plugin, if it has one.
        self.plugin: str | None = None
        self.thread = threading.Thread(
            target=self.serve, name=f"treadle-dask-executor-{number}", daemon=True
        )
        #: The executor's statistics (it reads them from here: they outlive it).
        self.stats = DaskStats(client)

    # -- any thread ----------------------------------------------------------------------

    def add(self, key: str, task: _Task) -> None:
        with self.lock:
            self.table[key] = task
        self.stats.count("submitted")

    def discard(self, key: str) -> None:
        """A task whose submission failed (and raised): it never was."""
        with self.lock:
            self.table.pop(key, None)
        self.stats.count("submitted", -1)

    def watch(self, key: str, dask_future: Any) -> None:
        """Has the client's event loop await the Dask future. Tasks submitted while the loop
        has not yet taken the last ones go with them: one wake-up of the loop for a burst."""
        with self.lock:
            self.unwatched.append((key, dask_future))
            if len(self.unwatched) > 1:
                return
        self.client.loop.add_callback(self._watch_unwatched)

    def cancel(self, key: str, interrupt: bool) -> bool:
        """Takes the task out if it has not started (or, with ``interrupt``, even if it has),
        and has the cluster stop it; whether it did."""
        with self.lock:
            task = self.table.get(key)
            if task is None or (task.started and not interrupt):
                return False
            del self.table[key]
        self.stats.count("cancelled")
        self.stop_on_cluster(key, task, interrupt)
        return True

    def queued(self, key: str) -> bool:
        task = self.table.get(key)
        return task is not None and not task.started

    def stop_on_cluster(self, key: str, task: _Task, interrupt: bool) -> None:
        worker = task.worker if interrupt and task.started else None
        self.client.loop.add_callback(_stop_on_cluster, self.client, task.dask_future, key, worker)

    def close(self) -> None:
        """No new tasks: the resolver cleans up once those in flight are resolved."""
        self.closing = True
        self.inbox.put((_WAKE,))

    # -- the client's event loop ---------------------------------------------------------

    def _watch_unwatched(self) -> None:
        with self.lock:
            batch, self.unwatched = self.unwatched, []
        for key, dask_future in batch:
            watching = asyncio.ensure_future(self._watch(key, dask_future))
            # The event loop keeps only weak references to its tasks.
            self.watching.add(watching)
            watching.add_done_callback(self.watching.discard)

    async def _watch(self, key: str, dask_future: Any) -> None:
        # Future._result(raiseit=False) is what distributed.as_completed awaits: the value,
        # (type, exception, traceback) for an error, the CancelledError of a cancelled future.
        try:
            outcome = await dask_future._result(raiseit=False)
            status = dask_future.status
        except asyncio.CancelledError:
            # The client's event loop is closing under it: the future must not wait forever.
            self.inbox.put((_OUTCOME, key, "cancelled", None, time.monotonic()))
            raise
        except Exception as error:
            outcome, status = error, "failed"
        self.inbox.put((_OUTCOME, key, status, outcome, time.monotonic()))

    # -- the resolver thread -------------------------------------------------------------

    def serve(self) -> None:
        inbox, deadlines = self.inbox, self.deadlines
        while True:
            # Nothing of a message outlives it here: a resolved future belongs to its owner.
            message = task = None
            timeout = None if not deadlines else max(0.0, deadlines[0][0] - time.monotonic())
            try:
                message = inbox.get(timeout=timeout)
            except Empty:
                pass
            if message is not None and message[0] == _OUTCOME:
                with self.lock:
                    task = self.table.pop(message[1], None)
                if task is not None:
                    self.resolve(task, *message[2:])
            elif message is not None and message[0] == _STARTED:
                self.started(*message[1:])
            if deadlines and deadlines[0][0] <= time.monotonic():
                self.expire(time.monotonic())
            if self.closing and not self.table:
                break
        self.release()

    def release(self) -> None:
        """Once the last task is resolved after shutdown: lets go of the cluster. (Here, not in
        the executor: this thread must not keep the executor alive, so that one dropped
        without ``shutdown()`` is finalized.)"""
        _StartEvents.leave(self)
        self.stats.released = True
        with contextlib.suppress(Exception):
            if self.plugin is not None:
                self.client.unregister_worker_plugin(self.plugin)
            if not self.owned:  # the workers outlive the executor: they forget it
                self.client.run(
                    _worker_module().forget,
                    self.id,
                    on_error="ignore",
                    callback_timeout=CLUSTER_CALL_TIMEOUT,
                )
        _close_all(self.owned)

    def resolve(self, task: _Task, status: str, outcome: Any, at: float) -> None:
        """Resolves the future of a task whose outcome (Dask's ``status``) arrived at ``at``."""
        if status == "finished":
            self.stats.ended(True, True, task.worker, task.started_at, at)
            _process_futures.set_result(task.future, outcome)
        else:
            error = _settled_error(task, status, outcome, self.address, self.client.status)
            raised = status == "error" and not isinstance(error, WorkerCrashedError)
            self.stats.ended(False, raised, task.worker, task.started_at, at)
            _process_futures.set_exception(task.future, error)

    def started(self, key: str, worker: str, at: float) -> None:
        with self.lock:
            task = self.table.get(key)
            if task is None:
                return
            # A task rerun elsewhere (its worker died) starts again, with its whole time limit.
            self.stats.started(task.submitted_at, at, task.started_at is None, worker)
            task.started = True
            task.started_at = at
            task.worker = worker
            if task.timeout is not None:
                task.deadline = at + task.timeout
                heapq.heappush(self.deadlines, (task.deadline, key))

    def expire(self, now: float) -> None:
        while self.deadlines and self.deadlines[0][0] <= now:
            deadline, key = heapq.heappop(self.deadlines)
            with self.lock:
                task = self.table.get(key)
                if task is None or task.deadline != deadline:
                    continue
                del self.table[key]
            self.stats.count("timed_out")
            self.stop_on_cluster(key, task, interrupt=True)
            _process_futures.set_exception(
                task.future,
                TaskTimeoutError(
                    f"task {task.name!r} ran longer than its time limit of {task.timeout:g} s "
                    f"on the Dask worker {task.worker}; it was cancelled on the cluster"
                ),
            )


async def _stop_on_cluster(client: Any, dask_future: Any, key: str, worker: str | None) -> None:
    """Cancels a task on the cluster; with ``worker``, first asks that worker to interrupt it
    (its treadle waits raise ``treadle.Cancelled``; other code runs on, its result dropped)."""
    from treadle.futures import dask_worker

    if worker is not None:
        with contextlib.suppress(Exception):
            await client.run(
                dask_worker.interrupt,
                key,
                workers=[worker],
                on_error="ignore",
                asynchronous=True,
                callback_timeout=CLUSTER_CALL_TIMEOUT,
            )
    with contextlib.suppress(Exception):
        await client.cancel(
            [dask_future], asynchronous=True, reason="treadle", msg="cancelled by treadle"
        )


def _key_prefix(label: Any) -> str:
    """A task key's first part, which Dask's dashboard groups by: the task's name."""
    name = label if isinstance(label, str) else getattr(label, "__name__", "task")
    return re.sub(r"[^A-Za-z0-9_.]+", "_", str(name)) or "task"


class DaskExecutor(Executor):
    """treadle's executor API on a Dask cluster.

    ``address`` is a scheduler's address (``"tcp://host:8786"``), a ``distributed.Client``
    (which the executor uses and leaves open), or None: then a ``LocalCluster`` of
    ``max_workers`` single-threaded worker processes on 127.0.0.1, closed with the executor.
    ``initializer(*initargs)`` runs once in every worker process, those that join later too.
    ``task_timeout`` (seconds) limits every task, ``schedule(timeout=)`` one task, from when a
    worker starts it; a task past its limit fails with ``TaskTimeoutError`` and is cancelled
    on the cluster. A task whose workers died fails with ``WorkerCrashedError`` once Dask gives
    up rerunning it. Its futures are treadle futures. Needs ``treadle[dask]``; the workers need
    treadle installed too.
    """

    def __init__(
        self,
        address: Any = None,
        *,
        max_workers: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        task_timeout: float | None = None,
    ) -> None:
        distributed = load_distributed()
        self._check_arguments(1 if max_workers is None else max_workers, initializer, task_timeout)
        payload = None
        if initializer is not None:
            payload = _pickling.dump_initializer(initializer, tuple(initargs))
        self._task_timeout = task_timeout
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        self._ids = itertools.count(1)
        owned: list[Any] = []
        try:
            if address is None:
                cluster = local_cluster(max_workers)
                owned.append(cluster)
                address = cluster
            if isinstance(address, distributed.Client):
                client = address
            else:
                client = distributed.Client(address, set_as_default=False)
                owned.insert(0, client)
            self._client = client
            self._tasks = _Tasks(client, next(_executor_numbers), owned)
            if payload is not None:
                name = f"treadle-initializer-{self._tasks.id}"
                plugin = _worker_module().Initializer(payload, self._tasks.id)
                try:
                    client.register_plugin(plugin, name=name)
                except Exception as error:
                    message = f"the initializer failed on a worker: {error}"
                    raise BrokenProcessPool(message) from error
                self._tasks.plugin = name
        except BaseException:
            _close_all(owned)
            raise
        _StartEvents.join(self._tasks)
        self._tasks.thread.start()
        self._register_for_exit()
        # An executor dropped without shutdown() still finishes its tasks, then lets go.
        weakref.finalize(self, self._tasks.close)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` the executor submits to."""
        return self._client

    # -- submitting ----------------------------------------------------------------------

    # Submitting is the process pool's: schedule() and submit() check their arguments and
    # call _schedule(); map() chunks its calls and pickles the function once for all of them.
    schedule = ProcessPoolExecutor.schedule
    submit = ProcessPoolExecutor._submit_call
    _map_tasks = ProcessPoolExecutor._map_tasks
    _calls_submitter = ProcessPoolExecutor._calls_submitter
    _sender = ProcessPoolExecutor._sender
    #: What the workers' main module holds of the program's: nothing (a Dask worker runs no
    #: program's script), so every function and class of ``__main__`` travels by value.
    _main = _main_module.NOTHING

    def _schedule(
        self,
        kind: int,
        fn: Any,
        args: Any,
        kwargs: dict[str, Any],
        timeout: float | None,
        name: str | None,
    ) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        status = self._client.status
        if status != "running":
            # "connecting": the client lost its scheduler and tries to reach it again; a task
            # submitted now would wait on a connection that may never come back.
            raise BrokenProcessPool(
                f"the executor's Dask client is {status}: no connection to the Dask scheduler "
                f"at {self._tasks.address}"
            )
        payload, _ = _pickling.dump_task(kind, fn, args, kwargs, _IN_BAND)
        label = fn if name is None else name
        tasks = self._tasks
        key = f"{_key_prefix(label)}-{tasks.id}-{next(self._ids)}"
        future = _process_futures.new_future(self, key)  # type: ignore[arg-type]
        task = _Task(future, label, timeout)
        tasks.add(key, task)
        try:
            task.dask_future = self._client.submit(
                _worker_module().run_task, payload, key, tasks.id, self._client.id, key=key
            )
        except BaseException:
            tasks.discard(key)
            raise
        tasks.watch(key, task.dask_future)
        return future

    # -- cancelling and stopping ---------------------------------------------------------

    def _task_queued(self, key: str) -> bool:
        return self._tasks.queued(key)

    def _stats_source(self) -> DaskStats:
        return self._tasks.stats

    def _cancel_task(self, key: str, interrupt: bool) -> bool:
        return self._tasks.cancel(key, interrupt)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new tasks. With ``cancel_futures``, the tasks no worker has started are cancelled.
        With ``wait``, returns once every task is done and the executor has let go of the
        cluster (closed its own client and ``LocalCluster``); without, that happens then."""
        with self._shutdown_lock:
            self._shutdown = True
            if cancel_futures:
                with self._tasks.lock:
                    pending = list(self._tasks.table.items())
                for key, task in pending:
                    if self._tasks.cancel(key, interrupt=False):
                        _process_futures.mark_cancelled(task.future)
            self._tasks.close()
        if wait and threading.current_thread() is not self._tasks.thread:
            self._tasks.thread.join()


def _close_all(owned: list[Any]) -> None:
    for resource in owned:
        with contextlib.suppress(Exception):
            resource.close()
    owned.clear()


def _worker_module() -> ModuleType:
    from treadle.futures import dask_worker

    return dask_worker


def local_cluster(workers: int | None = None) -> Any:
    """A ``LocalCluster`` of ``workers`` (default: one per CPU) single-threaded worker
    processes, as a process pool has, on 127.0.0.1 only (its HTTP server too, on a free port:
    never the dashboard's usual 8787, which another cluster may hold)."""
    distributed = load_distributed()
    if workers is None:
        workers = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )


# -- unmodified programs on a cluster (treadle.patch(cluster=...), treadle run --cluster) --

_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def shared_client(cluster: str) -> Any:
    """The one client of this process to ``cluster`` (a scheduler's address, or ``"local"``
    for a ``LocalCluster`` started now), closed at exit."""
    with _shared_lock:
        client = _shared.get(cluster)
        if client is not None and client.status not in ("closing", "closed"):
            return client
        distributed = load_distributed()
        if cluster == "local":
            local = local_cluster()
            client = distributed.Client(local, set_as_default=False)
            atexit.register(_close_quietly, local)
        else:
            client = distributed.Client(cluster, set_as_default=False)
        # atexit runs its functions last registered first: the client before its cluster.
        atexit.register(_close_quietly, client)
        _shared[cluster] = client
        return client


def _close_quietly(resource: Any) -> None:
    with contextlib.suppress(Exception):
        resource.close()


class ClusterPool(DaskExecutor):
    """``concurrent.futures.ProcessPoolExecutor``'s signature for a ``DaskExecutor`` on the
    cluster ``cluster`` (an address, or ``"local"``), through the one client of this process to
    it (``shared_client``). ``max_workers`` is checked, the cluster's size is its own;
    ``mp_context`` and ``max_tasks_per_child`` do not apply to Dask's long-lived workers."""

    cluster: ClassVar[str] = "local"

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
        *,
        task_timeout: float | None = None,
    ) -> None:
        super().__init__(
            shared_client(self.cluster),
            max_workers=max_workers,
            initializer=initializer,
            initargs=initargs,
            task_timeout=task_timeout,
        )


def cluster_pool(cluster: str) -> type[ClusterPool]:
    """The ``ProcessPoolExecutor`` that ``treadle.patch(cluster=...)`` puts in place: its pools
    are ``DaskExecutor``s on ``cluster``."""
    load_distributed()
    doc = f"``concurrent.futures.ProcessPoolExecutor`` on the Dask cluster {cluster!r}."
    namespace = {"cluster": cluster, "__module__": __name__, "__doc__": doc}
    return type("ProcessPoolExecutor", (ClusterPool,), namespace)
