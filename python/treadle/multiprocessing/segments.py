"""The shared-memory codec: pickles whose large buffers travel out of band, each in an anonymous
shared-memory segment (a memfd, passed by descriptor, visible to no other process), mapped
copy-on-write by the receiver. Used by the parent (``treadle.multiprocessing.pickling``) and by
the worker, in both directions. Standard library only.
"""

from __future__ import annotations

import mmap
import os
import pickle


def map_segments(fds: list[int]) -> list[memoryview]:
    """Maps shared-memory segments (copy-on-write, so the receiver may write to its arrays) and
    closes their descriptors; each mapping lives as long as something uses it."""
    views = []
    for fd in fds:
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                views.append(memoryview(b""))
                continue
            segment = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE)
        finally:
            os.close(fd)
        views.append(memoryview(segment))
    return views


def to_segment(buffer: pickle.PickleBuffer) -> int:
    """An anonymous shared-memory segment (a memfd, visible to no one but the processes it is
    passed to) holding ``buffer``'s bytes."""
    fd = os.memfd_create("treadle-buffer", os.MFD_CLOEXEC)
    try:
        view = buffer.raw()
        written = 0
        while written < view.nbytes:
            written += os.write(fd, view[written:])
    except BaseException:
        os.close(fd)
        raise
    return fd


class LargeBytes:
    """Wraps a large ``bytes`` or ``memoryview`` so that it pickles out of band (pickle sends
    ``bytes`` in band, and refuses ``memoryview``); it unpickles as the original type."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data

    def __reduce_ex__(self, protocol):  # type: ignore[override]
        kind = bytes if isinstance(self.data, bytes) else memoryview
        return kind, (pickle.PickleBuffer(self.data),)


def wrap_large(value: object, threshold: int) -> object:
    if isinstance(value, bytes) and len(value) >= threshold:
        return LargeBytes(value)
    if isinstance(value, memoryview) and value.nbytes >= threshold and value.contiguous:
        return LargeBytes(value)
    return value


def plain_pickler(value: object, buffer_callback, restart) -> bytes:  # type: ignore[no-untyped-def]
    return pickle.dumps(value, protocol=5, buffer_callback=buffer_callback)


def dump(value: object, threshold: int, pickler=plain_pickler) -> tuple[bytes, list[int]]:  # type: ignore[no-untyped-def]
    """Pickles ``value`` with protocol 5; buffers of ``threshold`` bytes or more go to
    shared-memory segments, whose descriptors are returned. ``pickler(value, buffer_callback,
    restart)`` calls ``restart()`` before it tries again from the start."""
    large, out_of_band = collector(threshold)
    data = pickler(value, out_of_band, large.clear)
    return data, to_segments(large)


def collector(threshold: int):  # type: ignore[no-untyped-def]
    """A list and a pickle ``buffer_callback`` that puts in it the buffers of ``threshold``
    bytes or more (to go out of band) and leaves the others in band."""
    large: list[pickle.PickleBuffer] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes >= threshold:
            large.append(buffer)
            return False
        return True

    return large, out_of_band


def to_segments(buffers: list[pickle.PickleBuffer]) -> list[int]:
    """A shared-memory segment for each buffer (all or none: on failure, none is left open)."""
    fds: list[int] = []
    try:
        for buffer in buffers:
            fds.append(to_segment(buffer))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds
