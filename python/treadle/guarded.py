"""``Guarded``: a value reachable only while its lock is held.

The structural fix for races such as an unlocked ``counter.value += 1``: the value has no name
outside the lock. ``with guarded as obj:`` takes the lock and hands over the object; inside
the block, ``guarded.value`` reads and rebinds it (for values, such as numbers, that are
replaced rather than changed); outside, reaching it raises. The one way round the lock is
named for what it is: ``unguarded()``.
"""

from __future__ import annotations

from types import GenericAlias, TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from treadle._treadle import RLock

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Guarded"]

_T = TypeVar("_T")

_MISSING = object()


class Guarded(Generic[_T]):
    """``obj``, reachable only while ``lock`` (a new ``treadle.RLock`` by default) is held.

    >>> counts = Guarded({})
    >>> with counts as table:
    ...     table["a"] = table.get("a", 0) + 1
    >>> total = Guarded(0)
    >>> with total:
    ...     total.value += 5
    >>> total.update(lambda n: n * 2)
    >>> with total:
    ...     total.value
    10

    ``lock`` is any lock with ``acquire()`` and ``release()``; whether the calling thread
    holds it is asked of its ``_is_owned()`` when it has one (``RLock``, treadle's or
    threading's), else of ``locked()`` (a plain ``Lock`` does not know its holder).
    """

    __slots__ = ("__lock", "__value", "__weakref__")

    __class_getitem__ = classmethod(GenericAlias)

    def __init__(self, obj: _T, lock: Any = None) -> None:
        self.__value = obj
        self.__lock = RLock() if lock is None else lock

    @property
    def lock(self) -> Any:
        """The lock that guards the value."""
        return self.__lock

    def __enter__(self) -> _T:
        self.__lock.acquire()
        return self.__value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__lock.release()

    @property
    def value(self) -> _T:
        """The value; only while the calling thread holds the lock (``RuntimeError`` else)."""
        self.__check_held("read")
        return self.__value

    @value.setter
    def value(self, obj: _T) -> None:
        self.__check_held("set")
        self.__value = obj

    def set(self, obj: _T) -> None:
        """Replace the value, taking the lock to do it."""
        with self.__lock:
            self.__value = obj

    def update(self, function: Callable[[_T], _T]) -> None:
        """Replace the value with ``function(value)``, under the lock."""
        with self.__lock:
            self.__value = function(self.__value)

    def unguarded(self) -> _T:
        """The value, without taking the lock: the escape hatch, for code that knows that no
        other thread can reach it (before the threads start, after they have been joined)."""
        return self.__value

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} guarded by {self.__lock!r}>"

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__qualname__!r} object")

    def __check_held(self, verb: str) -> None:
        is_owned = getattr(self.__lock, "_is_owned", _MISSING)
        held = is_owned() if is_owned is not _MISSING else self.__lock.locked()
        if not held:
            raise RuntimeError(
                f"Guarded.value {verb} without holding its lock: use 'with guarded:' "
                "(or 'with guarded as obj:')"
            )
