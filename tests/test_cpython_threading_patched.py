"""CPython's own ``test.test_threading``, run with ``treadle.patch()`` in force, as
``treadle run`` runs a program: ``threading``'s primitives are treadle's, and ``Thread`` joins
are tracked.

It runs in a child interpreter (the patch is process-wide). Two of its tests are about the patch
itself rather than behaviour, and fail by its nature; the test below asserts that they are the
only ones that do, so any other failure is caught:

- ``MiscTestCase.test__all__`` checks that each public name of ``threading`` is defined in
  ``threading`` itself; the patched classes are defined in ``treadle``.
- ``ThreadTests.test_disallow_instantiation`` (before 3.13) checks that the type of
  ``threading.Lock()`` (``_thread.lock``) cannot be instantiated; the patched ``Lock`` is a
  class, and instantiating it is how it is used.
"""

import json
import subprocess
import sys
import textwrap

RUN = textwrap.dedent(
    """
    import io, json, unittest
    import treadle
    treadle.patch()
    from test import test_threading as suite
    names = [
        "ThreadTests", "ThreadJoinOnShutdown", "SubinterpThreadingTests", "MiscTestCase",
        "InterruptMainTests", "AtexitTests", "ThreadingExceptionTests", "TimerTests",
        "BoundedSemaphoreTests", "EventTests", "ConditionAsRLockTests", "ConditionTests",
        "SemaphoreTests", "BarrierTests", "LockTests", "RLockTests", "PyRLockTests",
        "CRLockTests", "ExceptHookTests",
    ]
    tests = unittest.TestSuite()
    for name in names:
        if hasattr(suite, name):
            tests.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(getattr(suite, name)))
    result = unittest.TextTestRunner(stream=io.StringIO()).run(tests)
    failed = sorted({test.id() for test, _ in result.failures + result.errors})
    print(json.dumps({"run": result.testsRun, "failed": failed}))
    """
)

BY_NATURE_OF_THE_PATCH = {
    "test.test_threading.MiscTestCase.test__all__",
    "test.test_threading.ThreadTests.test_disallow_instantiation",
}


def test_cpython_threading_suite_passes_under_the_patch():
    done = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["run"] > 150
    assert set(outcome["failed"]) <= BY_NATURE_OF_THE_PATCH, outcome["failed"]
