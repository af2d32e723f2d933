"""The function the core calls when its wait graph reaches a verdict, registered as ``treadle``
is imported.

It is small on purpose: the report machinery (``treadle.deadlock.report``, with dataclasses,
traceback and logging) loads at the first verdict, not with ``treadle``. Importing then has one
hazard: a thread of the deadlock may be parked in the middle of an import, holding that
module's import lock; if the report needed that module, the thread that reached the verdict
would wait for the lock forever, and the program would hang after all. So a helper thread
imports the report module, and the verdict waits for it at most ``IMPORT_PATIENCE`` seconds;
past that, it reports plainly, with what is at hand (the exception classes, the waits' types
and the threads' names), and raises as usual.
"""

from __future__ import annotations

import _thread
import _warnings
import sys
import threading
from types import ModuleType

from treadle import _treadle
from treadle.deadlock.errors import DeadlockError, DeadlockWarning

#: Seconds a verdict waits for the report module to be imported before it reports plainly.
IMPORT_PATIENCE = 5.0


def _reporter(raw: list[tuple], verdict: str, mode: str) -> BaseException | None:
    """Builds the report of a verdict; returns the exception to raise, if any."""
    report = sys.modules.get("treadle.deadlock.report")
    if report is None or getattr(report.__spec__, "_initializing", False):
        report = _import_report()
    if report is None:
        return _plain_report(raw, verdict, mode)
    return report._report(raw, verdict, mode, depth=2)


def _import_report() -> ModuleType | None:
    """``treadle.deadlock.report``, imported by a helper thread; None if that failed or took
    longer than ``IMPORT_PATIENCE`` seconds (the helper may still finish it later)."""
    loaded: list[ModuleType] = []
    done = _thread.allocate_lock()
    done.acquire()

    def load() -> None:
        try:
            from treadle.deadlock import report

            loaded.append(report)
        except Exception:
            pass  # reported plainly instead
        finally:
            done.release()

    try:
        _thread.start_new_thread(load, ())
    except RuntimeError:
        load()  # no new threads at interpreter shutdown; nor other threads to hold a lock
    done.acquire(timeout=IMPORT_PATIENCE)
    return loaded[0] if loaded else None


def _thread_name(ident: int | None) -> str:
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return repr(thread.name) if thread is not None else f"<thread {ident}>"


def _plain_report(raw: list[tuple], verdict: str, mode: str) -> BaseException | None:
    """The verdict, told without the report module: each wait's kind and type, no stacks."""
    waits = []
    for waiter, kind, target, owner, _ in raw:
        wait = f"thread {_thread_name(waiter)} waits for {kind} ({type(target).__name__})"
        if owner is not None:
            wait += f" of thread {_thread_name(owner)}"
        waits.append(wait)
    message = (
        f"deadlock ({verdict}): {'; '.join(waits)}. This is a plain report: the full one needs "
        "a module that a waiting thread is importing."
    )
    if verdict == "timeout":
        sys.stderr.write(f"treadle: {message}\n")
        return None
    if mode == "warn":
        _warnings.warn(message, DeadlockWarning, 3)
        return None
    return DeadlockError(message, [])


_treadle._set_reporter(_reporter)
