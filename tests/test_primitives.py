"""treadle's primitives behave like threading's where CPython's suites do not look.

Each test names one behaviour. Where the standard library defines the behaviour, the test runs it
against both ``threading`` and ``treadle`` so that a difference shows as a failure.
"""

import pickle
import sys
import threading
import time
import weakref

import pytest

import treadle

LOCKS = [threading.Lock, treadle.Lock]
RLOCKS = [threading.RLock, treadle.RLock]
ALL_LOCKS = LOCKS + RLOCKS


def run_in_thread(fn, timeout=10.0):
    """Run ``fn`` in a thread, return its result or raise its exception; a hang fails."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "thread did not finish in time"
    if "error" in box:
        raise box["error"]
    return box.get("result")


@pytest.mark.parametrize("locktype", ALL_LOCKS)
@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((False, 1), {}, ValueError),
        ((), {"timeout": -2}, ValueError),
        ((), {"timeout": 1e100}, OverflowError),
        ((), {"timeout": "1"}, TypeError),
        ((), {"timeout": float("nan")}, ValueError),
    ],
)
def test_lock_acquire_rejects_bad_arguments_like_threading(locktype, args, kwargs, error):
    lock = locktype()
    with pytest.raises(error):
        lock.acquire(*args, **kwargs)
    assert lock.acquire(False), "a rejected acquire must not take the lock"


@pytest.mark.parametrize("locktype", LOCKS)
def test_release_of_unlocked_lock_raises_runtime_error(locktype):
    with pytest.raises(RuntimeError):
        locktype().release()


@pytest.mark.parametrize("locktype", RLOCKS)
def test_rlock_release_by_non_owner_raises_runtime_error(locktype):
    lock = locktype()
    lock.acquire()
    with pytest.raises(RuntimeError):
        run_in_thread(lock.release)
    lock.release()


def test_lock_acquire_accepts_int_blocking_flag():
    lock = treadle.Lock()
    assert lock.acquire(1) is True
    assert lock.acquire(0) is False


@pytest.mark.parametrize("semtype", [threading.Semaphore, treadle.Semaphore])
def test_semaphore_rejects_negative_value_and_timeout_without_blocking(semtype):
    with pytest.raises(ValueError):
        semtype(-1)
    sem = semtype(0)
    with pytest.raises(ValueError):
        sem.acquire(False, 1)
    assert sem.acquire(timeout=0) is False
    assert sem.acquire(timeout=-5) is False


@pytest.mark.parametrize("semtype", [threading.BoundedSemaphore, treadle.BoundedSemaphore])
def test_bounded_semaphore_over_release_raises_and_keeps_value(semtype):
    sem = semtype(2)
    sem.acquire()
    sem.release()
    with pytest.raises(ValueError):
        sem.release()
    assert sem.acquire(False) and sem.acquire(False)
    assert not sem.acquire(False)


@pytest.mark.parametrize("semtype", [threading.Semaphore, treadle.Semaphore])
def test_semaphore_release_n_wakes_n_waiters(semtype):
    sem = semtype(0)
    done = []
    threads = [
        threading.Thread(target=lambda: done.append(sem.acquire(timeout=10))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    sem.release(3)
    for thread in threads:
        thread.join(10)
    assert done == [True, True, True]


@pytest.mark.parametrize("semtype", [threading.Semaphore, treadle.Semaphore])
def test_semaphore_release_zero_raises_value_error(semtype):
    with pytest.raises(ValueError):
        semtype(1).release(0)


@pytest.mark.parametrize(
    "semtype",
    [threading.Semaphore, treadle.Semaphore, threading.BoundedSemaphore, treadle.BoundedSemaphore],
)
def test_semaphore_counts_past_two_to_the_64(semtype):
    sem = semtype(2**64)
    assert sem._value == 2**64
    assert sem.acquire(False)
    assert sem._value == 2**64 - 1
    sem.release()
    assert sem._value == 2**64


def test_semaphore_releases_a_count_past_two_to_the_64():
    # threading's release(n) calls notify() n times, so it cannot be run beside it.
    sem = treadle.Semaphore(0)
    sem.release(2**64 + 5)
    assert sem._value == 2**64 + 5


def test_semaphore_counts_from_two_to_the_128_are_an_overflow_error():
    with pytest.raises(OverflowError, match="2\\*\\*128"):
        treadle.Semaphore(2**128)
    sem = treadle.Semaphore(2**128 - 1)
    with pytest.raises(OverflowError):
        sem.release()
    assert sem._value == 2**128 - 1


def test_barrier_needs_at_least_one_party():
    # Python 3.13 added this check to threading.Barrier; treadle has it on every version.
    with pytest.raises(ValueError):
        treadle.Barrier(0)


@pytest.mark.parametrize("barriertype", [threading.Barrier, treadle.Barrier])
def test_barrier_action_error_propagates_and_breaks_barrier(barriertype):
    def action():
        raise KeyError("boom")

    barrier = barriertype(2, action=action, timeout=10)
    seen = []

    def other():
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            seen.append("broken")

    thread = threading.Thread(target=other)
    thread.start()
    deadline = time.monotonic() + 10
    while barrier.n_waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(KeyError):
        barrier.wait()
    thread.join(10)
    assert barrier.broken
    assert seen == ["broken"]


def test_lock_released_by_another_thread():
    lock = treadle.Lock()
    lock.acquire()
    run_in_thread(lock.release)
    assert lock.acquire(False)


def test_blocking_wait_releases_the_gil():
    lock = treadle.Lock()
    lock.acquire()
    progress = []

    def spin():
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            progress.append(1)
        lock.release()

    thread = threading.Thread(target=spin)
    thread.start()
    assert lock.acquire(timeout=10)
    thread.join(10)
    assert len(progress) > 1000, "the other thread could not run while we waited"


@pytest.mark.parametrize(
    "make",
    [treadle.Lock, treadle.RLock, treadle.Condition, treadle.Event, treadle.Semaphore],
)
def test_primitives_cannot_be_pickled(make):
    with pytest.raises(TypeError):
        pickle.dumps(make())


@pytest.mark.parametrize(
    "make",
    [treadle.Lock, treadle.RLock, treadle.Condition, treadle.Event, treadle.Semaphore],
)
def test_primitives_are_weakly_referencable_and_freed(make):
    obj = make()
    ref = weakref.ref(obj)
    del obj
    assert ref() is None


@pytest.mark.parametrize("locktype", [threading.Lock, threading.RLock, treadle.Lock, treadle.RLock])
def test_condition_works_over_any_lock(locktype):
    cond = treadle.Condition(locktype())
    ready = []

    def waiter():
        with cond:
            return cond.wait_for(lambda: ready, timeout=10)

    thread_result = []
    thread = threading.Thread(target=lambda: thread_result.append(waiter()))
    thread.start()
    time.sleep(0.02)
    with cond:
        ready.append(True)
        cond.notify_all()
    thread.join(10)
    assert thread_result == [[True]]


def test_threading_condition_works_over_treadle_locks():
    for lock in (treadle.Lock(), treadle.RLock()):
        cond = threading.Condition(lock)
        with cond:
            assert cond.wait(0.01) is False


def test_condition_notify_without_lock_raises_runtime_error():
    cond = treadle.Condition(treadle.Lock())
    with pytest.raises(RuntimeError):
        cond.notify()
    with pytest.raises(RuntimeError):
        cond.wait(0)


def test_condition_wait_timeout_returns_false_and_reacquires():
    cond = treadle.Condition()
    with cond:
        assert cond.wait(0.01) is False
        assert cond._is_owned()


def test_event_set_then_clear_releases_waiters():
    event = treadle.Event()
    results = []
    threads = [threading.Thread(target=lambda: results.append(event.wait(10))) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    event.set()
    event.clear()
    for thread in threads:
        thread.join(10)
    assert results == [True] * 4


def test_subclasses_with_their_own_init_work():
    class Job(treadle.Event):
        def __init__(self, name):
            super().__init__()
            self.name = name

    class Pool(treadle.BoundedSemaphore):
        def __init__(self):
            super().__init__(2)

    class Guard(treadle.Condition):
        def __init__(self):
            super().__init__(treadle.Lock())

    class Gate(treadle.Barrier):
        def __init__(self):
            super().__init__(1, timeout=5)

    job = Job("x")
    assert job.name == "x" and not job.is_set()
    pool = Pool()
    assert pool.acquire(False) and pool.acquire(False) and not pool.acquire(False)
    assert isinstance(pool, treadle.Semaphore)
    guard = Guard()
    with guard:
        assert not guard.acquire(False), "the subclass's Lock must be used, not a default RLock"
    assert Gate().wait() == 0


def test_constructors_reject_bad_arguments():
    with pytest.raises(TypeError):
        treadle.Event(1)
    with pytest.raises(TypeError):
        treadle.Condition(treadle.Lock(), 2)
    with pytest.raises(TypeError):
        treadle.Barrier()
    with pytest.raises(TypeError):
        treadle.Semaphore("3")


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_primitives_work_in_a_forked_child():
    import os

    lock, rlock, event = treadle.Lock(), treadle.RLock(), treadle.Event()
    held = treadle.Lock()
    held.acquire()
    pid = os.fork()
    if pid == 0:  # child
        ok = lock.acquire(timeout=1) and rlock.acquire(timeout=1)
        event.set()
        ok = ok and event.wait(1) and not held.acquire(timeout=0.05)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not event.is_set(), "the child's event is its own"


INTERRUPT_SCRIPT = r"""
import os, signal, sys, threading, time
import treadle
kind = sys.argv[1]
if kind == "lock":
    obj = treadle.Lock(); obj.acquire(); wait = obj.acquire
elif kind == "rlock":
    obj = treadle.RLock(); threading.Thread(target=obj.acquire, daemon=True).start()
    time.sleep(0.1); wait = obj.acquire
elif kind == "event":
    wait = treadle.Event().wait
elif kind == "condition":
    cond = treadle.Condition(); cond.acquire(); wait = cond.wait
elif kind == "semaphore":
    wait = treadle.Semaphore(0).acquire
elif kind == "barrier":
    wait = treadle.Barrier(2).wait
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    wait()
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - start:.3f}")
    sys.exit(0)
sys.exit(1)
"""


@pytest.mark.parametrize("kind", ["lock", "rlock", "event", "condition", "semaphore", "barrier"])
def test_ctrl_c_interrupts_a_blocked_main_thread(kind):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_SCRIPT, kind],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    waited = float(proc.stdout.split()[-1])
    assert waited < 2.0


def test_deprecated_aliases_warn_as_threading_does():
    event = treadle.Event()
    with pytest.warns(DeprecationWarning, match=r"use is_set\(\)"):
        assert event.isSet() is False
    cond = treadle.Condition()
    with cond, pytest.warns(DeprecationWarning, match=r"use notify_all\(\)"):
        cond.notifyAll()


def test_a_condition_delegates_the_lock_protocol_to_its_lock():
    # threading.Condition takes _release_save/_acquire_restore/_is_owned from its lock, so that
    # a Condition can itself be the lock of another Condition.
    outer = treadle.Condition(treadle.Condition())
    with outer:
        assert outer.wait(0.01) is False
        assert outer._is_owned()
    plain = treadle.Condition(treadle.Lock())
    plain.acquire()
    state = plain._release_save()
    assert not plain._is_owned()
    plain._acquire_restore(state)
    assert plain._is_owned()
    plain.release()
    with pytest.raises(RuntimeError):
        treadle.Condition()._release_save()


def test_rlock_arguments_are_ignored_as_threading_does():
    # threading.RLock ignores arguments; since 3.13 it warns that passing them is deprecated. A
    # subclass's own __init__ takes its own arguments, with no warning.
    if sys.version_info >= (3, 13):
        with pytest.warns(DeprecationWarning, match="Passing arguments to RLock"):
            lock = treadle.RLock(1, a=2)
    else:
        lock = treadle.RLock(1, a=2)
    assert lock.acquire(timeout=1)
    lock.release()

    class Custom(treadle.RLock):
        def __init__(self, a, *, b):
            super().__init__()
            self.a, self.b = a, b

    custom = Custom(1, b=2)
    with custom:
        assert (custom.a, custom.b) == (1, 2)
