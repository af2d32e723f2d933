"""A process-pool worker: runs the tasks its parent sends over descriptor 3, one after another.

Started by the parent's supervisor as ``python -S -P .../treadle/_worker.py`` (no ``site``, and
without importing the ``treadle`` package, so that it starts fast); the first frame (``INIT``)
brings the parent's ``sys.path``, which makes the parent's modules importable. The frame layout
is ``crates/treadle-os/src/frame.rs``'s (``tests/test_wire.py`` holds this file to it): a
``<IBBHQ`` header (payload length, kind, descriptor count, reserved, task id), then the payload;
descriptors (shared-memory segments) travel as ``SCM_RIGHTS`` with the frame.

Only the standard library is imported here, so the module runs as a script as well as
``treadle._worker``. The channel is an inherited, anonymous socket: no other process can send
to it.
"""

from __future__ import annotations

import array
import builtins
import itertools
import mmap
import os
import pickle
import signal
import socket
import struct
import sys
import time
import traceback
import types
from collections import deque

HEADER = struct.Struct("<IBBHQ")
CHANNEL_FD = 3

# To the worker.
INIT, TASK, CANCEL, EXIT = 1, 2, 3, 4
# From the worker.
READY, RETURNED, RAISED, INIT_FAILED, SKIPPED = 16, 17, 18, 19, 20

# Payload kinds of a TASK frame: one call; a list of argument tuples; a list of single arguments.
CALL, CHUNK, CHUNK1 = 0, 1, 2

#: The module (in ``sys.modules`` only) whose ``namespace`` is the globals of every function of
#: the parent's ``__main__`` that reaches this worker by value (cloudpickle's way with
#: ``__main__``): one namespace for all of them, as one module would be, so that what an
#: initializer sets with ``global`` the tasks see. See ``treadle._pickling``.
MAIN_NAMESPACE_MODULE = "_treadle_main_namespace"


class MainNamespace(dict):  # type: ignore[type-arg]
    """The shared globals of ``__main__``'s functions in a worker. ``update`` (which cloudpickle
    calls with the globals a function refers to, as the parent had them) adds only the names not
    yet set: what the worker's own code assigned stays, as in a forked worker, whose module is
    the parent's as it was at the fork, then the worker's own."""

    def update(self, other: object = (), /, **names: object) -> None:  # type: ignore[override]
        for name, value in dict(other, **names).items():  # type: ignore[call-overload]
            self.setdefault(name, value)


def _register_main_namespace() -> None:
    module = types.ModuleType(MAIN_NAMESPACE_MODULE)
    module.namespace = MainNamespace(__name__="__main__", __builtins__=builtins)  # type: ignore[attr-defined]
    sys.modules.setdefault(MAIN_NAMESPACE_MODULE, module)


_register_main_namespace()

FD_SIZE = array.array("i").itemsize

#: Between tiny tasks, a worker looks for CANCEL frames at most this often (seconds): a task
#: cancelled within this long of the worker's last read may run, and its result is dropped.
RECHECK = 0.0002


class Channel:
    """Frames in and out over the inherited socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.fds: deque[int] = deque()
        self.frames: deque[tuple[int, int, bytes, list[int]]] = deque()
        self.received_at = 0.0
        self.scratch = bytearray(256 * 1024)
        self.ancillary = socket.CMSG_SPACE(255 * FD_SIZE)

    def _receive(self, block: bool) -> bool:
        """Reads what is there (waiting for something if ``block``); False at end of stream."""
        flags = 0 if block else socket.MSG_DONTWAIT
        try:
            n, ancdata, msg_flags, _ = self.sock.recvmsg_into([self.scratch], self.ancillary, flags)
        except BlockingIOError:
            return True
        if msg_flags & socket.MSG_CTRUNC:
            raise OSError("file descriptors were dropped in transit")
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - len(data) % FD_SIZE])
                self.fds.extend(fds)
        if n == 0:
            return False
        self.buffer += memoryview(self.scratch)[:n]
        self._parse()
        return True

    def _parse(self) -> None:
        buffer = self.buffer
        at = 0
        while len(buffer) - at >= HEADER.size:
            length, kind, nfds, _, task = HEADER.unpack_from(buffer, at)
            end = at + HEADER.size + length
            if len(buffer) < end or len(self.fds) < nfds:
                break
            payload = bytes(buffer[at + HEADER.size : end])
            at = end
            fds = [self.fds.popleft() for _ in range(nfds)]
            self.frames.append((kind, task, payload, fds))
        del buffer[:at]

    def next_frame(self) -> tuple[int, int, bytes, list[int]] | None:
        """The next frame, waiting for it; None when the parent closed the channel."""
        while not self.frames:
            if not self._receive(block=True):
                return None
            self.received_at = time.monotonic()
        return self.frames.popleft()

    def take_cancellations(self, cancelled: set[int]) -> None:
        """Reads frames already sent (unless the socket was read in the last
        ``RECHECK`` seconds) and moves the CANCELs among them into ``cancelled``."""
        now = time.monotonic()
        if now - self.received_at >= RECHECK:
            self.received_at = now
            self._receive(block=False)
        if any(frame[0] == CANCEL for frame in self.frames):
            kept = deque()
            for frame in self.frames:
                if frame[0] == CANCEL:
                    cancelled.add(frame[1])
                else:
                    kept.append(frame)
            self.frames = kept

    def send(self, kind: int, task: int, payload: bytes, fds: list[int] = ()) -> None:  # type: ignore[assignment]
        header = HEADER.pack(len(payload), kind, len(fds), 0, task)
        if not fds:
            self.sock.sendall(header + payload)
            return
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        sent = self.sock.sendmsg([header, payload], rights)
        rest = memoryview(header + payload)[sent:]
        if rest:
            self.sock.sendall(rest)


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


class Worker:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.threshold = 1 << 62
        self.functions: dict[bytes, object] = {}

    def start(self, forked: bool = False) -> bool:
        frame = self.channel.next_frame()
        if frame is None or frame[0] != INIT:
            return False
        setup = pickle.loads(frame[2])
        sys.path[:] = setup["sys_path"]
        if setup["run_site"] and not forked:
            import site

            site.main()
            sys.path[:] = setup["sys_path"]
        self.threshold = setup["threshold"]
        if setup.get("authkey") is not None and not forked:
            from multiprocessing import process

            process.current_process().authkey = setup["authkey"]
        if setup["initializer"] is not None:
            try:
                initializer, initargs = pickle.loads(setup["initializer"])
                initializer(*initargs)
            except BaseException:
                text = traceback.format_exc()
                self.channel.send(INIT_FAILED, 0, f"the initializer failed:\n{text}".encode())
                return False
        self.channel.send(READY, 0, b"")
        return True

    def function(self, fn: object) -> object:
        if not isinstance(fn, bytes):
            return fn
        found = self.functions.get(fn)
        if found is None:
            if len(self.functions) > 64:
                self.functions.clear()
            found = self.functions[fn] = pickle.loads(fn)
        return found

    def run(self, payload: bytes, fds: list[int]) -> object:
        kind, fn, args, kwargs = pickle.loads(payload, buffers=map_segments(fds))
        fn = self.function(fn)
        if kind == CHUNK1:
            return list(map(fn, args))  # type: ignore[call-overload]
        if kind == CHUNK:
            return list(itertools.starmap(fn, args))  # type: ignore[call-overload]
        return fn(*args, **kwargs)

    def answer(self, task: int, payload: bytes, fds: list[int]) -> None:
        try:
            outcome = self.run(payload, fds)
        except BaseException as exc:
            self.send_exception(task, exc)
            return
        try:
            data, out_fds = dump(wrap_large(outcome, self.threshold), self.threshold)
        except Exception as exc:
            self.send_exception(task, unpicklable_result(outcome, exc))
            return
        except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the task's outcome
            self.send_exception(task, exc)
            return
        try:
            self.channel.send(RETURNED, task, data, out_fds)
        finally:
            for fd in out_fds:
                os.close(fd)

    def send_exception(self, task: int, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(exc))
        try:
            data, fds = dump((exc, text), self.threshold)
        except Exception as error:
            substitute = RuntimeError(
                f"the task raised {type(exc).__qualname__}: {exc}, "
                f"which cannot be pickled ({error})"
            )
            data, fds = dump((substitute, text), self.threshold)
        try:
            self.channel.send(RAISED, task, data, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def serve(self) -> None:
        cancelled: set[int] = set()
        while True:
            frame = self.channel.next_frame()
            if frame is None:
                return
            kind, task, payload, fds = frame
            if kind == EXIT:
                return
            if kind == CANCEL:
                cancelled.add(task)
                continue
            if kind != TASK:
                continue
            self.channel.take_cancellations(cancelled)
            if task in cancelled:
                cancelled.discard(task)
                for fd in fds:
                    os.close(fd)
                self.channel.send(SKIPPED, task, b"")
                continue
            self.answer(task, payload, fds)


def unpicklable_result(value: object, error: Exception) -> Exception:
    """The error for a result that cannot be pickled, naming the part that cannot be."""
    try:
        from treadle._pickling import unpicklable_error

        return unpicklable_error("result", value, error)
    except ImportError:
        return type(error)(f"the result cannot be pickled: {error}")


def main(channel: int = CHANNEL_FD, forked: bool = False) -> None:
    """Serves the parent on descriptor ``channel``, then exits the process. ``forked``: this
    process is a fork of the parent (``treadle/_forkserver.py``), not a fresh interpreter; its
    signal dispositions were reset by the fork server."""
    if not forked:
        # Ctrl-C reaches the whole process group; the parent decides what happens to the pool.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=channel)
    sock.set_inheritable(False)
    worker = Worker(Channel(sock))
    if worker.start(forked):
        worker.serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
