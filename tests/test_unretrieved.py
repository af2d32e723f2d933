"""Never silent, in both pools alike: the exception of a failed task that nobody retrieved is
reported once (to ``set_unretrieved_handler``'s handler, by default the ``treadle`` logger), at
``shutdown(wait=True)`` or when its future is freed; with ``raise_unretrieved=True`` it belongs to
its pool, dropped future or not, and ``shutdown()``/``__exit__`` raises them as a group."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import _process_tasks as tasks
import pytest

import treadle

T = 30  # seconds: every wait in these tests ends, a hang is a failure
POOLS = [treadle.ThreadPoolExecutor, treadle.ProcessPoolExecutor]
IDS = ["threads", "processes"]


@pytest.fixture
def reported():
    gc.collect()  # what earlier tests left to be freed is reported before this test's handler
    seen = []
    previous = treadle.set_unretrieved_handler(lambda exc, name: seen.append(exc))
    try:
        yield seen
    finally:
        treadle.set_unretrieved_handler(previous)


@pytest.mark.parametrize("executor", POOLS, ids=IDS)
def test_strict_mode_raises_the_failure_of_a_fire_and_forget_task(executor, reported):
    with pytest.raises(ExceptionGroup) as info:
        with executor(2, raise_unretrieved=True) as pool:
            pool.submit(math.sqrt, -1)
    assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert "1 task exceptions were never retrieved" in str(info.value)
    gc.collect()
    assert reported == []


@pytest.mark.parametrize("executor", POOLS, ids=IDS)
def test_strict_mode_raises_failures_held_but_never_retrieved(executor, reported):
    pool = executor(2, raise_unretrieved=True)
    futures = [pool.submit(tasks.fail, "a"), pool.submit(tasks.fail, "b")]
    cf.wait(futures, timeout=T)
    with pytest.raises(ExceptionGroup) as info:
        pool.shutdown()
    assert sorted(str(e) for e in info.value.exceptions) == ["a", "b"]
    del futures
    gc.collect()
    assert reported == []


@pytest.mark.parametrize("executor", POOLS, ids=IDS)
def test_strict_mode_lets_retrieved_failures_be(executor, reported):
    with executor(2, raise_unretrieved=True) as pool:
        with pytest.raises(ValueError):
            pool.submit(tasks.fail, "a").result(timeout=T)
        assert isinstance(pool.submit(tasks.fail, "b").exception(timeout=T), ValueError)
        pool.submit(tasks.fail, "c").add_done_callback(lambda f: None)
        assert pool.submit(tasks.square, 3).result(timeout=T) == 9
    gc.collect()
    assert reported == []


@pytest.mark.parametrize("executor", POOLS, ids=IDS)
def test_a_dropped_failure_is_reported_exactly_once_by_default(executor, reported):
    with executor(2) as pool:
        pool.submit(tasks.fail, "dropped")
        kept = pool.submit(tasks.fail, "kept")
        cf.wait([kept], timeout=T)
    gc.collect()
    assert sorted(str(e) for e in reported) == ["dropped", "kept"]
    del kept
    gc.collect()
    assert len(reported) == 2


def test_a_strict_pool_freed_without_shutdown_still_reports_its_failures(reported):
    pool = treadle.ThreadPoolExecutor(1, raise_unretrieved=True)
    future = pool.submit(tasks.fail, "lost")
    cf.wait([future], timeout=T)
    del future, pool
    gc.collect()
    deadline = T
    while not reported and deadline > 0:  # the workers end after their executor is freed
        treadle.sleep(0.05)
        deadline -= 0.05
    assert [str(e) for e in reported] == ["lost"]


def test_kill_workers_of_a_strict_process_pool_does_not_raise_what_it_stopped(reported):
    pool = treadle.ProcessPoolExecutor(1, raise_unretrieved=True)
    running = pool.submit(tasks.sleep, 30)
    while not running.running():
        treadle.sleep(0.01)
    pool.kill_workers()
    assert isinstance(running.exception(timeout=T), treadle.WorkerCrashedError)


@pytest.mark.parametrize("executor", ["ThreadPoolExecutor", "ProcessPoolExecutor"])
def test_at_interpreter_exit_a_strict_pool_reports_and_the_other_pools_finish(executor):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import _process_tasks as tasks
        import treadle
        strict = treadle.{executor}(1, raise_unretrieved=True)
        strict.submit(tasks.fail, "lost at exit")
        other = treadle.ThreadPoolExecutor(1)
        last = other.submit(tasks.sleep, 0.2)
        last.add_done_callback(lambda f: print("other pool done", flush=True))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=T, check=True
    )
    assert done.stdout == "other pool done\n"
    assert "exception in a task was never retrieved" in done.stderr
    assert "ValueError: lost at exit" in done.stderr
    assert "Exception ignored" not in done.stderr
