"""CPython's own ``test._test_multiprocessing``, run against ``treadle.multiprocessing``.

CPython builds its test cases by combining each ``_Test*`` class with a mixin that names the
implementation (``ProcessesMixin``: ``self.Process``, ``self.Queue``, ``self.Pipe``, ...); here
the mixin names treadle's, made for treadle's default context (``"forkserver"``: children forked
from the fork server). The tests also name ``multiprocessing.X`` directly (``TestWait``,
``TestSimpleQueue``, a few tests of the classes below): the module's ``multiprocessing`` becomes
a copy of the standard library's whose ``Process``, queues, ``Pipe``, contexts and start
methods, locks, events and shared values are treadle's.

Run: the process, queue and connection classes (``_TestProcess``, ``_TestSubclassingProcess``,
``_TestQueue``, ``_TestConnection``, ``_TestListenerClient``, ``_TestPoll``,
``_TestPicklingConnections``, ``TestWait``, ``TestSimpleQueue``, ``TestStartMethod``), and the
synchronization and shared-state classes (``_TestLock``, ``_TestSemaphore``,
``_TestCondition``, ``_TestEvent``, ``_TestBarrier``, ``_TestValue``, ``_TestArray``). Not run:
the rest of the module (pools, managers, shared memory), the standard library's own code here
(or another branch's). The tests that check behaviour treadle changes on
purpose are listed in ``DELIBERATE`` and skipped with the reason (treadle's behaviour in those
cases is asserted by ``test_mp_*.py``); ``docs/multiprocessing.md`` lists them too.
"""

from __future__ import annotations

import multiprocessing
import types
import unittest

import pytest

import treadle.multiprocessing as ours
from treadle.multiprocessing import connection as our_connection

cpython = pytest.importorskip("test._test_multiprocessing")

#: The standard library's module as the suite sees it, with treadle's names.
namespace = types.ModuleType("multiprocessing")
namespace.__dict__.update(vars(multiprocessing))
for name in ours.__all__:
    setattr(namespace, name, getattr(ours, name))
cpython.multiprocessing = namespace

# A subclass of Process the suite defines at import: the same, on treadle's Process.
cpython._UpperCaser = type(
    "_UpperCaser",
    (ours.Process,),
    {
        name: value
        for name, value in vars(cpython._UpperCaser).items()
        if name not in ("__dict__", "__weakref__")
    },
)


class TreadleMixin(cpython.ProcessesMixin):
    Process = ours.Process
    connection = multiprocessing.connection
    current_process = staticmethod(ours.current_process)
    parent_process = staticmethod(ours.parent_process)
    active_children = staticmethod(ours.active_children)
    set_executable = staticmethod(ours.set_executable)
    Pool = staticmethod(ours.Pool)
    Pipe = staticmethod(our_connection.Pipe)
    Queue = staticmethod(ours.Queue)
    JoinableQueue = staticmethod(ours.JoinableQueue)
    Lock = staticmethod(ours.Lock)
    RLock = staticmethod(ours.RLock)
    Semaphore = staticmethod(ours.Semaphore)
    BoundedSemaphore = staticmethod(ours.BoundedSemaphore)
    Condition = staticmethod(ours.Condition)
    Event = staticmethod(ours.Event)
    Barrier = staticmethod(ours.Barrier)
    Value = staticmethod(ours.Value)
    Array = staticmethod(ours.Array)
    RawValue = staticmethod(ours.RawValue)
    RawArray = staticmethod(ours.RawArray)


#: CPython's tests of what treadle does differently on purpose: test id -> why.
DELIBERATE = {
    "_TestProcess.test_parent_process": (
        "children die with their parent (PR_SET_PDEATHSIG): the grandchild that should outlive "
        "its killed parent to report it dead is killed with it"
    ),
    "_TestQueue.test_queue_feeder_donot_stop_onexc": (
        "no feeder thread: an item that cannot be pickled fails in put(), naming the culprit"
    ),
    "_TestQueue.test_queue_feeder_on_queue_feeder_error": (
        "no feeder thread, so no _on_queue_feeder_error hook: put() raises"
    ),
    "_TestConnection.test_fd_transfer": (
        "a connection's fileno() is an eventfd, not a socket: reduction.send_handle() needs a "
        "socket"
    ),
    "_TestConnection.test_large_fd_transfer": "as test_fd_transfer",
    "_TestConnection.test_missing_fd_transfer": "as test_fd_transfer",
    "TestStartMethod.test_get_all": (
        "treadle's default start method, 'forkserver', is listed first"
    ),
}


def _deliberate(name: str, case: type) -> type:
    """``case`` with the tests ``DELIBERATE`` lists for it skipped, with the reason."""
    for test_id, reason in DELIBERATE.items():
        owner, _, method = test_id.partition(".")
        if owner == name and hasattr(case, method):
            setattr(
                case,
                method,
                unittest.skip(f"deliberate difference: {reason}")(getattr(case, method)),
            )
    return case


def _on_treadle(name: str) -> type:
    base = getattr(cpython, name)
    if issubclass(base, cpython.BaseTestCase):
        case = type("WithTreadle" + name[1:], (base, TreadleMixin, unittest.TestCase), {})
    else:
        case = type(name, (base,), {})
    case.__module__ = __name__
    return _deliberate(name, case)


CLASSES = [
    "_TestProcess",
    "_TestSubclassingProcess",
    "_TestQueue",
    "_TestConnection",
    "_TestListenerClient",
    "_TestPoll",
    "_TestPicklingConnections",
    "TestWait",
    "TestSimpleQueue",
    "TestStartMethod",
    "_TestLock",
    "_TestSemaphore",
    "_TestCondition",
    "_TestEvent",
    "_TestBarrier",
    "_TestValue",
    "_TestArray",
]
for _name in CLASSES:
    _case = _on_treadle(_name)
    globals()[_case.__name__] = _case
del _name, _case


def setUpModule():
    # As CPython's own setUpModule does for each start method.
    cpython.util.get_temp_dir()
    multiprocessing.get_logger().setLevel(cpython.LOG_LEVEL)


def tearDownModule():
    cpython.test.support.gc_collect()
    multiprocessing.util._cleanup_tests()
