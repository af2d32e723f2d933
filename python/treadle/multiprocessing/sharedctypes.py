"""``treadle.multiprocessing.sharedctypes``: ``ctypes`` objects in shared memory
(``multiprocessing.sharedctypes``' API), and lock-free atomic operations on integer values.

``RawValue``, ``RawArray``, ``Value``, ``Array``, ``copy`` and ``synchronized`` are the standard
library's, with two changes: the memory is treadle's (``heap``: blocks of memfd arenas, never
named in ``/dev/shm``), and a ``Value``'s default lock is a treadle ``RLock`` (a dead owner is
reported, not waited for). ``get_obj()`` is the ``ctypes`` object itself, so
``numpy.frombuffer(array.get_obj(), ...)`` shares the memory, with no copy.

Atomic operations (:func:`load`, :func:`store`, :func:`fetch_add`, :func:`add`,
:func:`compare_exchange`, also methods of a ``Value`` of an integer type) act on the integer in
one processor instruction, with no lock: ``counter.fetch_add(1)`` from any number of processes
loses no increment, where ``counter.value += 1`` without ``get_lock()`` does. Arithmetic wraps at
the integer's width, as C's does.
"""

from __future__ import annotations

import ctypes
from multiprocessing import sharedctypes as _standard
from multiprocessing.sharedctypes import rebuild_ctype, typecode_to_type
from typing import Any, Self

from treadle._treadle import _AtomicCell, _SharedValue
from treadle.multiprocessing import heap, synchronize

__all__ = [
    "Array",
    "RawArray",
    "RawValue",
    "Synchronized",
    "SynchronizedArray",
    "SynchronizedString",
    "Value",
    "add",
    "compare_exchange",
    "copy",
    "fetch_add",
    "load",
    "store",
    "synchronized",
]


def _new_value(type_: Any) -> Any:
    return rebuild_ctype(type_, heap.BufferWrapper(ctypes.sizeof(type_)), None)


def RawValue(typecode_or_type: Any, *args: Any) -> Any:
    """A ``ctypes`` object in shared memory, with no lock."""
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    obj = _new_value(type_)
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type: Any, size_or_initializer: Any) -> Any:
    """A ``ctypes`` array in shared memory, with no lock: of that many zeros, or of the items
    of a sequence."""
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    if isinstance(size_or_initializer, int):
        return _new_value(type_ * size_or_initializer)
    result = _new_value(type_ * len(size_or_initializer))
    result.__init__(*size_or_initializer)
    return result


def _with_lock(obj: Any, lock: Any, ctx: Any) -> Any:
    if lock is False:
        return obj
    if lock in (True, None):
        lock = ctx.RLock() if ctx is not None else synchronize.RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return synchronized(obj, lock, ctx=ctx)


def Value(typecode_or_type: Any, *args: Any, lock: Any = True, ctx: Any = None) -> Any:
    """A ``ctypes`` object in shared memory behind a lock (``lock=True``: a new ``RLock``; a
    lock object: that one; ``False``: none, the raw object)."""
    return _with_lock(RawValue(typecode_or_type, *args), lock, ctx)


def Array(
    typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True, ctx: Any = None
) -> Any:
    """A ``ctypes`` array in shared memory behind a lock, as :func:`Value`."""
    return _with_lock(RawArray(typecode_or_type, size_or_initializer), lock, ctx)


def copy(obj: Any) -> Any:
    """A copy of ``obj`` in new shared memory."""
    new_obj = _new_value(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


class Synchronized(_SharedValue, _standard.Synchronized):
    """A ``Value``: ``value`` under its lock, and, for an integer value, the atomic
    operations ``load()``, ``store(value)``, ``fetch_add(delta=1)`` (the value before),
    ``add(delta=1)`` (the value after) and ``compare_exchange(expected, new)``
    (``(succeeded, previous)``, as ``treadle.AtomicInt``'s), which take no lock.

    ``value`` is ``_SharedValue``'s (first in the method resolution order): for a number behind
    a treadle lock it is read or written in one native call (the lock taken, the number read or
    written, the lock given back); in every other case it is the standard library's property."""

    def __new__(cls, obj: Any, lock: Any = None, ctx: Any = None) -> Self:
        code = _code(obj) or _float_code(obj)
        address = ctypes.addressof(obj) if code is not None else 0
        return super().__new__(cls, obj, lock, address, code)

    def __init__(self, obj: Any, lock: Any = None, ctx: Any = None) -> None:
        super().__init__(obj, lock, ctx)
        code = _code(obj)
        if code is not None:
            cell = _AtomicCell(obj, ctypes.addressof(obj), code)
            # Bound to the instance: a call goes straight to the native method.
            self.load, self.store = cell.load, cell.store
            self.fetch_add, self.add = cell.fetch_add, cell.add
            self.compare_exchange = cell.compare_exchange

    def __reduce__(self) -> Any:
        return synchronized, (self._obj, self._lock)

    # The operations of a value that is not an integer (an integer's are bound per instance).

    def load(self) -> int:
        raise _not_an_integer(self._obj)

    def store(self, value: int) -> None:
        raise _not_an_integer(self._obj)

    def fetch_add(self, delta: int = 1) -> int:
        raise _not_an_integer(self._obj)

    def add(self, delta: int = 1) -> int:
        raise _not_an_integer(self._obj)

    def compare_exchange(self, expected: int, new: int) -> tuple[bool, int]:
        raise _not_an_integer(self._obj)


def _not_an_integer(obj: Any) -> TypeError:
    return TypeError(f"atomic operations need an integer value, not {type(obj).__name__}")


class SynchronizedArray(_standard.SynchronizedArray):
    """An ``Array``: its items under its lock."""

    def __reduce__(self) -> Any:
        return synchronized, (self._obj, self._lock)


class SynchronizedString(_standard.SynchronizedString):
    """An ``Array`` of ``c_char``: also ``value`` and ``raw``."""

    def __reduce__(self) -> Any:
        return synchronized, (self._obj, self._lock)


def synchronized(obj: Any, lock: Any = None, ctx: Any = None) -> Any:
    """``obj`` behind ``lock`` (a new ``RLock`` if ``None``)."""
    if isinstance(obj, _standard.SynchronizedBase):
        raise AssertionError("object already synchronized")
    if lock is None:
        lock = ctx.RLock() if ctx is not None else synchronize.RLock()
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    return _standard.synchronized(obj, lock, ctx)


# -- atomic operations -------------------------------------------------------------------------


def _code(obj: Any) -> str | None:
    """The fixed-width type code of an integer ``ctypes`` value, or ``None``."""
    code = getattr(type(obj), "_type_", None)
    if not isinstance(obj, ctypes._SimpleCData) or not isinstance(code, str):
        return None
    if code not in "bBhHiIlLqQ":
        return None
    # c_long is c_int or c_longlong by size; the native side knows fixed widths only.
    width = {1: "b", 2: "h", 4: "i", 8: "q"}[ctypes.sizeof(obj)]
    return width.upper() if code.isupper() else width


def _float_code(obj: Any) -> str | None:
    """``f`` or ``d`` for a ``ctypes`` ``float`` or ``double``, else ``None``."""
    if isinstance(obj, (ctypes.c_float, ctypes.c_double)):
        return type(obj)._type_
    return None


def _cell(obj: Any) -> _AtomicCell:
    if isinstance(obj, _standard.SynchronizedBase):
        obj = obj.get_obj()
    code = _code(obj)
    if code is None:
        raise _not_an_integer(obj)
    return _AtomicCell(obj, ctypes.addressof(obj), code)


def load(obj: Any) -> int:
    """The integer value ``obj`` (a ``Value`` or a raw ``ctypes`` integer), read atomically."""
    return _cell(obj).load()


def store(obj: Any, value: int) -> None:
    """Sets the integer value ``obj`` to ``value``, atomically."""
    _cell(obj).store(value)


def fetch_add(obj: Any, delta: int = 1) -> int:
    """Adds ``delta`` to the integer value ``obj`` atomically (wrapping); the value before."""
    return _cell(obj).fetch_add(delta)


def add(obj: Any, delta: int = 1) -> int:
    """Adds ``delta`` to the integer value ``obj`` atomically (wrapping); the value after."""
    return _cell(obj).add(delta)


def compare_exchange(obj: Any, expected: int, new: int) -> tuple[bool, int]:
    """Sets the integer value ``obj`` to ``new`` if it is ``expected``, atomically: whether it
    did, and the value found (``treadle.AtomicInt.compare_exchange``'s convention)."""
    return _cell(obj).compare_exchange(expected, new)
