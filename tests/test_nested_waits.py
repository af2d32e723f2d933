"""A pool task that waits on tasks of its own pool: every kind of wait finishes (``result()``,
``treadle.wait``, ``treadle.as_completed``, ``concurrent.futures.wait`` under the patch), the
task it waits for runs on a thread of its own (its own ``threading.local`` view, its own locks),
and a wait that can never end, a worker blocked submitting to its own full pool included, is
reported as a deadlock. Every wait has a timeout, or ends in a deadlock report."""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import treadle

T = 10  # seconds: the longest any wait in these tests may take
FAN_OUT = 5


def _sum_by_result(futures):
    return sum(f.result(timeout=T) for f in futures)


def _summing_by_wait(wait):
    def join(futures):
        done, not_done = wait(futures, timeout=T)
        assert not not_done, "the wait ran out of time"
        return sum(f.result() for f in done)

    return join


def _summing_by_as_completed(as_completed):
    def join(futures):
        return sum(f.result() for f in as_completed(futures, timeout=T))

    return join


_sum_by_wait = _summing_by_wait(treadle.wait)
_sum_by_as_completed = _summing_by_as_completed(treadle.as_completed)
# Looked up at call time, as a program does: under the patch they are treadle's.
_sum_by_stdlib_wait = _summing_by_wait(lambda *args, **kwargs: cf.wait(*args, **kwargs))
_sum_by_stdlib_as_completed = _summing_by_as_completed(
    lambda *args, **kwargs: cf.as_completed(*args, **kwargs)
)


def _fork_join(pool, depth, join):
    if depth == 0:
        return 1
    children = [pool.submit(_fork_join, pool, depth - 1, join) for _ in range(FAN_OUT)]
    return join(children)


@pytest.mark.parametrize(
    "join",
    [_sum_by_result, _sum_by_wait, _sum_by_as_completed],
    ids=["result", "wait", "as_completed"],
)
def test_fork_join_of_depth_3_on_2_workers_finishes_whichever_wait_joins(join):
    with treadle.ThreadPoolExecutor(2) as pool:
        root = pool.submit(_fork_join, pool, 3, join)
        assert root.result(timeout=T) == FAN_OUT**3


@pytest.mark.parametrize(
    "join", [_sum_by_stdlib_wait, _sum_by_stdlib_as_completed], ids=["wait", "as_completed"]
)
def test_fork_join_through_concurrent_futures_waits_finishes_under_the_patch(join):
    with treadle.patched():
        assert cf.wait is treadle.wait and cf.as_completed is treadle.as_completed
        with treadle.ThreadPoolExecutor(2) as pool:
            root = pool.submit(_fork_join, pool, 3, join)
            assert root.result(timeout=T) == FAN_OUT**3
    assert cf.wait is not treadle.wait


@pytest.mark.parametrize("workers", [1, 2])
def test_ten_outer_tasks_waiting_on_inner_tasks_finish_with_a_thread_per_waiting_worker(workers):
    # The inner task waited for runs before the outer tasks queued behind: had those started
    # to make room for it, each would wait in turn, a thread each.
    with treadle.ThreadPoolExecutor(workers) as pool:

        def outer(i):
            return pool.submit(lambda: i * 10).result(timeout=T) + 1

        futures = [pool.submit(outer, i) for i in range(10)]
        assert [f.result(timeout=T) for f in futures] == [i * 10 + 1 for i in range(10)]
        assert len(pool._threads) <= 2 * workers


# --- the task waited for runs on a thread of its own ------------------------------------------


def test_a_task_a_worker_waits_for_does_not_see_the_worker_s_thread_locals():
    session = threading.local()
    with treadle.ThreadPoolExecutor(1) as pool:

        def read_transaction():
            return getattr(session, "transaction", None), threading.current_thread()

        def writer():
            session.transaction = "open"
            try:
                return pool.submit(read_transaction).result(timeout=T), threading.current_thread()
            finally:
                del session.transaction

        (seen, reader_thread), writer_thread = pool.submit(writer).result(timeout=T)
    assert seen is None  # as with the standard library: another thread's local is not ours
    assert reader_thread is not writer_thread


def test_a_task_a_worker_waits_for_cannot_enter_an_rlock_the_worker_holds():
    ledger = treadle.RLock()
    with treadle.ThreadPoolExecutor(1) as pool:

        def try_ledger():
            if ledger.acquire(timeout=0.05):
                ledger.release()
                return "entered"
            return "kept out"

        def writer():
            with ledger:
                return pool.submit(try_ledger).result(timeout=T)

        assert pool.submit(writer).result(timeout=T) == "kept out"


def test_a_task_a_worker_waits_for_runs_in_its_submitters_context_and_keeps_its_own():
    request = contextvars.ContextVar("request", default=None)
    with treadle.ThreadPoolExecutor(1) as pool:

        def inner():
            seen = request.get()
            request.set("changed by inner")
            return seen

        def outer():
            request.set("r1")
            seen = pool.submit(inner).result(timeout=T)
            return seen, request.get()

        assert pool.submit(outer).result(timeout=T) == ("r1", "r1")


def test_treadle_local_is_fresh_in_a_task_a_worker_waits_for():
    state = treadle.local()
    with treadle.ThreadPoolExecutor(1) as pool:

        def outer():
            state.user = "admin"
            return pool.submit(getattr, state, "user", None).result(timeout=T), state.user

        assert pool.submit(outer).result(timeout=T) == (None, "admin")


def test_a_cycle_through_a_waited_task_and_a_lock_is_a_two_thread_deadlock():
    lock = treadle.Lock()
    with treadle.ThreadPoolExecutor(1) as pool:

        def needs_lock():
            with lock:
                return 1

        def holder():
            with lock:
                return pool.submit(needs_lock).result()

        future = pool.submit(holder)
        with pytest.raises(treadle.DeadlockError) as info:
            future.result(timeout=T)
    assert sorted(edge.kind for edge in info.value.cycle) == ["future", "lock"]
    assert len({edge.waiter for edge in info.value.cycle}) == 2


def test_threads_started_for_waiting_workers_end_once_no_worker_waits():
    with treadle.ThreadPoolExecutor(2) as pool:
        root = pool.submit(_fork_join, pool, 2, _sum_by_result)
        assert root.result(timeout=T) == FAN_OUT**2
        deadline = time.monotonic() + T
        while len([t for t in pool._threads if t.is_alive()]) > 2:
            assert time.monotonic() < deadline, "the extra threads stayed"
            time.sleep(0.05)
        # The pool still works at its size.
        assert list(pool.map(abs, [-1, -2, -3], timeout=T)) == [1, 2, 3]


# --- a worker blocked submitting to its own full pool (max_pending, on_full="block") ---------
# A stall is judged over the whole process, and pytest-timeout's SIGALRM handler could wake any
# thread: these run in a fresh interpreter.


def _run_child(code):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_workers_blocked_submitting_to_their_own_full_pool_are_a_reported_deadlock():
    lines = _run_child(
        """
        import threading, treadle
        pool = treadle.ThreadPoolExecutor(1, max_pending=1)
        go = threading.Event()
        def parent():
            go.wait()
            return [pool.submit(int) for _ in range(3)]
        first = pool.submit(parent)
        pool.submit(int)  # the queue is full: parent's first submit will block
        go.set()
        try:
            first.result()
        except treadle.DeadlockError as error:
            print(sorted(edge.kind for edge in error.cycle))
            print(str(error))
        pool.shutdown(wait=False, cancel_futures=True)
        for thread in list(pool._threads):
            thread.join(10)
        """
    )
    assert lines[0] == "['future', 'submit']"
    assert "none of them can wake another" in lines[1]
    waits = "\n".join(lines[2:4])
    assert "thread 'MainThread' waits for future" in waits
    assert "run by thread 'ThreadPoolExecutor-0_0'" in waits
    assert "thread 'ThreadPoolExecutor-0_0' waits for room to submit to" in waits


def test_leaving_the_with_block_ends_submits_blocked_in_workers_with_runtime_error():
    go = threading.Event()
    with treadle.ThreadPoolExecutor(2, max_pending=2) as pool:

        def parent():
            go.wait(T)
            return [pool.submit(int) for _ in range(10)]

        parents = [pool.submit(parent) for _ in range(4)]  # two run, two fill the queue
        go.set()
    for future in parents:
        error = future.exception(timeout=T)
        assert isinstance(error, RuntimeError)
        assert str(error) == "cannot schedule new futures after shutdown"


def test_shutdown_joining_a_worker_that_waits_on_the_caller_is_a_deadlock():
    lock = treadle.Lock()
    started = threading.Event()

    def needs_lock():
        started.set()
        with lock:
            return 1

    pool = treadle.ThreadPoolExecutor(1)
    lock.acquire()
    try:
        future = pool.submit(needs_lock)
        assert started.wait(T)
        time.sleep(0.05)
        with pytest.raises(treadle.DeadlockError) as info:
            pool.shutdown()
        assert sorted(edge.kind for edge in info.value.cycle) == ["join", "lock"]
    finally:
        lock.release()
    assert future.result(timeout=T) == 1
    pool.shutdown()


def test_a_submitter_outside_the_pool_blocked_on_room_is_not_a_deadlock():
    lines = _run_child(
        """
        import threading, time, treadle
        with treadle.ThreadPoolExecutor(1, max_pending=1) as pool:
            gate = treadle.Event()
            pool.submit(gate.wait)
            time.sleep(0.05)
            pool.submit(int)
            threading.Timer(0.5, gate.set).start()
            print(pool.submit(pow, 2, 3).result())
        """
    )
    assert lines == ["8"]
