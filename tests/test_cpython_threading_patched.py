"""CPython's own suites for code that uses threads, run with ``treadle.patch()`` in force, as
``treadle run`` runs a program: ``threading``'s primitives, ``queue``'s queues and
``concurrent.futures``' executors are treadle's, and ``Thread`` joins are tracked.

Each runs in a child interpreter (the patch is process-wide):

- ``test.test_threading``. Two of its tests are about the patch itself rather than behaviour,
  and fail by its nature; the test asserts that they are the only ones that do, so any other
  failure is caught. ``MiscTestCase.test__all__`` checks that each public name of ``threading``
  is defined in ``threading`` itself (the patched classes are defined in ``treadle``);
  ``ThreadTests.test_disallow_instantiation`` (before 3.13) checks that the type of
  ``threading.Lock()`` (``_thread.lock``) cannot be instantiated (the patched ``Lock`` is a
  class, and instantiating it is how it is used).
- ``test.test_logging`` (logging's locks are ``threading.RLock``) and asyncio's tests of its
  locks, queues, futures, event loops and ``to_thread`` (the default executor of
  ``run_in_executor`` is a patched ``ThreadPoolExecutor``): everything passes.
"""

import json
import subprocess
import sys
import textwrap

RUN = textwrap.dedent(
    """
    import importlib, io, json, sys, unittest
    import treadle
    treadle.patch()
    tests = unittest.TestSuite()
    for spec in sys.argv[1:]:
        module_name, _, names = spec.partition(":")
        module = importlib.import_module(module_name)
        if not names:
            tests.addTests(unittest.defaultTestLoader.loadTestsFromModule(module))
            continue
        for name in names.split(","):
            if hasattr(module, name):
                case = getattr(module, name)
                tests.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    result = unittest.TextTestRunner(stream=io.StringIO()).run(tests)
    failed = sorted({test.id() for test, _ in result.failures + result.errors})
    print(json.dumps({"run": result.testsRun, "failed": failed}))
    """
)


def run_patched(*specs):
    """Runs the unittest modules (``module`` or ``module:Case,Case``) under the patch in a child
    interpreter; returns how many tests ran and which failed."""
    done = subprocess.run(
        [sys.executable, "-c", RUN, *specs], capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


THREADING_CASES = (
    "ThreadTests,ThreadJoinOnShutdown,SubinterpThreadingTests,MiscTestCase,InterruptMainTests,"
    "AtexitTests,ThreadingExceptionTests,TimerTests,BoundedSemaphoreTests,EventTests,"
    "ConditionAsRLockTests,ConditionTests,SemaphoreTests,BarrierTests,LockTests,RLockTests,"
    "PyRLockTests,CRLockTests,ExceptHookTests"
)

BY_NATURE_OF_THE_PATCH = {
    "test.test_threading.MiscTestCase.test__all__",
    "test.test_threading.ThreadTests.test_disallow_instantiation",
}


def test_cpython_threading_suite_passes_under_the_patch():
    outcome = run_patched(f"test.test_threading:{THREADING_CASES}")
    assert outcome["run"] > 150
    assert set(outcome["failed"]) <= BY_NATURE_OF_THE_PATCH, outcome["failed"]


def test_cpython_logging_and_asyncio_suites_pass_under_the_patch():
    asyncio_modules = ["test_base_events", "test_threads", "test_locks", "test_queues"]
    asyncio_modules += ["test_futures", "test_events"]
    outcome = run_patched(
        "test.test_logging", *(f"test.test_asyncio.{name}" for name in asyncio_modules)
    )
    assert outcome["run"] > 500
    assert outcome["failed"] == []
