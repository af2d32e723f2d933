"""CPython's own ``test.lock_tests`` suites, run against treadle's classes.

This is how CPython's ``test_threading`` runs them against ``threading``'s classes: the suite is
the definition of "behaves like threading". Nothing is skipped or overridden here.
"""

from test import lock_tests

import treadle


class LockTests(lock_tests.LockTests):
    locktype = staticmethod(treadle.Lock)


class RLockTests(lock_tests.RLockTests):
    locktype = staticmethod(treadle.RLock)


class ConditionAsRLockTests(lock_tests.RLockTests):
    # As CPython's test_threading: a Condition (over an RLock by default) used as an RLock.
    locktype = staticmethod(treadle.Condition)


class EventTests(lock_tests.EventTests):
    eventtype = staticmethod(treadle.Event)


class ConditionTests(lock_tests.ConditionTests):
    condtype = staticmethod(treadle.Condition)


class SemaphoreTests(lock_tests.SemaphoreTests):
    semtype = staticmethod(treadle.Semaphore)


class BoundedSemaphoreTests(lock_tests.BoundedSemaphoreTests):
    semtype = staticmethod(treadle.BoundedSemaphore)


class BarrierTests(lock_tests.BarrierTests):
    barriertype = staticmethod(treadle.Barrier)
