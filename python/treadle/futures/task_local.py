"""``treadle.local``: a ``threading.local`` that pool workers clear between tasks."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from treadle import _treadle

_locals: weakref.WeakKeyDictionary[local, tuple[tuple[Any, ...], dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


class local(threading.local):
    """A ``threading.local`` that pool workers clear between tasks, so that nothing one task
    stored is seen by the next (a subclass's ``__init__`` runs again, as in a new thread)."""

    def __new__(cls, /, *args: Any, **kwargs: Any) -> local:
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = super().__new__(cls, *args, **kwargs)
        _locals[self] = (args, kwargs)
        _treadle._locals_in_use()
        return self

    def _treadle_reset(self) -> None:
        args, kwargs = _locals.get(self, ((), {}))
        state = self.__dict__
        state.clear()
        if type(self).__init__ is not object.__init__:
            self.__init__(*args, **kwargs)  # type: ignore[misc]
