"""treadle.multiprocessing's Pool and ThreadPool: multiprocessing.pool's interface on treadle's
executors. A worker killed mid-task fails that task alone and the pool goes on; terminate()
stops a running task at once; maxtasksperchild replaces workers; callbacks and error callbacks
run before the result is ready; initializer arguments that can only be inherited reach the
workers; a Manager's proxies pass to treadle's processes and pools. (CPython's own pool and
manager tests run in test_cpython_multiprocessing.py.)"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import _process_tasks as tasks
import pytest
from _mp_tasks import WAIT, run_fresh

import treadle
import treadle.multiprocessing as mp
from treadle.multiprocessing import managers as mp_managers
from treadle.multiprocessing import pool as mp_pool


def started_pid(path: Path) -> int:
    assert tasks.wait_for_file(str(path), WAIT), "the task did not start"
    return int(path.read_text())


def test_a_worker_killed_mid_task_fails_that_task_alone_and_the_pool_goes_on(tmp_path):
    errors = []
    with mp.Pool(2) as pool:
        path = tmp_path / "started"
        victim = pool.apply_async(
            tasks.announce_then_sleep, (str(path), 60), error_callback=errors.append
        )
        others = pool.map_async(tasks.square, range(20))
        os.kill(started_pid(path), signal.SIGKILL)
        with pytest.raises(treadle.WorkerCrashedError, match="SIGKILL") as crashed:
            victim.get(WAIT)
        assert crashed.value.signal == signal.SIGKILL
        assert errors == [crashed.value]
        assert not victim.successful()
        assert others.get(WAIT) == [x * x for x in range(20)]
        # The worker was replaced: the pool serves as many tasks at once as before.
        assert pool.map(tasks.pid_after, [0.2] * 4, chunksize=1) and len(pool._pool) == 2


def test_terminate_stops_a_running_task_at_once(tmp_path):
    pool = mp.Pool(1)
    path = tmp_path / "started"
    running = pool.apply_async(tasks.announce_then_sleep, (str(path), 300))
    # The worker holds the next task too (it runs it next); the last one is still queued.
    queued = [pool.apply_async(tasks.square, (3,)) for _ in range(3)]
    pid = started_pid(path)
    pool.terminate()
    pool.join()
    assert tasks.has_exited(pid)
    with pytest.raises(treadle.WorkerCrashedError, match="SIGTERM"):
        running.get(WAIT)
    with pytest.raises(CancelledError):
        queued[-1].get(WAIT)
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply_async(tasks.square, (3,))


def test_leaving_a_with_block_terminates_the_pool(tmp_path):
    path = tmp_path / "started"
    with mp.Pool(1) as pool:
        running = pool.apply_async(tasks.announce_then_sleep, (str(path), 300))
        pid = started_pid(path)
    pool.join()
    assert tasks.has_exited(pid)
    with pytest.raises(treadle.WorkerCrashedError):
        running.get(WAIT)


def test_a_worker_forked_before_the_pool_was_imported_does_not_import_it():
    # The fork server is made by the first Process, before the program imports the pool, and
    # the program has a thread by its pool (so no newer server can be forked): the workers
    # forked from the first must not import the pool and the executors at each start (tens of
    # milliseconds each, for every task of a pool with maxtasksperchild=1).
    code = """
        import sys, threading
        import treadle.multiprocessing as mp
        from treadle.multiprocessing import fork_server
        child = mp.Process(target=sorted, args=([],))
        child.start()
        child.join()
        first = fork_server.get().pid
        assert "treadle.futures" not in sys.modules
        from _process_tasks import has_module
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
        heavy = ["treadle.futures", "treadle.multiprocessing.pool", "concurrent.futures"]
        with mp.Pool(1, maxtasksperchild=1) as pool:
            print(*pool.map(has_module, heavy * 2, chunksize=1))
        assert fork_server.get().pid == first
        stop.set()
        """
    assert run_fresh(code) == ["False"] * 6


def test_maxtasksperchild_replaces_each_worker_after_that_many_tasks():
    pool = mp.Pool(1, maxtasksperchild=2)
    try:
        pids = [pool.apply(tasks.pid) for _ in range(6)]
    finally:
        pool.close()
        pool.join()
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    assert len(set(pids)) == 3


def test_callbacks_run_with_the_outcome_before_the_result_is_ready():
    seen = []
    with mp.Pool(2) as pool:
        result = pool.apply_async(tasks.square, (7,), callback=seen.append)
        assert result.get(WAIT) == 49 and seen == [49]
        failed = pool.apply_async(tasks.fail, ("no",), error_callback=seen.append)
        failed.wait(WAIT)
        assert failed.ready() and not failed.successful()
        assert isinstance(seen[1], ValueError) and seen[1].args == ("no",)
        assert type(seen[1].__cause__) is mp_pool.RemoteTraceback
        mapped = pool.starmap_async(tasks.add, [(1, 2), (3, 4)], callback=seen.append)
        assert mapped.get(WAIT) == [3, 7] and seen[2] == [3, 7]
        # A failing chunk fails the map at once, once.
        errors = []
        broken = pool.map_async(tasks.fail, ["a", "b"], chunksize=1, error_callback=errors.append)
        with pytest.raises(ValueError):
            broken.get(WAIT)
        assert len(errors) == 1


def test_a_callback_that_raises_is_logged_and_the_result_still_ready(caplog):
    def bad_callback(value):
        raise RuntimeError("callback failed")

    with mp.Pool(1) as pool:
        result = pool.apply_async(tasks.square, (2,), callback=bad_callback)
        assert result.get(WAIT) == 4
    assert "callback failed" in caplog.text


def test_get_and_next_time_out_with_multiprocessing_timeout_error():
    with mp.Pool(1) as pool:
        result = pool.apply_async(tasks.sleep, (1,))
        with pytest.raises(multiprocessing.TimeoutError):
            result.get(0.05)
        with pytest.raises(ValueError, match="not ready"):
            result.successful()
        iterator = pool.imap(tasks.sleep, [1])
        with pytest.raises(multiprocessing.TimeoutError):
            iterator.next(0.05)
        assert iterator.next(WAIT) == 1


def test_map_chunks_as_the_standard_library_and_imap_keeps_order():
    with mp.Pool(2) as pool:
        assert pool.map(tasks.square, range(100)) == [x * x for x in range(100)]
        assert pool.map(tasks.square, iter(range(7)), chunksize=3) == [x * x for x in range(7)]
        assert list(pool.imap(tasks.square, range(50), chunksize=7)) == [x * x for x in range(50)]
        unordered = pool.imap_unordered(tasks.square, iter(range(50)), chunksize=4)
        assert sorted(unordered) == [x * x for x in range(50)]
        with pytest.raises(ValueError):
            pool.map(tasks.square, [1], chunksize=0)


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_threads_sharing_an_imap_take_each_value_once_and_see_a_failed_chunk(method):
    with mp.Pool(2) as pool:
        iterator = getattr(pool, method)(tasks.square, range(6000), chunksize=7)
        taken: list[list[int]] = [[] for _ in range(4)]

        def drain(mine: list[int]) -> None:
            mine.extend(iterator)

        threads = [threading.Thread(target=drain, args=(mine,)) for mine in taken]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert not any(thread.is_alive() for thread in threads)  # each saw the end
        assert sorted(x for mine in taken for x in mine) == [x * x for x in range(6000)]
        if method == "imap":  # each thread saw the values in order
            assert all(mine == sorted(mine) for mine in taken)
        failing = getattr(pool, method)(tasks.fail_on, [1, 2, 3, 4, 5], chunksize=2)
        seen = []
        with pytest.raises(ValueError):
            for value in failing:
                seen.append(value)
        if method == "imap":
            assert seen == [1, 2]  # the first chunk, then the chunk that failed


class Bar:
    """A progress bar as tqdm's: counts what it is told."""

    def __init__(self):
        self.n = 0

    def update(self, n=1):
        self.n += n


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_shows_progress_of_the_calls(method):
    bar = Bar()
    with mp.Pool(2) as pool:
        results = list(getattr(pool, method)(tasks.square, range(10), 3, progress=bar))
    assert sorted(results) == [x * x for x in range(10)]
    assert bar.n == 10


def test_a_context_makes_treadles_pool_with_its_start_method():
    pool = mp.get_context("spawn").Pool(1)
    try:
        assert isinstance(pool, mp_pool.Pool)
        assert pool.apply(tasks.has_module, ("pytest",)) is False  # a fresh interpreter
    finally:
        pool.close()
        pool.join()
    assert isinstance(mp.Pool, type(mp.get_context().Pool))


def test_a_pool_made_without_a_context_takes_the_start_method_the_program_set():
    # A marker module the parent imported: a worker forked from the fork server has it, a
    # spawned one does not.
    check = """
        import xml.dom.minidom
        import _process_tasks as tasks
        SETUP
        with POOL(1) as pool:
            method = pool._ctx.get_start_method() if pool._ctx else "default"
            print(method, pool.apply(tasks.has_module, ("xml.dom.minidom",)))
        """
    treadle_set = check.replace(
        "SETUP", "import treadle.multiprocessing as mp; mp.set_start_method('spawn')"
    ).replace("POOL", "__import__('treadle.multiprocessing.pool').multiprocessing.pool.Pool")
    assert run_fresh(treadle_set) == ["spawn", "False"]
    patched = check.replace(
        "SETUP",
        "import multiprocessing.pool, treadle; treadle.patch(); "
        "multiprocessing.set_start_method('spawn', force=True)",
    ).replace("POOL", "multiprocessing.pool.Pool")
    assert run_fresh(patched) == ["spawn", "False"]
    assert run_fresh(
        check.replace("SETUP", "").replace(
            "POOL", "__import__('treadle.multiprocessing.pool').multiprocessing.pool.Pool"
        )
    ) == ["default", "True"]


def test_a_pool_cannot_be_pickled():
    import pickle

    with mp.Pool(1) as pool, pytest.raises(NotImplementedError):
        pickle.dumps(pool)


def test_thread_pool_has_the_pool_interface_on_treadles_threads():
    seen = []
    with mp_pool.ThreadPool(2) as pool:
        assert pool.apply(tasks.square, (3,)) == 9
        assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]
        assert pool.starmap(tasks.add, [(1, 2)]) == [3]
        assert list(pool.imap(tasks.square, range(5))) == [0, 1, 4, 9, 16]
        failed = pool.apply_async(tasks.fail, ("x",), error_callback=seen.append)
        with pytest.raises(ValueError) as raised:
            failed.get(WAIT)
        assert seen == [raised.value] and raised.value.__cause__ is None
        names = pool.map(lambda _: __import__("threading").current_thread().name, range(4))
        assert all(name.startswith("ThreadPool") for name in names)


def test_a_thread_pools_private_pool_lists_as_many_threads_as_it_has_before_any_task():
    # dask sizes its scheduler on len(pool._pool) of a multiprocessing pool it is given; an
    # empty list there made it submit nothing and wait for ever.
    with mp_pool.ThreadPool(3) as pool:
        assert len(pool._pool) == 3 and all(t.is_alive() for t in pool._pool)
        done = []
        pool.apply_async(tasks.square, (4,), callback=done.append).wait(WAIT)
        assert done == [16] and len(pool._pool) == 3


INITARGS = """
    import multiprocessing, sys
    import treadle.multiprocessing as mp

    def init(lock, q, treadle_lock, conn):
        global Q, LOCK, TREADLE_LOCK, CONN
        Q, LOCK, TREADLE_LOCK, CONN = q, lock, treadle_lock, conn

    def work(x):
        with LOCK, TREADLE_LOCK:
            Q.put(x)
            CONN.send(x)
        return x

    if __name__ == "__main__":
        q = mp.Queue()
        ours, theirs = mp.Pipe()
        # A treadle queue (pickled only for a child being started), a pipe's end (pickled for
        # one receiver, where every worker needs it), the standard library's lock (made in the
        # default context) and one made in treadle's: inherited, by every worker, replacements
        # (maxtasksperchild) included.
        initargs = (multiprocessing.Lock(), q, mp.Lock(), theirs)
        with mp.Pool(2, init, initargs, maxtasksperchild=2) as pool:
            assert pool.map(work, range(6), chunksize=1) == list(range(6))
            print(*sorted(q.get(timeout=30) for _ in range(6)))
            print(*sorted(ours.recv() for _ in range(6)))
"""


def test_initargs_that_can_only_be_inherited_reach_the_workers():
    assert run_fresh(INITARGS) == [str(x) for x in range(6)] * 2


PIPE_END_IN_INITARGS = """
    import treadle.multiprocessing as mp

    def init(conn):
        global CONN
        CONN = conn

    def work(x):
        CONN.send(x)
        return x

    if __name__ == "__main__":
        ours, theirs = mp.Pipe()
        # Alone: a pipe's end pickles (for one receiver), but every worker needs it.
        with mp.Pool(2, init, (theirs,), maxtasksperchild=2) as pool:
            assert pool.map(work, range(6), chunksize=1) == list(range(6))
            print(*sorted(ours.recv() for _ in range(6)))
"""


def test_a_pipes_end_in_initargs_reaches_every_worker():
    assert run_fresh(PIPE_END_IN_INITARGS) == [str(x) for x in range(6)]


def test_a_managers_proxies_pass_to_treadles_processes_and_pools():
    with mp.Manager() as manager:
        # The manager's server is a treadle process, started by the default start method.
        assert type(manager._process) is mp.get_context("forkserver").Process
        shared = manager.dict()
        child = mp.Process(target=tasks.set_item, args=(shared, "process", 1))
        child.start()
        child.join(WAIT)
        with mp.Pool(1) as pool:
            pool.apply(tasks.set_item, (shared, "pool", 2))
        with treadle.ProcessPoolExecutor(1) as executor:
            executor.submit(tasks.set_item, shared, "executor", 3).result(WAIT)
        assert dict(shared) == {"process": 1, "pool": 2, "executor": 3}


def test_a_result_that_cannot_be_pickled_is_a_maybe_encoding_error():
    with mp.Pool(1) as pool:
        with pytest.raises(mp_pool.MaybeEncodingError) as raised:
            pool.apply_async(tasks.unpicklable_result).get(WAIT)
        assert "Holder" in raised.value.value and "lock" in raised.value.exc
        assert pool.apply(tasks.square, (2,)) == 4  # the worker goes on


def test_a_failure_nobody_got_is_reported_when_the_pool_is_joined(caplog):
    pool = mp.Pool(1)
    result = pool.apply_async(tasks.fail, ("lost",))
    result.wait(WAIT)
    assert result.ready() and not result.successful()
    pool.close()
    pool.join()
    assert "was never retrieved" in caplog.text and "lost" in caplog.text


class Registry(mp_managers.BaseManager):
    """A manager of the program's own types."""


Registry.register("make_list", list, mp_managers.ListProxy)


def test_managers_start_their_server_under_treadles_default_start_method():
    managers = mp_managers
    for manager in (managers.SyncManager(), Registry()):
        manager.start()
        try:
            assert type(manager._process) is mp.get_context("forkserver").Process
            if isinstance(manager, Registry):
                assert manager.make_list([3])[0] == 3
        finally:
            manager.shutdown()
    with managers.SyncManager(ctx=mp.get_context("spawn")) as spawned:
        assert type(spawned._process) is mp.get_context("spawn").Process
        assert spawned.list([1, 2])[1] == 2


def test_an_initializer_that_fails_fails_the_tasks_instead_of_restarting_workers_for_ever():
    # The standard library's pool starts a new worker for ever, and the task waits for ever.
    with mp.Pool(1, initializer=tasks.fail, initargs=("no start",)) as pool:
        with pytest.raises(mp_pool.BrokenProcessPool, match="initializer"):
            pool.apply(tasks.square, (2,))


@pytest.mark.parametrize(
    "method, prefix", [("forkserver", "ForkServer"), ("spawn", "Spawn"), ("fork", "Fork")]
)
def test_workers_are_daemonic_pool_workers_named_after_their_start_method(method, prefix):
    # As the standard library's: what joblib looks at before it nests a pool.
    with mp.get_context(method).Pool(1) as pool:
        assert pool.apply(tasks.who_am_i) == (f"{prefix}PoolWorker-{pool._pool[0].pid}", True)
        # A daemonic process may have threads, not children.
        assert pool.apply(tasks.make_a_pool) == (
            "AssertionError: daemonic processes are not allowed to have children"
        )
        assert pool.apply(tasks.thread_pool_map) == [1, 2]


class _ReducingPool(mp_pool.Pool):
    """As joblib's PicklingPool: reducers for the queues its override of the standard pool's
    private ``_setup_queues`` would make."""

    def __init__(self, processes: int) -> None:
        self._forward_reducers = {tasks.Marked: tasks.reduce_forward}
        self._backward_reducers = {tasks.Marked: tasks.reduce_backward}
        super().__init__(processes)

    def _setup_queues(self) -> None:
        raise AssertionError("a treadle Pool has no queues to set up")


def test_a_pool_subclass_reducers_pickle_its_tasks_and_results():
    with _ReducingPool(2) as pool:
        assert pool.apply(tasks.describe, (tasks.Marked("a"),)) == "Arrived a"
        assert pool.map(tasks.describe, [tasks.Marked("b"), 3]) == ["Arrived b", "int 3"]
        assert list(pool.imap(tasks.describe, [tasks.Marked("c")])) == ["Arrived c"]
        back = pool.apply(tasks.make_marked, ("d",))
        assert type(back) is tasks.Returned
        assert back.label == "d"
    # A plain pool pickles them as they are.
    with mp_pool.Pool(1) as pool:
        assert pool.apply(tasks.describe, (tasks.Marked("e"),)) == "Marked e"
        assert type(pool.apply(tasks.make_marked, ("f",))) is tasks.Marked


@pytest.mark.parametrize(
    "make", [lambda: mp_pool.ThreadPool(4), lambda: mp_pool.Pool(2)], ids=["threads", "processes"]
)
def test_callbacks_run_one_at_a_time_on_one_thread_not_the_submitters(make):
    # As the standard library's result handler thread runs them: joblib dispatches its next
    # tasks from callbacks, with state no lock guards.
    threads: list[threading.Thread] = []
    running = [0]
    most = [0]
    guard = threading.Lock()

    def callback(value: object) -> None:
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threads.append(threading.current_thread())
        time.sleep(0.002)
        with guard:
            running[0] -= 1

    with make() as pool:
        results = [pool.apply_async(abs, (-i,), callback=callback) for i in range(20)]
        for result in results:
            result.wait(WAIT)
        mapped = pool.map_async(abs, range(8), chunksize=1, callback=callback)
        mapped.wait(WAIT)
        assert [result.get(WAIT) for result in results] == list(range(20))
        assert mapped.get(WAIT) == list(range(8))
    assert len(threads) == 21
    assert most[0] == 1
    assert len(set(threads)) == 1
    assert threading.current_thread() not in threads


@pytest.mark.parametrize(
    "make", [lambda: mp_pool.ThreadPool(2), lambda: mp_pool.Pool(2)], ids=["threads", "processes"]
)
def test_an_empty_map_async_is_ready_at_once_and_never_calls_its_callback(make):
    # As the standard library's MapResult of no chunks: ready, [], and no callback at all.
    called = []
    with make() as pool:
        for method in (pool.map_async, pool.starmap_async):
            result = method(abs, [], callback=called.append, error_callback=called.append)
            assert result.ready() and result.successful()
            assert result.get(WAIT) == []
        pool.close()
        pool.join()
    assert called == []
