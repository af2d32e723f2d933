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
``_TestPicklingConnections``, ``TestWait``, ``TestSimpleQueue``, ``TestStartMethod``); the
synchronization and shared-state classes (``_TestLock``, ``_TestSemaphore``,
``_TestCondition``, ``_TestEvent``, ``_TestBarrier``, ``_TestValue``, ``_TestArray``,
``_TestSharedCTypes`` with treadle's ``Value`` and ``copy``, ``_TestHeap`` with treadle's heap);
what children do at start and exit (``_TestFinalize``, ``_TestLogging``, ``_TestPollEintr``,
``TestIgnoreEINTR``, ``TestCloseFds``, ``TestFlags``, ``TestForkAwareThreadLock``,
``TestTimeouts``, ``TestInitializers``: a pool's and a manager's initializer); the pool
classes (``_TestPool`` with treadle's ``Pool``, and with its ``ThreadPool`` as the thread
variant, ``_TestPoolWorkerErrors``, ``_TestPoolWorkerLifetime``, ``TestPoolNotLeakOnFailure``);
the manager classes (``_TestContainers``, ``_TestMyManager``, ``_TestRemoteManager``,
``_TestManagerRestart``, ``TestSyncManagerTypes``), whose managers are
``treadle.multiprocessing.managers``' (their server a treadle process); and the shared-memory
class (``_TestSharedMemory``, whose module-level ``shared_memory`` becomes treadle's). The tests
that check behaviour treadle changes on purpose are listed in ``DELIBERATE`` and skipped with
the reason (treadle's behaviour in those cases is asserted by ``test_mp_*.py``);
``docs/multiprocessing.md`` lists them too.
"""

from __future__ import annotations

import multiprocessing
import sys
import types
import unittest

import pytest

import treadle.multiprocessing as ours
from treadle.multiprocessing import connection as our_connection
from treadle.multiprocessing import heap as our_heap
from treadle.multiprocessing import managers as our_managers
from treadle.multiprocessing import pool as our_pool
from treadle.multiprocessing import shared_memory as our_shared_memory
from treadle.multiprocessing import sharedctypes as our_sharedctypes

cpython = pytest.importorskip("test._test_multiprocessing")

#: The standard library's module as the suite sees it, with treadle's names.
namespace = types.ModuleType("multiprocessing")
namespace.__dict__.update(vars(multiprocessing))
for name in ours.__all__:
    setattr(namespace, name, getattr(ours, name))
namespace.managers = our_managers
cpython.multiprocessing = namespace
cpython.shared_memory = our_shared_memory
namespace.heap = our_heap
# The sharedctypes names the suite imported at its import.
cpython.Value, cpython.copy = our_sharedctypes.Value, our_sharedctypes.copy


def _rebased(cls: type, base: type) -> type:
    """The suite's subclass ``cls``, defined at import on a standard class: the same, on
    treadle's ``base``."""
    own = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    return type(cls.__name__, (base,), own)


# Subclasses of Process and BaseManager the suite defines at import: the same, on treadle's.
cpython._UpperCaser = _rebased(cpython._UpperCaser, ours.Process)
for _manager in ("MyManager", "QueueManager", "QueueManager2"):
    setattr(cpython, _manager, _rebased(getattr(cpython, _manager), our_managers.BaseManager))


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


class TreadleThreadsMixin(cpython.ThreadsMixin):
    """The thread variant of the classes that have one, with treadle's ``ThreadPool``."""

    Pool = staticmethod(our_pool.ThreadPool)


class TreadleManagerMixin(cpython.ManagerMixin):
    """The manager variant: ``multiprocessing.Manager()`` is the namespace's (treadle's), whose
    server is a treadle process."""


MIXINS = {"processes": TreadleMixin, "threads": TreadleThreadsMixin, "manager": TreadleManagerMixin}


#: CPython's tests of what treadle does differently on purpose: test id -> why.
DELIBERATE = {
    "_TestProcess.test_parent_process": (
        "children die with their parent (PR_SET_PDEATHSIG): the grandchild that should outlive "
        "its killed parent to report it dead is killed with it"
    ),
    "_TestProcess.test_forkserver_sigint": (
        "it kills the standard library's fork server, which treadle's processes never use: its "
        "next child comes from treadle's, so the killed server is left a zombie, which "
        "TestSyncManagerTypes reaps (support.reap_children), and multiprocessing's clean-up "
        "then fails to wait for it; treadle's fork server dying: test_process_pool.py::"
        "test_a_pool_whose_fork_server_dies_goes_on_with_fresh_interpreters"
    ),
    "_TestProcess.test_forkserver_sigkill": "as test_forkserver_sigint",
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
    "_TestSharedMemory.test_shared_memory_tracking": (
        "its child runs the standard library's SharedMemory, which cannot find a treadle segment "
        "by name (treadle's finds the standard library's); and there is no resource tracker"
    ),
    "_TestSharedMemory.test_shared_memory_untracking": "as test_shared_memory_tracking",
}
if sys.version_info < (3, 13):
    # From 3.13 on, the thread variant sleeps 1 s, since no thread pool can stop its threads.
    DELIBERATE["_TestPool[threads].test_terminate"] = (
        "a thread cannot be killed: terminate() cancels the queued tasks, and join() waits for "
        "the running time.sleep(300) calls, as the standard library's ThreadPool does"
    )


def _deliberate(name: str, kind: str, case: type) -> type:
    """``case`` (``name``'s ``kind`` variant) with the tests ``DELIBERATE`` lists for it skipped,
    with the reason; ``"_TestX.test_y"`` names the processes (or only) variant,
    ``"_TestX[threads].test_y"`` another."""
    label = f"{name}[{kind}]" if kind in VARIANTS.get(name, ()) else name
    for test_id, reason in DELIBERATE.items():
        owner, _, method = test_id.partition(".")
        if owner == label and hasattr(case, method):
            setattr(
                case,
                method,
                unittest.skip(f"deliberate difference: {reason}")(getattr(case, method)),
            )
    return case


def _on_treadle(name: str, kind: str = "processes") -> type:
    base = getattr(cpython, name)
    if issubclass(base, cpython.BaseTestCase):
        label = "" if kind == "processes" else kind.capitalize()
        case = type(f"WithTreadle{label}{name[1:]}", (base, MIXINS[kind], unittest.TestCase), {})
    else:
        case = type(name, (base,), {})
    case.__module__ = __name__
    return _deliberate(name, kind, case)


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
    "_TestSharedMemory",
    # Pools: treadle's Pool, and ThreadPool for the thread variant.
    "_TestPool",
    "_TestPoolWorkerErrors",
    "_TestPoolWorkerLifetime",
    "TestPoolNotLeakOnFailure",
    # Managers: the standard library's server, started as a treadle process.
    "_TestContainers",
    "_TestMyManager",
    "_TestRemoteManager",
    "_TestManagerRestart",
    "TestSyncManagerTypes",
    "_TestLock",
    "_TestSemaphore",
    "_TestCondition",
    "_TestEvent",
    "_TestBarrier",
    "_TestValue",
    "_TestArray",
    "_TestSharedCTypes",
    "_TestHeap",
    # What children do at start and exit.
    "_TestFinalize",
    "_TestLogging",
    "_TestPollEintr",
    "TestInitializers",
    "TestTimeouts",
    "TestForkAwareThreadLock",
    "TestCloseFds",
    "TestIgnoreEINTR",
    "TestFlags",
]
#: The classes also run with threads (``ThreadPool``) and with a manager's objects.
VARIANTS = {"_TestPool": ("threads",)}
for _name in CLASSES:
    for _kind in ("processes", *VARIANTS.get(_name, ())):
        if _kind == "processes" and "processes" not in getattr(
            getattr(cpython, _name), "ALLOWED_TYPES", ("processes",)
        ):
            _kind = "manager"
        _case = _on_treadle(_name, _kind)
        globals()[_case.__name__] = _case
del _name, _kind, _case


def setUpModule():
    # As CPython's own setUpModule does for each start method.
    cpython.util.get_temp_dir()
    multiprocessing.get_logger().setLevel(cpython.LOG_LEVEL)


def tearDownModule():
    cpython.test.support.gc_collect()
    multiprocessing.util._cleanup_tests()
