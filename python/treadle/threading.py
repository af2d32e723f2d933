"""``treadle.threading``: a drop-in for the standard library's ``threading`` module, so that
``import treadle.threading as threading`` is the whole module.

It is ``threading`` as ``treadle.patch()`` makes it, without patching anything: the
synchronization primitives (``Lock``, ``RLock``, ``Condition``, ``Semaphore``,
``BoundedSemaphore``, ``Event``, ``Barrier``) are treadle's; ``Thread`` and ``Timer`` are
treadle's threads, whose ``join()`` is deadlock-checked (subclasses of ``threading.Thread`` and
``threading.Timer``); every other name is the standard library's own object (``current_thread``,
``main_thread``, ``local``, ``get_ident``, ``settrace``, ``stack_size``, ``excepthook``...), so
that identities hold (``current_thread() is main_thread()``) and nothing else changes.
"""

import sys
from threading import (
    BrokenBarrierError,
    ExceptHookArgs,
    ThreadError,
    active_count,
    current_thread,
    enumerate,
    excepthook,
    get_ident,
    get_native_id,
    getprofile,
    gettrace,
    local,
    main_thread,
    setprofile,
    settrace,
    stack_size,
)

# threading's deprecated camelCase aliases: public names, though not in its __all__.
from threading import activeCount as activeCount
from threading import currentThread as currentThread

from treadle._treadle import (
    TIMEOUT_MAX,
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
)
from treadle.deadlock.threads import Thread, Timer

if sys.version_info >= (3, 12):
    from threading import setprofile_all_threads, settrace_all_threads

__all__ = [
    "TIMEOUT_MAX",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Event",
    "ExceptHookArgs",
    "Lock",
    "RLock",
    "Semaphore",
    "Thread",
    "ThreadError",
    "Timer",
    "active_count",
    "current_thread",
    "enumerate",
    "excepthook",
    "get_ident",
    "get_native_id",
    "getprofile",
    "gettrace",
    "local",
    "main_thread",
    "setprofile",
    "settrace",
    "stack_size",
]
if sys.version_info >= (3, 12):
    __all__ += ["setprofile_all_threads", "settrace_all_threads"]
