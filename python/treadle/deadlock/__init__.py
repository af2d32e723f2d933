"""Deadlock detection: a deadlock raises :class:`DeadlockError` with a report instead of hanging.

Every blocking wait in treadle is published in a wait graph (in the Rust core) before it parks.
Two things are detected, synchronously, by the waiting threads themselves:

* a cycle of owned waits: thread A waits for a lock B holds (or for B to end, ``B.join()``)
  while B waits for something A owns. The wait that closes the cycle raises at once;
* a stall: every live thread of the process is parked in a treadle wait with no timeout,
  none of them can be woken by anything (an Event nobody can set, a Condition nobody can
  notify, a Lock only a parked thread could release), and one of them waits on something a
  thread holds (a lock, a thread's end, a running task). Threads that all wait for input or a
  signal (idle workers on a queue, a main thread on an event until Ctrl-C) are idle, not
  deadlocked. Confirmed after a short grace period.

A wait with a timeout never raises :class:`DeadlockError`; if it times out while part of a cycle,
the report is logged to the ``treadle`` logger. See ``docs/deadlocks.md`` for what is detected
exactly, and what is not.

Modes (``set_mode``, or the environment variable ``TREADLE_DEADLOCK`` read at import):
``"raise"`` (default), ``"warn"`` (a :class:`DeadlockWarning`, and the wait goes on), ``"off"``.

The package: ``errors`` (the exceptions), ``threads`` (joins in the wait graph), ``verdict``
(what the core calls with a verdict) load with ``treadle``; ``report`` (reports, ``WaitEdge``,
``dump_waits``) and ``lock_order`` (the opt-in lock-order mode) load on first use.
"""

from __future__ import annotations

import os

from treadle import _lazy
from treadle._treadle import get_mode, set_mode
from treadle.deadlock import verdict  # noqa: F401  (registers the core's reporter)
from treadle.deadlock.errors import DeadlockError, DeadlockWarning, PotentialDeadlockWarning
from treadle.deadlock.threads import Thread, main_thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from treadle.deadlock.lock_order import disable_lock_order, enable_lock_order
    from treadle.deadlock.report import WaitEdge, dump_waits
    from treadle.deadlock.report import _set_deadlock_handler as _set_deadlock_handler

__all__ = [
    "DeadlockError",
    "DeadlockWarning",
    "PotentialDeadlockWarning",
    "Thread",
    "WaitEdge",
    "disable_lock_order",
    "dump_waits",
    "enable_lock_order",
    "get_mode",
    "main_thread",
    "set_mode",
]


def __getattr__(name: str) -> object:
    # PEP 562: the report machinery and lock-order mode load on first use.
    if name in ("WaitEdge", "dump_waits", "_set_deadlock_handler"):
        import treadle.deadlock.report as module
    elif name in ("enable_lock_order", "disable_lock_order"):
        import treadle.deadlock.lock_order as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _lazy.bind(globals(), name, module)


def __dir__() -> list[str]:
    return _lazy.listing(globals(), __all__)


def _mode_from_environment(value: str) -> None:
    """``TREADLE_DEADLOCK``: a mode; anything else warns and leaves the default, so that a typo
    in the environment never stops ``import treadle``."""
    try:
        set_mode(value.strip().lower())
    except ValueError:
        import warnings

        warnings.warn(
            f"TREADLE_DEADLOCK={value!r} is not a deadlock mode ('raise', 'warn' or 'off'); "
            f"using {get_mode()!r}",
            RuntimeWarning,
            stacklevel=2,
        )


if os.environ.get("TREADLE_DEADLOCK"):
    _mode_from_environment(os.environ["TREADLE_DEADLOCK"])
if os.environ.get("TREADLE_LOCK_ORDER", "").strip() not in ("", "0"):
    from treadle.deadlock.lock_order import enable_lock_order

    enable_lock_order()
