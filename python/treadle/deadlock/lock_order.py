"""Lock-order mode (lockdep-style), opt in with ``enable_lock_order()`` or ``TREADLE_LOCK_ORDER=1``:
a warning the first time locks are seen taken in a circle (A while holding B, B while holding
C, ..., Z while holding A) by different threads, a deadlock that did not happen this time.

The graph. Each first acquisition of a lock while the thread holds others adds an edge from
every lock held to the new one. Locks are keyed by where they were created, so that an
inversion is caught between different instances made by the same lines of code (every
``Account``'s lock is one node, as in Linux's lockdep): an edge between locks created at two
different places is an edge between those places. Locks created at the same place (a list of
them made in a comprehension, ``a, b = Lock(), Lock()``, two instances of a class nested in each
other) would be one node with an edge to itself, which says nothing about their order; an edge
between two such locks is an edge between the instances instead, so that taking them in a
consistent order (the lowest fork first) stays quiet and a real circle is found.

A new edge, or an edge seen from a new thread or with fewer locks guarding it, is checked for
the cycles it closes, of any length (a depth-first search over the edges, bounded). A cycle is
reported, once, with the acquisition stack of each of its edges, unless it cannot deadlock: when
no set of distinct threads can have taken its edges (a deadlock needs each wait in a thread of
its own, so one thread taking both orders is quiet), or when one lock guarded every edge of it
(a gate taken around both orders serializes them).
"""

from __future__ import annotations

import _thread
import itertools
import sys
import threading
import warnings
import weakref
from dataclasses import dataclass, field

from treadle import _treadle
from treadle.deadlock.errors import PotentialDeadlockWarning
from treadle.deadlock.report import _format_stack

#: Threads remembered per edge: enough to find distinct threads for cycles this long.
_THREADS_PER_EDGE = 16
#: Edges a search for cycles may look at, so that a large graph costs a bounded time per edge.
_SEARCH_BUDGET = 10_000

Node = tuple[str, object]  # ("site", "file:line") or ("lock", instance number)


@dataclass(frozen=True)
class _Held:
    """A lock the thread holds: the lock (weakly), its instance number and its site."""

    lock: weakref.ref[object]
    number: int
    site: str | None


@dataclass
class _Edge:
    """``first`` was held when ``second`` was taken."""

    first: str
    second: str
    thread_name: str
    stack: str
    threads: set[int] = field(default_factory=set)
    #: The locks held around every acquisition in this order (their nodes).
    guards: frozenset[Node] = frozenset()


_graph_lock = _thread.allocate_lock()
_edges: dict[tuple[Node, Node], _Edge] = {}
_successors: dict[Node, set[Node]] = {}
_warned: set[frozenset[tuple[Node, Node]]] = set()
_numbers: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()
_next_number = itertools.count(1).__next__
#: Instances freed since the graph last looked: their nodes go (a finalizer may run in the
#: middle of a graph update, by garbage collection, so it only leaves a note).
_freed: list[Node] = []
_held = threading.local()


def _number(lock: object) -> int:
    number = _numbers.get(lock)
    if number is None:
        number = _numbers[lock] = _next_number()
        # An instance's edges go with it, so that a later lock at the same address is new.
        weakref.finalize(lock, _freed.append, ("lock", number))
    return number


def _forget_freed() -> None:
    """Removes the nodes of freed instances (the graph's lock is held)."""
    while _freed:
        node = _freed.pop()
        for target in _successors.pop(node, ()):
            _edges.pop((node, target), None)
        for source, targets in _successors.items():
            if node in targets:
                targets.discard(node)
                _edges.pop((source, node), None)


def _label(lock: object, node: Node) -> str:
    site = getattr(lock, "_created_at", None)
    where = f"created at {site}" if site else "(where it was created is unknown)"
    if node[0] == "site":
        return f"{type(lock).__name__} {where}"
    return f"{type(lock).__name__} at {id(lock):#x} {where}"


def _node(site: str | None, number: int, other_site: str | None) -> Node:
    """A lock's node in an edge to or from a lock created at ``other_site``: its site, unless
    the two sites are the same (or its own is unknown)."""
    if site is None or site == other_site:
        return ("lock", number)
    return ("site", site)


def _on_lock_order(lock: object, acquired: bool) -> None:
    held: list[_Held] = _held.__dict__.setdefault("locks", [])
    if not acquired:
        for index in range(len(held) - 1, -1, -1):
            if held[index].lock() is lock:
                del held[index]  # the most recent acquisition of it goes
                break
        return
    # A Lock released by another thread (a signal) is no longer this thread's.
    held[:] = [h for h in held if (other := h.lock()) is not None and other.locked()]
    site = getattr(lock, "_created_at", None)
    entry = _Held(weakref.ref(lock), _number(lock), site)
    if held:
        _add_edges(held, entry, lock)
    held.append(entry)


def _add_edges(held: list[_Held], entry: _Held, lock: object) -> None:
    me = _treadle._current_thread_number()  # never reused, unlike idents
    stack: str | None = None
    cycles: list[list[_Edge]] = []
    with _graph_lock:
        _forget_freed()
        for outer in {h.number: h for h in held}.values():
            if outer.number == entry.number:
                continue
            first = _node(outer.site, outer.number, entry.site)
            second = _node(entry.site, entry.number, outer.site)
            guards = frozenset(("lock", h.number) for h in held if h.number != outer.number)
            edge = _edges.get((first, second))
            if edge is None:
                if stack is None:
                    stack = _format_stack(sys._getframe(2))
                edge = _Edge(
                    first=_label(outer.lock(), first),
                    second=_label(lock, second),
                    thread_name=threading.current_thread().name,
                    stack=stack,
                    guards=guards,
                )
                _edges[(first, second)] = edge
                _successors.setdefault(first, set()).add(second)
            else:
                new_thread = me not in edge.threads and len(edge.threads) < _THREADS_PER_EDGE
                if not new_thread and edge.guards <= guards:
                    continue  # nothing new: no cycle can have become reportable
                edge.guards &= guards
            if len(edge.threads) < _THREADS_PER_EDGE:
                edge.threads.add(me)
            cycles += _new_cycles(first, second)
    for cycle in cycles:
        warnings.warn(PotentialDeadlockWarning(_message(cycle)), stacklevel=3)


def _new_cycles(first: Node, second: Node) -> list[list[_Edge]]:
    """The cycles through the edge ``first -> second`` that can deadlock and were not reported
    yet, each as its edges from that one on (the graph's lock is held)."""
    found = []
    budget = _SEARCH_BUDGET
    path = [first, second]
    # Depth-first over simple paths from `second` back to `first`.
    stack = [iter(sorted(_successors.get(second, ()), key=repr))]
    while stack and budget > 0:
        following = next(stack[-1], None)
        if following is None:
            stack.pop()
            path.pop()
            continue
        budget -= 1
        if following == first:
            nodes = [*path, first]
            pairs = list(itertools.pairwise(nodes))
            key = frozenset(pairs)
            cycle = [_edges[pair] for pair in pairs]
            if key not in _warned and _can_deadlock(cycle):
                _warned.add(key)
                found.append(cycle)
            continue
        if following in path:
            continue
        path.append(following)
        stack.append(iter(sorted(_successors.get(following, ()), key=repr)))
    return found


def _can_deadlock(cycle: list[_Edge]) -> bool:
    """Whether the cycle's edges can be held at once: by distinct threads (a matching of edges
    to threads that took them), with no lock guarding all of them."""
    if frozenset.intersection(*(edge.guards for edge in cycle)):
        return False
    taken_by: dict[int, int] = {}  # thread -> index of the edge it is matched to

    def match(index: int, seen: set[int]) -> bool:
        for thread in cycle[index].threads:
            if thread in seen:
                continue
            seen.add(thread)
            if thread not in taken_by or match(taken_by[thread], seen):
                taken_by[thread] = index
                return True
        return False

    return all(match(index, set()) for index in range(len(cycle)))


def _message(cycle: list[_Edge]) -> str:
    if len(cycle) == 2:
        head = (
            f"lock order inversion: the {cycle[0].second} taken while holding the "
            f"{cycle[0].first}, but another thread took them in the opposite order; two threads "
            "on these paths at once can deadlock."
        )
    else:
        circle = " -> ".join([edge.first for edge in cycle] + [cycle[0].first])
        head = (
            f"lock order cycle: {len(cycle)} locks taken in a circle, each while holding the one "
            f"before, by different threads: {circle}; {len(cycle)} threads on these paths at "
            "once can deadlock."
        )
    orders = [
        f"The {edge.second} taken while holding the {edge.first}, first in thread "
        f"{edge.thread_name!r}:\n{edge.stack}"
        for edge in cycle
    ]
    return "\n".join([head, *orders])


def enable_lock_order() -> None:
    """Turn on lock-order mode: warn the first time locks are taken in a circle."""
    _treadle._set_lock_order_hook(_on_lock_order)


def disable_lock_order(forget: bool = True) -> None:
    """Turn lock-order mode off (and forget the orders seen, unless ``forget`` is false)."""
    _treadle._set_lock_order_hook(None)
    if forget:
        with _graph_lock:
            _edges.clear()
            _successors.clear()
            _warned.clear()
            _freed.clear()
