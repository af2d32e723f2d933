"""CPython's own ``test.test_concurrent_futures`` suite, run against treadle's thread pool, its
futures, and its ``wait`` / ``as_completed``.

The suite ships with some Pythons only (on this project's machines, 3.13's has it and 3.11's
does not); where it is missing, this module defines no tests. CPython runs each mixin against
its executors by setting ``executor_type``; here that is ``treadle.ThreadPoolExecutor``. The
modules' ``futures`` name (``concurrent.futures``) becomes ``treadle`` itself, as a new user
would run the suite: every name they look up there (``wait``, ``as_completed``, the constants,
``TimeoutError``, ``CancelledError``, ``InvalidStateError``...) is treadle's, so those tests
drive treadle's functions over treadle's futures and the standard library's alike, and the
shutdown tests that make their own ``futures.ThreadPoolExecutor`` make treadle's.
``FutureTests`` makes its futures with ``treadle.Future``, except in the tests that build a
future in a given state with the suite's ``create_future``, which writes the standard library's
private ``_state`` (a treadle future keeps its state in Rust); those still run, on standard
futures. Nothing is skipped or overridden.
"""

import logging
import unittest

import treadle

try:
    from test.test_concurrent_futures import (
        executor,
        test_as_completed,
        test_future,
        test_init,
        test_shutdown,
        test_thread_pool,
        test_wait,
    )
except ImportError:  # this Python ships without the suite
    test_as_completed = None

if test_as_completed is not None:
    for module in (executor, test_as_completed, test_future, test_shutdown, test_wait):
        module.futures = treadle

    test_future.Future = treadle.Future

    def on_treadle(cls):
        """``cls`` (a thread-pool test case of CPython's) with treadle's executor."""
        return type(
            cls.__name__,
            (cls,),
            {"executor_type": treadle.ThreadPoolExecutor, "__module__": __name__},
        )

    ThreadPoolExecutorTest = on_treadle(test_thread_pool.ThreadPoolExecutorTest)
    ThreadPoolWaitTests = on_treadle(test_wait.ThreadPoolWaitTests)
    ThreadPoolAsCompletedTest = on_treadle(test_as_completed.ThreadPoolAsCompletedTest)
    ThreadPoolShutdownTest = on_treadle(test_shutdown.ThreadPoolShutdownTest)
    ThreadPoolInitializerTest = on_treadle(test_init.ThreadPoolInitializerTest)
    ThreadPoolFailingInitializerTest = on_treadle(test_init.ThreadPoolFailingInitializerTest)

    class FutureTests(test_future.FutureTests, unittest.TestCase):
        """Two tests read what a failing done-callback logs from stderr, where logging's last
        resort handler writes it when no handler is configured, as under CPython's own test
        runner. pytest puts a handler on the root logger; it is set aside for each test."""

        def setUp(self):
            super().setUp()
            root = logging.getLogger()
            self._root_handlers = root.handlers[:]
            root.handlers.clear()

        def tearDown(self):
            logging.getLogger().handlers[:] = self._root_handlers
            super().tearDown()
