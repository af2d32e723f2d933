"""``treadle.multiprocessing``'s locks, semaphores, conditions, events, barriers and shared
values across processes: what the standard library does, a dead owner reported instead of
waited for, and atomic operations on shared integers."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import threading
import time

import _mp_tasks as tasks
import numpy
import pytest
from _mp_tasks import WAIT, joined

import treadle.multiprocessing as mp
from treadle import DeadlockError
from treadle._treadle import _SharedLock, _SharedValue
from treadle.futures import ProcessPoolExecutor
from treadle.multiprocessing import OwnerDiedError, sharedctypes, synchronize


def start(target, *args, name=None):
    process = mp.Process(target=target, args=args, name=name, daemon=True)
    process.start()
    return process


# -- a dead owner --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_lock_whose_owner_was_killed_raises_once_naming_it_then_works(kind):
    lock = getattr(mp, kind)()
    ready = mp.Event()
    holder = start(tasks.hold_lock_until_killed, lock, ready, name="Holder")
    assert ready.wait(WAIT)
    os.kill(holder.pid, signal.SIGKILL)
    began = time.monotonic()
    with pytest.raises(OwnerDiedError) as raised:
        lock.acquire(timeout=WAIT)
    assert time.monotonic() - began < 1.0
    assert raised.value.pid == holder.pid
    assert raised.value.name == "Holder"
    assert str(holder.pid) in str(raised.value) and "Holder" in str(raised.value)
    assert isinstance(raised.value, RuntimeError)
    # Reported once; the lock is free and works again.
    assert lock.acquire(timeout=WAIT)
    lock.release()
    assert lock.acquire(False)
    lock.release()
    assert joined(holder)


def test_a_dead_owner_error_pickles_with_its_details():
    lock = mp.Lock()
    ready = mp.Event()
    holder = start(tasks.hold_lock_until_killed, lock, ready, name="Pickled")
    assert ready.wait(WAIT)
    os.kill(holder.pid, signal.SIGKILL)
    with pytest.raises(OwnerDiedError) as raised:
        lock.acquire(timeout=WAIT)
    copy = pickle.loads(pickle.dumps(raised.value))
    assert (copy.pid, copy.name, str(copy)) == (holder.pid, "Pickled", str(raised.value))
    assert joined(holder)


def test_a_lock_held_by_a_live_process_is_waited_for():
    lock = mp.Lock()
    ready = mp.Event()
    holder = start(tasks.hold_lock_until_killed, lock, ready)
    try:
        assert ready.wait(WAIT)
        assert lock.acquire(timeout=0.5) is False
    finally:
        holder.kill()
        assert joined(holder)


# -- the standard semantics ----------------------------------------------------------------------


def test_a_lock_may_be_released_by_another_process():
    lock = mp.Lock()
    lock.acquire()
    child = start(tasks.release_lock, lock)
    assert joined(child) and child.exitcode == 0
    assert lock.acquire(False)


def test_an_rlock_is_released_only_by_its_owner():
    lock = mp.RLock()
    lock.acquire()
    lock.acquire()
    child = start(tasks.release_lock, lock)
    assert joined(child) and child.exitcode == 1  # AssertionError in the child
    lock.release()
    lock.release()
    with pytest.raises(AssertionError):
        lock.release()


def test_releasing_too_many_times_raises_valueerror():
    lock = mp.Lock()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    sem = mp.BoundedSemaphore(1)
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()


def test_the_classes_are_the_standard_library_s_too():
    import multiprocessing.synchronize as standard

    assert isinstance(mp.Lock(), standard.Lock)
    assert isinstance(mp.RLock(), standard.RLock)
    assert isinstance(mp.Semaphore(), standard.Semaphore)
    assert isinstance(mp.Condition(), standard.Condition)
    assert isinstance(mp.Event(), standard.Event)
    assert isinstance(mp.Barrier(2), standard.Barrier)


@pytest.mark.parametrize(
    "cls",
    [synchronize.Lock, synchronize.RLock, synchronize.Semaphore, synchronize.BoundedSemaphore],
)
def test_a_lock_s_acquire_release_and_with_are_its_native_methods(cls):
    lock = cls()
    # By the method resolution order, not by attributes set on each instance.
    for name in ("acquire", "release", "__enter__", "__exit__"):
        assert getattr(type(lock), name) is getattr(_SharedLock, name), name
    assert vars(lock) == {}
    assert lock._semlock is lock  # what the standard library's Condition and reprs call
    lock.note = "a user's attribute"
    assert vars(lock) == {"note": "a user's attribute"}


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("make", [synchronize.Lock, lambda: tasks.TaggedLock("mine")])
def test_a_lock_passes_to_a_child_under_every_start_method(method, make):
    lock = make()
    lock.acquire()
    child = mp.get_context(method).Process(
        target=tasks.release_lock_of_class, args=(lock, type(lock).__qualname__), daemon=True
    )
    child.start()
    assert joined(child) and child.exitcode == 0
    assert lock.acquire(timeout=WAIT)  # the child released this very lock


# On a new lock or semaphore of one, none of these waits for ever.
CALLS = [
    ("acquire", (), {}),
    ("acquire", (False,), {}),
    ("acquire", (), {"block": False}),
    ("acquire", (True, 0.01), {}),
    ("release", (), {}),
    ("release", (), {}),
    ("release", (), {}),
    ("__enter__", (), {}),
    ("acquire", (), {"timeout": 0}),
    ("__exit__", (None, None, None), {}),
    ("__exit__", (), {}),
    ("__exit__", (ValueError, ValueError("x"), None), {}),
    ("__exit__", (None,), {}),
    ("release", (1,), {}),
    ("acquire", (), {"timeout": -1}),
    ("acquire", (), {"timeout": 0.01}),
]


@pytest.mark.parametrize("name", ["Lock", "RLock", "Semaphore", "BoundedSemaphore"])
def test_every_call_form_of_acquire_release_and_with_is_the_standard_library_s(name):
    # Most calls take a direct path; the others, and every failure, take the full method: the
    # outcomes are the standard library's either way.
    def outcomes(lock):
        found = []
        for method, args, kwargs in CALLS:
            try:
                found.append((method, getattr(lock, method)(*args, **kwargs)))
            except Exception as error:
                found.append((method, type(error)))
        return found

    assert outcomes(getattr(mp, name)()) == outcomes(getattr(multiprocessing, name)())


def test_a_subclass_with_an_init_of_its_own_is_made_as_the_standard_library_s():
    lock = tasks.TaggedLock("mine")
    assert lock.tag == "mine"
    with lock:
        assert lock._is_mine()
    with pytest.raises(TypeError):
        synchronize.Lock(1)
    with pytest.raises(ValueError, match="initial value"):
        synchronize.Semaphore(-1)


def test_semaphore_get_value_counts():
    sem = mp.Semaphore(3)
    sem.acquire()
    assert sem.get_value() == 2
    sem.release()
    sem.release()
    assert sem.get_value() == 4


def test_an_event_set_in_another_process_wakes_the_waiter():
    event = mp.Event()
    child = start(tasks.set_event_later, event, 0.1)
    assert event.wait(WAIT)
    assert joined(child)


def test_a_condition_notified_in_another_process_wakes_the_waiter():
    condition = mp.Condition()
    value = mp.Value("i", 0)
    with condition:
        child = start(tasks.notify_under_condition, condition, value)
        assert condition.wait_for(lambda: value.value == 1, WAIT)
    assert joined(child)


def test_a_barrier_with_an_action_across_processes():
    barrier = mp.Barrier(2, timeout=WAIT)
    child = start(tasks.wait_on_barrier, barrier, 5)
    for _ in range(5):
        barrier.wait()
    assert joined(child) and child.exitcode == 0


def test_locks_pass_only_as_a_process_starts_as_the_standard_library_s():
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(mp.Lock())
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(mp.Condition())


@pytest.mark.parametrize(
    "make_pool",
    [
        lambda initargs: multiprocessing.get_context("spawn").Pool(
            2, initializer=tasks.keep_initializer_argument, initargs=initargs
        ),
        # Workers forked from the caller inherit what they are given, as the standard
        # library's forked workers do (the only way a lock reaches an already running worker).
        lambda initargs: ProcessPoolExecutor(
            2,
            initializer=tasks.keep_initializer_argument,
            initargs=initargs,
            mp_context=multiprocessing.get_context("fork"),
        ),
    ],
    ids=["multiprocessing.Pool", "treadle ProcessPoolExecutor(fork)"],
)
def test_a_value_and_its_lock_pass_to_a_pool_initializer(make_pool):
    value = mp.Value("q", 0)
    with make_pool((value,)) as pool:
        results = list(pool.map(tasks.increment_initializer_value, range(10)))
    assert sorted(results) == list(range(10))
    assert value.value == 10


def test_a_shared_lock_is_never_named_in_dev_shm_and_is_private():
    before = tasks.dev_shm()
    lock = mp.Lock()
    value = mp.Value("i")
    assert tasks.dev_shm() <= before
    for fd in (lock._semlock.fd(), value.get_obj()._wrapper._fd):
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
        assert os.stat(fd).st_mode & 0o777 == 0o600


def test_thousands_of_locks_take_a_few_descriptors_not_one_each():
    # As the standard library's named semaphores, which hold no descriptor: a lock is a slot
    # of an arena, so a program is not bounded by its limit on open files.
    lines = tasks.run_fresh(
        """
        import os, resource
        import treadle.multiprocessing as mp
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        locks = [mp.Lock() for _ in range(2000)] + [mp.RLock() for _ in range(500)]
        values = [mp.Value("i", i) for i in range(1000)]
        semaphores = [mp.BoundedSemaphore(2) for _ in range(500)]
        for lock in locks[::2]:
            assert lock.acquire(False)
        print(sum(lock.acquire(False) for lock in locks))
        print(len({lock._semlock.id for lock in locks}))
        print(sum(value.value for value in values), len(os.listdir("/proc/self/fd")))
        twice = [s.acquire(False) and s.acquire(False) and not s.acquire(False) for s in semaphores]
        print(all(twice))
        """
    )
    taken_now, distinct_ids, total, descriptors, semaphores_count = lines
    # The locks not taken before, and the RLocks again (this thread holds half of them).
    assert int(taken_now) == 1000 + 500
    assert int(distinct_ids) == 2500
    assert int(total) == sum(range(1000))
    assert int(descriptors) < 64
    assert semaphores_count == "True"


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_child_receives_many_locks_of_an_arena_each_as_it_is(method):
    locks = [mp.Lock() for _ in range(300)]
    for lock in locks[::3]:
        lock.acquire()
    results = mp.SimpleQueue()
    child = mp.get_context(method).Process(
        target=tasks.locks_report, args=(locks, results), daemon=True
    )
    child.start()
    taken, descriptors = results.get()
    assert joined(child)
    assert taken == [i % 3 != 0 for i in range(300)]
    assert descriptors <= 3  # the arenas the locks are in, mapped once each
    # What the child took, it took in the memory this process sees.
    assert [lock._semlock._get_value() for lock in locks] == [0] * 300


def test_a_forked_child_makes_its_locks_in_an_arena_of_its_own():
    before = mp.Lock()  # this process's arena has slots left
    made, done = mp.Event(), mp.Event()
    child = mp.get_context("fork").Process(
        target=tasks.make_and_hold_lock, args=(made, done), daemon=True
    )
    child.start()
    try:
        assert made.wait(WAIT)
        # The child's lock is not in a slot this process hands out next.
        after = [mp.Lock() for _ in range(4)]
        assert all(lock.acquire(False) for lock in after)
        assert before.acquire(False)
    finally:
        done.set()
    assert joined(child)


def test_ctrl_c_interrupts_an_acquire_that_waits():
    setup = """
        import treadle.multiprocessing as mp
        lock = mp.Lock()
        lock.acquire()
        """
    assert tasks.interrupted_by_ctrl_c(setup, "lock.acquire(timeout=60)")


# -- shared values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "work", [tasks.increment_under_lock, tasks.increment_atomically], ids=["get_lock", "atomic"]
)
def test_four_processes_increment_a_value_ten_thousand_times_each(work):
    value = mp.Value("i", 0)
    children = [start(work, value, 10_000) for _ in range(4)]
    for child in children:
        assert joined(child) and child.exitcode == 0
    assert value.value == 40_000


def test_a_number_s_value_is_read_and_written_natively_under_its_lock():
    value = mp.Value("i", 0)
    assert type(value).value is _SharedValue.value  # not the standard library's property
    with value.get_lock():  # a treadle RLock, taken again by the read and the write
        value.value += 1
    assert value.value == 1


VALUES = [0, 1, -1, 127, 128, 255, 256, 2**31, -(2**31) - 1, 2**63, 2**64 + 5, -(2**70)]
VALUES += [True, 2.5, -0.1, 1e300, float("inf"), "x", None, b"y"]


@pytest.mark.parametrize("code", [*"bBhHiIlLqQfdc", ctypes.c_bool, ctypes.c_longdouble])
def test_a_value_reads_and_writes_every_number_as_the_standard_library_s(code):
    def outcomes(value):
        found = [value.value]
        for new in VALUES:
            try:
                value.value = new
                found.append(value.value)
            except Exception as error:
                found.append(type(error))
        return found

    initial = b"a" if code == "c" else 1
    assert outcomes(mp.Value(code, initial)) == outcomes(multiprocessing.Value(code, initial))


def test_a_value_behind_another_kind_of_lock_uses_that_lock():
    value = mp.Value("i", 1, lock=multiprocessing.Lock())
    with value.get_lock():
        assert not value.get_lock().acquire(False)
    value.value = 5
    assert value.value == 5


def test_reading_a_value_waits_while_another_thread_holds_its_lock():
    value = mp.Value("q", 0)
    held = threading.Event()

    def hold_then_write():
        with value.get_lock():
            held.set()
            time.sleep(0.3)
            value.value = 42

    thread = threading.Thread(target=hold_then_write)
    thread.start()
    assert held.wait(WAIT)
    assert value.value == 42  # read only once the holder let go
    thread.join(WAIT)


def test_atomic_operations_on_values_and_raw_values():
    value = mp.Value("i", 5)
    assert value.fetch_add(3) == 5
    assert value.add(2) == 10
    assert value.compare_exchange(10, 1) == (True, 10)
    assert value.compare_exchange(10, 7) == (False, 1)
    assert value.load() == 1
    value.store(2**31 - 1)
    assert value.add(1) == -(2**31)  # wraps as C's int does
    raw = mp.RawValue(ctypes.c_ulonglong, 0)
    assert sharedctypes.fetch_add(raw, -1) == 0
    assert raw.value == 2**64 - 1
    with pytest.raises(TypeError, match="integer"):
        mp.Value("d", 1.0).fetch_add(1)


@pytest.mark.parametrize("code", list("bBhHiIqQ"))
def test_every_form_of_delta_adds_as_an_integer_of_the_value_s_width(code):
    bits = ctypes.sizeof(sharedctypes.typecode_to_type[code]) * 8
    low = -(2 ** (bits - 1)) if code.islower() else 0

    def wrapped(n):
        return (n - low) % 2**bits + low

    value = mp.Value(code, 0)
    expected = 0
    # No argument, a small int, a bool, an int past 64 bits, a keyword, an __index__ object.
    for args, kwargs, delta in [
        ((), {}, 1),
        ((5,), {}, 5),
        ((True,), {}, 1),
        ((-(2**70) - 3,), {}, -(2**70) - 3),
        ((), {"delta": 2**63 + 7}, 2**63 + 7),
        ((numpy.int64(-9),), {}, -9),
    ]:
        assert value.fetch_add(*args, **kwargs) == expected
        expected = wrapped(expected + delta)
        assert value.load() == expected
        expected = wrapped(expected + delta)
        assert value.add(*args, **kwargs) == expected
    for bad in (None, 1.5, "1"):
        with pytest.raises(TypeError):
            value.fetch_add(bad)
        with pytest.raises(TypeError):
            value.add(bad)
    assert value.load() == expected  # nothing added by a refused call


def test_lock_false_gives_the_raw_object_and_a_lock_argument_is_used():
    assert isinstance(mp.Value("i", 1, lock=False), ctypes.c_int)
    lock = mp.Lock()
    array = mp.Array("i", 3, lock=lock)
    assert array.get_lock() is lock
    with pytest.raises(AttributeError):
        mp.Value("i", lock=object())


def test_numpy_shares_an_array_s_memory_without_a_copy():
    array = mp.Array("d", 4)
    view = numpy.frombuffer(array.get_obj())
    view[:] = 2.5
    assert array[:] == [2.5] * 4
    array[0] = 1.0
    assert view[0] == 1.0


def test_sharedctypes_copy_and_synchronized():
    raw = mp.RawArray("i", [1, 2, 3])
    copied = sharedctypes.copy(raw)
    copied[0] = 9
    assert raw[:] == [1, 2, 3] and copied[:] == [9, 2, 3]
    wrapped = sharedctypes.synchronized(copied)
    assert isinstance(wrapped.get_lock(), synchronize.RLock)
    assert wrapped[:] == [9, 2, 3]


# -- deadlocks across processes ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_two_processes_taking_two_locks_in_opposite_orders_get_one_deadlock_error(kind):
    a, b = getattr(mp, kind)(), getattr(mp, kind)()
    ready, go, results = mp.Event(), mp.Event(), mp.SimpleQueue()
    child = start(tasks.take_in_order, a, b, ready, go, results, name="Taker")
    assert ready.wait(WAIT)
    b.acquire()
    go.set()
    try:
        a.acquire()
    except DeadlockError as error:
        b.release()
        ours = ("DeadlockError", str(error))
    else:
        a.release()
        b.release()
        ours = ("acquired", "")
    theirs = results.get()
    assert joined(child)
    outcomes = sorted([ours, theirs])
    assert [outcome for outcome, _ in outcomes] == ["DeadlockError", "acquired"]
    report = outcomes[0][1]
    for pid, name in ((os.getpid(), "MainProcess"), (child.pid, "Taker")):
        assert f"process {pid} ({name!r})".replace("'", '"') in report
    assert f"{kind} #{a._semlock.id}" in report and f"{kind} #{b._semlock.id}" in report


def test_waits_with_a_timeout_in_a_lock_order_cycle_time_out_without_a_report():
    a, b = mp.Lock(), mp.Lock()
    ready, go, results = mp.Event(), mp.Event(), mp.SimpleQueue()
    child = start(tasks.take_in_order, a, b, ready, go, results)
    assert ready.wait(WAIT)
    with b:
        go.set()
        assert a.acquire(timeout=0.5) is False
    assert results.get() == ("acquired", "")
    assert joined(child)


def test_a_thread_waiting_for_a_lock_it_holds_waits_for_another_to_release_it():
    lock = mp.Lock()
    lock.acquire()
    child = start(tasks.release_lock, lock)
    assert lock.acquire()  # a signal from the child, not a deadlock
    assert joined(child)


def test_values_are_carved_from_arenas_not_a_descriptor_each():
    before = len(os.listdir("/proc/self/fd"))
    values = [mp.RawValue("i", i) for i in range(2000)]
    assert len(os.listdir("/proc/self/fd")) - before < 10  # arenas double: a few, not 2,000
    assert [value.value for value in values] == list(range(2000))
    del values
    reused = [mp.RawValue("q") for _ in range(1000)]  # freed blocks come back zeroed
    assert {value.value for value in reused} == {0}


def test_a_child_maps_an_arena_once_however_many_values_it_receives():
    values = [mp.RawValue("q", i) for i in range(200)]
    results = mp.SimpleQueue()
    child = start(tasks.heap_report, values, results)
    total, descriptors = results.get()
    assert total == sum(range(200))
    assert descriptors <= 2  # the arena (or two) the values are in, not one per value
    assert joined(child)
