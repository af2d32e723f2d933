"""Deadlock reports: what a verdict of the core's wait graph says, and :func:`dump_waits`.

Loaded on first use, not with ``treadle``: by the first verdict (through
``treadle.deadlock.verdict``, which the core calls), by ``dump_waits()``, or by lock-order mode.
A report names each wait of the cycle or stall (:class:`WaitEdge`) and shows the waiting
threads' stacks without treadle's own frames.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from treadle import _treadle
from treadle.deadlock.errors import DeadlockError, DeadlockWarning

logger = logging.getLogger("treadle")


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
    ``semaphore``, ``barrier``, ``queue`` or ``submit`` (room in a thread pool's bounded queue)."""
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
        elif self.kind == "submit":
            line = (
                f"thread {self.waiter!r} waits for room to submit to {self.target}{where}"
                " (its max_pending tasks are queued; only its workers make room)"
            )
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


# The treadle package's folder: its frames are left out of reported stacks.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def _report(raw: list[tuple], verdict: str, mode: str, depth: int = 1) -> BaseException | None:
    """Called with a verdict of the core (through ``treadle.deadlock.verdict``, ``depth`` frames
    below the wait); returns the exception to raise, if any."""
    edges = _edges(raw)
    message = _format(edges, verdict, skip_frames=depth + 1)
    if verdict == "timeout":
        logger.warning("%s", message)
        return None
    if _deadlock_handler is not None and mode == "raise":
        _deadlock_handler(message, edges)
    if mode == "warn":
        warnings.warn(message, DeadlockWarning, stacklevel=depth + 1)
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
