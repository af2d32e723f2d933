"""Shared memory for ``Value``, ``Array`` and ``Barrier``: blocks carved out of arenas by the
standard library's allocator (``multiprocessing.heap.Heap``: first fit, arenas that double up to
4 MiB, an arena of its own for a large block, an arena wholly freed given back), each arena a
memfd (mode 0600, never named in ``/dev/shm``, where the standard library's are files created
there and unlinked at once).

An arena passes to another process as its descriptor (``multiprocessing.reduction.DupFd``), and
a process maps each arena once however many of its objects it receives. Its memory goes back
to the system when the last process that maps it lets go, killed or not. One descriptor per
arena, not per object: a program may make thousands of values.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import types
import weakref
from multiprocessing import heap as _standard
from multiprocessing import reduction, util
from typing import Any

__all__ = ["Arena", "BufferWrapper", "Heap"]


class Arena:
    """``size`` bytes of zeroed shared memory, mapped (``buffer``), and its descriptor."""

    def __init__(self, size: int, fd: int = -1) -> None:
        if fd == -1:
            fd = os.memfd_create("treadle-heap", os.MFD_CLOEXEC)
            try:
                os.fchmod(fd, 0o600)
                os.ftruncate(fd, size)
            except BaseException:
                os.close(fd)
                raise
        self.size, self.fd = size, fd
        self.buffer = mmap.mmap(fd, size)
        weakref.finalize(self, os.close, fd)
        _mapped[os.fstat(fd).st_ino] = self


#: The arenas this process maps, by inode: one mapping per arena, however many objects come.
_mapped: weakref.WeakValueDictionary[int, Arena] = weakref.WeakValueDictionary()


def _rebuild_arena(size: int, dupfd: Any) -> Arena:
    fd = dupfd.detach()
    mapped = _mapped.get(os.fstat(fd).st_ino)
    if mapped is not None and mapped.size == size:
        os.close(fd)
        return mapped
    return Arena(size, fd)


def _reduce_arena(arena: Arena) -> tuple[Any, tuple[int, Any]]:
    return _rebuild_arena, (arena.size, reduction.DupFd(arena.fd))


reduction.register(Arena, _reduce_arena)


class Heap(_standard.Heap):
    """The standard library's allocator, making treadle's arenas."""

    # Its own code, run where ``Arena`` is treadle's: the same sizes as the running Python's.
    _new_arena = types.FunctionType(
        _standard.Heap._new_arena.__code__, dict(vars(_standard), Arena=Arena), "_new_arena"
    )


class BufferWrapper:
    """``size`` bytes of zeroed shared memory (``multiprocessing.heap.BufferWrapper``'s
    interface: ``create_memoryview()``), a block of an arena; given back to the heap when the
    object goes."""

    _heap = Heap()

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"Size {size!r} out of range")
        if sys.maxsize <= size:
            raise OverflowError(f"Size {size!r} too large")
        block = self._heap.malloc(size)
        self._state = (block, size)
        util.Finalize(self, self._heap.free, args=(block,))
        arena, start, _ = block
        # A block freed by another object is reused as it was left.
        ctypes.memset(ctypes.addressof(ctypes.c_char.from_buffer(arena.buffer, start)), 0, size)

    def create_memoryview(self) -> memoryview:
        """A view of the memory."""
        (arena, start, _), size = self._state
        return memoryview(arena.buffer)[start : start + size]

    @property
    def _fd(self) -> int:
        """The descriptor of the arena the block is in."""
        return self._state[0][0].fd
