"""What treadle's two pools share from their one base (``treadle.futures.executor``): the same
argument checks with the same messages, ``map`` with ``buffersize`` and ``return_exceptions``,
and the work queued at interpreter exit done."""

from __future__ import annotations

import concurrent.futures as cf
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import _process_tasks as tasks
import pytest

import treadle
from treadle.futures.executor import Executor

T = 30  # seconds: every wait in these tests ends, a hang is a failure
POOLS = [treadle.ThreadPoolExecutor, treadle.ProcessPoolExecutor]
BAD_TIME_LIMITS = [0, -1, math.inf, math.nan]


@pytest.fixture(params=POOLS, ids=["threads", "processes"])
def pool(request):
    with request.param(2) as executor:
        yield executor


def test_both_pools_are_treadle_executors_and_the_standard_library_s():
    assert issubclass(treadle.ThreadPoolExecutor, Executor)
    assert issubclass(treadle.ThreadPoolExecutor, cf.ThreadPoolExecutor)
    assert issubclass(treadle.ProcessPoolExecutor, Executor)
    assert issubclass(treadle.ProcessPoolExecutor, cf.Executor)
    assert treadle.ThreadPoolExecutor.map is treadle.ProcessPoolExecutor.map


@pytest.mark.parametrize("executor", POOLS)
@pytest.mark.parametrize("limit", BAD_TIME_LIMITS)
def test_task_timeout_is_none_or_a_positive_finite_number_in_both_pools(executor, limit):
    with pytest.raises(ValueError, match=r"^task_timeout must be a positive number of seconds"):
        executor(1, task_timeout=limit)


@pytest.mark.parametrize("limit", BAD_TIME_LIMITS)
def test_schedule_timeout_is_none_or_a_positive_finite_number_in_both_pools(pool, limit):
    with pytest.raises(ValueError, match=r"^timeout must be a positive number of seconds or None"):
        pool.schedule(tasks.square, (2,), timeout=limit)


@pytest.mark.parametrize("executor", POOLS)
def test_both_pools_check_workers_and_initializer_alike(executor):
    with pytest.raises(ValueError, match=r"^max_workers must be greater than 0$"):
        executor(0)
    with pytest.raises(TypeError, match=r"^initializer must be a callable$"):
        executor(1, initializer=42)


def test_map_buffersize_is_checked_alike(pool):
    with pytest.raises(ValueError, match="buffersize must be None or > 0"):
        pool.map(tasks.square, [], buffersize=0)
    with pytest.raises(TypeError, match="buffersize must be an integer or None"):
        pool.map(tasks.square, [], buffersize=1.5)


def test_map_with_a_buffer_gives_every_result_in_order(pool):
    results = pool.map(tasks.square, range(20), timeout=T, buffersize=3)
    assert list(results) == [x * x for x in range(20)]


def test_map_return_exceptions_yields_each_failure_in_its_place(pool):
    results = list(pool.map(tasks.fail, ["a", "b"], timeout=T, return_exceptions=True))
    assert [type(r) for r in results] == [ValueError, ValueError]
    assert [str(r) for r in results] == ["a", "b"]
    assert list(pool.map(tasks.add, [1, 2], [10, 20], return_exceptions=True)) == [11, 22]


def test_a_chunk_s_exception_stands_in_for_each_of_its_calls():
    with treadle.ProcessPoolExecutor(2) as pool:
        results = pool.map(tasks.fail, ["a", "b", "c"], chunksize=2, return_exceptions=True)
        assert [str(r) for r in results] == ["a", "a", "c"]


@pytest.mark.parametrize("executor", ["ThreadPoolExecutor", "ProcessPoolExecutor"])
def test_work_queued_at_interpreter_exit_is_done(executor):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import _process_tasks as tasks
        import treadle
        pool = treadle.{executor}(1)
        futures = [pool.submit(tasks.sleep, 0.05) for _ in range(4)]
        futures[-1].add_done_callback(lambda f: print("last done", f.result(), flush=True))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=T, check=True
    )
    assert done.stdout == "last done 0.05\n"
