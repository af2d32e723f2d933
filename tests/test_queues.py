"""treadle's queues: the behaviour CPython's suite does not cover, and stress under threads."""

from __future__ import annotations

import _thread
import gc
import pickle
import queue
import random
import sys
import threading
import time
import types
import weakref
from collections import Counter, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import treadle

WAIT = 10.0  # seconds any wait in these tests may take before the test fails
QUEUE_CLASSES = [treadle.Queue, treadle.LifoQueue, treadle.PriorityQueue]


class HookedQueue(treadle.Queue):
    """A subclass that brings its own storage, as subclasses of queue.Queue do."""

    def _init(self, maxsize):
        self.queue = deque()

    def _qsize(self):
        return len(self.queue)

    def _put(self, item):
        self.queue.append(item)

    def _get(self):
        return self.queue.popleft()


ALL_QUEUES = [*QUEUE_CLASSES, HookedQueue]


def start(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def joined(thread):
    thread.join(WAIT)
    return not thread.is_alive()


def test_exceptions_are_the_standard_librarys():
    assert treadle.Empty is queue.Empty
    assert treadle.Full is queue.Full
    if hasattr(queue, "ShutDown"):
        assert treadle.ShutDown is queue.ShutDown
    else:
        assert issubclass(treadle.ShutDown, Exception)


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_task_done_too_many_times_says_so(cls):
    q = cls()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_shutdown_lets_gets_drain_then_raises(cls):
    q = cls()
    q.put(1)
    q.shutdown()
    assert q.is_shutdown
    with pytest.raises(treadle.ShutDown):
        q.put(2)
    assert q.get(timeout=WAIT) == 1
    with pytest.raises(treadle.ShutDown):
        q.get(timeout=WAIT)


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_immediate_shutdown_discards_items_and_releases_join(cls):
    q = cls()
    for i in range(3):
        q.put(i)
    joiner = start(q.join)
    q.shutdown(immediate=True)
    assert joined(joiner)
    assert q.qsize() == 0
    assert q.unfinished_tasks == 0
    with pytest.raises(treadle.ShutDown):
        q.get_nowait()


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_shutdown_wakes_blocked_getter_and_putter(cls):
    empty, full = cls(), cls(1)
    full.put(0)
    outcomes = []

    def get():
        try:
            empty.get(timeout=WAIT)
        except treadle.ShutDown:
            outcomes.append("get")

    def put():
        try:
            full.put(1, timeout=WAIT)
        except treadle.ShutDown:
            outcomes.append("put")

    threads = [start(get), start(put)]
    time.sleep(0.05)
    empty.shutdown()
    full.shutdown()
    assert all(joined(t) for t in threads)
    assert sorted(outcomes) == ["get", "put"]


@pytest.mark.parametrize("cls", [*ALL_QUEUES, treadle.SimpleQueue])
@pytest.mark.parametrize("timeout", ["1", [], -0.5, float("nan")])
def test_bad_timeouts_are_rejected(cls, timeout):
    q = cls()
    with pytest.raises((TypeError, ValueError)):
        q.get(timeout=timeout)


TOO_LONG = [float("inf"), 2**70]


@pytest.mark.parametrize("timeout", TOO_LONG)
@pytest.mark.parametrize("cls", [queue.Queue, *ALL_QUEUES])
def test_a_timeout_too_large_to_wait_for_is_an_overflow_error_once_it_must_wait(cls, timeout):
    q = cls(1)
    with pytest.raises(OverflowError):
        q.get(timeout=timeout)
    q.put(1, timeout=timeout)  # room: no wait, no error
    with pytest.raises(OverflowError):
        q.put(2, timeout=timeout)
    assert q.get(timeout=timeout) == 1  # an item: no wait, no error
    assert q.qsize() == 0


@pytest.mark.parametrize("timeout", TOO_LONG)
@pytest.mark.parametrize("cls", [queue.SimpleQueue, treadle.SimpleQueue])
def test_simple_queue_refuses_a_timeout_too_large_to_wait_for(cls, timeout):
    q = cls()
    q.put(1)
    with pytest.raises(OverflowError):
        q.get(timeout=timeout)
    assert q.get_nowait() == 1


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_put_on_unbounded_queue_ignores_timeout_like_the_standard_library(cls):
    q = cls()
    q.put(1, timeout=-1)
    assert q.get_nowait() == 1


def test_block_is_read_by_truth_value():
    q = treadle.Queue()
    with pytest.raises(queue.Empty):
        q.get(block=0)
    with pytest.raises(queue.Empty):
        q.get([])


def test_maxsize_must_be_an_int():
    with pytest.raises(TypeError):
        treadle.Queue("3")


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_growing_maxsize_releases_a_blocked_put(cls):
    q = cls(1)
    q.put(0)
    putter = start(q.put, 1)
    time.sleep(0.05)
    q.maxsize = 2
    assert joined(putter)
    assert q.qsize() == 2


class Touchy:
    """An item whose comparison raises once a budget of comparisons is spent."""

    budget = None

    def __init__(self, key):
        self.key = key

    def __lt__(self, other):
        if Touchy.budget is not None:
            if Touchy.budget == 0:
                raise ArithmeticError("comparison failed")
            Touchy.budget -= 1
        return self.key < other.key


@pytest.fixture
def touchy():
    yield Touchy
    Touchy.budget = None


KEYS = [50, 30, 80, 10, 40, 90, 20, 70, 60]


@pytest.mark.parametrize("budget", range(3))
@pytest.mark.parametrize(
    "operation",
    [lambda q: q.put(Touchy(0)), lambda q: q.get()],  # both take three comparisons here
    ids=["put", "get"],
)
def test_priority_operation_whose_comparison_raises_leaves_the_queue_intact(
    touchy, budget, operation
):
    q = treadle.PriorityQueue()
    for key in KEYS:
        q.put(touchy(key))
    touchy.budget = budget
    with pytest.raises(ArithmeticError):
        operation(q)
    touchy.budget = None
    assert q.qsize() == len(KEYS)
    assert q.unfinished_tasks == len(KEYS)
    assert [q.get().key for _ in KEYS] == sorted(KEYS)


def test_priority_queue_refuses_incomparable_items_and_keeps_the_rest():
    q = treadle.PriorityQueue()
    q.put(1)
    with pytest.raises(TypeError):
        q.put("one")
    assert q.qsize() == 1
    assert q.get_nowait() == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers())))
def test_priority_order_matches_the_standard_library_even_among_equals(pairs):
    # Items compare by key only, so equal keys come out in heapq's own order.
    class Keyed:
        def __init__(self, key, tag):
            self.key, self.tag = key, tag

        def __lt__(self, other):
            return self.key < other.key

    ours, theirs = treadle.PriorityQueue(), queue.PriorityQueue()
    for key, tag in pairs:
        ours.put(Keyed(key, tag))
        theirs.put(Keyed(key, tag))
    got = [(item.key, item.tag) for item in (ours.get_nowait() for _ in pairs)]
    expected = [(item.key, item.tag) for item in (theirs.get_nowait() for _ in pairs)]
    assert got == expected


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_put_many_then_get_many_keeps_order_and_counts_tasks(cls):
    q = cls()
    q.put_many(range(10))
    assert q.unfinished_tasks == 10
    got = q.get_many(4) + q.get_many(100)
    assert sorted(got) == list(range(10))
    if cls is not treadle.LifoQueue:
        assert got == list(range(10))
    with pytest.raises(queue.Empty):
        q.get_many(3, timeout=0.01)


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_put_many_on_a_full_queue_says_how_many_went_in(cls):
    q = cls(3)
    with pytest.raises(queue.Full) as raised:
        q.put_many(range(5), block=False)
    assert raised.value.args == (3,)
    assert q.qsize() == 3


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_put_many_waits_for_room(cls):
    q = cls(2)
    got = []

    def consume():
        while len(got) < 6:
            got.extend(q.get_many(2, timeout=WAIT))

    consumer = start(consume)
    q.put_many(range(6), timeout=WAIT)
    assert joined(consumer)
    assert sorted(got) == list(range(6))


@pytest.mark.parametrize("max_items", [0, -1])
def test_get_many_needs_a_positive_max_items(max_items):
    with pytest.raises(ValueError):
        treadle.Queue().get_many(max_items)


def test_get_many_on_shut_down_empty_queue_raises_shutdown():
    q = treadle.Queue()
    q.shutdown()
    with pytest.raises(treadle.ShutDown):
        q.get_many(5)


def test_subclass_overriding_storage_steps_uses_them():
    q = HookedQueue(2)
    q.put("a")
    q.put("b")
    assert list(q.queue) == ["a", "b"]
    assert q.full()
    assert q.get() == "a"
    assert list(q.queue) == ["b"]


def test_subclass_without_storage_overrides_behaves_like_the_base():
    class Named(treadle.LifoQueue):
        def describe(self):
            return f"{self.qsize()} items"

    q = Named()
    q.put(1)
    q.put(2)
    assert q.describe() == "2 items"
    assert q.get() == 2


@pytest.mark.parametrize("cls", [*QUEUE_CLASSES, treadle.SimpleQueue])
def test_queues_are_generic_weakrefable_and_not_picklable(cls):
    q = cls()
    assert weakref.ref(q)() is q
    assert cls[int].__origin__ is cls
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(q)


@pytest.mark.parametrize("cls", [*ALL_QUEUES, treadle.SimpleQueue])
def test_queue_lets_go_of_items_it_no_longer_holds(cls):
    class Item:
        def __lt__(self, other):
            return id(self) < id(other)

    q = cls()
    q.put(Item())
    ref = weakref.ref(q.get())
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("cls", [*ALL_QUEUES, treadle.SimpleQueue])
def test_blocked_get_releases_the_gil(cls):
    q = cls()
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(None)
            time.sleep(0.001)

    ticker = start(tick)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    stop.set()
    assert joined(ticker)
    assert len(ticks) > 20


@pytest.mark.parametrize("cls", [*ALL_QUEUES, treadle.SimpleQueue])
def test_ctrl_c_interrupts_a_blocked_get(cls):
    q = cls()
    timer = threading.Timer(0.1, _thread.interrupt_main)
    timer.start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        q.get(timeout=WAIT)
    assert time.monotonic() - began < WAIT / 2
    timer.join(WAIT)
    # The interrupted get took nothing: an item put now is still there.
    q.put(1)
    assert q.get_nowait() == 1


def test_ctrl_c_interrupts_a_blocked_put_and_join():
    q = treadle.Queue(1)
    q.put(0)
    for blocked in (lambda: q.put(1, timeout=WAIT), q.join):
        timer = threading.Timer(0.1, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            blocked()
        timer.join(WAIT)
    assert q.qsize() == 1


def take_some(q, rnd, many, timeouts):
    """One ``get`` (or, ``many`` of the time, a ``get_many`` of up to 5) with a timeout ``rnd``
    picks among ``timeouts``; marks what it took done and returns it (``[]`` if nothing came in
    time)."""
    timeout = rnd.choice(timeouts)
    try:
        if rnd.random() < many:
            items = q.get_many(rnd.randint(1, 5), timeout=timeout)
        else:
            items = [q.get(timeout=timeout)]
    except queue.Empty:
        return []
    for _ in items:
        q.task_done()
    return items


@pytest.mark.parametrize("cls", ALL_QUEUES)
def test_stress_random_timeouts_and_shutdown_lose_and_duplicate_nothing(cls):
    producers, consumers, per_producer = 6, 6, 2000
    q = cls(8)
    put_ok, got = Counter(), Counter()
    lock = threading.Lock()
    errors = []

    def produce(p):
        rnd = random.Random(p)
        mine = Counter()
        try:
            for i in range(per_producer):
                item = p * per_producer + i
                while True:
                    try:
                        q.put(item, timeout=rnd.choice([0, 1e-5, 1e-4, 1e-3]))
                    except queue.Full:
                        continue
                    except treadle.ShutDown:
                        return
                    mine[item] += 1
                    break
        except BaseException as error:
            errors.append(error)
        finally:
            with lock:
                put_ok.update(mine)

    def consume(c):
        rnd = random.Random(100 + c)
        mine = Counter()
        try:
            while True:
                try:
                    mine.update(take_some(q, rnd, 0.2, [0, 1e-5, 1e-4, 1e-3]))
                except treadle.ShutDown:
                    return
        except BaseException as error:
            errors.append(error)
        finally:
            with lock:
                got.update(mine)

    threads = [start(produce, p) for p in range(producers)]
    threads += [start(consume, c) for c in range(consumers)]
    time.sleep(0.3)
    # Shut down while producers and consumers are blocked or about to block.
    q.shutdown()
    assert all(joined(t) for t in threads)
    assert not errors
    assert q.qsize() == 0
    assert got == put_ok
    assert all(count == 1 for count in got.values())
    assert q.unfinished_tasks == 0


def test_stress_simple_queue_many_threads_lose_and_duplicate_nothing():
    q = treadle.SimpleQueue()
    n, per_thread = 8, 5000
    got = Counter()
    lock = threading.Lock()

    def produce(p):
        for i in range(per_thread):
            q.put(p * per_thread + i)

    def consume():
        mine = Counter()
        while True:
            item = q.get(timeout=WAIT)
            if item is None:
                break
            mine[item] += 1
        with lock:
            got.update(mine)

    consumers = [start(consume) for _ in range(n)]
    producers = [start(produce, p) for p in range(n)]
    assert all(joined(t) for t in producers)
    for _ in consumers:
        q.put(None)
    assert all(joined(t) for t in consumers)
    assert got == Counter(range(n * per_thread))


def test_join_waits_for_every_task_done_across_threads():
    q = treadle.Queue()
    done = []

    def work():
        while True:
            item = q.get(timeout=WAIT)
            if item is None:
                q.task_done()
                return
            time.sleep(0.0005)
            done.append(item)
            q.task_done()

    workers = [start(work) for _ in range(4)]
    q.put_many(range(200))
    q.join()
    assert sorted(done) == list(range(200))
    q.put_many([None] * 4)
    assert all(joined(w) for w in workers)


@pytest.mark.parametrize(
    "cls", [treadle.Queue, treadle.LifoQueue, treadle.SimpleQueue, HookedQueue]
)
def test_direct_put_and_get_agree_with_every_other_call_form(cls):
    # `put(item)` and `get()` take a direct path; every other form goes through the full method.
    q = cls()
    q.put(1)
    q.put(2, True)
    q.put(3, block=True, timeout=WAIT)
    q.put_nowait(4)
    got = [q.get(), q.get(True), q.get(block=True, timeout=WAIT), q.get_nowait()]
    assert sorted(got) == [1, 2, 3, 4]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(TypeError):
        q.put()
    with pytest.raises(TypeError):
        q.get(1, 2, 3)
    with pytest.raises(TypeError):
        cls.get(object())


def test_refused_direct_put_keeps_reference_counts():
    q = treadle.Queue(1)
    item = object()
    q.put(item)
    other = object()
    before = sys.getrefcount(other)
    with pytest.raises(queue.Full):
        q.put(other, timeout=0)
    with pytest.raises(queue.Full):
        q.put_nowait(other)
    q.shutdown()
    with pytest.raises(treadle.ShutDown):
        q.put(other)
    assert sys.getrefcount(other) == before
    assert q.get() is item


# --- queue.Queue's attributes and instance-level storage steps --------------------------------

PRIMITIVES_WITH_A_DICT = [
    (threading.Event, treadle.Event),
    (threading.Condition, treadle.Condition),
    (threading.Semaphore, treadle.Semaphore),
    (threading.BoundedSemaphore, treadle.BoundedSemaphore),
    (lambda: threading.Barrier(2), lambda: treadle.Barrier(2)),
    (queue.Queue, treadle.Queue),
    (queue.LifoQueue, treadle.LifoQueue),
    (queue.PriorityQueue, treadle.PriorityQueue),
]


@pytest.mark.parametrize("make", [m for pair in PRIMITIVES_WITH_A_DICT for m in pair])
def test_attributes_can_be_set_on_them_as_on_the_standard_ones(make):
    obj = make()
    obj.tag = "mine"
    assert obj.tag == "mine"
    assert vars(obj)["tag"] == "mine"
    del obj.tag
    assert not hasattr(obj, "tag")


@pytest.mark.parametrize(
    "make", [threading.Lock, treadle.Lock, threading.RLock, treadle.RLock, queue.SimpleQueue]
)
def test_locks_and_simple_queues_refuse_attributes_as_the_standard_ones(make):
    with pytest.raises(AttributeError):
        make().tag = "mine"


def test_treadle_simple_queue_takes_no_attribute_either():
    with pytest.raises(AttributeError):
        treadle.SimpleQueue().tag = "mine"


STANDARD_AND_OURS = [queue.Queue, queue.LifoQueue, queue.PriorityQueue, *ALL_QUEUES]


@pytest.mark.parametrize("cls", STANDARD_AND_OURS)
def test_the_queue_has_its_mutex_and_conditions_over_it(cls):
    q = cls()
    lock_type = treadle.Lock if isinstance(q, treadle.Queue) else type(threading.Lock())
    assert type(q.mutex) is lock_type
    assert q.mutex is q.mutex
    for condition in (q.not_empty, q.not_full, q.all_tasks_done):
        with condition:
            assert q.mutex.locked()
        assert not q.mutex.locked()


@pytest.mark.parametrize("cls", STANDARD_AND_OURS)
@pytest.mark.parametrize("call", ["put", "get", "put_nowait", "get_nowait", "task_done"])
def test_holding_the_mutex_holds_off_put_and_get(cls, call):
    q = cls()
    q.put(1)
    done = threading.Event()
    args = (2,) if call.startswith("put") else ()
    with q.mutex:
        thread = start(lambda: (getattr(q, call)(*args), done.set()))
        assert not done.wait(0.2)
    assert done.wait(WAIT)
    assert joined(thread)


@pytest.mark.parametrize("cls", STANDARD_AND_OURS)
def test_a_thread_waiting_on_not_empty_is_woken_by_a_put(cls):
    q = cls()
    got = []

    def take_under_the_mutex():
        with q.not_empty:
            while not q._qsize():
                q.not_empty.wait(WAIT)
            got.append(q._get())

    thread = start(take_under_the_mutex)
    time.sleep(0.05)
    q.put(7)
    assert joined(thread)
    assert got == [7]


@pytest.mark.parametrize("cls", STANDARD_AND_OURS)
def test_clearing_the_tasks_under_the_mutex_releases_join(cls):
    q = cls()
    q.put(1)
    q.get()
    joiner = start(q.join)
    time.sleep(0.05)
    with q.mutex:
        q.unfinished_tasks  # noqa: B018  (readable under the mutex)
        q.all_tasks_done.notify_all()  # nothing done yet: the joiner waits on
    assert not joiner.join(0.1) and joiner.is_alive()
    q.task_done()
    assert joined(joiner)


@pytest.mark.parametrize("cls", STANDARD_AND_OURS)
def test_an_instances_own_storage_steps_are_honoured(cls):
    q = cls()
    seen = []
    original_put, original_get = q._put, q._get

    def spy_put(item):
        seen.append(("put", item))
        original_put(item)

    def spy_get():
        item = original_get()
        seen.append(("get", item))
        return item

    q._put, q._get = spy_put, spy_get
    q.put(1)
    q.put_nowait(2)
    assert q.get() in (1, 2)
    assert q.qsize() == 1
    assert [kind for kind, _ in seen] == ["put", "put", "get"]
    q._put = original_put  # as pebble puts it back
    del q._get
    q.put(3)
    assert len(seen) == 3
    assert sorted([q.get(), q.get()]) in ([1, 3], [2, 3])


def wait_for_queues(queues, timeout):
    """pebble's ``waitforqueues``, as it is written: it sets attributes on each queue, replaces
    its ``_put`` on the instance while holding ``queue.mutex``, and waits on a condition that
    the replaced ``_put`` notifies."""
    lock = threading.Condition(threading.Lock())

    def new_method(self, *args):
        self._pebble_old_method(*args)
        with self._pebble_lock:
            self._pebble_lock.notify_all()

    for q in queues:
        q._pebble_lock = lock
        with q.mutex:
            q._pebble_old_method = q._put
            q._put = types.MethodType(new_method, q)
    try:
        with lock:
            if not any(not q.empty() for q in queues):
                lock.wait(timeout)
    finally:
        for q in queues:
            with q.mutex:
                q._put = q._pebble_old_method
            delattr(q, "_pebble_old_method")
            delattr(q, "_pebble_lock")
    return [q for q in queues if not q.empty()]


@pytest.mark.parametrize("cls", [queue.Queue, *QUEUE_CLASSES])
def test_pebbles_wait_for_queues_runs_as_on_the_standard_queues(cls):
    queues = [cls() for _ in range(3)]
    putter = threading.Timer(0.1, queues[1].put, args=("ready",))
    putter.start()
    assert wait_for_queues(queues, WAIT) == [queues[1]]
    putter.join(WAIT)
    assert queues[1].get_nowait() == "ready"
    assert not hasattr(queues[1], "_pebble_lock")
    assert wait_for_queues(queues, 0.01) == []


@pytest.mark.parametrize("cls", [treadle.Queue, treadle.LifoQueue])
def test_the_queue_keeps_its_items_tasks_and_shutdown_when_its_mutex_is_first_used(cls):
    q = cls(5)
    q.put_many([1, 2, 3])
    q.get()
    q.task_done()
    q.mutex  # noqa: B018  (from now on, the monitor)
    assert q.qsize() == 2
    assert q.unfinished_tasks == 2
    assert q.full() is False
    assert sorted([q.get(), q.get()]) in ([1, 2], [2, 3], [1, 3])
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.shutdown()
    assert q.is_shutdown
    with pytest.raises(treadle.ShutDown):
        q.put(4)
    shut = cls()
    shut.shutdown()
    shut.not_empty  # noqa: B018
    with pytest.raises(treadle.ShutDown):
        shut.get()


@pytest.mark.parametrize("call", ["get", "put", "join"])
def test_a_thread_parked_in_the_core_queue_moves_to_the_monitor_and_is_served(call):
    q = treadle.Queue(1)
    if call != "get":
        q.put(0)  # full, and one task open
    outcome = []

    def parked():
        if call == "get":
            outcome.append(q.get(timeout=WAIT))
        elif call == "put":
            q.put(1, timeout=WAIT)
            outcome.append("put")
        else:
            q.join()
            outcome.append("joined")

    thread = start(parked)
    time.sleep(0.1)  # parked in the core queue
    with q.mutex:  # the queue becomes a monitor under it
        time.sleep(0.05)
    if call == "get":
        q.put("item")
    else:
        assert q.get(timeout=WAIT) == 0
        q.task_done()
    assert joined(thread)
    assert outcome == [{"get": "item", "put": "put", "join": "joined"}[call]]


@pytest.mark.parametrize("cls", [treadle.Queue, treadle.LifoQueue])
def test_stress_the_mutex_first_used_mid_flight_loses_and_duplicates_nothing(cls):
    producers, consumers, per_producer = 4, 4, 3000
    q = cls(16)
    got = Counter()
    lock = threading.Lock()
    errors = []
    finished = threading.Event()

    def produce(p):
        try:
            for i in range(per_producer):
                q.put(p * per_producer + i, timeout=WAIT)
        except BaseException as error:
            errors.append(error)

    def consume(c):
        rnd = random.Random(c)
        mine = Counter()
        try:
            while not finished.is_set():
                mine.update(take_some(q, rnd, 0.3, [0.01]))
        except BaseException as error:
            errors.append(error)
        finally:
            with lock:
                got.update(mine)

    threads = [start(produce, p) for p in range(producers)]
    threads += [start(consume, c) for c in range(consumers)]
    time.sleep(0.05)
    with q.mutex:  # mid-flight: some calls in the core queue, some parked in it
        time.sleep(0.01)
    for thread in threads[:producers]:
        assert joined(thread)
    joiner = start(q.join)
    assert joined(joiner)  # every task done
    finished.set()
    assert all(joined(t) for t in threads)
    assert not errors
    assert got == Counter(range(producers * per_producer))
    assert q.unfinished_tasks == 0
