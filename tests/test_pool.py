"""treadle.ThreadPoolExecutor, Future, wait and as_completed: concurrent.futures' behaviour, and
the safety features on top (interruption, time limits, bounds, help mode, no leaks, never
silent). Every wait has a timeout."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextvars
import gc
import logging
import queue
import threading
import time
import weakref

import pytest

import treadle

T = 10  # seconds: the longest any wait in these tests may take


@pytest.fixture
def pool():
    with treadle.ThreadPoolExecutor(2) as executor:
        yield executor


# --- the standard library's API and semantics --------------------------------------------------


def test_future_is_a_concurrent_futures_future_and_executor_too(pool):
    future = pool.submit(pow, 2, 5)
    assert isinstance(future, cf.Future)
    assert isinstance(future, treadle.Future)
    assert isinstance(pool, cf.ThreadPoolExecutor)
    assert isinstance(pool, cf.Executor)
    assert future.result(timeout=T) == 32


def test_submit_passes_args_and_kwargs(pool):
    assert pool.submit(dict, a=1, fn=2).result(timeout=T) == {"a": 1, "fn": 2}


def test_exception_classes_are_the_standard_librarys():
    assert treadle.CancelledError is cf.CancelledError
    assert treadle.InvalidStateError is cf.InvalidStateError
    assert treadle.BrokenThreadPool is cf.thread.BrokenThreadPool
    assert issubclass(treadle.TaskTimeoutError, TimeoutError)
    assert treadle.FIRST_COMPLETED == cf.FIRST_COMPLETED


def test_result_raises_the_tasks_exception_with_its_traceback(pool):
    def fail():
        raise KeyError("boom")

    future = pool.submit(fail)
    with pytest.raises(KeyError) as info:
        future.result(timeout=T)
    assert "fail" in str(info.traceback[-1].name)
    assert isinstance(future.exception(timeout=T), KeyError)


def test_result_times_out_with_timeout_error(pool):
    gate = threading.Event()
    future = pool.submit(gate.wait, T)
    with pytest.raises(TimeoutError):
        future.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0)
    gate.set()
    assert future.result(timeout=T) is True


def test_states_pending_running_finished(pool):
    gate = threading.Event()
    both_started = threading.Barrier(3)

    def blocker():
        both_started.wait(T)
        gate.wait(T)

    first = pool.submit(blocker)
    second = pool.submit(blocker)
    third = pool.submit(int)
    both_started.wait(T)
    assert first.running(), first
    assert not first.done()
    assert third._state == "PENDING", third
    assert not third.running()
    gate.set()
    assert third.result(timeout=T) == 0
    second.result(timeout=T)
    first.result(timeout=T)
    assert first.done() and not first.running() and not first.cancelled()
    assert first._state == "FINISHED"


def test_cancel_pending_future_never_runs():
    with treadle.ThreadPoolExecutor(1) as pool:
        gate = threading.Event()
        pool.submit(gate.wait, T)
        ran = []
        queued = pool.submit(ran.append, 1)
        assert queued.cancel()
        assert queued.cancelled() and queued.done()
        assert queued.cancel()
        gate.set()
    assert ran == []
    with pytest.raises(cf.CancelledError):
        queued.result(timeout=T)
    with pytest.raises(cf.CancelledError):
        queued.exception(timeout=T)


def test_running_future_cannot_be_cancelled_without_interrupt(pool):
    gate = threading.Event()
    started = threading.Event()

    def task():
        started.set()
        gate.wait(T)
        return 1

    future = pool.submit(task)
    assert started.wait(T)
    assert not future.cancel()
    gate.set()
    assert future.result(timeout=T) == 1
    assert not future.cancel()


def test_standalone_future_follows_the_executor_protocol():
    future = treadle.Future()
    assert repr(future).startswith("<Future at 0x") and "state=pending" in repr(future)
    assert future.set_running_or_notify_cancel()
    future.set_result(3)
    assert "state=finished returned int" in repr(future)
    with pytest.raises(cf.InvalidStateError):
        future.set_result(4)
    with pytest.raises(cf.InvalidStateError):
        future.set_exception(ValueError())
    assert future.result(timeout=0) == 3

    cancelled = treadle.Future()
    assert cancelled.cancel()
    assert not cancelled.set_running_or_notify_cancel()


def test_done_callbacks_run_once_in_order_and_late_ones_at_once(pool):
    seen = []
    gate = threading.Event()
    future = pool.submit(gate.wait, T)
    future.add_done_callback(lambda f: seen.append(("a", f)))
    future.add_done_callback(lambda f: seen.append(("b", f)))
    gate.set()
    future.result(timeout=T)
    deadline = time.monotonic() + T
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    future.add_done_callback(lambda f: seen.append(("c", f)))
    assert seen == [("a", future), ("b", future), ("c", future)]


def test_a_failing_callback_is_logged_and_the_others_still_run(pool, caplog):
    seen = []
    future = treadle.Future()
    future.add_done_callback(lambda f: 1 / 0)
    future.add_done_callback(seen.append)
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        future.set_result(1)
    assert seen == [future]
    assert "exception calling callback" in caplog.text


def test_workers_are_named_threads_as_in_the_standard_library():
    with treadle.ThreadPoolExecutor(2, thread_name_prefix="crew") as pool:
        names = {pool.submit(lambda: threading.current_thread().name).result(timeout=T)}
        assert names <= {"crew_0", "crew_1"}
        assert all(t in threading.enumerate() for t in pool._threads)
    with treadle.ThreadPoolExecutor(1) as pool:
        name = pool.submit(lambda: threading.current_thread().name).result(timeout=T)
        assert name.startswith("ThreadPoolExecutor-") and name.endswith("_0")


def test_no_more_threads_than_max_workers():
    with treadle.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(time.sleep, 0.001) for _ in range(50)]
        cf.wait(futures, timeout=T)
        assert len(pool._threads) <= 3


def test_idle_worker_is_reused_instead_of_a_new_one():
    with treadle.ThreadPoolExecutor(4) as pool:
        for _ in range(20):
            pool.submit(int).result(timeout=T)
            time.sleep(0.001)
        assert len(pool._threads) == 1


def test_bad_constructor_arguments_are_rejected_as_in_the_standard_library():
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        treadle.ThreadPoolExecutor(0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        treadle.ThreadPoolExecutor(1, initializer=3)


def test_submit_after_shutdown_raises_runtime_error():
    pool = treadle.ThreadPoolExecutor(1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(int)


def test_initializer_runs_in_each_worker_and_a_failing_one_breaks_the_pool(caplog):
    seen = []
    with treadle.ThreadPoolExecutor(2, initializer=seen.append, initargs=(1,)) as pool:
        pool.submit(int).result(timeout=T)
    assert seen == [1]

    def bad():
        raise ValueError("init")

    with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
        pool = treadle.ThreadPoolExecutor(1, initializer=bad)
        assert pool._broken is False  # the standard library's attribute, which code reads
        future = pool.submit(int)
        with pytest.raises(cf.thread.BrokenThreadPool):
            future.result(timeout=T)
        assert "initializer failed" in pool._broken
        with pytest.raises(cf.thread.BrokenThreadPool):
            pool.submit(int)
        pool.shutdown()
    assert "Exception in initializer" in caplog.text


def test_shutdown_waits_for_queued_tasks():
    done = []
    pool = treadle.ThreadPoolExecutor(1)
    for i in range(5):
        pool.submit(lambda i=i: (time.sleep(0.01), done.append(i)))
    pool.shutdown(wait=True)
    assert done == [0, 1, 2, 3, 4]
    assert not any(t.is_alive() for t in pool._threads)


def test_shutdown_cancel_futures_cancels_the_queue():
    pool = treadle.ThreadPoolExecutor(1)
    gate = threading.Event()
    running = pool.submit(gate.wait, T)
    queued = [pool.submit(int) for _ in range(5)]
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    gate.set()
    assert running.result(timeout=T) is True
    pool.shutdown(wait=True)


def test_leaving_with_block_by_an_exception_cancels_queued_work():
    gate = threading.Event()
    with pytest.raises(ZeroDivisionError), treadle.ThreadPoolExecutor(1) as pool:
        running = pool.submit(gate.wait, 0.2)
        queued = pool.submit(int)
        raise ZeroDivisionError
    assert queued.cancelled()
    assert running.done()


# --- map ---------------------------------------------------------------------------------------


def test_map_keeps_order_and_stops_at_the_first_failure(pool):
    assert list(pool.map(pow, [2, 3], [2, 2], timeout=T)) == [4, 9]
    results = pool.map(lambda x: 1 / x, [1, 0, 2], timeout=T)
    assert next(results) == 1
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_return_exceptions_yields_failures_in_place(pool):
    results = list(pool.map(lambda x: 1 / x, [1, 0, 2], timeout=T, return_exceptions=True))
    assert results[0] == 1 and results[2] == 0.5
    assert isinstance(results[1], ZeroDivisionError)


def test_map_return_exceptions_still_raises_when_the_wait_runs_out(pool):
    # A timeout of the wait is not the task's outcome: it raises, and the task is cancelled.
    # Every worker is busy, so the map's first future is still queued when the wait runs out.
    gate = threading.Event()
    busy = [pool.submit(gate.wait, T) for _ in range(pool._max_workers)]
    results = pool.map(lambda x: x, [1, 2, 3], timeout=0.2, return_exceptions=True)
    with pytest.raises(TimeoutError):
        list(results)
    gate.set()
    assert all(f.result(T) for f in busy)
    # The task's own TimeoutError is its outcome, yielded in place.
    results = pool.map(
        lambda e: (_ for _ in ()).throw(e),
        [TimeoutError("mine")],
        timeout=T,
        return_exceptions=True,
    )
    assert [str(r) for r in results] == ["mine"]


def test_map_frees_each_result_the_caller_drops(pool):
    # As the standard library's map (CPython issue 14406): no reference is kept to a result
    # already handed out.
    class Item:
        pass

    for item in pool.map(lambda _: Item(), range(10), timeout=T):
        ref = weakref.ref(item)
        del item
        gc.collect()
        assert ref() is None
    for item in pool.map(lambda _: Item(), range(10), timeout=T, return_exceptions=True):
        ref = weakref.ref(item)
        del item
        gc.collect()
        assert ref() is None


def test_map_buffersize_submits_only_ahead_of_the_consumer(pool):
    submitted = []

    def numbers():
        for i in range(100):
            submitted.append(i)
            yield i

    results = pool.map(lambda x: x * 2, numbers(), timeout=T, buffersize=3)
    assert next(results) == 0
    assert len(submitted) <= 5
    assert list(results) == [2 * i for i in range(1, 100)]


def test_map_buffersize_is_checked(pool):
    with pytest.raises(ValueError, match="buffersize must be None or > 0"):
        pool.map(int, [], buffersize=0)
    with pytest.raises(TypeError, match="buffersize must be an integer or None"):
        pool.map(int, [], buffersize=1.5)


def test_map_timeout_raises_timeout_error(pool):
    results = pool.map(time.sleep, [0.5], timeout=0.01)
    with pytest.raises(TimeoutError):
        next(results)


# --- wait and as_completed, both ways ------------------------------------------------------------


@pytest.mark.parametrize("waiter", [cf.wait, treadle.wait])
def test_wait_all_and_first_completed(pool, waiter):
    gate = threading.Event()
    slow = pool.submit(gate.wait, T)
    fast = pool.submit(int)
    done, not_done = waiter([slow, fast], timeout=T, return_when=cf.FIRST_COMPLETED)
    assert fast in done and slow in not_done
    done, not_done = waiter([slow, fast], timeout=0.01)
    assert not_done == {slow}
    gate.set()
    done, not_done = waiter([slow, fast], timeout=T)
    assert done == {slow, fast} and not not_done


@pytest.mark.parametrize("waiter", [cf.wait, treadle.wait])
def test_wait_first_exception(pool, waiter):
    gate = threading.Event()
    slow = pool.submit(gate.wait, T)
    bad = pool.submit(lambda: 1 / 0)
    done, not_done = waiter([slow, bad], timeout=T, return_when=cf.FIRST_EXCEPTION)
    assert done == {bad} and not_done == {slow}
    gate.set()


def test_treadle_wait_accepts_standard_futures_and_can_cancel_the_rest():
    with cf.ThreadPoolExecutor(1) as standard, treadle.ThreadPoolExecutor(1) as ours:
        gate = threading.Event()
        blocker = standard.submit(gate.wait, T)
        queued = standard.submit(int)
        mine = ours.submit(int)
        done, _ = treadle.wait([blocker, queued, mine], timeout=T, return_when=cf.FIRST_COMPLETED)
        assert mine in done
        treadle.wait([blocker, queued], timeout=0.01, cancel_pending=True)
        assert queued.cancelled()
        gate.set()


@pytest.mark.parametrize("completed", [cf.as_completed, treadle.as_completed])
def test_as_completed_yields_in_completion_order(completed):
    pool = treadle.ThreadPoolExecutor(3)
    gates = [threading.Event() for _ in range(2)]
    first = pool.submit(gates[0].wait, T)
    second = pool.submit(gates[1].wait, T)
    already = pool.submit(int)
    already.result(timeout=T)
    iterator = completed([first, second, already, already], timeout=T)
    assert next(iterator) is already
    gates[1].set()
    assert next(iterator) is second
    gates[0].set()
    assert next(iterator) is first
    assert list(iterator) == []
    pool.shutdown()


@pytest.mark.parametrize("completed", [cf.as_completed, treadle.as_completed])
def test_as_completed_times_out(pool, completed):
    gate = threading.Event()
    with pytest.raises(TimeoutError, match=r"1 \(of 1\) futures unfinished"):
        list(completed([pool.submit(gate.wait, T)], timeout=0.02))
    gate.set()


def test_treadle_as_completed_accepts_standard_futures():
    with cf.ThreadPoolExecutor(1) as standard:
        futures = [standard.submit(pow, 2, i) for i in range(5)]
        assert sorted(f.result() for f in treadle.as_completed(futures, timeout=T)) == [
            1,
            2,
            4,
            8,
            16,
        ]


# --- asyncio ------------------------------------------------------------------------------------


def test_asyncio_wrap_future_await_and_run_in_executor(pool):
    async def main():
        loop = asyncio.get_running_loop()
        a = await loop.run_in_executor(pool, pow, 2, 3)
        b = await asyncio.wrap_future(pool.submit(pow, 3, 2))
        return a, b

    assert asyncio.run(asyncio.wait_for(main(), T)) == (8, 9)


def test_asyncio_default_executor_can_be_treadles(pool):
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        return await loop.run_in_executor(None, threading.current_thread)

    thread = asyncio.run(asyncio.wait_for(main(), T))
    assert thread in pool._threads


# --- interruptible tasks and time limits (pyscg-0024) ------------------------------------------


def test_cancel_interrupt_stops_a_running_task_within_100_ms(pool):
    started = threading.Event()
    stopped = threading.Event()

    def task():
        started.set()
        try:
            treadle.sleep(T)
        finally:
            stopped.set()

    future = pool.submit(task)
    assert started.wait(T)
    begin = time.monotonic()
    assert future.cancel(interrupt=True)
    assert stopped.wait(T)
    assert time.monotonic() - begin < 0.1
    assert future.cancelled()
    with pytest.raises(cf.CancelledError):
        future.result(timeout=T)


def test_interrupt_reaches_treadle_blocking_calls_and_check_cancelled(pool):
    started = threading.Event()
    outcomes = []

    def waits_on_an_event():
        started.set()
        try:
            treadle.Event().wait(T)
        except treadle.Cancelled:
            outcomes.append(("event", treadle.cancelled()))
            raise

    future = pool.submit(waits_on_an_event)
    assert started.wait(T)
    future.cancel(interrupt=True)
    started.clear()

    def polls():
        started.set()
        while True:
            treadle.check_cancelled()
            time.sleep(0.001)

    future = pool.submit(polls)
    assert started.wait(T)
    future.cancel(interrupt=True)
    pool.submit(int).result(timeout=T)
    deadline = time.monotonic() + T
    while not outcomes and time.monotonic() < deadline:
        time.sleep(0.001)
    assert outcomes == [("event", True)]
    assert not treadle.cancelled()
    treadle.check_cancelled()


def test_schedule_with_a_timeout_fails_with_task_timeout_error(pool):
    stopped = threading.Event()

    def slow():
        try:
            treadle.sleep(T)
        finally:
            stopped.set()

    future = pool.schedule(slow, timeout=0.05, name="slow job")
    with pytest.raises(treadle.TaskTimeoutError):
        future.result(timeout=T)
    assert stopped.wait(T)
    assert future.name == "slow job"
    assert pool.schedule(pow, (2, 3), timeout=T).result(timeout=T) == 8


def test_task_timeout_applies_to_every_submit():
    with treadle.ThreadPoolExecutor(1, task_timeout=0.05) as pool:
        future = pool.submit(treadle.sleep, T)
        assert isinstance(future.exception(timeout=T), TimeoutError)
        assert pool.submit(int).result(timeout=T) == 0


def test_treadle_sleep_outside_a_task_just_sleeps():
    begin = time.monotonic()
    treadle.sleep(0.02)
    assert time.monotonic() - begin >= 0.02
    with pytest.raises(ValueError):
        treadle.sleep(-1)


# --- bounded work (pyscg-0025) ---------------------------------------------------------------


def test_max_pending_raise_refuses_past_the_bound():
    with treadle.ThreadPoolExecutor(1, max_pending=2, on_full="raise") as pool:
        gate = threading.Event()
        pool.submit(gate.wait, T)
        time.sleep(0.05)
        pool.submit(int)
        pool.submit(int)
        with pytest.raises(queue.Full):
            pool.submit(int)
        gate.set()


def test_max_pending_block_waits_for_room():
    with treadle.ThreadPoolExecutor(1, max_pending=1) as pool:
        gate = threading.Event()
        pool.submit(gate.wait, T)
        time.sleep(0.05)
        pool.submit(int)
        threading.Timer(0.05, gate.set).start()
        begin = time.monotonic()
        assert pool.submit(pow, 2, 2).result(timeout=T) == 4
        assert time.monotonic() - begin >= 0.04


def test_max_pending_caller_runs_runs_in_the_submitting_thread():
    with treadle.ThreadPoolExecutor(1, max_pending=1, on_full="caller_runs") as pool:
        gate = threading.Event()
        pool.submit(gate.wait, T)
        time.sleep(0.05)
        pool.submit(int)
        future = pool.submit(threading.current_thread)
        assert future.done() and future.result() is threading.current_thread()
        gate.set()


# --- nested waits (pyscg-0026) ----------------------------------------------------------------


def test_a_cycle_through_a_future_and_a_lock_raises_deadlock_error(pool):
    lock = treadle.Lock()
    started = threading.Event()

    def task():
        started.set()
        with lock:
            return 1

    with lock:
        future = pool.submit(task)
        assert started.wait(T)
        time.sleep(0.05)
        with pytest.raises(treadle.DeadlockError) as info:
            future.result()
    assert [edge.kind for edge in info.value.cycle] in (["future", "lock"], ["lock", "future"])
    assert future.result(timeout=T) == 1


# --- no leaks between tasks (pyscg-0029) ------------------------------------------------------


def test_an_admin_setting_in_a_context_variable_never_shows_in_the_next_task():
    role = contextvars.ContextVar("role", default="guest")
    with treadle.ThreadPoolExecutor(1) as pool:

        def escalate():
            role.set("admin")
            return role.get()

        assert pool.submit(escalate).result(timeout=T) == "admin"
        assert pool.submit(role.get).result(timeout=T) == "guest"
    assert role.get() == "guest"


def test_tasks_see_the_submitters_context():
    request = contextvars.ContextVar("request")
    request.set("r1")
    with treadle.ThreadPoolExecutor(1) as pool:
        assert pool.submit(request.get).result(timeout=T) == "r1"


def test_treadle_local_is_cleared_between_tasks():
    state = treadle.local()
    with treadle.ThreadPoolExecutor(1) as pool:
        pool.submit(setattr, state, "user", "admin").result(timeout=T)
        assert pool.submit(getattr, state, "user", None).result(timeout=T) is None

    class Counter(treadle.local):
        def __init__(self, start):
            self.count = start

    counter = Counter(5)
    with treadle.ThreadPoolExecutor(1) as pool:

        def bump():
            counter.count += 1
            return counter.count

        assert [pool.submit(bump).result(timeout=T) for _ in range(2)] == [6, 6]


# --- never silent (pyscg-0030) ----------------------------------------------------------------


def test_a_dropped_failing_future_is_reported_exactly_once():
    seen = []
    previous = treadle.set_unretrieved_handler(lambda exc, name: seen.append((exc, name)))
    try:
        with treadle.ThreadPoolExecutor(1) as pool:
            future = pool.schedule(lambda: 1 / 0, name="divide")
            cf.wait([future], timeout=T)
            del future
            gc.collect()
        gc.collect()
    finally:
        treadle.set_unretrieved_handler(previous)
    assert len(seen) == 1
    assert isinstance(seen[0][0], ZeroDivisionError) and seen[0][1] == "divide"


def test_an_unretrieved_exception_is_logged_at_shutdown(caplog):
    with caplog.at_level(logging.ERROR, logger="treadle"):
        pool = treadle.ThreadPoolExecutor(1)
        future = pool.submit(lambda: 1 / 0)
        cf.wait([future], timeout=T)
        pool.shutdown()
        del future
        gc.collect()
    records = [r for r in caplog.records if r.name == "treadle"]
    assert len(records) == 1
    assert records[0].exc_info[0] is ZeroDivisionError


def test_retrieved_exceptions_are_not_reported():
    seen = []
    previous = treadle.set_unretrieved_handler(lambda exc, name: seen.append(exc))
    try:
        with treadle.ThreadPoolExecutor(1) as pool:
            a = pool.submit(lambda: 1 / 0)
            b = pool.submit(lambda: 1 / 0)
            c = pool.submit(lambda: 1 / 0)
            c.add_done_callback(lambda f: None)
            with pytest.raises(ZeroDivisionError):
                a.result(timeout=T)
            assert b.exception(timeout=T) is not None
            cf.wait([c], timeout=T)
        del a, b, c
        gc.collect()
    finally:
        treadle.set_unretrieved_handler(previous)
    assert seen == []


def test_raise_unretrieved_makes_shutdown_raise_an_exception_group():
    pool = treadle.ThreadPoolExecutor(1, raise_unretrieved=True)
    futures = [pool.submit(lambda: 1 / 0), pool.submit(lambda: [][0])]
    cf.wait(futures, timeout=T)
    with pytest.raises(ExceptionGroup) as info:
        pool.shutdown()
    assert {type(e) for e in info.value.exceptions} == {ZeroDivisionError, IndexError}


def test_stdlib_as_completed_yields_each_future_once_while_they_complete():
    # Futures completing while concurrent.futures.as_completed installs its waiter must be
    # counted once: finished, or notified, never both.
    import concurrent.futures as cf

    with treadle.ThreadPoolExecutor(4) as pool:
        for _ in range(300):
            futures = [pool.submit(pow, i, 2) for i in range(16)]
            seen = [f.result() for f in cf.as_completed(futures, timeout=10)]
            assert sorted(seen) == [i * i for i in range(16)]
            done, not_done = cf.wait([pool.submit(pow, i, 3) for i in range(8)], timeout=10)
            assert len(done) == 8 and not not_done
