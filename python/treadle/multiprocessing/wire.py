"""The wire between a process pool and its workers: the frame layout, the frame kinds, and the
worker's end of the channel.

The layout is ``crates/treadle-os/src/frame.rs``'s: a ``<IBBHQ`` header (payload
length, kind, descriptor count, reserved, task id), then the payload; descriptors (shared-memory
segments, ``treadle.multiprocessing.segments``) travel as ``SCM_RIGHTS`` with the frame. The
channel is an inherited, anonymous socket: no other process can send to it. Standard library
only: a worker imports it before it knows the parent's ``sys.path``.
"""

from __future__ import annotations

import array
import io
import os
import pickle
import socket
import struct
import time
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
#: initializer sets with ``global`` the tasks see. See ``treadle.multiprocessing.pickling``.
MAIN_NAMESPACE_MODULE = "_treadle_main_namespace"


FD_SIZE = array.array("i").itemsize

#: The dispatch table a worker pickles results with, if not pickle's own: the reducers a pool's
#: initializer installed (``treadle.multiprocessing.pool``: the backward reducers of a standard
#: ``Pool`` subclass, as joblib's memmapping pool gives them).
result_table: dict[object, object] | None = None


def dumps_with(table: dict[object, object], value: object) -> bytes:
    """``value`` pickled with ``table`` as the pickler's dispatch table, every buffer in band."""
    file = io.BytesIO()
    pickler = pickle.Pickler(file, protocol=5)
    pickler.dispatch_table = table
    pickler.dump(value)
    return file.getvalue()


#: A frame as read: its kind, task id, payload and descriptors.
Frame = tuple[int, int, "bytes | bytearray", "list[int]"]

#: Between tiny tasks, a worker looks for CANCEL frames at most this often (seconds): a task
#: cancelled within this long of the worker's last read may start, and the pool then stops it
#: (it kills a worker that has not answered SKIPPED soon after reaching the task).
RECHECK = 0.0002

#: The longest a worker with nothing to do looks for its next frame before it sleeps (seconds):
#: the parent's next task often follows a tiny task's answer by a few tens of microseconds,
#: less than it costs to wake a process sleeping on an idle virtual CPU. A look that saw a
#: frame doubles the next one, one in vain halves it down to nothing (below ``SPIN_LEAST``),
#: and a sleep that a frame ended within ``SPIN_MOST`` grows it back: so a worker between
#: rare tasks, or on a machine too busy for the parent to answer while it looks, sleeps at once.
SPIN_MOST = 64e-6
SPIN_LEAST = 2e-6


class Channel:
    """Frames in and out over the inherited socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        #: Set once a send failed part-way: the stream cannot be read right any more.
        self.broken = False
        self.buffer = bytearray()
        self.fds: deque[int] = deque()
        self.frames: deque[Frame] = deque()
        #: The tasks a CANCEL frame named (those frames go here, not to ``frames``).
        self.cancelled: set[int] = set()
        self.received_at = 0.0
        self.scratch = bytearray(256 * 1024)
        self.ancillary = socket.CMSG_SPACE(255 * FD_SIZE)
        #: How long the next look for a frame lasts (seconds; see ``SPIN_MOST``).
        self.spin = SPIN_MOST

    def _receive(self, block: bool) -> bool | None:
        """Reads what is there (waiting for something if ``block``); False at end of stream,
        None if nothing was there (only without ``block``)."""
        flags = 0 if block else socket.MSG_DONTWAIT
        try:
            n, ancdata, msg_flags, _ = self.sock.recvmsg_into([self.scratch], self.ancillary, flags)
        except BlockingIOError:
            return None
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
        size = len(buffer)
        header = HEADER.size
        unpack = HEADER.unpack_from
        fds = self.fds
        at = 0
        while size - at >= header:
            length, kind, nfds, _, task = unpack(buffer, at)
            end = at + header + length
            if size < end or len(fds) < nfds:
                break
            # A bytearray slice is one copy; pickle reads it as it reads bytes.
            payload = buffer[at + header : end]
            at = end
            frame_fds = [fds.popleft() for _ in range(nfds)] if nfds else []
            if kind == CANCEL:
                self.cancelled.add(task)
            else:
                self.frames.append((kind, task, payload, frame_fds))
        del buffer[:at]

    def next_frame(self) -> Frame | None:
        """The next frame, waiting for it (after a look, ``SPIN_MOST``); None when the parent
        closed the channel."""
        while not self.frames:
            came = self._arrives_soon()
            if came is False:
                return None
            slept = 0.0
            if came is None:
                slept = time.monotonic()
                if not self._receive(block=True):
                    return None
            self.received_at = time.monotonic()
            if slept and self.received_at - slept < SPIN_MOST:
                # A frame a full look would have seen: the machine has room to look again.
                self.spin = min(max(self.spin * 2, SPIN_LEAST), SPIN_MOST)
        return self.frames.popleft()

    def _arrives_soon(self) -> bool | None:
        """Looks for something to read for ``spin`` seconds (yielding the core between looks to
        whatever else is ready to run on it), reading it as it looks, and adapts ``spin``: True
        if something came (it is read), False at end of stream, None if nothing came."""
        spin = self.spin
        if not spin:
            return None
        receive = self._receive
        monotonic = time.monotonic
        until = monotonic() + spin
        while True:
            came = receive(False)
            if came is not None:
                self.spin = min(spin * 2, SPIN_MOST)
                return came
            if monotonic() >= until:
                break
            os.sched_yield()
        spin /= 2
        self.spin = spin if spin >= SPIN_LEAST else 0.0
        return None

    def take_cancellations(self) -> set[int]:
        """Reads frames already sent (unless the socket was read in the last ``RECHECK``
        seconds); the tasks cancelled so far (``cancelled``)."""
        now = time.monotonic()
        if now - self.received_at >= RECHECK:
            self.received_at = now
            self._receive(block=False)
        return self.cancelled

    def send(self, kind: int, task: int, payload: bytes, fds: list[int] = ()) -> None:  # type: ignore[assignment]
        """Sends a frame. On an ``OSError`` before any byte left, the channel is as it was;
        after, it is ``broken``."""
        frame = HEADER.pack(len(payload), kind, len(fds), 0, task) + payload
        if fds:
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            sent = self.sock.sendmsg([frame], rights)
        else:
            sent = self.sock.send(frame)
        if sent < len(frame):
            self._send_rest(memoryview(frame), sent)

    def _send_rest(self, frame: memoryview, sent: int) -> None:
        try:
            while sent < len(frame):
                sent += self.sock.send(frame[sent:])
        except BaseException:
            self.broken = True
            raise
