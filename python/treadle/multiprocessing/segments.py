"""The shared-memory codec: pickles whose large buffers travel out of band, all of one frame's in
one anonymous shared-memory segment (a memfd, passed by descriptor, visible to no other
process), mapped copy-on-write by the receiver. So a frame carries at most one descriptor,
whatever the number of its buffers.

The segment's layout is ``crates/treadle-os/src/segment.rs``'s (``tests/test_wire.py`` holds this
module to it): a table (``count: u64``, then ``offset: u64, length: u64`` per buffer), then each
buffer at a page-aligned offset. Used by the worker, in both directions, and by the parent for
results (the parent's tasks lend their buffers to the supervisor, which packs them in Rust only
when a worker is about to take the task). Standard library only.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct

ALIGN = 4096
COUNT = struct.Struct("<Q")
ENTRY = struct.Struct("<QQ")


def layout(lengths: list[int]) -> tuple[list[int], int]:
    """Each buffer's offset, and the segment's size."""
    at = _aligned(COUNT.size + ENTRY.size * len(lengths))
    offsets = []
    for length in lengths:
        offsets.append(at)
        at = _aligned(at + length)
    return offsets, at


def _aligned(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


def pack(buffers: list[pickle.PickleBuffer]) -> int:
    """One segment holding ``buffers``' bytes; its descriptor."""
    views = [buffer.raw() for buffer in buffers]
    lengths = [view.nbytes for view in views]
    offsets, size = layout(lengths)
    fd = os.memfd_create("treadle-buffers", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        table = COUNT.pack(len(views)) + b"".join(
            ENTRY.pack(offset, length) for offset, length in zip(offsets, lengths, strict=True)
        )
        _write_at(fd, memoryview(table), 0)
        for view, offset in zip(views, offsets, strict=True):
            _write_at(fd, view, offset)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_at(fd: int, view: memoryview, offset: int) -> None:
    written = 0
    while written < view.nbytes:
        written += os.pwrite(fd, view[written:], offset + written)


def map_segments(fds: list[int]) -> list[memoryview]:
    """The buffers of the segments ``fds``, in order, mapped copy-on-write (so the receiver may
    write to its arrays); closes the descriptors. Each mapping lives as long as something uses
    one of its buffers."""
    views: list[memoryview] = []
    try:
        for fd in fds:
            size = os.fstat(fd).st_size
            segment = memoryview(mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE))
            (count,) = COUNT.unpack_from(segment, 0)
            for i in range(count):
                offset, length = ENTRY.unpack_from(segment, COUNT.size + ENTRY.size * i)
                views.append(segment[offset : offset + length])
    finally:
        for fd in fds:
            os.close(fd)
    return views


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


def dump_out_of_band(value, threshold, pickler=plain_pickler):  # type: ignore[no-untyped-def]
    """Pickles ``value`` with protocol 5, leaving out of band the buffers of ``threshold`` bytes
    or more, which are returned (not copied). ``pickler(value, buffer_callback, restart)`` calls
    ``restart()`` before it tries again from the start."""
    large, out_of_band = collector(threshold)
    data = pickler(value, out_of_band, large.clear)
    return data, large


def dump(value: object, threshold: int, pickler=plain_pickler) -> tuple[bytes, list[int]]:  # type: ignore[no-untyped-def]
    """As :func:`dump_out_of_band`, with the large buffers in one segment, whose descriptor is
    returned (none if there are no large buffers)."""
    data, large = dump_out_of_band(value, threshold, pickler)
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
    """The descriptor of one segment holding ``buffers``, or none if there are none."""
    return [pack(buffers)] if buffers else []
