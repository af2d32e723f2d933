"""Lock-order mode (lockdep-style), opt in with ``enable_lock_order()`` or ``TREADLE_LOCK_ORDER=1``:
a warning the first time two locks are taken in both orders by different threads, a deadlock
that did not happen this time.

Locks are keyed by where they were created, so that every lock made by the same line of code is
one node, and an inversion is caught even between different instances. An order seen while a
third lock guarded both acquisitions (the same one in both orders) cannot deadlock and is not
reported.
"""

from __future__ import annotations

import _thread
import sys
import threading
import warnings
from dataclasses import dataclass

from treadle import _treadle
from treadle.deadlock.errors import PotentialDeadlockWarning
from treadle.deadlock.report import _format_stack


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
