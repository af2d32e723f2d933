"""Deadlock detection: a deadlock raises DeadlockError with a report, instead of hanging.

Every scenario runs under pytest's per-test timeout: a missed detection is a failure, not a
stuck run. Threads here are ``treadle.Thread`` so that their joins are in the wait graph too.
"""

import gc
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from _children import run_until_interrupted, run_with_a_thread_held_back

import treadle
from treadle import DeadlockError


@pytest.fixture(autouse=True)
def raise_mode():
    treadle.deadlock.set_mode("raise")
    yield
    treadle.deadlock.set_mode("raise")


def run_threads(*targets, names=None):
    threads = [
        treadle.Thread(target=t, name=(names[i] if names else None)) for i, t in enumerate(targets)
    ]
    for t in threads:
        t.start()
    return threads


def test_opposite_lock_order_raises_in_one_thread_and_the_other_completes():
    a, b = treadle.Lock(), treadle.Lock()
    both_hold_one = threading.Barrier(2)
    outcome = {}

    def worker(first, second, name):
        with first:
            both_hold_one.wait(5)
            start = time.monotonic()
            try:
                with second:
                    outcome[name] = "completed"
            except DeadlockError as err:
                outcome[name] = err
                outcome["latency"] = time.monotonic() - start

    threads = run_threads(
        lambda: worker(a, b, "T1"), lambda: worker(b, a, "T2"), names=["T1", "T2"]
    )
    for t in threads:
        t.join(10)
    assert sorted(k for k, v in outcome.items() if v == "completed") in (["T1"], ["T2"])
    err = next(v for v in outcome.values() if isinstance(v, DeadlockError))
    assert outcome["latency"] < 0.1
    report = str(err)
    assert "T1" in report and "T2" in report
    assert len(err.cycle) == 2
    assert {edge.kind for edge in err.cycle} == {"lock"}
    assert {edge.waiter for edge in err.cycle} == {"T1", "T2"}
    assert {edge.owner for edge in err.cycle} == {"T1", "T2"}
    assert all(edge.created_at and "test_deadlock.py" in edge.created_at for edge in err.cycle)
    assert "Stacks at detection" in report


def test_rlock_cycle_is_detected():
    a, b = treadle.RLock(), treadle.RLock()
    both = threading.Barrier(2)
    errors = []

    def worker(first, second):
        with first:
            both.wait(5)
            try:
                with second:
                    pass
            except DeadlockError as err:
                errors.append(err)

    for t in run_threads(lambda: worker(a, b), lambda: worker(b, a)):
        t.join(10)
    assert len(errors) == 1
    assert {edge.kind for edge in errors[0].cycle} == {"rlock"}


def test_thread_joining_main_while_main_joins_it_raises():
    main = treadle.main_thread()
    seen = []

    def joins_main():
        # Wait until the main thread is parked in its join of this thread, then join it.
        deadline = time.monotonic() + 5
        while "waits for join" not in treadle.dump_waits() and time.monotonic() < deadline:
            time.sleep(0.005)
        try:
            main.join()
        except DeadlockError as err:
            seen.append(err)

    thread = treadle.Thread(target=joins_main, name="joiner")
    thread.start()
    thread.join()  # returns once the joiner got DeadlockError and ended
    assert not thread.is_alive()
    assert len(seen) == 1
    assert [edge.kind for edge in seen[0].cycle] == ["join", "join"]
    assert {edge.waiter for edge in seen[0].cycle} == {"joiner", "MainThread"}


def test_ring_of_three_joins_raises_once():
    threads = {}
    ready = threading.Barrier(3)
    errors = []

    def join_next(name, nxt):
        ready.wait(5)
        try:
            threads[nxt].join()
        except DeadlockError as err:
            errors.append(err)

    for name, nxt in (("A", "B"), ("B", "C"), ("C", "A")):
        threads[name] = treadle.Thread(target=join_next, args=(name, nxt), name=name)
    for t in threads.values():
        t.start()
    for t in threads.values():
        t.join(10)
    assert len(errors) == 1
    assert len(errors[0].cycle) == 3
    assert all(not t.is_alive() for t in threads.values())


def wait_until_reported(text, timeout=5):
    deadline = time.monotonic() + timeout
    while text not in treadle.dump_waits():
        assert time.monotonic() < deadline, f"never saw {text!r} in dump_waits()"
        time.sleep(0.005)


def test_cycle_through_a_lock_a_join_and_a_future_is_one_report():
    lock = treadle.Lock()
    lock.acquire()  # the main thread holds the lock ...

    def wants_lock():
        with lock:  # ... that B waits for,
            pass

    b = treadle.Thread(target=wants_lock, name="B")
    b.start()
    wait_until_reported("thread 'B' waits for lock")
    with treadle.ThreadPoolExecutor(1, thread_name_prefix="W") as pool:
        future = pool.submit(b.join)  # a worker joins B,
        wait_until_reported("waits for join")
        with pytest.raises(DeadlockError) as info:
            future.result()  # and the main thread waits for the worker's future.
        lock.release()
        future.result(timeout=10)
    b.join(10)
    assert not b.is_alive()
    cycle = info.value.cycle
    assert len(cycle) == 3
    assert sorted(edge.kind for edge in cycle) == ["future", "join", "lock"]
    assert cycle[0].kind == "future" and cycle[0].owner.startswith("W")


def parked_in(kind, timeout=10):
    """Waits until some thread waits in treadle on something of ``kind``."""
    deadline = time.monotonic() + timeout
    while f" waits for {kind} " not in treadle.dump_waits():
        assert time.monotonic() < deadline, f"no thread parked on a {kind}"
        time.sleep(0.005)


def holds_then_waits_on(outer, cond, waiting):
    """A thread's body: holds ``outer``, then waits on ``cond``; once notified it must re-take
    ``cond``'s lock before it can let go of ``outer``."""

    def body():
        with outer, cond:
            waiting.set()
            cond.wait()

    return body


def test_a_cycle_closed_by_a_condition_reacquire_raises_in_the_other_thread():
    # The waiter holds `outer` and is notified while the main thread holds the condition's lock
    # and waits for `outer`: its re-acquire closes the cycle. It cannot fail (wait() must return
    # with the lock held), so the main thread's wait raises, naming both edges.
    lock, outer, waiting = treadle.Lock(), treadle.Lock(), threading.Event()
    cond = treadle.Condition(lock)
    waiter = run_threads(holds_then_waits_on(outer, cond, waiting), names=["waiter"])[0]
    assert waiting.wait(10)
    parked_in("condition")
    lock.acquire()

    def notify_once_main_waits():
        parked_in("lock")
        cond.notify()  # a Lock has no owner: any thread may notify while it is held

    notifier = threading.Thread(target=notify_once_main_waits)
    notifier.start()
    start = time.monotonic()
    with pytest.raises(DeadlockError) as caught:
        outer.acquire()
    assert time.monotonic() - start < 5
    notifier.join(10)
    assert sorted(edge.kind for edge in caught.value.cycle) == ["lock", "reacquire"]
    assert "waits to re-take" in str(caught.value)
    lock.release()  # the waiter re-takes it, returns from wait(), and lets go of `outer`
    waiter.join(10)
    assert not waiter.is_alive()
    assert outer.acquire(timeout=5)
    outer.release()


def test_a_condition_reacquire_over_an_rlock_is_in_the_wait_graph():
    # A default Condition (over an RLock): the main thread notifies, then waits for `outer`
    # while still holding the condition. Whichever wait is published second closes the cycle;
    # either way, the main thread's wait is the one that raises.
    outer, waiting = treadle.Lock(), threading.Event()
    cond = treadle.Condition()
    waiter = run_threads(holds_then_waits_on(outer, cond, waiting), names=["waiter"])[0]
    assert waiting.wait(10)
    parked_in("condition")
    with cond:
        cond.notify()
        with pytest.raises(DeadlockError) as caught:
            outer.acquire()
    assert sorted(edge.kind for edge in caught.value.cycle) == ["lock", "reacquire"]
    waiter.join(10)
    assert not waiter.is_alive()


def test_rlock_reentry_by_owner_is_not_a_deadlock():
    lock = treadle.RLock()
    with lock, lock, lock:
        assert lock._recursion_count() == 3


def test_lock_taken_twice_by_the_only_thread_raises():
    # The whole process is this test's thread (and pytest's main thread waiting for it):
    # run it in a child so that nothing else could release the lock.
    import subprocess
    import sys

    code = (
        "import treadle\n"
        "lock = treadle.Lock()\n"
        "lock.acquire()\n"
        "try:\n"
        "    lock.acquire()\n"
        "except treadle.DeadlockError as err:\n"
        "    print('DEADLOCK', err.cycle[0].kind)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert proc.stdout.strip() == "DEADLOCK lock", proc.stderr


def test_lock_released_by_another_thread_is_not_a_deadlock():
    # Lock used as a signal: acquired twice by one thread, released by another (as
    # lock_tests.LockTests.test_reacquire does). No report while the other thread can act.
    lock = treadle.Lock()
    lock.acquire()

    def release_later():
        time.sleep(0.3)
        lock.release()

    thread = run_threads(release_later)[0]
    assert lock.acquire(timeout=10)
    thread.join(5)


def run_child(code, timeout=30):
    """Runs ``code`` in a fresh interpreter: a stall is judged over the whole process, and the
    test runner's own threads and signal handlers (pytest-timeout's SIGALRM) would count as able
    to wake anyone."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_event_only_a_blocked_worker_could_set_is_detected():
    out = run_child(
        """
        import threading, time, treadle
        event, lock = treadle.Event(), treadle.Lock()
        lock.acquire()
        started = threading.Event()
        def worker():
            started.set()
            with lock:          # held by the main thread, which waits on the event
                event.set()
        thread = treadle.Thread(target=worker, name="worker")
        thread.start()
        started.wait(5)
        start = time.monotonic()
        try:
            event.wait()
        except treadle.DeadlockError as err:
            print("DEADLOCK", round(time.monotonic() - start, 3))
            print(sorted(edge.kind for edge in err.cycle))
            print(str(err).splitlines()[0])
        lock.release()
        thread.join(5)
        """
    )
    lines = out.splitlines()
    assert lines[0].startswith("DEADLOCK"), out
    assert float(lines[0].split()[1]) < 1.0
    assert lines[1] == "['event', 'lock']"
    assert "none of them can wake another" in lines[2]


def test_sleeping_third_thread_delays_the_report_until_it_parks():
    out = run_child(
        """
        import threading, time, treadle
        event, lock, never = treadle.Event(), treadle.Lock(), treadle.Event()
        lock.acquire()
        parked_at = []
        def worker():
            with lock:
                event.set()
        def sleeper():
            time.sleep(0.5)
            parked_at.append(time.monotonic())
            try:
                never.wait()
            except treadle.DeadlockError:
                print("SLEEPER REPORTED")
                lock.release()
        threads = [treadle.Thread(target=worker), treadle.Thread(target=sleeper)]
        start = time.monotonic()
        for t in threads:
            t.start()
        try:
            event.wait()
            print("MAIN WOKEN")
        except treadle.DeadlockError:
            print("MAIN REPORTED")
            lock.release()
            never.set()
        for t in threads:
            t.join(5)
        print("REPORT AFTER SLEEP", bool(parked_at) and parked_at[0] - start >= 0.45)
        """
    )
    # Nothing is reported while the sleeper could still act; once it parks, one thread reports.
    assert ("MAIN REPORTED" in out) != ("SLEEPER REPORTED" in out), out
    assert "REPORT AFTER SLEEP True" in out, out


# A thread whose wait is over has often taken what it waited for (the task, the lock): its
# target is not ready any more. Until it is back in the interpreter, which the main thread holds
# here and a machine busy with other work can delay much longer than the stall check's grace,
# it must not look parked: the main thread, waiting on it, would see a stall of the process.
HELD_BACK_PRELUDE = """
import mmap, os, random, sys, threading, time, treadle

def report_and_exit(error):
    print("false report:", str(error).splitlines()[0], flush=True)
    os._exit(1)

data = [random.random() for _ in range(1_500_000)]  # sorting it holds the interpreter lock
# A thread waiting for the interpreter lock asks its holder to let go only after this long: the
# held-back thread never does (its holder would then wait for it to take the lock).
sys.setswitchinterval(30)
flag = mmap.mmap(os.open(os.environ["HELD_BACK_FLAG"], os.O_RDWR), 1)

def parked_once(line):
    deadline = time.monotonic() + 10
    while line not in treadle.dump_waits():
        assert time.monotonic() < deadline, treadle.dump_waits()
        time.sleep(0.001)

def spin_until(condition):
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline

def hold_back(thread, parked_line):
    parked_once(parked_line)
    print(thread.native_id, flush=True)
    sys.stdin.readline()

def go_on_once(taken, wait):
    # Once the held-back thread has taken what it waited for, it waits to get back into the
    # interpreter, which this thread holds (sorting); then this thread waits with wait().
    spin_until(taken)
    flag[0] = 1
    data.sort()
    try:
        return wait()
    except treadle.DeadlockError as error:
        report_and_exit(error)
"""


def test_a_worker_that_took_a_task_is_not_idle_while_it_waits_for_the_interpreter():
    out = run_with_a_thread_held_back(
        HELD_BACK_PRELUDE
        + """
pool = treadle.ThreadPoolExecutor(1)
assert pool.submit(int).result() == 0
[worker] = [t for t in threading.enumerate() if t.name.startswith(pool._thread_name_prefix)]
hold_back(worker, f"'{worker.name}' waits for queue")
future = pool.submit(pool.shutdown, False)  # the task ends the pool, and so its worker
go_on_once(lambda: pool._pending() == 0, worker.join)
print("joined", future.done(), flush=True)
"""
    )
    assert out == "joined True\n", out


def test_a_thread_that_took_a_lock_is_not_waiting_while_it_waits_for_the_interpreter():
    out = run_with_a_thread_held_back(
        HELD_BACK_PRELUDE
        + """
handoff = treadle.Lock()
handoff.acquire()
def takes_handoff():
    try:
        handoff.acquire()
    except treadle.DeadlockError as error:
        report_and_exit(error)
    handoff.release()
taker = threading.Thread(target=takes_handoff, name="taker")
taker.start()
hold_back(taker, "'taker' waits for lock")
handoff.release()
go_on_once(handoff.locked, handoff.acquire)
print("taken back", flush=True)
taker.join(5)
"""
    )
    assert out == "taken back\n", out


def test_wait_with_timeout_never_raises_and_logs_when_part_of_a_cycle(caplog):
    a, b = treadle.Lock(), treadle.Lock()
    before, after = threading.Barrier(2), threading.Barrier(2)
    results = []

    def worker(first, second, timeout):
        with first:
            before.wait(5)
            results.append(second.acquire(timeout=timeout))
            after.wait(5)

    with caplog.at_level("WARNING", logger="treadle"):
        for t in run_threads(lambda: worker(a, b, 0.2), lambda: worker(b, a, 0.3)):
            t.join(10)
    assert results == [False, False]
    assert "timed out while part of a cycle" in caplog.text


def test_warn_mode_warns_and_keeps_waiting():
    treadle.deadlock.set_mode("warn")
    a, b = treadle.Lock(), treadle.Lock()
    both = threading.Barrier(2)

    def first():
        a.acquire()
        both.wait(5)
        b.acquire()
        b.release()

    def second():
        b.acquire()
        both.wait(5)
        a.acquire()
        a.release()
        b.release()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = run_threads(first, second)
        deadline = time.monotonic() + 5
        while not caught and time.monotonic() < deadline:
            time.sleep(0.01)
        # In warn mode the threads still wait: break the deadlock from outside, as a program
        # could (a Lock may be released by any thread).
        a.release()
        for t in threads:
            t.join(10)
    assert all(not t.is_alive() for t in threads)
    assert [w.category for w in caught] == [treadle.DeadlockWarning]


def test_mode_off_and_bad_mode():
    treadle.deadlock.set_mode("off")
    assert treadle.deadlock.get_mode() == "off"
    with pytest.raises(ValueError):
        treadle.deadlock.set_mode("loud")


@pytest.mark.parametrize(
    ("value", "mode"), [("bogus", "raise"), (" Warn ", "warn"), ("off", "off")]
)
def test_the_mode_from_the_environment_never_stops_import(value, mode):
    """A typo in ``TREADLE_DEADLOCK`` warns and keeps the default; a mode is read as given."""
    done = subprocess.run(
        [sys.executable, "-c", "import treadle; print(treadle.deadlock.get_mode())"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TREADLE_DEADLOCK": value},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == mode
    warned = "RuntimeWarning: TREADLE_DEADLOCK='bogus' is not a deadlock mode" in done.stderr
    assert warned == (value == "bogus"), done.stderr


def test_dump_waits_shows_a_blocked_thread():
    event = treadle.Event()
    thread = treadle.Thread(target=lambda: event.wait(10), name="dumped")
    thread.start()
    deadline = time.monotonic() + 5
    while "dumped" not in treadle.dump_waits() and time.monotonic() < deadline:
        time.sleep(0.01)
    text = treadle.dump_waits()
    event.set()
    thread.join(5)
    assert "thread 'dumped' waits for event" in text


def test_no_false_report_under_random_correct_use():
    """64 threads, a million random operations on locks, RLocks, a Condition, a Semaphore and a
    Queue, all in a consistent order or with timeouts: no DeadlockError, no warning."""
    locks = [treadle.Lock() for _ in range(4)]
    rlocks = [treadle.RLock() for _ in range(4)]
    cond = treadle.Condition()
    sem = treadle.Semaphore(3)
    queue = treadle.Queue(maxsize=8)
    errors = []
    threads_count, ops = 64, 1_000_000 // 64

    def worker(seed):
        rng = random.Random(seed)
        try:
            for _ in range(ops):
                op = rng.random()
                if op < 0.35:
                    # Always in index order: no cycle is possible.
                    i, j = sorted(rng.sample(range(4), 2))
                    with locks[i], locks[j]:
                        pass
                elif op < 0.55:
                    r = rlocks[rng.randrange(4)]
                    with r, r:
                        pass
                elif op < 0.65:
                    with cond:
                        cond.notify()
                        cond.wait(0.001)
                elif op < 0.8:
                    if sem.acquire(timeout=0.01):
                        sem.release()
                elif op < 0.9:
                    try:
                        queue.put(seed, timeout=0.01)
                    except treadle.Full:
                        pass
                else:
                    try:
                        queue.get(timeout=0.01)
                    except treadle.Empty:
                        pass
        except BaseException as exc:
            errors.append(exc)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [treadle.Thread(target=worker, args=(seed,)) for seed in range(threads_count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
    assert not errors
    assert all(not t.is_alive() for t in threads)
    assert [w for w in caught if "deadlock" in str(w.message).lower()] == []


@pytest.fixture
def lock_order():
    treadle.deadlock.enable_lock_order()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    treadle.deadlock.disable_lock_order()


def take_in_order(first, second):
    with first, second:
        pass


def inversion_in_two_threads(a, b):
    for order in ((a, b), (b, a)):
        thread = treadle.Thread(target=take_in_order, args=order)
        thread.start()
        thread.join(5)


def _guarded(guard, first, second):
    with guard, first, second:
        pass


def potential(caught):
    return [w for w in caught if issubclass(w.category, treadle.PotentialDeadlockWarning)]


def test_lock_order_inversion_in_two_threads_warns_once(lock_order):
    # Locks are keyed by the line that created them: one line each.
    a = treadle.Lock()
    b = treadle.RLock()
    inversion_in_two_threads(a, b)
    inversion_in_two_threads(a, b)
    found = potential(lock_order)
    assert len(found) == 1
    text = str(found[0].message)
    assert "test_deadlock.py" in text and "opposite order" in text


def test_lock_order_mode_off_gives_no_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = treadle.Lock()
        b = treadle.Lock()
        inversion_in_two_threads(a, b)
    assert potential(caught) == []


def test_lock_order_under_a_common_outer_lock_gives_no_warning(lock_order):
    guard = treadle.Lock()
    a = treadle.Lock()
    b = treadle.Lock()
    for order in ((a, b), (b, a)):
        thread = treadle.Thread(target=_guarded, args=(guard, *order))
        thread.start()
        thread.join(5)
    assert potential(lock_order) == []


def test_lock_order_both_orders_in_one_thread_gives_no_warning(lock_order):
    a = treadle.Lock()
    b = treadle.Lock()
    take_in_order(a, b)
    take_in_order(b, a)
    assert potential(lock_order) == []


def test_lock_order_tells_apart_two_locks_made_on_one_line(lock_order):
    a, b = treadle.Lock(), treadle.Lock()
    inversion_in_two_threads(a, b)
    [found] = potential(lock_order)
    text = str(found.message)
    assert "opposite order" in text
    assert f"Lock at {id(a):#x}" in text and f"Lock at {id(b):#x}" in text


def one_thread_each(*bodies):
    """Runs each body in a thread of its own, one after the other: nothing hangs, but the
    orders they take are those of threads that could run at once."""
    for body in bodies:
        thread = treadle.Thread(target=body)
        thread.start()
        thread.join(5)


def dine(forks, order):
    """Each philosopher (a thread) takes two forks in ``order(left, right)``, eats, and puts
    them down."""
    seats = len(forks)
    return [
        lambda seat=seat: take_in_order(*order(forks[seat], forks[(seat + 1) % seats]))
        for seat in range(seats)
    ]


def test_lock_order_finds_the_dining_philosophers_five_cycle(lock_order):
    forks = [treadle.Lock() for _ in range(5)]
    one_thread_each(*dine(forks, lambda left, right: (left, right)))
    one_thread_each(*dine(forks, lambda left, right: (left, right)))
    [found] = potential(lock_order)
    text = str(found.message)
    assert text.startswith("lock order cycle: 5 locks taken in a circle")
    for fork in forks:
        assert f"Lock at {id(fork):#x}" in text
    assert text.count("taken while holding the") == 5  # each edge with its stack
    assert text.count("in take_in_order") == 5


def test_lock_order_is_quiet_for_philosophers_taking_the_lowest_fork_first(lock_order):
    forks = [treadle.Lock() for _ in range(5)]
    lowest_first = {id(fork): n for n, fork in enumerate(forks)}
    one_thread_each(
        *dine(forks, lambda left, right: sorted((left, right), key=lambda f: lowest_first[id(f)]))
    )
    assert potential(lock_order) == []


def test_lock_order_finds_a_three_cycle_between_locks_of_three_sites(lock_order):
    a = treadle.Lock()
    b = treadle.RLock()
    c = treadle.Lock()
    one_thread_each(lambda: take_in_order(a, b), lambda: take_in_order(b, c))
    assert potential(lock_order) == []
    one_thread_each(lambda: take_in_order(c, a))
    [found] = potential(lock_order)
    assert str(found.message).startswith("lock order cycle: 3 locks")
    one_thread_each(lambda: take_in_order(c, a), lambda: take_in_order(a, b))
    assert len(potential(lock_order)) == 1  # once per cycle


def test_lock_order_is_quiet_for_a_cycle_one_thread_takes_alone(lock_order):
    a, b, c = (treadle.Lock() for _ in range(3))
    take_in_order(a, b)
    take_in_order(b, c)
    take_in_order(c, a)
    assert potential(lock_order) == []


def test_lock_order_is_quiet_for_a_cycle_a_common_lock_guards(lock_order):
    guard = treadle.Lock()
    a, b, c = (treadle.Lock() for _ in range(3))
    one_thread_each(*(lambda p=pair: _guarded(guard, *p) for pair in ((a, b), (b, c), (c, a))))
    assert potential(lock_order) == []


def test_lock_order_forgets_the_instances_that_are_freed(lock_order):
    from treadle.deadlock import lock_order as mode

    for _ in range(200):
        a, b = treadle.Lock(), treadle.Lock()
        take_in_order(a, b)
    del a, b
    gc.collect()
    take_in_order(*(treadle.Lock() for _ in range(2)))  # the graph tidies up as it goes
    assert len(mode._edges) <= 2


C_THREAD_THEN_STALL = """
import ctypes, time, treadle
libc = ctypes.CDLL(None)
{setup}
# A pure C thread: pthread_create(&id, NULL, {routine}, {argument}).
thread_id = ctypes.c_ulong()
routine = ctypes.cast(libc.{routine}, ctypes.c_void_p)
assert libc.pthread_create(ctypes.byref(thread_id), None, routine, {argument}) == 0
lock = treadle.Lock()
lock.acquire()
start = time.monotonic()
try:
    lock.acquire()  # nobody but a thread outside the interpreter could release it
except treadle.DeadlockError:
    print("REPORTED AFTER", round(time.monotonic() - start, 2))
"""


def seconds_to_report_beside_a_c_thread(routine, argument, setup=""):
    """Starts a C thread running ``routine(argument)``, then stalls the only Python thread on
    a lock it holds itself, which only another thread could release; returns how long the stall
    took to be reported."""
    out = run_child(C_THREAD_THEN_STALL.format(routine=routine, argument=argument, setup=setup))
    assert out.startswith("REPORTED AFTER"), out
    return float(out.split()[-1])


def test_a_thread_made_by_c_code_counts_as_able_to_wake_anyone():
    """A thread the interpreter does not know (a C library's) may call back into Python, so no
    stall is judged while one could run (here: it sleeps with a deadline, sleep(1)); once it
    ends, the stall is reported."""
    assert seconds_to_report_beside_a_c_thread("sleep", "ctypes.c_void_p(1)") >= 0.9


def test_a_c_thread_that_only_another_thread_can_wake_does_not_hide_a_stall():
    """An idle pool thread of a C library sleeps in an untimed wait on a private futex (here:
    sem_wait on a process-private semaphore nobody posts): it cannot end the stall, so the stall
    is reported as if it were not there."""
    setup = (
        "semaphore = ctypes.create_string_buffer(64)  # a sem_t is 32 bytes on Linux\n"
        "assert libc.sem_init(semaphore, 0, 0) == 0  # not shared between processes"
    )
    assert seconds_to_report_beside_a_c_thread("sem_wait", "semaphore", setup) < 5


def test_a_stall_is_reported_in_a_process_that_imported_numpy():
    """numpy's BLAS starts a pool of C threads at import; idle, they do not hide a stall."""
    pytest.importorskip("numpy")
    out = run_child(
        """
        import time
        import numpy
        import treadle
        numpy.ones((200, 200)) @ numpy.ones((200, 200))  # wakes the BLAS pool, if there is one
        event = treadle.Event()
        thread = treadle.Thread(target=event.wait, name="worker")  # nobody sets it
        thread.start()
        start = time.monotonic()
        try:
            thread.join()
        except treadle.DeadlockError as err:
            print("REPORTED AFTER", round(time.monotonic() - start, 2), len(err.cycle))
        event.set()
        thread.join(10)
        """
    )
    assert out.startswith("REPORTED AFTER"), out
    assert float(out.split()[-2]) < 5
    assert out.split()[-1] == "2"


def test_waiting_on_futures_a_stuck_task_cannot_finish_is_detected():
    out = run_child(
        """
        import treadle
        for label, wait in (
            ("wait", lambda future: treadle.wait([future])),
            ("as_completed", lambda future: next(treadle.as_completed([future]))),
        ):
            lock = treadle.Lock()
            with treadle.ThreadPoolExecutor(1) as pool, lock:
                # The task needs the lock the waiting thread holds. Whichever of the two
                # confirms the stall first raises: the waiter, or the task (its future fails).
                stuck = pool.submit(lambda: lock.acquire() and lock.release())
                try:
                    wait(stuck)
                    err = stuck.exception()
                except treadle.DeadlockError as raised:
                    err = raised
            print(label, sorted(edge.kind for edge in err.cycle))
        """
    )
    assert out.splitlines() == ["wait ['future', 'lock']", "as_completed ['future', 'lock']"], out


# Threads all idle, waiting for input or a signal, and none waiting on anything a thread holds:
# not a deadlock (docs/deadlocks.md), though nothing in the process will ever wake them.
IDLE = {
    "daemon idiom: workers idle on a queue, the main thread on an event until Ctrl-C": """
        jobs = treadle.Queue()
        for n in range(3):
            treadle.Thread(target=jobs.get, daemon=True).start()
        wait = treadle.Event().wait
        """,
    "a future no pool runs, which anybody may set": """
        wait = treadle.Future().result
        """,
    "a condition, a semaphore and a barrier that other threads wait on too": """
        cond, sem, barrier = treadle.Condition(), treadle.Semaphore(0), treadle.Barrier(3)
        def notified():
            with cond:
                cond.wait()
        for target in (notified, sem.acquire, barrier.wait):
            treadle.Thread(target=target, daemon=True).start()
        wait = treadle.Event().wait
        """,
}


@pytest.mark.parametrize("setup", IDLE.values(), ids=IDLE.keys())
def test_threads_all_idle_waiting_for_input_or_a_signal_are_not_a_deadlock(setup):
    code = (
        "import sys, threading, time, treadle\n"
        + textwrap.dedent(setup)
        + textwrap.dedent(
            """
            while len(treadle._treadle._waits()) < threading.active_count() - 1:
                time.sleep(0.01)
            print("parked", flush=True)
            try:
                wait()
            except KeyboardInterrupt:
                print("interrupted, as python would be")
            except treadle.DeadlockError as err:
                print("REPORTED", err)
            """
        )
    )
    status, out, err = run_until_interrupted([sys.executable, "-c", code])
    assert (status, out.splitlines()) == (0, ["interrupted, as python would be"]), err


def test_a_lock_used_as_a_signal_and_polled_with_a_timeout_logs_nothing(caplog):
    signal_lock = treadle.Lock()
    signal_lock.acquire()
    polls = []

    def give_the_signal():
        time.sleep(0.35)
        signal_lock.release()

    with caplog.at_level("WARNING", logger="treadle"):
        thread = run_threads(give_the_signal)[0]
        while not signal_lock.acquire(timeout=0.1):
            polls.append(1)
        thread.join(10)
    assert len(polls) >= 2
    assert caplog.text == ""


def test_a_program_that_never_used_treadle_deadlock_gets_the_full_report():
    """The report machinery loads at the first verdict: the hook the core calls is registered
    by ``import treadle`` alone."""
    out = run_child(
        """
        import sys, threading, treadle
        print("report loaded:", "treadle.deadlock.report" in sys.modules)
        a, b = treadle.Lock(), treadle.Lock()
        both_hold_one = threading.Barrier(2)
        errors = []
        def worker(first, second):
            with first:
                both_hold_one.wait(5)
                try:
                    with second:
                        pass
                except treadle.DeadlockError as err:
                    errors.append(err)
        threads = [threading.Thread(target=worker, args=pair) for pair in ((a, b), (b, a))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        [err] = errors
        print(str(err).splitlines()[0])
        print("stacks:", "Stacks at detection" in str(err), "in worker" in str(err))
        print([edge.kind for edge in err.cycle])
        """
    )
    assert out.splitlines() == [
        "report loaded: False",
        "deadlock: 2 threads wait on each other",
        "stacks: True True",
        "['lock', 'lock']",
    ], out


def test_a_verdict_while_a_parked_thread_holds_an_import_lock_the_report_needs_is_plain():
    """A thread parked in the middle of importing a module that the report needs (dataclasses,
    here) holds that module's import lock: the verdict does not wait for it forever, it raises
    with a plain report."""
    out = run_child(
        """
        import importlib.util, sys, threading, time, treadle
        import treadle.deadlock.verdict
        treadle.deadlock.verdict.IMPORT_PATIENCE = 0.5
        never = treadle.Event()

        class ParkedLoader:
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                never.wait()

        class ParkingFinder:
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name == "dataclasses":
                    return importlib.util.spec_from_loader(name, ParkedLoader())
                return None

        assert "dataclasses" not in sys.modules
        sys.meta_path.insert(0, ParkingFinder)
        threading.Thread(target=lambda: __import__("dataclasses"), daemon=True).start()
        while not any(kind == "event" for _, kind, *_ in treadle._treadle._waits()):
            time.sleep(0.01)
        lock = treadle.Lock()
        lock.acquire()
        start = time.monotonic()
        try:
            lock.acquire()
        except treadle.DeadlockError as err:
            print(round(time.monotonic() - start, 1), err.cycle)
            print(err)
        """
    )
    lines = out.splitlines()
    assert 0.4 <= float(lines[0].split()[0]) < 5, out
    assert lines[0].split()[1] == "[]", out
    assert lines[1].startswith("deadlock ("), out
    assert "thread 'MainThread' waits for lock (Lock)" in lines[1], out
    assert "plain report" in lines[1], out
