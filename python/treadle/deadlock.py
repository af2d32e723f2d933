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

import _thread
import logging
import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from treadle import _treadle
from treadle._treadle import _ThreadDone, get_mode, set_mode

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


class PotentialDeadlockWarning(RuntimeWarning):
    """Lock-order mode saw two locks taken in both orders by different threads.

    No thread hung this time, but two threads running those paths at once can deadlock. The
    message has both acquisition stacks.
    """


@dataclass(frozen=True)
class WaitEdge:
    """One thread's wait in a report."""

    waiter: str
    """The waiting thread's name."""
    waiter_ident: int | None
    """Its ``threading.get_ident()``."""
    kind: str
    """What it waits on: ``lock``, ``rlock``, ``join``, ``future``, ``condition`` (a
    notification), ``reacquire`` (a condition's lock, re-taken after the notification), ``event``,
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
        if self.kind == "reacquire":
            line = f"thread {self.waiter!r} waits to re-take {self.target}{where} after a wait"
        else:
            line = f"thread {self.waiter!r} waits for {self.kind} {self.target}{where}"
        if self.owner is not None:
            relation = {"join": "which is thread", "future": "run by thread"}.get(
                self.kind, "held by thread"
            )
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


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _format_stack(frame: FrameType) -> str:
    """A thread's stack, without treadle's own frames and the interpreter's run machinery."""
    entries = [
        entry
        for entry in traceback.extract_stack(frame)
        if not entry.filename.startswith(_PACKAGE_DIR) and entry.filename != "<frozen runpy>"
    ]
    return "".join(traceback.format_list(entries)).rstrip()


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
        stack = _format_stack(frame)
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


_deadlock_handler: Callable[[str, list[WaitEdge]], None] | None = None


def _set_deadlock_handler(handler: Callable[[str, list[WaitEdge]], None] | None) -> None:
    """Called with every deadlock report before it is raised (``treadle run`` exits there)."""
    global _deadlock_handler
    _deadlock_handler = handler


def _report(raw: list[tuple], verdict: str, mode: str) -> BaseException | None:
    """Called by the core with a verdict; returns the exception to raise, if any."""
    edges = _edges(raw)
    message = _format(edges, verdict, skip_frames=2)
    if verdict == "timeout":
        logger.warning("%s", message)
        return None
    if _deadlock_handler is not None and mode == "raise":
        _deadlock_handler(message, edges)
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


def _run_tracked(thread: threading.Thread, bootstrap_inner) -> None:
    """A thread's life, with its end published for deadlock-checked joins."""
    done = _ThreadDone()
    thread._treadle_done = done  # type: ignore[attr-defined]
    done.bind_current()
    try:
        bootstrap_inner()
    finally:
        done.finish()


def _start_tracked(start) -> None:
    """``thread.start()``: until the new thread runs, the interpreter does not count it among
    the live threads, so no stall is judged meanwhile (its starter waits for it in treadle)."""
    _treadle._thread_starting(True)
    try:
        start()
    finally:
        _treadle._thread_starting(False)


def _join_tracked(thread: threading.Thread, timeout: float | None, join) -> None:
    """``thread.join(timeout)``, waiting for the thread's end in the wait graph first."""
    if threading.current_thread() is thread:
        raise RuntimeError("cannot join current thread")
    if thread is threading.main_thread():
        main_thread().join(timeout)
        return
    done = getattr(thread, "_treadle_done", None)
    if done is None or not thread._started.is_set():  # type: ignore[attr-defined]
        join(timeout)  # not started, or started before tracking: the stdlib's own join
        return
    start = time.monotonic()
    if not done.wait(thread, timeout):
        return
    if timeout is not None:
        timeout = max(0.0, timeout - (time.monotonic() - start))
    join(timeout)


class Thread(threading.Thread):
    """A ``threading.Thread`` whose ``join()`` takes part in deadlock detection.

    A thread that joins a thread which (directly or through others) waits for it raises
    :class:`DeadlockError` instead of hanging. Everything else is ``threading.Thread``.
    """

    def start(self) -> None:
        _start_tracked(super().start)

    def _bootstrap_inner(self):
        _run_tracked(self, super()._bootstrap_inner)  # type: ignore[misc]

    def join(self, timeout: float | None = None) -> None:
        _join_tracked(self, timeout, super().join)


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
_main_lock = _thread.allocate_lock()


def main_thread() -> _MainThread:
    """The main thread (as ``threading.main_thread()``), whose ``join()`` is deadlock-checked."""
    global _main
    with _main_lock:
        if _main is None:
            _main = _MainThread()
        return _main


# Lock-order mode (lockdep-style): opt in with enable_lock_order() or TREADLE_LOCK_ORDER=1.
# Locks are keyed by where they were created, so that every lock made by the same line of code
# is one node, and an inversion is caught even between different instances.


@dataclass(frozen=True)
class _OrderEdge:
    thread: int
    guards: frozenset[str]
    stack: str


_thread_lock = _thread.allocate_lock()
_order_edges: dict[tuple[str, str], _OrderEdge] = {}
_order_warned: set[frozenset[str]] = set()
_held = threading.local()


def _lock_key(lock: object) -> str:
    return getattr(lock, "_created_at", None) or f"{type(lock).__name__} at {id(lock):#x}"


def _on_lock_order(lock: object, acquired: bool) -> None:
    held: list[str] = _held.__dict__.setdefault("keys", [])
    key = _lock_key(lock)
    if not acquired:
        if key in held:
            # The most recent acquisition of that key goes.
            del held[len(held) - 1 - held[::-1].index(key)]
        return
    if held:
        _check_order(held, key)
    held.append(key)


def _check_order(held: list[str], key: str) -> None:
    # treadle's thread numbers, unlike idents, are never reused by a later thread.
    me = _treadle._current_thread_number()
    stack: str | None = None
    inversions = []
    with _thread_lock:
        for outer in dict.fromkeys(held):
            if outer == key:
                continue
            guards = frozenset(k for k in held if k not in (outer, key))
            if (outer, key) not in _order_edges:
                if stack is None:
                    stack = _format_stack(sys._getframe(2))
                _order_edges[(outer, key)] = _OrderEdge(me, guards, stack)
            reverse = _order_edges.get((key, outer))
            if reverse is None or reverse.thread == me or reverse.guards & guards:
                continue
            pair = frozenset((outer, key))
            if pair in _order_warned:
                continue
            _order_warned.add(pair)
            inversions.append((outer, reverse))
    for outer, reverse in inversions:
        if stack is None:
            stack = _format_stack(sys._getframe(2))
        warnings.warn(
            PotentialDeadlockWarning(
                f"lock order inversion: lock created at {key} taken while holding the lock "
                f"created at {outer}, but another thread took them in the opposite order; "
                "two threads on these paths at once can deadlock.\n"
                f"This acquisition:\n{stack}\n"
                f"The opposite order, earlier:\n{reverse.stack}"
            ),
            stacklevel=3,
        )


def enable_lock_order() -> None:
    """Turn on lock-order mode: warn the first time two locks are taken in both orders."""
    _treadle._set_lock_order_hook(_on_lock_order)


def disable_lock_order(forget: bool = True) -> None:
    """Turn lock-order mode off (and forget the orders seen, unless ``forget`` is false)."""
    _treadle._set_lock_order_hook(None)
    if forget:
        with _thread_lock:
            _order_edges.clear()
            _order_warned.clear()


_treadle._set_reporter(_report)
if os.environ.get("TREADLE_DEADLOCK"):
    set_mode(os.environ["TREADLE_DEADLOCK"].strip().lower())
if os.environ.get("TREADLE_LOCK_ORDER", "").strip() not in ("", "0"):
    enable_lock_order()
