"""Deadlock detection: a deadlock raises :class:`DeadlockError` with a report instead of hanging.

Every blocking wait in treadle is published in a wait graph (in the Rust core) before it parks.
Two things are detected, synchronously, by the waiting threads themselves:

* a cycle of owned waits: thread A waits for a lock B holds (or for B to end, ``B.join()``)
  while B waits for something A owns. The wait that closes the cycle raises at once;
* a stall: every live thread of the process is parked in a treadle wait with no timeout, and
  none of them can be woken by anything (an Event nobody can set, a Condition nobody can
  notify, a Lock only a parked thread could release). Confirmed after a short grace period.

A wait with a timeout never raises :class:`DeadlockError`; if it times out while part of a cycle,
the report is logged to the ``treadle`` logger. See ``docs/deadlocks.md`` for what is detected
exactly, and what is not.

Modes (``set_mode``, or the environment variable ``TREADLE_DEADLOCK`` read at import):
``"raise"`` (default), ``"warn"`` (a :class:`DeadlockWarning`, and the wait goes on), ``"off"``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from types import FrameType

from treadle import _treadle
from treadle._treadle import _ThreadDone, get_mode, set_mode

__all__ = [
    "DeadlockError",
    "DeadlockWarning",
    "Thread",
    "WaitEdge",
    "dump_waits",
    "get_mode",
    "main_thread",
    "set_mode",
]

logger = logging.getLogger("treadle")


class DeadlockError(RuntimeError):
    """Raised by the wait that would have completed a deadlock.

    ``str(err)`` is the report; ``err.cycle`` is the same as a list of :class:`WaitEdge`.
    The other threads of the cycle keep waiting, so the program can recover (for example by
    releasing what the raising thread holds).
    """

    def __init__(self, message: str, cycle: list[WaitEdge]):
        super().__init__(message)
        self.cycle = cycle


class DeadlockWarning(RuntimeWarning):
    """Issued instead of raising :class:`DeadlockError` in ``"warn"`` mode."""


@dataclass(frozen=True)
class WaitEdge:
    """One thread's wait in a report."""

    waiter: str
    """The waiting thread's name."""
    waiter_ident: int | None
    """Its ``threading.get_ident()``."""
    kind: str
    """What it waits on: ``lock``, ``rlock``, ``join``, ``future``, ``condition``, ``event``,
    ``semaphore``, ``barrier`` or ``queue``."""
    target: str
    """The repr of the object waited on."""
    created_at: str | None
    """Where that object was created (``file:line``), when known."""
    owner: str | None
    """For owned waits, the name of the thread that must act (holder, or thread to end)."""
    owner_ident: int | None
    """Its ``threading.get_ident()``."""
    timed: bool
    """Whether the wait has a timeout."""

    def describe(self) -> str:
        """This edge as a line of a report."""
        where = f" (created at {self.created_at})" if self.created_at else ""
        line = f"thread {self.waiter!r} waits for {self.kind} {self.target}{where}"
        if self.owner is not None:
            relation = "which is thread" if self.kind == "join" else "held by thread"
            line += f", {relation} {self.owner!r}"
        if self.timed:
            line += " (with a timeout)"
        return line


def _thread_name(ident: int | None) -> str | None:
    if ident is None:
        return None
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return thread.name if thread is not None else f"<thread {ident}>"


def _edges(raw: list[tuple]) -> list[WaitEdge]:
    edges = []
    for waiter_ident, kind, obj, owner_ident, timed in raw:
        try:
            target = repr(obj)
        except Exception:  # a broken __repr__ must not hide the deadlock
            target = f"<{type(obj).__name__} object>"
        edges.append(
            WaitEdge(
                waiter=_thread_name(waiter_ident) or "<unknown thread>",
                waiter_ident=waiter_ident,
                kind=kind,
                target=target,
                created_at=getattr(obj, "_created_at", None),
                owner=_thread_name(owner_ident),
                owner_ident=owner_ident,
                timed=timed,
            )
        )
    return edges


def _stacks(edges: list[WaitEdge], skip_frames: int) -> str:
    frames = sys._current_frames()
    me = threading.get_ident()
    parts = []
    for edge in edges:
        if edge.waiter_ident is None:
            continue
        frame: FrameType | None
        if edge.waiter_ident == me:
            frame = sys._getframe(skip_frames)
        else:
            frame = frames.get(edge.waiter_ident)
        if frame is None:
            continue
        stack = "".join(traceback.format_stack(frame)).rstrip()
        indented = "\n".join("  " + line for line in stack.splitlines())
        parts.append(f"  thread {edge.waiter!r}:\n{indented}")
    return "\n".join(parts)


def _format(edges: list[WaitEdge], verdict: str, skip_frames: int) -> str:
    if verdict == "stall":
        head = (
            f"deadlock: all {len(edges)} live threads are waiting in treadle, "
            "and none of them can wake another"
        )
    elif verdict == "timeout":
        head = f"a wait timed out while part of a cycle of {len(edges)} waits"
    elif len(edges) == 1:
        head = "deadlock: a thread waits for something only it can release"
    else:
        head = f"deadlock: {len(edges)} threads wait on each other"
    lines = [head, *("  " + edge.describe() for edge in edges)]
    stacks = _stacks(edges, skip_frames + 1)
    if stacks:
        lines += ["", "Stacks at detection:", stacks]
    return "\n".join(lines)


def _report(raw: list[tuple], verdict: str, mode: str) -> BaseException | None:
    """Called by the core with a verdict; returns the exception to raise, if any."""
    edges = _edges(raw)
    message = _format(edges, verdict, skip_frames=2)
    if verdict == "timeout":
        logger.warning("%s", message)
        return None
    if mode == "warn":
        warnings.warn(message, DeadlockWarning, stacklevel=2)
        return None
    return DeadlockError(message, edges)


def dump_waits() -> str:
    """Every thread now waiting in treadle, what it waits on, and its stack."""
    edges = _edges(_treadle._waits())
    if not edges:
        return "no thread is waiting in treadle"
    lines = [f"{len(edges)} threads waiting in treadle:"]
    lines += ["  " + edge.describe() for edge in edges]
    stacks = _stacks(edges, 2)
    if stacks:
        lines += ["", "Stacks:", stacks]
    return "\n".join(lines)


class Thread(threading.Thread):
    """A ``threading.Thread`` whose ``join()`` takes part in deadlock detection.

    A thread that joins a thread which (directly or through others) waits for it raises
    :class:`DeadlockError` instead of hanging. Everything else is ``threading.Thread``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._treadle_done = _ThreadDone()

    def _bootstrap_inner(self):
        self._treadle_done.bind_current()
        try:
            super()._bootstrap_inner()  # type: ignore[misc]
        finally:
            self._treadle_done.finish()

    def join(self, timeout: float | None = None) -> None:
        if not self._started.is_set():  # type: ignore[attr-defined]
            raise RuntimeError("cannot join thread before it is started")
        if self is threading.current_thread():
            raise RuntimeError("cannot join current thread")
        start = time.monotonic()
        if not self._treadle_done.wait(self, timeout):
            return
        if timeout is not None:
            timeout = max(0.0, timeout - (time.monotonic() - start))
        super().join(timeout)


class _MainThread:
    """The main thread, with a ``join()`` that takes part in deadlock detection."""

    def __init__(self) -> None:
        self._thread = threading.main_thread()
        self._done = _ThreadDone(main=True)
        # threading releases joiners of the main thread when the interpreter begins to shut
        # down, before it joins the other threads; so does this.
        threading._register_atexit(self._done.finish)  # type: ignore[attr-defined]

    def join(self, timeout: float | None = None) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("cannot join current thread")
        self._done.wait(self._thread, timeout)

    def __getattr__(self, name: str):
        return getattr(self._thread, name)

    def __repr__(self) -> str:
        return repr(self._thread)


_main: _MainThread | None = None
_main_lock = threading.Lock()


def main_thread() -> _MainThread:
    """The main thread (as ``threading.main_thread()``), whose ``join()`` is deadlock-checked."""
    global _main
    with _main_lock:
        if _main is None:
            _main = _MainThread()
        return _main


_treadle._set_reporter(_report)
if os.environ.get("TREADLE_DEADLOCK"):
    set_mode(os.environ["TREADLE_DEADLOCK"].strip().lower())
