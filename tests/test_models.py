"""Property tests: treadle's primitives and queues, driven by random single-threaded operation
sequences, behave exactly like the standard library's (the model) step by step."""

import queue
import threading

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import treadle


class QueueMatchesTheStandardLibrary(RuleBasedStateMachine):
    """Every non-blocking queue operation gives the same result (or the same exception class) on
    treadle's queue as on the standard library's, for FIFO, LIFO and priority order."""

    def __init__(self):
        super().__init__()
        self.pairs = None

    @rule(kind=st.sampled_from(["Queue", "LifoQueue", "PriorityQueue"]), maxsize=st.integers(0, 4))
    @precondition(lambda self: self.pairs is None)
    def create(self, kind, maxsize):
        self.pairs = (getattr(treadle, kind)(maxsize), getattr(queue, kind)(maxsize))

    def both(self, operation):
        outcomes = []
        for q in self.pairs:
            try:
                outcomes.append(("ok", operation(q)))
            except Exception as exc:  # compared by class: treadle raises the stdlib's own
                outcomes.append(("raised", type(exc)))
        assert outcomes[0] == outcomes[1], outcomes

    @rule(item=st.integers(-5, 5))
    @precondition(lambda self: self.pairs is not None)
    def put_nowait(self, item):
        self.both(lambda q: q.put_nowait(item))

    @rule()
    @precondition(lambda self: self.pairs is not None)
    def get_nowait(self):
        self.both(lambda q: q.get_nowait())

    @rule()
    @precondition(lambda self: self.pairs is not None)
    def task_done(self):
        self.both(lambda q: q.task_done())

    @rule(timeout=st.sampled_from([0, 0.001]))
    @precondition(lambda self: self.pairs is not None)
    def get_with_timeout(self, timeout):
        self.both(lambda q: q.get(timeout=timeout))

    @invariant()
    def same_size(self):
        if self.pairs is not None:
            ours, theirs = self.pairs
            assert (ours.qsize(), ours.empty(), ours.full()) == (
                theirs.qsize(),
                theirs.empty(),
                theirs.full(),
            )


class SemaphoreMatchesTheStandardLibrary(RuleBasedStateMachine):
    """Acquire without blocking and release(n), bounded or not, as threading does."""

    def __init__(self):
        super().__init__()
        self.pairs = None

    @rule(bounded=st.booleans(), value=st.integers(0, 3))
    @precondition(lambda self: self.pairs is None)
    def create(self, bounded, value):
        name = "BoundedSemaphore" if bounded else "Semaphore"
        self.pairs = (getattr(treadle, name)(value), getattr(threading, name)(value))

    @rule()
    @precondition(lambda self: self.pairs is not None)
    def try_acquire(self):
        ours, theirs = self.pairs
        assert ours.acquire(False) == theirs.acquire(False)

    @rule(n=st.integers(1, 3))
    @precondition(lambda self: self.pairs is not None)
    def release(self, n):
        outcomes = []
        for sem in self.pairs:
            try:
                sem.release(n)
                outcomes.append("ok")
            except ValueError:
                outcomes.append("ValueError")
        assert outcomes[0] == outcomes[1]

    @invariant()
    def same_value(self):
        if self.pairs is not None:
            ours, theirs = self.pairs
            assert ours._value == theirs._value


class RLockMatchesTheStandardLibrary(RuleBasedStateMachine):
    """Re-entry counts, ownership and release errors, as threading.RLock."""

    def __init__(self):
        super().__init__()
        self.ours, self.theirs = treadle.RLock(), threading.RLock()

    @rule()
    def acquire(self):
        assert self.ours.acquire(False) == self.theirs.acquire(False)

    @rule()
    def release(self):
        outcomes = []
        for lock in (self.ours, self.theirs):
            try:
                lock.release()
                outcomes.append("ok")
            except RuntimeError:
                outcomes.append("RuntimeError")
        assert outcomes[0] == outcomes[1]

    @invariant()
    def same_state(self):
        assert self.ours._is_owned() == self.theirs._is_owned()
        assert self.ours._recursion_count() == self.theirs._recursion_count()


for machine in (
    QueueMatchesTheStandardLibrary,
    SemaphoreMatchesTheStandardLibrary,
    RLockMatchesTheStandardLibrary,
):
    machine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)

TestQueueModel = QueueMatchesTheStandardLibrary.TestCase
TestSemaphoreModel = SemaphoreMatchesTheStandardLibrary.TestCase
TestRLockModel = RLockMatchesTheStandardLibrary.TestCase
