"""``executor.stats()``: counts, task times and queue waits, workers and restarts, gathered in
the core as both pools run, checked against runs whose task times are known (sleeps, with a
tolerance for a loaded machine) and whose outcomes are known; ``treadle run --stats``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import _process_tasks as tasks
import pytest

import treadle
from treadle import _treadle
from treadle.futures import ExecutorStats, TimeStats, WorkerRestarts, WorkerStats

T = 30  # seconds: every wait in these tests ends, a hang is a failure
SLEEP = 0.05
POOLS = [treadle.ThreadPoolExecutor, treadle.ProcessPoolExecutor]


def between(value: float | None, low: float, high: float) -> bool:
    return value is not None and low <= value <= high


@pytest.mark.parametrize("executor", POOLS, ids=["threads", "processes"])
def test_task_times_queue_waits_and_workers_match_a_run_of_known_sleeps(executor):
    with executor(2) as pool:
        started = time.monotonic()
        pool.submit(tasks.square, 1).result(timeout=T)
        futures = [pool.submit(tasks.sleep, SLEEP) for _ in range(8)]
        for future in futures:
            future.result(timeout=T)
        elapsed = time.monotonic() - started
        stats = pool.stats()
    assert (stats.submitted, stats.done, stats.failed, stats.pending) == (9, 9, 0, 0)
    times = stats.task_time
    assert times.count == 9
    # Eight tasks of 50 ms and a tiny one: the median and the longest are a sleep's.
    assert between(times.p50, SLEEP * 0.9, SLEEP * 2)
    assert between(times.max, SLEEP, elapsed)
    assert between(times.mean, SLEEP * 8 / 9 * 0.95, SLEEP * 2)
    # Two workers, eight tasks at once: they wait 0, 0, 1, 1, 2, 2, 3, 3 sleeps.
    waits = stats.queue_wait
    assert waits.count == 9
    assert between(waits.max, SLEEP * 2.7, elapsed)
    assert waits.p50 is not None and waits.p50 <= waits.p99 <= waits.max
    live = [w for w in stats.workers if w.alive]
    assert len(live) == 2
    assert sum(w.tasks for w in stats.workers) == 9
    assert all(between(w.busy, SLEEP * 2, elapsed) for w in live)
    assert all(0 < w.busy_fraction <= 1 for w in live)
    assert stats.uptime >= elapsed


def test_thread_pool_counts_failures_cancellations_and_timeouts():
    gate = treadle.Event()
    with treadle.ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(gate.wait, T)
        queued = [pool.submit(tasks.square, x) for x in range(4)]
        failing = pool.submit(tasks.fail, "boom")
        assert queued[0].cancel() and queued[1].cancel()
        gate.set()
        blocker.result(timeout=T)
        assert failing.exception(timeout=T) is not None
        limited = pool.schedule(treadle.sleep, (T,), timeout=0.05)
        with pytest.raises(treadle.TaskTimeoutError):
            limited.result(timeout=T)
    stats = pool.stats()
    assert stats.submitted == 7
    assert (stats.done, stats.failed, stats.cancelled, stats.timed_out) == (3, 1, 2, 1)
    assert stats.pending == 0
    assert stats.restarts is None


def test_thread_pool_counts_a_running_task_interrupted_as_cancelled():
    with treadle.ThreadPoolExecutor(1) as pool:
        future = pool.submit(treadle.sleep, T)
        while not future.running():
            time.sleep(0.001)
        assert future.cancel(interrupt=True)
    stats = pool.stats()
    assert (stats.cancelled, stats.failed, stats.done) == (1, 0, 0)
    assert stats.workers[0].tasks == 1


def test_thread_pool_counts_the_queue_cancelled_at_shutdown():
    gate = treadle.Event()
    pool = treadle.ThreadPoolExecutor(1)
    pool.submit(gate.wait, T)
    for x in range(5):
        pool.submit(tasks.square, x)
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    pool.shutdown(wait=True)
    stats = pool.stats()
    assert (stats.submitted, stats.done, stats.cancelled) == (6, 1, 5)


def test_thread_pool_counts_a_task_its_submitter_ran():
    gate = treadle.Event()
    with treadle.ThreadPoolExecutor(1, max_pending=1, on_full="caller_runs") as pool:
        pool.submit(gate.wait, T)
        while pool._pending():
            time.sleep(0.001)
        pool.submit(gate.wait, T)  # queued
        assert pool.submit(tasks.square, 3).result(timeout=T) == 9  # run here, the queue full
        gate.set()
    stats = pool.stats()
    assert (stats.submitted, stats.done) == (3, 3)


def test_a_worker_that_ended_keeps_its_figures():
    with treadle.ThreadPoolExecutor(2) as pool:
        list(pool.map(tasks.sleep, [0.01] * 6))
    stats = pool.stats()
    assert len(stats.workers) == 2
    assert not any(w.alive for w in stats.workers)
    assert sum(w.tasks for w in stats.workers) == 6
    assert stats.task_time.count == 6
    assert stats.done == 6


def test_many_tiny_tasks_are_counted_exactly_and_their_times_estimated():
    with treadle.ThreadPoolExecutor(2) as pool:
        for _ in pool.map(abs, range(20_000)):
            pass
    stats = pool.stats()
    assert (stats.submitted, stats.done) == (20_000, 20_000)
    assert sum(w.tasks for w in stats.workers) == 20_000
    # Past the first 64 of each, tiny tasks are timed one in up to 64, each standing for
    # those it was chosen among: the counts are within 64 of the truth per sampler.
    assert 20_000 - 64 * 2 <= stats.task_time.count <= 20_000
    assert 20_000 - 64 <= stats.queue_wait.count <= 20_000
    assert stats.task_time.max is not None and stats.task_time.max < 1


def test_process_pool_counts_restarts_by_why(tmp_path):
    with treadle.ProcessPoolExecutor(1, max_tasks_per_child=2) as pool:
        # Recycled: two tasks, then a new worker.
        assert [pool.submit(tasks.square, x).result(timeout=T) for x in (1, 2)] == [1, 4]
        # Crashed.
        with pytest.raises(treadle.WorkerCrashedError):
            pool.submit(tasks.exit_with, 3).result(timeout=T)
        # Timed out.
        with pytest.raises(treadle.TaskTimeoutError):
            pool.schedule(tasks.sleep, (T,), timeout=0.2).result(timeout=T)
        # Interrupted: cancelled while it runs (it says so in a file first), on a worker whose
        # readiness the pool has seen (it answered a task).
        assert pool.submit(tasks.square, 4).result(timeout=T) == 16
        path = str(tmp_path / "pid")
        running = pool.submit(tasks.announce_then_sleep, path, T)
        deadline = time.monotonic() + T
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert running.cancel(interrupt=True)
        assert pool.submit(tasks.square, 5).result(timeout=T) == 25
    stats = pool.stats()
    restarts = stats.restarts
    assert restarts is not None
    assert (restarts.crashed, restarts.timed_out, restarts.interrupted) == (1, 1, 1)
    assert restarts.recycled >= 1
    assert stats.submitted == 7
    assert (stats.done, stats.failed, stats.timed_out, stats.cancelled) == (4, 1, 1, 1)
    assert all(w.pid is not None and w.name == f"pid {w.pid}" for w in stats.workers)
    assert len({w.pid for w in stats.workers}) >= 4


def test_process_pool_counts_a_worker_killed_from_outside_as_a_crash(tmp_path):
    path = str(tmp_path / "pid")
    with treadle.ProcessPoolExecutor(1) as pool:
        future = pool.submit(tasks.announce_then_sleep, path, T)
        deadline = time.monotonic() + T
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(int(Path(path).read_text()), signal.SIGKILL)
        with pytest.raises(treadle.WorkerCrashedError):
            future.result(timeout=T)
    stats = pool.stats()
    assert stats.failed == 1
    assert stats.restarts is not None and stats.restarts.crashed == 1


def test_process_pool_counts_its_queue_cancelled_at_shutdown():
    pool = treadle.ProcessPoolExecutor(1)
    first = pool.submit(tasks.sleep, 0.2)
    deadline = time.monotonic() + T
    while not first.running() and time.monotonic() < deadline:
        time.sleep(0.001)
    for x in range(4):
        pool.submit(tasks.square, x)
    pool.shutdown(wait=True, cancel_futures=True)
    assert first.result(timeout=T) == 0.2
    stats = pool.stats()
    assert stats.submitted == 5
    assert stats.done + stats.cancelled == 5
    assert stats.cancelled >= 1


@pytest.mark.parametrize("executor", POOLS, ids=["threads", "processes"])
def test_stats_off_for_pools_made_while_off(executor):
    _treadle._set_stats_enabled(False)
    try:
        with executor(1) as pool:
            assert pool.submit(tasks.square, 2).result(timeout=T) == 4
    finally:
        _treadle._set_stats_enabled(True)
    with pytest.raises(RuntimeError, match="gathers no statistics"):
        pool.stats()
    with executor(1) as pool:
        pool.submit(tasks.square, 2).result(timeout=T)
    assert pool.stats().done == 1


def test_an_executor_without_statistics_says_so():
    from treadle.futures.executor import Executor

    class Bare(Executor):
        def submit(self, fn, /, *args, **kwargs):
            raise NotImplementedError

    with pytest.raises(NotImplementedError, match="Bare gathers no statistics"):
        Bare().stats()


def test_the_records_can_be_made_in_python_as_a_cluster_executor_would():
    times = TimeStats(count=2, mean=0.5, p50=0.5, p99=0.9, max=1.0)
    nothing = TimeStats(count=0, mean=None, p50=None, p99=None, max=None)
    worker = WorkerStats(name="w", pid=None, tasks=2, busy=1.0, lifetime=4.0, alive=True)
    stats = ExecutorStats(
        submitted=3,
        done=2,
        failed=0,
        cancelled=0,
        timed_out=0,
        task_time=times,
        queue_wait=nothing,
        workers=[worker],
        restarts=WorkerRestarts(crashed=1),
        uptime=5.0,
    )
    assert stats.pending == 1
    assert stats.workers[0].busy_fraction == 0.25
    assert stats.restarts is not None and stats.restarts.total == 1
    assert "submitted=3" in repr(stats) and "p99=0.9" in repr(stats)


def test_durations_are_summed_up_as_the_pools_own_are():
    durations = _treadle._Durations()
    nothing = durations.summary()
    assert (nothing.count, nothing.mean, nothing.p50, nothing.max) == (0, None, None, None)
    for seconds in [0.1] * 98 + [2.0, 3.0]:
        durations.record(seconds)
    summary = durations.summary()
    assert summary.count == 100
    assert summary.max == 3.0
    assert abs(summary.mean - (0.1 * 98 + 5.0) / 100) < 1e-6
    assert between(summary.p50, 0.1 * 0.94, 0.1 * 1.06)  # a bucket's middle: within 6%
    assert between(summary.p99, 2.0 * 0.94, 2.0 * 1.06)
    for wrong in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="non-negative number of seconds"):
            durations.record(wrong)
    assert durations.summary().count == 100


SCRIPT = textwrap.dedent(
    """
    import concurrent.futures as cf
    import time

    def work(x):
        time.sleep(0.01)
        if x == 3:
            raise ValueError(x)
        return x

    def run():
        with cf.ThreadPoolExecutor(2, thread_name_prefix="crawler") as pool:
            list(pool.map(work, range(8), return_exceptions=True))

    run()
    print("done")
    """
)


def run_with_stats(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "program.py"
    script.write_text(SCRIPT)
    command = [sys.executable, "-m", "treadle", "run", "--stats", *options, str(script)]
    return subprocess.run(command, capture_output=True, text=True, timeout=T, check=False)


def test_treadle_run_stats_prints_every_pool_s_statistics_at_exit(tmp_path):
    done = run_with_stats(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    assert "treadle: statistics of 1 pool(s):" in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("crawler ")]
    assert line.split()[1:6] == ["8", "7", "1", "0", "0"]
    assert "crawler_0" in done.stderr and "crawler_1" in done.stderr


def test_treadle_run_stats_in_json(tmp_path):
    done = run_with_stats(tmp_path, "--report", "json")
    assert done.returncode == 0, done.stderr
    [item] = [json.loads(line) for line in done.stderr.splitlines() if '"stats"' in line]
    pool = item["pools"]["crawler"]
    assert (pool["submitted"], pool["done"], pool["failed"]) == (8, 7, 1)
    assert pool["task_time"]["count"] == 8
    assert 0.009 <= pool["task_time"]["p50"] < 1
    assert sum(w["tasks"] for w in pool["workers"]) == 8


def test_treadle_stats_0_in_the_environment_turns_them_off():
    code = textwrap.dedent(
        """
        import treadle
        with treadle.ThreadPoolExecutor(1) as pool:
            pool.submit(abs, 1).result()
        try:
            pool.stats()
        except RuntimeError as error:
            print(error)
        """
    )
    env = {**os.environ, "TREADLE_STATS": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=T, env=env
    )
    assert "TREADLE_STATS=0" in done.stdout, done.stderr
