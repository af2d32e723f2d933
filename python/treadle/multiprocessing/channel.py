"""The Python half of the channels under ``treadle.multiprocessing``'s queues and pipes (the
native half is ``_treadle._Ring``, shared memory, and ``_Treadle._Channel``, a handle on it).

Three jobs that need Python:

* **Pickling** what has no record kind of its own (:func:`dumps`, registered with the
  extension): ``multiprocessing.reduction.ForkingPickler`` (so that what the standard library
  can send through its queues, sockets and connections included, can be sent here) with
  protocol 5; buffers of :data:`OUT_OF_BAND` bytes or more are left out of band and written
  straight from the object's memory into the record. An object that cannot be pickled fails
  in the ``put()`` or ``send()`` that sent it, naming the part that cannot be pickled.
* **Passing a handle to another process** (:func:`reduce_handle`, :func:`rebuild_handle`): its
  rings' descriptors travel as ``multiprocessing.reduction.DupFd``, which a start method's
  Popen hands to the child it starts (every start method, treadle's own included), or the
  resource sharer to any process otherwise. Until the receiver opens the handle, its rings
  count it *in transit*, so that no reader concludes meanwhile that nobody is left to write;
  a Popen that learns the child's pid before the child reads its start-up data (treadle's
  own) counts the child as a holder at once instead (:func:`counting_for_child`).
* **Forks** (:func:`register`): a child forked with ``os.fork()`` (the ``"fork"`` start method,
  or a user's own fork) holds a copy of every open handle; each is counted for it as it
  starts. A fork server forgets its copies (:func:`forget_all`): it never uses them, and must
  not count as their holder for as long as it lives.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import os
import pickle
import threading
import weakref
from collections.abc import Iterator
from multiprocessing import reduction
from typing import Any

from treadle._treadle import _Channel, _Ring, _set_channel_pickler
from treadle.multiprocessing.pickling import unpicklable_error

#: Buffers of this many bytes or more are written straight from the object's memory into the
#: record (pickle protocol 5's out-of-band buffers); smaller ones are copied into the pickle.
OUT_OF_BAND = 4096


def dumps(obj: object, label: str) -> tuple[bytes, list[memoryview]]:
    """``obj`` pickled, and its out-of-band buffers; an error names the part of ``obj``
    (called ``label``) that cannot be pickled."""
    buffers: list[memoryview] = []

    def out_of_band(buffer: Any) -> bool:
        try:
            view = buffer.raw()
        except BufferError:  # not contiguous: in band
            return True
        if view.nbytes < OUT_OF_BAND:
            return True
        buffers.append(view)
        return False

    file = io.BytesIO()
    pickler = pickle.Pickler(file, 5, buffer_callback=out_of_band)
    pickler.dispatch_table = _dispatch_table()
    try:
        pickler.dump(obj)
    except Exception as error:
        raise unpicklable_error(label, obj, error) from error
    return file.getvalue(), buffers


_table: dict[Any, Any] = {}
_table_sources = (0, 0)


def _dispatch_table() -> dict[Any, Any]:
    """``ForkingPickler``'s dispatch table (``copyreg``'s and the reducers registered with
    ``multiprocessing.reduction.register``), which ``ForkingPickler`` rebuilds for every pickle
    and cannot be given a ``buffer_callback``; kept until a reducer is registered."""
    global _table, _table_sources
    extra = reduction.ForkingPickler._extra_reducers
    sources = (len(copyreg.dispatch_table), len(extra))
    if sources != _table_sources:
        _table = {**copyreg.dispatch_table, **extra}
        _table_sources = sources
    return _table


_set_channel_pickler(dumps)


# -- forks -------------------------------------------------------------------------------------

_open_handles: weakref.WeakSet[_Channel] = weakref.WeakSet()


def register(handle: _Channel) -> None:
    """Follows ``handle`` across forks of this process."""
    _open_handles.add(handle)


def _before_fork() -> None:
    for handle in list(_open_handles):
        handle._fork_prepare()


def _after_fork_in_child() -> None:
    for handle in list(_open_handles):
        handle._fork_child()


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def forget_all() -> None:
    """In a fork server: stop counting the copies of the parent's handles, and stop following
    them (the server's children do not hold them either)."""
    for handle in list(_open_handles):
        handle._forget()
    _open_handles.clear()


# -- passing a handle to another process ---------------------------------------------------------


class _Launching(threading.local):
    #: While a treadle Popen pickles a child's start-up data: the (ring, read, write) roles of
    #: the handles pickled, to count for the child once its pid is known.
    roles: list[tuple[_Ring, bool, bool]] | None = None
    #: And each ring's reference, by the ring's id: a ring two handles share (a pipe's two ends
    #: given to one child) travels once, as one descriptor, and is opened once.
    references: dict[int, _RingReference] | None = None
    #: While what is pickled will be unpickled by many processes (a pool's initializer
    #: arguments): a handle cannot be, since a descriptor the resource sharer sends is sent once.
    for_many: bool = False


_launching = _Launching()


@contextlib.contextmanager
def inherited_only() -> Iterator[None]:
    """Around pickling what many processes will unpickle (a process pool's initializer and its
    arguments): a handle pickled meanwhile raises ``RuntimeError`` with the standard library's
    words for what only a child being started can be given ("... should only be shared between
    processes through inheritance"), so that the pool forks its workers from the caller, which
    inherit it, instead."""
    previous = _launching.for_many
    _launching.for_many = True
    try:
        yield
    finally:
        _launching.for_many = previous


@contextlib.contextmanager
def counting_for_child() -> Iterator[list[tuple[_Ring, bool, bool]]]:
    """Around the pickling of a child's start-up data by a Popen that will call
    :func:`count_for` with the child's pid (or :func:`not_sent`): the handles pickled meanwhile
    are adopted by the child (counted for it by its parent, not by the child), and counted in
    transit until then."""
    roles: list[tuple[_Ring, bool, bool]] = []
    previous = _launching.roles, _launching.references
    _launching.roles, _launching.references = roles, {}
    try:
        yield roles
    finally:
        _launching.roles, _launching.references = previous


def count_for(roles: list[tuple[_Ring, bool, bool]], pid: int) -> None:
    """Counts the roles listed by :func:`counting_for_child` for child ``pid``, which ends
    their time in transit."""
    for ring, read, write in roles:
        ring.attach_for(pid, read, write)
        ring.handle_arrived()


def not_sent(roles: list[tuple[_Ring, bool, bool]]) -> None:
    """The child the roles listed by :func:`counting_for_child` were for was not started."""
    for ring, _, _ in roles:
        ring.handle_arrived()


_SAME = "same"


class _RingReference:
    """A ring as it travels to another process: its two descriptors (``DupFd``), opened once
    there however many handles name it."""

    def __init__(self, ring: _Ring) -> None:
        fd, events = ring.fds()
        self.fd = reduction.DupFd(fd)
        self.events = reduction.DupFd(events)

    def __getstate__(self) -> tuple[Any, Any]:
        return self.fd, self.events

    def __setstate__(self, state: tuple[Any, Any]) -> None:
        self.fd, self.events = state

    def open(self) -> _Ring:
        ring = self.__dict__.get("ring")
        if ring is None:
            ring = self.__dict__["ring"] = _Ring._open(self.fd.detach(), self.events.detach())
        return ring


def _ring_reference(ring: _Ring | None) -> _RingReference | None:
    if ring is None:
        return None
    references = _launching.references
    if references is None:
        return _RingReference(ring)
    reference = references.get(id(ring))
    if reference is None:
        reference = references[id(ring)] = _RingReference(ring)
    return reference


def reduce_handle(handle: _Channel, kind: str) -> tuple[Any, ...]:
    """The arguments of :func:`rebuild_handle` (after the class) that stand for ``handle``."""
    if _launching.for_many:
        raise RuntimeError(
            f"{type(handle).__name__} objects should only be shared between processes through "
            "inheritance"
        )
    rx, tx = handle._rings()
    roles = [(rx, True, tx is rx)] if rx is not None else []
    if tx is not None and tx is not rx:
        roles.append((tx, False, True))
    pending = _launching.roles
    adopted = pending is not None
    for ring, read, write in roles:
        ring.send_handle()
        if pending is not None:
            pending.append((ring, read, write))
    tx_reference = _SAME if tx is rx else _ring_reference(tx)
    return _ring_reference(rx), tx_reference, kind, adopted


def rebuild_handle(
    cls: type[_Channel], rx_reference: Any, tx_reference: Any, kind: str, adopted: bool
) -> _Channel:
    """A handle of class ``cls`` on the rings a :func:`reduce_handle` stood for."""
    handle = cls.__new__(cls)
    rx = rx_reference.open() if rx_reference is not None else None
    if tx_reference == _SAME:
        tx = rx
    else:
        tx = tx_reference.open() if tx_reference is not None else None
    handle._bind(rx, tx, kind, adopted=adopted, arrived=not adopted)
    register(handle)
    return handle


def new_handle(cls: type[_Channel], rx: _Ring | None, tx: _Ring | None, kind: str) -> _Channel:
    """A new handle of class ``cls`` (made without calling its ``__init__``)."""
    handle = cls.__new__(cls)
    handle._bind(rx, tx, kind)
    register(handle)
    return handle
