"""A ``DaskExecutor``'s statistics (``executor.stats()``): the pools' records
(``ExecutorStats``, ``TimeStats``, ``WorkerStats``), made from what the executor sees of its
tasks, since Dask, not treadle, runs them.

* ``submitted``, ``done`` (returned), ``failed`` (raised; or failed with the cluster: Dask gave up
  on a task whose workers died, ``WorkerCrashedError``, or the scheduler was lost),
  ``cancelled`` (by ``cancel()``, or by ``shutdown(cancel_futures=True)``), ``timed_out``.
* Task times: from a task's start (the event it logs as it starts, on the client's clock, as it
  arrives) to its outcome's arrival, for the tasks that returned or raised: so each includes the
  trip of the start event and of the result. A task Dask ran again, its worker dead, is timed
  from its last start.
* Queue waits: from ``submit()`` to the task's first start (Dask's scheduling, the data it
  moved, the worker's own queue).
* Workers: one per Dask worker, named by its address (its pid is not asked for): this executor's
  tasks that ended on it, the time they took (``busy``), out of the time the executor has known
  it (``lifetime``: since the executor was made for the workers there then, else since it first
  saw the worker); ``alive`` while the scheduler lists it, asked at each ``stats()`` (one round
  trip; none once the executor has let go of the cluster). The workers' other clients' tasks are
  not counted.
* No restarts (``restarts`` is None): Dask's nannies restart workers, unseen by the executor.

The counts are taken under one lock (from the caller's threads: submissions, cancellations;
from the executor's resolver thread: starts, outcomes, time limits); durations go to the core's
histograms (``_Durations``), as the pools' do. An executor made while statistics are off
(``TREADLE_STATS=0``) gathers none.
"""

from __future__ import annotations

import _thread
import time
from typing import Any

from treadle._treadle import ExecutorStats, WorkerStats, _Durations, _stats_enabled

#: How long ``stats()`` waits for the scheduler's list of workers (seconds).
WORKERS_CALL_TIMEOUT = 5.0


class _Worker:
    __slots__ = ("busy", "known_since", "tasks")

    def __init__(self, known_since: float) -> None:
        self.known_since = known_since
        self.tasks = 0
        self.busy = 0.0


class DaskStats:
    """One executor's figures; each method is called where its event is seen."""

    def __init__(self, client: Any) -> None:
        self.enabled = _stats_enabled()
        self.born = time.monotonic()
        self.client = client
        #: Set once the executor has let go of the cluster: no worker serves it any more.
        self.released = False
        # The standard library's lock, whatever treadle.patch() did to threading's names: a few
        # steps under it, never a wait worth a place in the wait graph.
        self._lock = _thread.allocate_lock()
        self._counts = {"submitted": 0, "done": 0, "failed": 0, "cancelled": 0, "timed_out": 0}
        self._task_time = _Durations()
        self._queue_wait = _Durations()
        self._workers: dict[str, _Worker] = {}
        if self.enabled:
            client.loop.add_callback(self._first_workers)

    async def _first_workers(self) -> None:
        """On the client's event loop: the workers there as the executor was made."""
        try:
            workers = await self.client.scheduler.ncores()
        except Exception:
            return
        self._known(workers, self.born)

    def _known(self, addresses: Any, since: float) -> None:
        with self._lock:
            for address in addresses:
                self._workers.setdefault(address, _Worker(since))

    def count(self, what: str, n: int = 1) -> None:
        """``what`` (``submitted``, ``cancelled``, ``timed_out``) happened ``n`` times (-1: a
        submission withdrawn, having failed)."""
        if self.enabled:
            with self._lock:
                self._counts[what] += n

    def started(self, submitted_at: float, at: float, first: bool, worker: str) -> None:
        """A task submitted at ``submitted_at`` started at ``at`` on ``worker`` (``first``: the
        first time; a rerun's wait is not counted again)."""
        if not self.enabled:
            return
        if first:
            self._queue_wait.record(max(0.0, at - submitted_at))
        self._known([worker], at)

    def ended(
        self, returned: bool, ran: bool, worker: str | None, since: float | None, at: float
    ) -> None:
        """A task's outcome arrived at ``at``: it ``returned`` (or failed); it ``ran`` to its end
        on ``worker`` (returned or raised), started at ``since``."""
        if not self.enabled:
            return
        took = None
        if ran and worker is not None and since is not None:
            took = max(0.0, at - since)
            self._task_time.record(took)
        with self._lock:
            self._counts["done" if returned else "failed"] += 1
            if took is not None:
                record = self._workers.setdefault(worker, _Worker(since))  # type: ignore[arg-type]
                record.tasks += 1
                record.busy += took

    def stats(self) -> ExecutorStats:
        """The figures now."""
        if not self.enabled:
            raise RuntimeError(
                "this executor gathers no statistics: it was made while they were off "
                "(TREADLE_STATS=0)"
            )
        serving = self._serving()
        now = time.monotonic()
        if serving:
            self._known(serving, now)
        with self._lock:
            counts = dict(self._counts)
            workers = [
                WorkerStats(
                    name=address,
                    pid=None,
                    tasks=worker.tasks,
                    busy=worker.busy,
                    lifetime=max(0.0, now - worker.known_since),
                    alive=serving is not None and address in serving,
                )
                for address, worker in self._workers.items()
            ]
        return ExecutorStats(
            **counts,
            task_time=self._task_time.summary(),
            queue_wait=self._queue_wait.summary(),
            workers=workers,
            restarts=None,
            uptime=now - self.born,
        )

    def _serving(self) -> set[str] | None:
        """The workers the scheduler lists now; None once the executor has let go of the cluster
        or when the scheduler does not answer."""
        client = self.client
        if self.released or client.status != "running":
            return None
        try:
            return set(client.nthreads(callback_timeout=WORKERS_CALL_TIMEOUT))
        except Exception:
            return None
