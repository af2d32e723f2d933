"""``multiprocessing.managers`` whose managers start their server under treadle's default start
method.

The server is the standard library's (``BaseManager``, ``SyncManager``, their proxies and
``register``), started as a process of the manager's context: here, when none is given,
treadle's default context, so the server is forked by treadle's fork server (``Manager()``, a
context's ``Manager()``, does the same with the context's start method). Its proxies pass as
arguments to treadle's ``Process``, ``Pool`` and ``ProcessPoolExecutor``: a worker connects to
the server with the parent's authentication key, which it is given as it starts. Every other
name is the standard library's.
"""

from __future__ import annotations

from multiprocessing import managers as _standard
from typing import Any

from treadle.multiprocessing import context

__all__ = ["BaseManager", "BaseProxy", "SyncManager", "Token"]

BaseProxy = _standard.BaseProxy
Token = _standard.Token


class _TreadleContextByDefault:
    """A manager whose context, unless one is given, is treadle's default one."""

    def __init__(
        self,
        address: Any = None,
        authkey: bytes | None = None,
        serializer: str = "pickle",
        ctx: Any = None,
        **kwargs: Any,
    ) -> None:
        if ctx is None:
            ctx = context._default_context.get_context()
        super().__init__(address, authkey, serializer, ctx, **kwargs)  # type: ignore[call-arg]


class BaseManager(_TreadleContextByDefault, _standard.BaseManager):
    """``multiprocessing.managers.BaseManager``, its server a treadle process."""


class SyncManager(_TreadleContextByDefault, _standard.SyncManager):
    """``multiprocessing.managers.SyncManager``, its server a treadle process."""


def __getattr__(name: str) -> object:
    return getattr(_standard, name)
