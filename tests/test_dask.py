"""treadle's executor API on a Dask cluster (``treadle.DaskExecutor``), against real schedulers
and workers on 127.0.0.1 only: a ``LocalCluster`` in this process, and a ``dask scheduler``
with two ``dask worker`` processes started here (each with timeouts) and stopped after."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

import _dask_tasks as dtasks  # noqa: E402
import _process_tasks as tasks  # noqa: E402

import treadle  # noqa: E402
from treadle.futures import DaskExecutor, WorkerCrashedError  # noqa: E402
from treadle.futures.executor import Executor  # noqa: E402

T = 60  # seconds: every wait in these tests ends, a hang is a failure
TESTS = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
DASK = [sys.executable, "-m", "dask"]


def local_cluster(workers: int = 2):
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host=LOOPBACK,
        dashboard_address=f"{LOOPBACK}:0",
    )


@pytest.fixture(scope="module")
def client():
    with local_cluster() as cluster, distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture
def executor(client):
    with DaskExecutor(client) as ex:
        yield ex


def wait_for(predicate, timeout=T, what="the condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_pid(path: Path) -> int:
    wait_for(path.exists, what=f"{path} to be written")
    return int(path.read_text())


def _environment(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


@contextlib.contextmanager
def dask_processes(tmp_path: Path, workers: int, **config: str):
    """A ``dask scheduler`` and ``workers`` ``dask worker`` processes (each one thread, under
    a nanny, as deployed), on 127.0.0.1; ``config``: Dask settings as environment variables.
    Yields the scheduler's address and the processes (the scheduler first); stops them all
    after."""
    env = _environment(**config)
    scheduler_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "dask.log", "wb")
    common = {"env": env, "stdout": log, "stderr": subprocess.STDOUT}
    processes = [
        subprocess.Popen(
            [
                *DASK,
                "scheduler",
                *("--host", LOOPBACK, "--port", "0", "--dashboard-address", f"{LOOPBACK}:0"),
                *("--scheduler-file", str(scheduler_file)),
            ],
            **common,
        )
    ]
    try:
        wait_for(lambda: _address(scheduler_file), what="the scheduler to start")
        address = _address(scheduler_file)
        assert address.startswith(f"tcp://{LOOPBACK}:")
        for number in range(workers):
            processes.append(
                subprocess.Popen(
                    [
                        *(*DASK, "worker", address, "--nthreads", "1", "--host", LOOPBACK),
                        *("--dashboard-address", f"{LOOPBACK}:0", "--name", f"worker-{number}"),
                    ],
                    **common,
                )
            )
        if workers:
            with distributed.Client(address, set_as_default=False, timeout=T) as c:
                c.wait_for_workers(workers, timeout=T)
        yield address, processes
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=T)
        log.close()


def _address(scheduler_file: Path) -> str | None:
    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None  # not yet written, or half


@pytest.fixture(scope="module")
def cluster_processes(tmp_path_factory):
    """Separate scheduler and two worker processes; the scheduler gives up on a task the first
    time its worker dies (``allowed-failures`` 0), so that a crash reaches the future."""
    tmp = tmp_path_factory.mktemp("dask")
    with dask_processes(tmp, 2, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0") as started:
        yield started[0]


# -- the executor API ---------------------------------------------------------------------


def test_a_dask_executor_is_a_treadle_executor_and_reachable_from_treadle():
    assert issubclass(DaskExecutor, Executor)
    assert treadle.DaskExecutor is DaskExecutor
    assert DaskExecutor.map is treadle.ProcessPoolExecutor.map


def test_submit_and_map_give_the_results(executor):
    assert executor.submit(tasks.add, 2, b=3).result(timeout=T) == 5
    assert list(executor.map(tasks.square, range(10), timeout=T)) == [x * x for x in range(10)]
    chunked = executor.map(tasks.add, range(7), range(7), chunksize=3, timeout=T)
    assert list(chunked) == [2 * x for x in range(7)]
    buffered = executor.map(tasks.square, range(20), buffersize=2, timeout=T)
    assert list(buffered) == [x * x for x in range(20)]


def test_functions_of_main_and_lambdas_travel_by_value(executor):
    offset = 10
    assert executor.submit(lambda x: x + offset, 5).result(timeout=T) == 15


def test_an_exception_keeps_its_type_and_the_worker_s_traceback(executor):
    future = executor.submit(tasks.fail, "no good")
    with pytest.raises(ValueError, match=r"^no good$") as info:
        future.result(timeout=T)
    text = "".join(traceback.format_exception(info.value))
    assert "_process_tasks.py" in text
    assert "in fail" in text
    assert isinstance(future.exception(timeout=T), ValueError)


def test_map_return_exceptions_yields_each_failure_in_its_place(executor):
    results = list(executor.map(tasks.fail, ["a", "b"], timeout=T, return_exceptions=True))
    assert [(type(r), str(r)) for r in results] == [(ValueError, "a"), (ValueError, "b")]


def test_its_futures_are_treadle_futures_for_wait_as_completed_and_callbacks(executor):
    futures = [executor.submit(tasks.square, x) for x in range(5)]
    assert all(isinstance(f, treadle.Future) for f in futures)
    done, not_done = treadle.wait(futures, timeout=T)
    assert len(done) == 5 and not not_done
    assert sorted(f.result() for f in treadle.as_completed(futures, timeout=T)) == [0, 1, 4, 9, 16]
    called = threading.Event()
    seen = []
    future = executor.submit(tasks.square, 6)
    future.add_done_callback(lambda f: (seen.append(f.result()), called.set()))
    assert called.wait(T)
    assert seen == [36]


def test_a_done_callback_may_submit_more_work_and_runs_off_dask_s_event_loop(executor):
    chained = []
    threads = []

    def then(future):
        threads.append(threading.current_thread().name)
        chained.append(executor.submit(tasks.square, future.result()))

    executor.submit(tasks.square, 3).add_done_callback(then)
    wait_for(lambda: chained, what="the callback")
    assert chained[0].result(timeout=T) == 81
    assert threads[0].startswith("treadle-dask-executor-")


def test_an_exception_nobody_retrieved_is_reported(executor):
    reported = []
    previous = treadle.set_unretrieved_handler(lambda exc, name: reported.append(exc))
    try:
        future = executor.submit(tasks.fail, "lost")
        treadle.wait([future], timeout=T)
        del future
        wait_for(lambda: reported, what="the report")
    finally:
        treadle.set_unretrieved_handler(previous)
    assert [str(e) for e in reported] == ["lost"]


def test_an_unpicklable_argument_fails_at_submit_naming_it(executor):
    with pytest.raises(TypeError, match=r"cannot pickle args\[1\] \(a _thread\.lock object\)"):
        executor.submit(tasks.add, 1, threading.Lock())


def test_time_limits_are_checked_as_the_other_pools_check_them(client):
    with pytest.raises(ValueError, match=r"^task_timeout must be a positive number"):
        DaskExecutor(client, task_timeout=0)
    with DaskExecutor(client) as ex, pytest.raises(ValueError, match=r"^timeout must be"):
        ex.schedule(tasks.square, (2,), timeout=-1)


def test_no_task_after_shutdown(client):
    ex = DaskExecutor(client)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(tasks.square, 1)


# -- time limits, cancelling ----------------------------------------------------------------


def test_a_task_over_its_time_limit_fails_on_time_and_is_interrupted_on_the_cluster(
    executor, tmp_path
):
    marker = tmp_path / "marker"
    start = time.monotonic()
    future = executor.schedule(
        dtasks.wait_in_treadle_then_mark, (str(marker), 30), timeout=0.5, name="napper"
    )
    with pytest.raises(treadle.TaskTimeoutError, match=r"task 'napper' ran longer than .* 0\.5 s"):
        future.result(timeout=T)
    # On time: the limit counts from the start on the worker; the margin is the way back.
    assert time.monotonic() - start < 10
    wait_for(marker.exists, what="the task to be interrupted on its worker")
    assert executor.submit(tasks.square, 5).result(timeout=T) == 25


def test_task_timeout_limits_a_task_that_never_waits_in_treadle(client):
    with DaskExecutor(client, task_timeout=0.5) as ex:
        start = time.monotonic()
        with pytest.raises(treadle.TaskTimeoutError):
            ex.submit(tasks.sleep, 6).result(timeout=T)
        # Before the task would have ended (it runs on: only treadle's waits can be stopped).
        assert time.monotonic() - start < 5
        assert ex.submit(tasks.square, 4).result(timeout=T) == 16


def test_cancel_stops_a_queued_task_but_not_a_running_one_without_interrupt(client, tmp_path):
    with DaskExecutor(client) as ex:
        # One blocker a worker: they wait until interrupted.
        blockers = [
            ex.submit(dtasks.wait_in_treadle_then_mark, str(tmp_path / f"b{i}"), T)
            for i in range(2)
        ]
        wait_for(lambda: all(f.running() for f in blockers), what="the starts to be told")
        queued = ex.submit(tasks.square, 3)
        assert not queued.running()
        assert queued.cancel()
        assert queued.cancelled()
        assert not blockers[0].cancel()
        assert not blockers[0].cancelled()
        assert all(f.cancel(interrupt=True) for f in blockers)


def test_cancel_with_interrupt_reaches_a_running_task_that_waits_in_treadle(executor, tmp_path):
    marker = tmp_path / "marker"
    future = executor.submit(dtasks.wait_in_treadle_then_mark, str(marker), 30)
    wait_for(future.running, what="the task to start")
    assert future.cancel(interrupt=True)
    assert future.cancelled()
    wait_for(marker.exists, what="the interrupt to reach the task")


def test_shutdown_with_cancel_futures_cancels_what_has_not_started(client, tmp_path):
    ex = DaskExecutor(client)
    marker = tmp_path / "running"
    running = [ex.submit(dtasks.mark_then_sleep, f"{marker}{i}", 1) for i in range(2)]
    wait_for(lambda: all(f.running() for f in running), what="the starts to be told")
    queued = [ex.submit(tasks.square, x) for x in range(5)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert all(isinstance(f.result(timeout=0), int) for f in running)


def test_an_executor_dropped_without_shutdown_lets_go_of_the_cluster(client):
    ex = DaskExecutor(client)
    future = ex.submit(tasks.square, 2)
    assert future.result(timeout=T) == 4
    resolver = ex._tasks.thread
    del ex, future
    gc.collect()
    resolver.join(T)
    assert not resolver.is_alive()


def test_an_initializer_runs_in_every_worker_process(client):
    with DaskExecutor(client, initializer=dtasks.initialize, initargs=("ready",)) as ex:
        assert set(ex.map(dtasks.initialized, range(8), timeout=T)) == {"ready"}


# -- its own cluster, failures --------------------------------------------------------------


def test_without_an_address_it_runs_a_local_cluster_it_closes():
    with DaskExecutor(max_workers=1) as ex:
        cluster = ex.client.cluster
        assert len(cluster.workers) == 1
        assert cluster.scheduler_address.startswith(f"tcp://{LOOPBACK}:")
        assert ex.submit(tasks.square, 9).result(timeout=T) == 81
    assert ex.client.status == "closed"
    assert cluster.status.name == "closed"


def test_separate_scheduler_and_worker_processes_run_its_tasks(cluster_processes):
    with DaskExecutor(cluster_processes) as ex:
        pids = set(ex.map(tasks.pid_after, [0.2] * 6, timeout=T))
        assert os.getpid() not in pids
        assert len(pids) == 2  # both workers
        with pytest.raises(ValueError, match="remote"):
            ex.submit(tasks.fail, "remote").result(timeout=T)


def test_a_worker_killed_mid_task_fails_it_with_worker_crashed_error_and_the_executor_goes_on(
    cluster_processes, tmp_path
):
    with DaskExecutor(cluster_processes) as ex:
        marker = tmp_path / "pid"
        future = ex.schedule(dtasks.mark_then_sleep, (str(marker), 60), name="victim")
        os.kill(read_pid(marker), signal.SIGKILL)
        with pytest.raises(WorkerCrashedError, match="task 'victim'") as info:
            future.result(timeout=T)
        assert info.value.worker.startswith(f"tcp://{LOOPBACK}:")
        assert info.value.worker in str(info.value)
        assert isinstance(info.value, BrokenProcessPool)
        assert ex.submit(tasks.square, 7).result(timeout=T) == 49


def test_a_task_whose_worker_is_killed_is_rerun_on_another_worker(tmp_path):
    # Dask's default: a task whose worker died runs again elsewhere (allowed-failures: 3).
    with local_cluster() as cluster, DaskExecutor(cluster) as ex:
        marker = tmp_path / "pid"
        future = ex.submit(dtasks.mark_then_sleep, str(marker), 1)
        first = read_pid(marker)
        marker.unlink()
        os.kill(first, signal.SIGKILL)
        assert future.result(timeout=T) != first
        assert ex.submit(tasks.square, 8).result(timeout=T) == 64


def test_a_lost_scheduler_fails_the_pending_futures_with_a_clear_error(tmp_path):
    with dask_processes(tmp_path, 0) as (address, (scheduler,)):
        ex = DaskExecutor(address)
        future = ex.submit(tasks.square, 2)  # no worker: it waits
        scheduler.kill()
        lost = f"connection to the Dask scheduler at {address}"
        with pytest.raises(BrokenProcessPool, match=lost):
            future.result(timeout=T)
        # While the client tries to reach it again, nothing is taken that could wait forever.
        with pytest.raises(BrokenProcessPool, match=f"no {lost}"):
            ex.submit(tasks.square, 3)
        ex.shutdown(wait=True)


def test_closing_the_client_under_the_executor_fails_its_pending_futures(client):
    own = distributed.Client(client.scheduler.address, set_as_default=False, timeout=T)
    ex = DaskExecutor(own)
    future = ex.submit(tasks.sleep, 2)
    own.close()
    with pytest.raises(BrokenProcessPool, match=r"did not finish: .*(closed|closing)"):
        future.result(timeout=T)
    ex.shutdown(wait=True)


def test_without_dask_the_error_names_the_extra_to_install():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["distributed"] = None  # as if it were not installed
        import treadle
        try:
            treadle.DaskExecutor()
        except ImportError as error:
            print(error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=T, check=True
    )
    assert "pip install 'treadle[dask]'" in done.stdout


# -- progress bars and statistics ----------------------------------------------------------


def caller_bar(total: int):
    """A tqdm bar of the test's, drawn into a buffer (a caller's bar is counted on, not
    closed)."""
    import io

    tqdm = pytest.importorskip("tqdm")
    return tqdm.tqdm(total=total, file=io.StringIO())


def test_map_counts_the_tasks_on_the_cluster_on_a_progress_bar(executor):
    bar = caller_bar(6)
    out = list(
        executor.map(dtasks.square_or_fail_if_odd, range(6), return_exceptions=True, progress=bar)
    )
    shown = [x if isinstance(x, int) else type(x).__name__ for x in out]
    assert shown == [0, "ValueError", 4, "ValueError", 16, "ValueError"]
    assert bar.n == 6
    assert "failed=3" in bar.postfix
    assert not bar.disable
    bar.close()


def test_a_chunked_map_on_the_cluster_counts_each_call_on_its_bar(executor):
    bar = caller_bar(10)
    assert list(executor.map(tasks.square, range(10), chunksize=3, progress=bar)) == [
        x * x for x in range(10)
    ]
    assert bar.n == 10
    bar.close()


def test_as_completed_counts_the_cluster_s_futures_on_a_progress_bar(executor):
    futures = [executor.submit(tasks.square, x) for x in range(5)]
    bar = caller_bar(5)
    assert sorted(f.result() for f in treadle.as_completed(futures, timeout=T, progress=bar)) == [
        x * x for x in range(5)
    ]
    assert bar.n == 5
    bar.close()


SLEEP = 0.2


def between(value: float | None, low: float, high: float) -> bool:
    return value is not None and low <= value <= high


def test_stats_count_and_time_what_the_executor_ran_on_the_cluster(tmp_path):
    # A cluster of its own: its two workers are free when the test needs them busy.
    with local_cluster() as cluster, DaskExecutor(cluster) as ex:
        addresses = set(ex.client.nthreads())
        started = time.monotonic()
        assert ex.submit(tasks.square, 1).result(T) == 1
        for future in [ex.submit(tasks.sleep, SLEEP) for _ in range(6)]:
            assert future.result(T) == SLEEP
        # Both workers busy: a task behind them has not started, and is cancelled.
        wait_for(lambda: not any(ex.client.processing().values()), what="idle workers")
        busy = [ex.submit(tasks.sleep, 1.0) for _ in range(2)]
        wait_for(lambda: all(f.running() for f in busy), what="both workers to be busy")
        queued = ex.submit(tasks.square, 5)
        assert queued.cancel()
        for future in busy:
            future.result(T)
        with pytest.raises(ValueError):
            ex.submit(tasks.fail, "no").result(T)
        limited = ex.schedule(
            dtasks.wait_in_treadle_then_mark, (str(tmp_path / "mark"), 30), timeout=0.3
        )
        with pytest.raises(treadle.TaskTimeoutError):
            limited.result(T)
        elapsed = time.monotonic() - started
        stats = ex.stats()
    counts = (stats.submitted, stats.done, stats.failed, stats.cancelled, stats.timed_out)
    assert counts == (12, 9, 1, 1, 1)
    assert stats.pending == 0
    # Timed: the tasks that returned or raised, from their start to their outcome's arrival.
    times = stats.task_time
    assert times.count == 10
    assert between(times.p50, SLEEP * 0.9, SLEEP * 3)
    assert between(times.max, 1.0, elapsed)
    # Waits until they started: every task but the one cancelled before it could.
    waits = stats.queue_wait
    assert waits.count == 11
    assert between(waits.max, SLEEP * 1.5, elapsed)
    assert {w.name for w in stats.workers} <= addresses
    assert sum(w.tasks for w in stats.workers) == 10
    assert between(sum(w.busy for w in stats.workers), SLEEP * 6 + 2.0, elapsed * 2)
    assert all(w.pid is None and 0 <= w.busy_fraction <= 1 for w in stats.workers)
    assert stats.restarts is None
    assert stats.uptime >= elapsed
    # Once the executor let go of the cluster, no worker serves it; its figures stay.
    assert not any(w.alive for w in ex.stats().workers)
    assert ex.stats().done == 9


def test_stats_list_the_cluster_s_workers_while_the_executor_serves(executor):
    executor.submit(tasks.square, 2).result(T)
    workers = executor.stats().workers
    assert {w.name for w in workers} == set(executor.client.nthreads())
    assert all(w.alive and w.lifetime > 0 for w in workers)


def test_an_executor_made_while_stats_are_off_gathers_none(client):
    from treadle import _treadle

    _treadle._set_stats_enabled(False)
    try:
        with DaskExecutor(client) as ex:
            assert ex.submit(tasks.square, 3).result(T) == 9
    finally:
        _treadle._set_stats_enabled(True)
    with pytest.raises(RuntimeError, match=r"gathers no statistics.*TREADLE_STATS=0"):
        ex.stats()


def test_treadle_run_stats_reports_a_pool_run_on_the_cluster(cluster_processes, tmp_path):
    under, _, on_dask = _run_program(
        tmp_path, "-m", "treadle", "run", "--stats", "--cluster", cluster_processes
    )
    assert under.returncode == 0, under.stderr
    assert under.stdout == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n144\n"
    assert on_dask
    assert "statistics of 1 pool(s)" in under.stderr
    [line] = [x for x in under.stderr.splitlines() if x.startswith("ProcessPoolExecutor-")]
    assert line.split()[1:6] == ["11", "11", "0", "0", "0"]


# -- unmodified programs on a cluster -------------------------------------------------------

PROGRAM = """\
import concurrent.futures
import os
import sys

WHERE = sys.argv[1]


def square(x):
    # Where it ran: which process, and whether that process has Dask loaded.
    with open(WHERE, "a") as where:
        where.write(f"{os.getpid()} {'distributed' in sys.modules}\\n")
    return x * x


if __name__ == "__main__":
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        print(list(pool.map(square, range(10))))
        print(pool.submit(square, 12).result())
"""


def _run_program(tmp_path: Path, *prefix: str, env: dict[str, str] | None = None):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    where = tmp_path / f"where-{len(list(tmp_path.iterdir()))}"
    done = subprocess.run(
        [sys.executable, *prefix, str(script), str(where)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = where.read_text().splitlines() if where.exists() else []
    ran = [line.split() for line in lines]
    pids = {int(pid) for pid, _ in ran}
    # Every task ran in a process with Dask, or every one in a process without.
    assert len({dask for _, dask in ran}) <= 1, ran
    return done, pids, bool(ran) and ran[0][1] == "True"


def _worker_pids(address: str) -> set[int]:
    with distributed.Client(address, set_as_default=False, timeout=T) as c:
        return set(c.run(os.getpid).values())


def test_treadle_run_cluster_runs_an_unmodified_pool_program_on_the_cluster(
    cluster_processes, tmp_path
):
    plain, _, plain_on_dask = _run_program(tmp_path)
    under, cluster_pids, on_dask = _run_program(
        tmp_path, "-m", "treadle", "run", "--cluster", cluster_processes
    )
    assert plain.returncode == 0, plain.stderr
    assert under.returncode == 0, under.stderr
    assert under.stdout == plain.stdout
    assert cluster_pids and cluster_pids <= _worker_pids(cluster_processes)
    assert on_dask and not plain_on_dask


def test_runs_of_a_program_on_one_cluster_never_share_the_globals_of_main(
    cluster_processes, tmp_path
):
    # Dask's workers outlive programs; a program's __main__ globals (here, where its tasks
    # write) are its own on them, as in a process pool's fresh workers.
    for _ in range(2):
        under, pids, _ = _run_program(
            tmp_path, "-m", "treadle", "run", "--cluster", cluster_processes
        )
        assert under.returncode == 0, under.stderr
        assert pids and pids <= _worker_pids(cluster_processes)


def test_the_treadle_cluster_variable_does_the_same(cluster_processes, tmp_path):
    env = {**os.environ, "TREADLE_CLUSTER": cluster_processes}
    under, pids, _ = _run_program(tmp_path, "-m", "treadle", "run", env=env)
    assert under.returncode == 0, under.stderr
    assert under.stdout == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n144\n"
    assert pids and pids <= _worker_pids(cluster_processes)


def test_treadle_run_cluster_local_starts_a_local_cluster(tmp_path):
    under, pids, on_dask = _run_program(tmp_path, "-m", "treadle", "run", "--cluster", "local")
    assert under.returncode == 0, under.stderr
    assert under.stdout == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n144\n"
    assert pids and on_dask


def test_treadle_run_says_when_the_cluster_is_out_of_reach(tmp_path):
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    under, _, _ = _run_program(
        tmp_path, "-m", "treadle", "run", "--cluster", f"tcp://{LOOPBACK}:9", env=env
    )
    assert under.returncode == 2
    assert "cannot reach the Dask cluster" in under.stderr
    assert under.stdout == ""


def test_patch_with_a_cluster_makes_process_pools_dask_executors(cluster_processes):
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import concurrent.futures
        import treadle
        import _process_tasks as tasks
        with treadle.patched(cluster={cluster_processes!r}):
            with concurrent.futures.ProcessPoolExecutor() as pool:
                print(isinstance(pool, treadle.DaskExecutor), pool.submit(tasks.square, 3).result())
        print(concurrent.futures.ProcessPoolExecutor.__module__)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True 9\nconcurrent.futures.process\n"
