"""treadle.ProcessPoolExecutor: concurrent.futures semantics, and a pool that heals itself,
times out and interrupts tasks, and moves large buffers through shared memory."""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import _process_tasks as tasks
import pytest
from _mp_tasks import run_fresh

import treadle

WAIT = 30  # seconds: every wait in these tests ends, a hang is a failure


@pytest.fixture
def pool():
    with treadle.ProcessPoolExecutor(2) as executor:
        yield executor


def wait_for(condition, timeout=WAIT, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    try:
        return status.read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for_pid_file(path: Path) -> int:
    assert wait_for(path.exists), f"{path} never appeared"
    return int(path.read_text())


# -- the standard library's semantics ---------------------------------------------------------


def test_submit_returns_a_future_with_the_result(pool):
    future = pool.submit(tasks.add, 2, b=3)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(WAIT) == 5


def test_map_keeps_order_with_any_chunksize(pool):
    expected = [x * x for x in range(50)]
    assert list(pool.map(tasks.square, range(50), timeout=WAIT)) == expected
    assert list(pool.map(tasks.square, range(50), timeout=WAIT, chunksize=7)) == expected


def test_map_of_several_iterables_stops_at_the_shortest_with_any_chunksize(pool):
    expected = [a + b for a, b in zip(range(50), range(100, 140), strict=False)]
    for chunksize in (1, 7, 100):
        results = pool.map(tasks.add, range(50), range(100, 140), chunksize=chunksize)
        assert list(results) == expected


@pytest.mark.parametrize("chunksize", [1, 4])
def test_map_submits_through_a_submit_set_on_the_pool_as_the_standard_library_does(pool, chunksize):
    # tqdm.contrib.concurrent.process_map counts tasks so: it sets pool.submit, then maps.
    submitted = []
    own_submit = pool.submit

    def counting_submit(*args, **kwargs):
        future = own_submit(*args, **kwargs)
        submitted.append(future)
        return future

    pool.submit = counting_submit
    try:
        assert list(pool.map(tasks.add, range(10), range(10), chunksize=chunksize)) == [
            2 * i for i in range(10)
        ]
        assert list(pool.map(tasks.square, range(10), chunksize=chunksize)) == [
            i * i for i in range(10)
        ]
    finally:
        del pool.submit
    assert len(submitted) == 2 * -(-10 // chunksize)
    assert all(future.done() for future in submitted)


def test_many_tiny_tasks_all_resolve_in_order(pool):
    futures = [pool.submit(tasks.square, i) for i in range(5000)]
    assert [f.result(WAIT) for f in futures] == [i * i for i in range(5000)]
    # A long task among them is not lost, and the tasks after it still run.
    slow = pool.submit(tasks.sleep, 0.2)
    after = [pool.submit(tasks.square, i) for i in range(100)]
    assert [f.result(WAIT) for f in after] == [i * i for i in range(100)]
    assert slow.result(WAIT) == 0.2


def test_map_with_buffersize_submits_lazily(pool):
    def numbers():
        yield from range(1000)

    results = pool.map(tasks.square, numbers(), timeout=WAIT, buffersize=4)
    assert next(results) == 0
    assert len(pool._tasks) <= 4
    assert sum(results) == sum(x * x for x in range(1, 1000))


def test_map_rejects_bad_chunksize_and_buffersize(pool):
    with pytest.raises(ValueError):
        pool.map(tasks.square, [1], chunksize=0)
    with pytest.raises(ValueError):
        pool.map(tasks.square, [1], buffersize=0)
    with pytest.raises(TypeError):
        pool.map(tasks.square, [1], buffersize=2.0)


def test_exception_carries_the_remote_traceback(pool):
    future = pool.submit(tasks.fail, "no")
    with pytest.raises(ValueError, match="no") as info:
        future.result(WAIT)
    assert "_process_tasks.py" in str(info.value.__cause__)


def test_initializer_runs_in_every_worker():
    with treadle.ProcessPoolExecutor(1, initializer=tasks.remember, initargs=(42,)) as pool:
        assert pool.submit(tasks.remembered).result(WAIT) == [42]


def test_failing_initializer_breaks_the_pool():
    with treadle.ProcessPoolExecutor(1, initializer=tasks.fail, initargs=("init",)) as pool:
        future = pool.submit(tasks.square, 3)
        with pytest.raises(BrokenProcessPool, match="initializer"):
            future.result(WAIT)
        with pytest.raises(BrokenProcessPool):
            pool.submit(tasks.square, 3)


def test_constructor_checks_arguments_as_the_standard_library_does():
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        treadle.ProcessPoolExecutor(0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        treadle.ProcessPoolExecutor(1, initializer=3)
    with pytest.raises(ValueError, match="max_tasks_per_child must be >= 1"):
        treadle.ProcessPoolExecutor(1, max_tasks_per_child=0)


def test_submit_after_shutdown_raises_runtime_error():
    pool = treadle.ProcessPoolExecutor(1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(tasks.square, 2)


def test_shutdown_waits_for_queued_tasks():
    pool = treadle.ProcessPoolExecutor(1)
    futures = [pool.submit(tasks.sleep, 0.01) for _ in range(5)]
    pool.shutdown(wait=True)
    assert all(f.done() and f.result() == 0.01 for f in futures)


def test_shutdown_cancel_futures_cancels_the_queued_ones(tmp_path):
    pool = treadle.ProcessPoolExecutor(1)
    marker = tmp_path / "pid"
    running = pool.submit(tasks.announce_then_sleep, str(marker), 0.3)
    wait_for_pid_file(marker)
    queued = [pool.submit(tasks.square, i) for i in range(6)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(WAIT) is None
    # One task waits in the worker's own queue (prefetch); the rest never left the pool.
    assert all(f.cancelled() for f in queued[1:])
    assert queued[0].result(WAIT) == 0


def test_cancel_of_a_queued_task_succeeds_and_of_a_running_one_fails(tmp_path):
    with treadle.ProcessPoolExecutor(1) as pool:
        marker = tmp_path / "pid"
        running = pool.submit(tasks.announce_then_sleep, str(marker), 0.5)
        wait_for_pid_file(marker)
        queued = [pool.submit(tasks.square, i) for i in range(4)]
        # As the standard library's: a task a worker holds is running, one in the queue is not.
        assert running.running() and not queued[-1].running()
        assert "state=running" in repr(running) and "state=pending" in repr(queued[-1])
        assert not running.cancel()
        assert queued[-1].cancel()
        assert not queued[-1].running()
        assert queued[-1].cancelled()
        assert [f.result(WAIT) for f in queued[:-1]] == [0, 1, 4]
        assert not running.running() and running.done()


def test_wait_and_as_completed_see_process_futures(pool):
    futures = [pool.submit(tasks.square, i) for i in range(6)]
    done, _ = concurrent.futures.wait(futures, timeout=WAIT)
    assert len(done) == 6
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, WAIT)) == [
        0,
        1,
        4,
        9,
        16,
        25,
    ]


# -- pickling ---------------------------------------------------------------------------------


def test_lambdas_and_closures_run():
    offset = 10
    with treadle.ProcessPoolExecutor(1) as pool:
        assert pool.submit(lambda x: x + offset, 1).result(WAIT) == 11
        assert list(pool.map(lambda x: x * offset, [1, 2], timeout=WAIT)) == [10, 20]


def test_unpicklable_argument_fails_at_submit_naming_its_path(pool):
    argument = tasks.Holder(tasks.Holder(threading.Lock()))
    with pytest.raises(TypeError) as info:
        pool.submit(tasks.same, argument)
    message = str(info.value)
    assert "args[0].inner.inner" in message
    assert "_thread.lock" in message


def test_unpicklable_keyword_argument_is_named(pool):
    with pytest.raises(TypeError, match=r"kwargs\['b'\]"):
        pool.submit(tasks.add, 1, b=threading.Lock())


def test_unpicklable_result_fails_its_own_future_only(pool):
    bad = pool.submit(tasks.unpicklable_result)
    good = pool.submit(tasks.square, 4)
    with pytest.raises(TypeError, match=r"result\.inner"):
        bad.result(WAIT)
    assert good.result(WAIT) == 16


def test_a_result_the_parent_cannot_unpickle_fails_its_own_future_only(pool):
    bad = pool.submit(tasks.unloadable_result)
    good = pool.submit(tasks.square, 5)
    with pytest.raises(ValueError, match="cannot be loaded here"):
        bad.result(WAIT)
    assert good.result(WAIT) == 25
    assert pool.submit(tasks.square, 6).result(WAIT) == 36


def test_a_result_whose_pickling_exits_fails_its_future_with_that_exit(pool):
    # As in the standard library: the SystemExit is the task's outcome, not a worker crash.
    with pytest.raises(SystemExit):
        pool.submit(tasks.exit_when_result_pickled).result(WAIT)
    assert pool.submit(tasks.square, 3).result(WAIT) == 9


@contextlib.contextmanager
def supervisor_thread_stuck(pool):
    """Keeps the pool's supervisor thread in a done-callback, where it reads no answers, for
    the block."""
    release = threading.Event()
    stuck = threading.Event()

    def hold_the_supervisor_thread(_):
        stuck.set()
        release.wait(WAIT)

    first = pool.submit(tasks.square, 2)
    first.add_done_callback(hold_the_supervisor_thread)
    try:
        assert stuck.wait(WAIT)
        yield
    finally:
        release.set()
    assert first.result(WAIT) == 4


def test_a_thread_waiting_on_a_future_reads_its_answer_itself(pool):
    # The supervisor thread, stuck, reads no answers meanwhile; a thread that waits on a task's
    # future reads the worker's answer and resolves the future itself.
    with supervisor_thread_stuck(pool):
        second = pool.submit(tasks.square, 3)
        time.sleep(0.1)
        assert not second.done()  # its answer is read by nobody meanwhile
        # Each wait reads for a moment: one of them finds the answer once it has come (well
        # before the supervisor thread would be let go).
        deadline = time.monotonic() + WAIT / 3
        while not second.done() and time.monotonic() < deadline:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                second.result(timeout=0.01)
        assert second.result(timeout=0) == 9


def test_submissions_keep_the_workers_fed_while_the_supervisor_thread_is_busy(pool, tmp_path):
    # The supervisor thread tops workers up as they answer; while it cannot (here stuck in a
    # done-callback; in a program, waiting for the interpreter a submitting thread holds), the
    # submissions read the answers and top the workers up themselves.
    log = tmp_path / "log"
    with supervisor_thread_stuck(pool):
        futures = [pool.submit(tasks.append_line, str(log), str(i)) for i in range(300)]

        def all_ran():
            pool.submit(tasks.square, 0)  # a submission now and then, as a program makes
            return log.exists() and len(log.read_text().splitlines()) == 300

        assert wait_for(all_ran, timeout=10, interval=0.002)
    assert all(future.result(WAIT) is None for future in futures)
    assert sorted(map(int, log.read_text().splitlines())) == list(range(300))


def test_a_forked_child_leaves_its_parents_pool_alone(pool):
    # A child forked from a process with a pool (as the standard library's fork-context pools
    # make theirs) has none of the pool running; at its exit it must not shut it down: the pool's
    # mutex may have been copied held by a thread the child lacks (the child then hung for ever
    # at exit), and its sockets are the parent's workers'.
    assert pool.submit(tasks.square, 3).result(WAIT) == 9
    pids = sorted(pool.worker_pids)
    # Some tasks wait in the queue at the fork: the child's copy of the pool has them too.
    sleeping = [pool.submit(tasks.sleep, 0.1) for _ in range(12)]

    def child():
        from treadle.futures import executor

        # Nothing to shut down at exit, and shutting the inherited pool down does nothing
        # (it would drop the queued tasks of its copy and return their ids).
        assert not list(executor._live_executors)
        assert pool._supervisor.shutdown(True) == []

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(WAIT)
    assert process.exitcode == 0
    assert [f.result(WAIT) for f in sleeping] == [0.1] * 12
    assert [f.result(WAIT) for f in [pool.submit(tasks.square, i) for i in range(20)]] == [
        i * i for i in range(20)
    ]
    assert sorted(pool.worker_pids) == pids


def test_done_callbacks_never_run_in_the_thread_that_waits(pool):
    # A waiting thread that reads answers resolves only futures without done-callbacks: a
    # callback taking a lock that the waiting thread holds would otherwise never get it.
    lock = threading.Lock()
    ran = []

    def callback(_):
        acquired = lock.acquire(timeout=5)
        ran.append((threading.get_ident(), acquired))
        if acquired:
            lock.release()

    for i in range(100):
        future = pool.submit(tasks.square, i)
        future.add_done_callback(callback)
        with lock:
            assert future.result(WAIT) == i * i
        assert wait_for(lambda i=i: len(ran) == i + 1)
    assert all(acquired for _, acquired in ran)
    assert threading.get_ident() not in {ident for ident, _ in ran}


def test_answers_read_by_a_waiting_thread_are_each_its_own_tasks(pool):
    # While waiting threads read answers, every kind of answer still reaches its own future:
    # values, exceptions, values carried in shared memory, values the parent cannot load.
    big = 1 << 20
    for round_ in range(60):
        futures = [
            pool.submit(tasks.square, round_),
            pool.submit(tasks.fail, f"round {round_}"),
            pool.submit(tasks.make_bytes, big),
            pool.submit(tasks.unloadable_result),
            pool.submit(tasks.add, round_, b=1),
        ]
        assert futures[0].result(WAIT) == round_ * round_
        with pytest.raises(ValueError, match=f"round {round_}$"):
            futures[1].result(WAIT)
        assert futures[2].result(WAIT) == b"x" * big
        with pytest.raises(ValueError, match="cannot be loaded here"):
            futures[3].result(WAIT)
        assert futures[4].result(WAIT) == round_ + 1
    done_from_threads = []

    def wait_all(start):
        fs = [pool.submit(tasks.add, start, b=k) for k in range(50)]
        done_from_threads.append([f.result(WAIT) for f in fs] == [start + k for k in range(50)])

    threads = [threading.Thread(target=wait_all, args=(100 * t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert done_from_threads == [True] * 4


def test_the_supervisor_shows_the_garbage_collector_the_task_table_it_holds(pool):
    # It holds the pool's tasks (for waiting threads that read their answers), whose futures
    # hold the pool, which holds it: a cycle the collector must see whole to free.
    assert any(held is pool._tasks for held in gc.get_referents(pool._supervisor))


def test_map_frees_each_result_the_caller_drops(pool):
    # As the standard library's map (CPython issue 14406), with and without chunks.
    for chunksize in (1, 3):
        for item in pool.map(tasks.make_item, range(7), timeout=WAIT, chunksize=chunksize):
            ref = weakref.ref(item)
            del item
            gc.collect()
            assert ref() is None


def test_the_pool_keeps_no_callable_once_its_task_is_done(pool):
    # A bound method submitted and dropped: its object is freed once the task is done, even
    # while the pool waits for more work.
    item = tasks.Item()
    freed = threading.Event()
    ref = weakref.ref(item, lambda _: freed.set())
    future = pool.submit(item.method)
    del item
    assert future.result(WAIT) == 1
    assert freed.wait(WAIT), ref()


MAIN_INITIALIZER = textwrap.dedent(
    """
    import multiprocessing, threading, treadle

    SETTING = LOCK = None  # the initializer sets them in each worker; the parent's stay None

    def init(value, lock):
        global SETTING, LOCK
        SETTING, LOCK = value, lock

    def read(_):
        with LOCK:
            return SETTING

    if __name__ == "__main__":
        if {threaded!r}:  # a parent with a thread has fresh interpreters for workers
            threading.Thread(target=threading.Event().wait, daemon=True).start()
        with multiprocessing.Manager() as manager:
            initargs = ("set", manager.Lock())  # a manager's lock is a picklable proxy
            with treadle.ProcessPoolExecutor(2, initializer=init, initargs=initargs) as pool:
                print(sorted(set(pool.map(read, range(20)))), SETTING)
        try:
            lock = multiprocessing.Lock()
            spawn = multiprocessing.get_context("spawn")
            initargs = ("set", lock)
            treadle.ProcessPoolExecutor(1, mp_context=spawn, initializer=init, initargs=initargs)
        except Exception as error:
            print(type(error).__name__, error)
    """
)


@pytest.mark.parametrize("threaded", [False, True], ids=["forked workers", "fresh workers"])
def test_an_initializer_from_main_sets_globals_its_tasks_see(tmp_path, threaded):
    # The classic pattern, in a script: functions of __main__ travel by value, and still share
    # one module namespace in each worker.
    script = tmp_path / "script.py"
    script.write_text(MAIN_INITIALIZER.format(threaded=threaded))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['set'] None"
    # A multiprocessing lock travels only by inheritance: a spawned worker cannot be handed one,
    # which is said at construction (forked workers inherit it: test_process_fork_context.py).
    assert lines[1].startswith("RuntimeError cannot pickle initargs[1]._semlock"), lines


def test_unpicklable_exception_still_fails_the_future(pool):
    with pytest.raises(ValueError):
        pool.submit(tasks.fail, "plain").result(WAIT)


# -- large buffers ----------------------------------------------------------------------------


def test_large_numpy_arrays_travel_both_ways():
    numpy = pytest.importorskip("numpy")
    array = numpy.arange(2_000_000, dtype=numpy.float64)
    with treadle.ProcessPoolExecutor(1) as pool:
        back = pool.submit(tasks.same, array).result(WAIT)
    assert numpy.array_equal(back, array)
    back[0] = -1.0  # the result is writable, like the standard library's


def test_large_bytes_and_memoryviews_travel_through_shared_memory(pool):
    data = os.urandom(3 << 20)
    assert pool.submit(tasks.same, data).result(WAIT) == data
    assert pool.submit(tasks.length, memoryview(data)).result(WAIT) == len(data)
    assert pool.submit(tasks.make_bytes, 4 << 20).result(WAIT) == b"x" * (4 << 20)


def test_no_descriptor_leaks_after_large_transfers(pool):
    pool.submit(tasks.square, 1).result(WAIT)
    assert wait_for(lambda: len(pool.worker_pids) == 2)
    fds = set(os.listdir("/proc/self/fd"))
    data = os.urandom(1 << 20)
    for _ in range(10):
        assert pool.submit(tasks.length, data).result(WAIT) == len(data)
        assert len(pool.submit(tasks.make_bytes, 1 << 20).result(WAIT)) == 1 << 20
    assert len(set(os.listdir("/proc/self/fd")) - fds) == 0


# -- healing, timeouts, interrupts -----------------------------------------------------------


KILLS = 50


def test_killing_workers_mid_task_fails_exactly_those_tasks(tmp_path):
    with treadle.ProcessPoolExecutor(2) as pool:
        ordinary = []
        victims = []
        for round in range(KILLS):
            marker = tmp_path / f"victim-{round}"
            ordinary += [pool.submit(tasks.square, i) for i in range(3)]
            victim = pool.submit(tasks.announce_then_sleep, str(marker), 60)
            ordinary += [pool.submit(tasks.square, i) for i in range(3)]
            os.kill(wait_for_pid_file(marker), signal.SIGKILL)
            victims.append(victim)
        for victim in victims:
            with pytest.raises(treadle.WorkerCrashedError) as info:
                victim.result(WAIT)
            assert "SIGKILL" in str(info.value)
            assert "announce_then_sleep" in str(info.value)
        assert [f.result(WAIT) for f in ordinary] == [0, 1, 4] * (2 * KILLS)
        assert wait_for(lambda: len(pool.worker_pids) == 2)
        assert all(pid_alive(pid) for pid in pool.worker_pids)


def test_a_burst_of_kills_fails_only_the_running_tasks_and_the_pool_recovers():
    # Kills from outside land on workers at every stage, replacements still starting included:
    # none of it is a start failure of the pool's own, so nothing but running tasks fails.
    with treadle.ProcessPoolExecutor(2) as pool:
        assert pool.submit(tasks.square, 2).result(WAIT) == 4
        futures = [pool.submit(tasks.sleep, 0.002) for _ in range(1000)]
        kills = 0
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            for pid in pool.worker_pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.001)
        failed = []
        for future in futures:
            try:
                assert future.result(WAIT) == 0.002
            except treadle.WorkerCrashedError as error:
                failed.append(error)
        assert kills > 2
        assert len(failed) <= kills
        assert all(error.signal == signal.SIGKILL for error in failed)
        assert pool.submit(tasks.square, 3).result(WAIT) == 9


def test_worker_crash_is_a_broken_process_pool_naming_exit_code_and_pid(pool):
    future = pool.submit(tasks.exit_with, 3)
    with pytest.raises(BrokenProcessPool) as info:
        future.result(WAIT)
    error = info.value
    assert isinstance(error, treadle.WorkerCrashedError)
    assert error.exitcode == 3
    assert f"pid {error.pid}" in str(error)
    assert "exited with code 3" in str(error)
    assert pool.submit(tasks.square, 5).result(WAIT) == 25


def test_task_past_its_timeout_fails_and_the_next_one_runs():
    with treadle.ProcessPoolExecutor(1) as pool:
        slow = pool.schedule(tasks.sleep, (30,), timeout=0.2, name="slow one")
        following = pool.submit(tasks.square, 6)
        with pytest.raises(treadle.TaskTimeoutError, match="slow one"):
            slow.result(WAIT)
        assert following.result(WAIT) == 36


def test_pool_task_timeout_applies_to_every_submit():
    with treadle.ProcessPoolExecutor(1, task_timeout=0.2) as pool:
        with pytest.raises(treadle.TaskTimeoutError):
            pool.submit(tasks.sleep, 30).result(WAIT)
        assert pool.submit(tasks.sleep, 0.01).result(WAIT) == 0.01


def test_timeout_counts_from_start_not_from_submit():
    with treadle.ProcessPoolExecutor(1) as pool:
        first = pool.submit(tasks.sleep, 0.3)
        second = pool.schedule(tasks.sleep, (0.1,), timeout=0.25)
        assert first.result(WAIT) == 0.3
        assert second.result(WAIT) == 0.1


def test_cancel_interrupt_frees_the_worker_within_100_ms(tmp_path):
    with treadle.ProcessPoolExecutor(1) as pool:
        marker = tmp_path / "pid"
        running = pool.submit(tasks.announce_then_sleep, str(marker), 60)
        pid = wait_for_pid_file(marker)
        start = time.monotonic()
        assert running.cancel(interrupt=True) is True
        assert wait_for(lambda: not pid_alive(pid), timeout=WAIT, interval=0.001)
        elapsed = time.monotonic() - start
        assert elapsed < 0.1, f"the worker took {elapsed * 1000:.0f} ms to go"
        assert running.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            running.result(WAIT)
        assert pool.submit(tasks.square, 7).result(WAIT) == 49


def test_cancel_interrupt_of_a_prefetched_task_skips_it(tmp_path):
    with treadle.ProcessPoolExecutor(1) as pool:
        marker = tmp_path / "pid"
        running = pool.submit(tasks.announce_then_sleep, str(marker), 0.3)
        wait_for_pid_file(marker)
        skipped = pool.submit(tasks.announce_then_sleep, str(tmp_path / "never"), 0)
        assert skipped.cancel(interrupt=True)
        assert running.result(WAIT) is None
        assert pool.submit(tasks.square, 2).result(WAIT) == 4
        assert not (tmp_path / "never").exists()


def test_cancel_interrupt_stops_a_task_begun_before_the_pool_read_its_worker_ready(tmp_path):
    # A new worker runs its first task right after it says it is ready. A cancel(interrupt=True)
    # that comes before the pool has read that READY must still stop the task if the worker began
    # it, not claim success and let it run. Here the pool's supervisor thread is kept from its
    # sockets (it unpickles another task's result, slowly) from before the new worker is ready
    # until after the cancel.
    hold, go = tmp_path / "hold", tmp_path / "go"
    busy, begun = tmp_path / "busy", tmp_path / "begun"
    with treadle.ProcessPoolExecutor(
        2, initializer=tasks.wait_while_exists, initargs=(str(hold),)
    ) as pool:
        assert len({f.result(WAIT) for f in [pool.submit(tasks.pid_after, 0.2) for _ in "ab"]}) == 2
        slow = pool.submit(
            tasks.announce_then_return_slow_to_unpickle, str(busy), str(go), str(hold), str(begun)
        )
        busy_pid = wait_for_pid_file(busy)
        [idle_pid] = set(pool.worker_pids) - {busy_pid}
        hold.touch()  # the replacement of the idle worker waits in its initializer
        os.kill(idle_pid, signal.SIGKILL)
        assert wait_for(lambda: len(set(pool.worker_pids) - {busy_pid, idle_pid}) == 1)
        [new_pid] = set(pool.worker_pids) - {busy_pid}
        long = pool.submit(tasks.announce_then_sleep, str(begun), 60)
        go.touch()
        # The supervisor thread unpickles slow's result: it lets the new worker go on (READY,
        # then the long task), and reads nothing until 0.3 s after the task has begun.
        assert wait_for_pid_file(begun) == new_pid
        assert long.cancel(interrupt=True)
        assert wait_for(lambda: not pid_alive(new_pid), timeout=5), (
            "the cancelled task still runs 5 s later"
        )
        assert long.cancelled()
        assert slow.result(WAIT) is None
        assert pool.submit(tasks.square, 3).result(WAIT) == 9


def test_max_tasks_per_child_recycles_workers():
    with treadle.ProcessPoolExecutor(1, max_tasks_per_child=2) as pool:
        pids = [pool.submit(tasks.pid).result(WAIT) for _ in range(6)]
    assert len(set(pids)) == 3
    assert all(pids.count(p) == 2 for p in set(pids))


def test_terminate_workers_fails_running_tasks_and_cancels_queued(tmp_path):
    pool = treadle.ProcessPoolExecutor(1)
    marker = tmp_path / "pid"
    running = pool.submit(tasks.announce_then_sleep, str(marker), 60)
    pid = wait_for_pid_file(marker)
    queued = [pool.submit(tasks.square, i) for i in range(3)]
    pool.terminate_workers()
    with pytest.raises(treadle.WorkerCrashedError, match="SIGTERM"):
        running.result(WAIT)
    assert all(f.done() for f in queued)
    assert wait_for(lambda: not pid_alive(pid))


def test_kill_workers_stops_the_pool(tmp_path):
    pool = treadle.ProcessPoolExecutor(2)
    marker = tmp_path / "pid"
    running = pool.submit(tasks.announce_then_sleep, str(marker), 60)
    wait_for_pid_file(marker)
    pool.kill_workers()
    with pytest.raises(treadle.WorkerCrashedError, match="SIGKILL"):
        running.result(WAIT)
    with pytest.raises(RuntimeError):
        pool.submit(tasks.square, 1)


def test_tasks_stopped_by_kill_workers_are_not_reported_as_lost(tmp_path):
    """The caller stopped them on purpose: a failure nobody reads is not a lost exception, and
    one that is read is still the WorkerCrashedError."""
    lost = []
    previous = treadle.set_unretrieved_handler(lambda error, name: lost.append(error))
    try:
        pool = treadle.ProcessPoolExecutor(2)
        markers = [tmp_path / "read", tmp_path / "unread"]
        read, unread = (pool.submit(tasks.announce_then_sleep, str(m), 60) for m in markers)
        for marker in markers:
            wait_for_pid_file(marker)
        pool.kill_workers()
        assert isinstance(read.exception(WAIT), treadle.WorkerCrashedError)
        assert wait_for(unread.done)
        del read, unread, pool
        gc.collect()
        assert lost == []
    finally:
        treadle.set_unretrieved_handler(previous)


def test_spawn_context_starts_fresh_interpreters():
    # A worker started with mp_context "spawn" has not inherited this process's modules.
    import multiprocessing

    with treadle.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(tasks.same, "pytest" in sys.modules).result(WAIT) is True
        assert pool.submit(tasks.has_module, "pytest").result(WAIT) is False


STARTS = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle
    # The kernel's thread count of this process at every fork it makes.
    threads_at_fork = []
    os.register_at_fork(
        before=lambda: threads_at_fork.append(len(os.listdir("/proc/self/task")))
    )
    import colorsys  # imported by this parent only
    stop = threading.Event()
    if {threaded!r}:
        threading.Thread(target=stop.wait, daemon=True).start()
    out = {{}}
    with treadle.ProcessPoolExecutor(2) as pool:
        out["inherits"] = pool.submit(tasks.has_module, "colorsys").result(30)
        out["parents"] = sorted({{pool.submit(tasks.parent_pid).result(30) for _ in range(4)}})
        victim = pool.worker_pids[0]
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        while victim in pool.worker_pids or len(pool.worker_pids) < 2:
            assert time.monotonic() - start < 30
            time.sleep(0.0005)
        replacement = (set(pool.worker_pids) - {{victim}}).pop()
        # The replacement serves (the other worker may take some of these tasks).
        pids = set()
        while replacement not in pids:
            assert time.monotonic() - start < 30
            pids |= set(pool.map(tasks.pid_after, [0.001] * 4))
        out["replaced_in"] = time.monotonic() - start
        out["replacement_inherits"] = pool.submit(tasks.has_module, "colorsys").result(30)
    # A later pool, created while this process has a thread, forks from the same place.
    threading.Thread(target=stop.wait, daemon=True).start()
    with treadle.ProcessPoolExecutor(1) as pool:
        out["later_inherits"] = pool.submit(tasks.has_module, "colorsys").result(30)
    out["threads_at_fork"] = threads_at_fork
    out["pid"] = os.getpid()
    stop.set()
    print(json.dumps(out), flush=True)
    """
)


def run_starts(threaded: bool) -> dict:
    import json

    script = STARTS.format(tests=str(Path(__file__).parent), threaded=threaded)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT * 4
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_single_threaded_parent_forks_a_fork_server_once_and_workers_from_it():
    out = run_starts(threaded=False)
    # Workers are forks (they have the parent's modules), of a process other than the parent.
    assert out["inherits"] is True
    assert out["later_inherits"] is True
    assert len(out["parents"]) == 1 and out["parents"][0] != out["pid"]
    # The parent forked once, with one thread; the later pool did not fork it.
    assert out["threads_at_fork"] == [1]
    # A replacement is forked as well, and serves quickly.
    assert out["replacement_inherits"] is True
    assert out["replaced_in"] < 5


FORK_SERVER_DIES = textwrap.dedent(
    """
    import os, signal, sys, time
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle
    from treadle.multiprocessing import fork_server
    with treadle.ProcessPoolExecutor(2) as pool:
        assert pool.submit(tasks.square, 3).result(30) == 9
        server = fork_server.get()
        forked = tasks.children(server.pid)
        assert forked
        deadline = time.monotonic() + 30
        os.kill(server.pid, signal.SIGKILL)
        # kill() returns before the server and its workers have run their exits: wait for them,
        # or a worker still alive could serve every task below.
        while not all(tasks.has_exited(pid) for pid in [server.pid, *forked]):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        # Its workers die with it; the pool starts fresh interpreters instead.
        results = []
        while len(results) < 20:
            assert time.monotonic() < deadline
            try:
                results.append(pool.submit(tasks.square, 4).result(30))
            except treadle.WorkerCrashedError:
                pass
        assert results == [16] * 20
        forked = pool.submit(tasks.has_module, "treadle.multiprocessing.fork_server").result(30)
        assert forked is False
    print("ok", flush=True)
    """
)


def run_script_ok(script):
    """Runs ``script`` (formatted with this folder as ``tests``) in a fresh interpreter, which
    must print just "ok"."""
    done = subprocess.run(
        [sys.executable, "-c", script.format(tests=str(Path(__file__).parent))],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_pool_whose_fork_server_dies_goes_on_with_fresh_interpreters():
    run_script_ok(FORK_SERVER_DIES)


PIPE_OUTLIVES_THE_POOL = textwrap.dedent(
    """
    import os, select, sys, tempfile
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle
    read_end, write_end = os.pipe()  # open when the fork server is forked
    log = tempfile.TemporaryFile()
    with treadle.ProcessPoolExecutor(2) as pool:
        assert pool.submit(tasks.square, 3).result(30) == 9
        # A regular file stays open in the workers, as after any fork.
        assert pool.submit(os.fstat, log.fileno()).result(30).st_size == 0
    os.close(write_end)
    # The fork server outlives the pool, but holds no copy of the pipe: the reader sees EOF.
    ready, _, _ = select.select([read_end], [], [], 10)
    assert ready and os.read(read_end, 1) == b"", "the pipe's write end is still held"
    print("ok", flush=True)
    """
)


def test_the_fork_server_keeps_no_pipe_of_the_parent_open():
    run_script_ok(PIPE_OUTLIVES_THE_POOL)


FORK_SERVER_CATCHES_UP = textwrap.dedent(
    """
    import gc, os, sys, time
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle.multiprocessing as mp
    from treadle.multiprocessing import fork_server
    child = mp.Process(target=sorted, args=([],))
    child.start()  # forks the fork server
    child.join()
    first = fork_server.get().pid
    assert "colorsys" not in sys.modules
    import colorsys  # imported after the server was forked, by this process only
    with mp.Pool(1) as pool:
        # A new server, a copy of this process as it is now: its worker has the module.
        assert pool.apply(tasks.has_module, ("colorsys",)) is True
        assert fork_server.get().pid != first
    later = mp.Process(target=tasks.exit_with_module, args=("colorsys",))
    later.start()
    later.join(30)
    assert later.exitcode == 0
    # The first server serves on while a child of it is held; then it exits and is reaped.
    assert not tasks.has_exited(first)
    del child
    gc.collect()
    deadline = time.monotonic() + 30
    while first in fork_server._retired:
        assert time.monotonic() < deadline
        time.sleep(0.01)
        fork_server.get()
    assert tasks.has_exited(first)
    try:
        os.waitpid(first, os.WNOHANG)
        raise AssertionError("the first server was not reaped")
    except ChildProcessError:
        pass
    print("ok", flush=True)
    """
)


def test_a_single_threaded_parent_that_imported_more_forks_a_new_server_and_retires_the_old():
    run_script_ok(FORK_SERVER_CATCHES_UP)


def test_a_parent_whose_only_other_threads_are_openblas_forks_a_server():
    # numpy's OpenBLAS starts a pool of threads at import, which its own at-fork handler stops
    # for a fork: the process is forked into a server as if it had one thread, so workers have
    # numpy without importing it (where they were fresh interpreters that imported it, about
    # ten times the time to make a pool).
    code = """
        import os
        os.environ["OPENBLAS_NUM_THREADS"] = "2"  # a pool of threads, whatever the machine
        import numpy
        import _process_tasks as tasks
        import treadle.multiprocessing as mp
        from treadle.multiprocessing import fork_server
        square = numpy.ones((200, 200))
        assert (square @ square).sum() == 200**3  # the pool runs, if it waited to be used
        print(len(os.listdir("/proc/self/task")) > 1)
        with mp.Pool(2) as pool:
            print(pool.apply(tasks.has_module, ("numpy",)), fork_server._server is not None)
            print(pool.apply(numpy.dot, (square, square)).sum() == 200**3)
        print((square @ square).sum() == 200**3)  # this process's BLAS works on
        """
    assert run_fresh(code) == ["True"] * 5


def test_a_native_thread_that_lives_through_the_fork_lets_the_server_go():
    # A thread Python does not list (started by _thread, as a native library may start one) that
    # no at-fork handler stops may hold a lock at the fork: the server forked then is let go
    # of, and reaped; workers are fresh interpreters. While that thread lives, the process is
    # not forked for a server again.
    code = """
        import _thread, os, time
        import colorsys
        import _process_tasks as tasks
        import treadle.multiprocessing as mp
        from treadle.multiprocessing import fork_server
        forks = []
        os.register_at_fork(before=lambda: forks.append(1))
        _thread.start_new_thread(time.sleep, (60,))
        for _ in range(2):
            with mp.Pool(1) as pool:
                print(fork_server._server is None, pool.apply(tasks.has_module, ("colorsys",)))
        print(len(forks), tasks.zombies_of(os.getpid()))
        """
    assert run_fresh(code) == ["True", "False", "True", "False", "1", "[]"]


def test_a_collection_in_a_worker_copies_none_of_the_objects_it_inherited():
    # The fork server freezes what it holds (gc.freeze): a worker's collections do not walk the
    # parent's objects, which would write to each and copy their pages into the worker (about
    # 40 MiB of them here, the standard library's forked workers copy them all).
    code = """
        import _process_tasks as tasks
        import treadle.multiprocessing as mp
        graph = [[i] for i in range(500_000)]
        with mp.Pool(2) as pool:
            print(*pool.map(tasks.private_dirty_after_collecting, range(2), chunksize=1))
        """
    assert all(int(kib) < 12 * 1024 for kib in run_fresh(code))


def test_a_parent_with_threads_is_never_forked():
    out = run_starts(threaded=True)
    # Workers are fresh interpreters: no module of the parent, and the parent is theirs.
    assert out["threads_at_fork"] == []
    assert out["inherits"] is False
    assert out["replacement_inherits"] is False
    assert out["later_inherits"] is False
    assert out["parents"] == [out["pid"]]


# -- the parent's death -----------------------------------------------------------------------


PARENT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle
    pool = treadle.ProcessPoolExecutor(2)
    pool.submit(tasks.square, 1).result(30)
    data = os.urandom(4 << 20)
    futures = [pool.submit(tasks.length, data) for _ in range(4)]
    futures.append(pool.submit(tasks.sleep, 60))
    futures.append(pool.submit(tasks.sleep, 60))
    time.sleep(0.3)
    print(" ".join(map(str, pool.worker_pids)), flush=True)
    time.sleep(60)
    """
)


def test_killing_the_parent_leaves_no_worker_and_no_segment():
    shm = tasks.dev_shm()
    script = PARENT.format(tests=str(Path(__file__).parent))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2
        assert all(pid_alive(p) for p in pids)
        parent.kill()
        parent.wait(WAIT)
    finally:
        parent.kill()
        parent.stdout.close()
    assert wait_for(lambda: not any(pid_alive(p) for p in pids))
    after = tasks.dev_shm()
    assert after - shm == set()


def test_the_pool_futures_cannot_be_pickled(pool):
    future = pool.submit(tasks.square, 1)
    future.result(WAIT)
    with pytest.raises((TypeError, pickle.PicklingError)):
        pickle.dumps(future)


CTRL_C_PARENT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import treadle, _process_tasks as tasks
    with treadle.ProcessPoolExecutor(2) as pool:
        for _ in range(6):
            pool.submit(tasks.sleep, 60)
        time.sleep(0.3)
        print(" ".join(map(str, pool.worker_pids)), flush=True)
        time.sleep(60)
    """
)


def test_ctrl_c_in_the_parent_stops_the_pool_and_its_workers():
    script = CTRL_C_PARENT.format(tests=str(Path(__file__).parent))
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        assert wait_for(lambda: tasks.asleep(parent.pid))
        start = time.monotonic()
        parent.send_signal(signal.SIGINT)
        parent.wait(WAIT)
        elapsed = time.monotonic() - start
        stderr = parent.stderr.read()
    finally:
        parent.kill()
        parent.stdout.close()
        parent.stderr.close()
    assert "KeyboardInterrupt" in stderr
    assert elapsed < 5, "the queued 60 s tasks must not be waited for"
    assert wait_for(lambda: not any(pid_alive(p) for p in pids))


@pytest.mark.parametrize(
    "method, prefix", [(None, "ForkServer"), ("spawn", "Spawn"), ("fork", "Fork")]
)
def test_workers_are_named_after_their_start_method_as_the_standard_librarys(method, prefix):
    # What logging's %(processName)s shows for a worker's records.
    context = multiprocessing.get_context(method) if method else None
    with treadle.ProcessPoolExecutor(1, mp_context=context) as pool:
        name, daemon = pool.submit(tasks.who_am_i).result(WAIT)
        assert (name, daemon) == (f"{prefix}Process-{pool.worker_pids[0]}", False)


# -- waiting without burning the machine ------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) of every thread of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_pool_uses_no_cpu_after_tiny_tasks_one_at_a_time(pool):
    # Tiny tasks one at a time teach the workers to look for their next task before they
    # sleep; once none comes, the pool (its supervisor thread and its workers) must sleep.
    for i in range(2000):
        assert pool.submit(tasks.add, i, 1).result(WAIT) == i + 1
    time.sleep(0.1)
    pids = [os.getpid(), *pool.worker_pids]
    before = [_cpu_seconds(pid) for pid in pids]
    started = time.monotonic()
    time.sleep(1.0)
    elapsed = time.monotonic() - started
    used = sum(_cpu_seconds(pid) - cpu for pid, cpu in zip(pids, before, strict=True))
    assert used < 0.05 * elapsed, f"an idle pool used {used:.3f} s of CPU in {elapsed:.2f} s"
