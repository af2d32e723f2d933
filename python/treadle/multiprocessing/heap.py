"""Shared memory for ``Value``, ``Array`` and ``Barrier``: one memfd per object (mode 0600,
never named in ``/dev/shm``), mapped by every process that holds it and passed to another
process as its descriptor (``multiprocessing.reduction.DupFd``). The memory goes back to the
system when the last process holding it lets go, killed or not.

The standard library's ``multiprocessing.heap`` carves objects out of arenas it creates as
files in ``/dev/shm`` (unlinked at once); treadle gives each object a region of its own
instead, at the cost of one descriptor per object.
"""

from __future__ import annotations

import mmap
import os
import weakref
from multiprocessing import reduction
from typing import Any

__all__ = ["BufferWrapper"]


class BufferWrapper:
    """``size`` bytes of zeroed shared memory (``multiprocessing.heap.BufferWrapper``'s
    interface: ``create_memoryview()``)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"Size {size!r} out of range")
        fd = os.memfd_create("treadle-value", os.MFD_CLOEXEC)
        try:
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, max(size, 1))
        except BaseException:
            os.close(fd)
            raise
        self._attach(fd, size)

    def _attach(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._map = mmap.mmap(fd, max(size, 1))
        weakref.finalize(self, os.close, fd)

    def create_memoryview(self) -> memoryview:
        """A view of the memory."""
        return memoryview(self._map)[: self._size]

    def __getstate__(self) -> Any:
        return reduction.DupFd(self._fd), self._size

    def __setstate__(self, state: Any) -> None:
        fd, size = state
        self._attach(fd.detach(), size)
