"""The fork server: where process-pool workers are forked from, quickly and safely.

Forking a process that has threads is unsafe: a lock another thread held (in ``malloc``, in an
I/O buffer, in any library) stays held forever in the child, which has only the forking thread.
So a pool never forks its parent when the parent has threads. But when the first pool is
created while the process still has one thread (the operating system's count,
``/proc/self/task``, not Python's), the pool forks it once, through ``os.fork()`` (so the
interpreter's and the user's at-fork handlers run), into this fork server. The server never
starts a thread; every worker of every later pool of the process, and every replacement worker,
is forked from it in about a millisecond, where a fresh interpreter takes tens of milliseconds.
If the process has threads when its first pool is created, there is no fork server and workers
are fresh interpreters.

The server is the parent's child (it dies with the thread that forked it, by
``PR_SET_PDEATHSIG``, and exits when the parent closes its socket); workers are its children
(they die with it, so with the parent). It reaps a worker only when the parent asks, and
replies with its wait status. Protocol: ``crates/treadle-os/src/fork_server.rs``.
A worker inherits what the parent had open and imported when the server was forked, as with the
standard library's ``fork`` start method, except its pipes and sockets (see
``_let_go_of_pipes_and_sockets``); the server's own socket is closed in it.
"""

from __future__ import annotations

import array
import errno
import functools
import os
import signal
import socket
import stat
import struct
import sys
from collections.abc import Callable

from treadle._treadle import _die_with_parent, _ForkServer
from treadle.multiprocessing import child, worker

MESSAGE = struct.Struct("<ii")
SPAWN, WAIT, PROCESS = 1, 2, 3
#: Descriptors one request may carry (a process's child may be handed many).
_MAX_FDS = 255

_server: _ForkServer | None = None
_server_owner = 0


def single_threaded() -> bool:
    """Whether this process has exactly one thread, by the kernel's count."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def get() -> _ForkServer | None:
    """This process's fork server, started now if the process has one thread; None when the
    process has threads and no server was started before."""
    global _server, _server_owner
    if _server is not None and _server_owner == os.getpid() and _server.alive():
        return _server
    if not hasattr(os, "fork") or not single_threaded():
        return None
    _server = _start()
    _server_owner = os.getpid()
    return _server


def _forget() -> None:
    global _server
    _server = None


os.register_at_fork(after_in_child=_forget)


def _start() -> _ForkServer | None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # What is buffered now would be written again by every process that flushes its copy.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return None
    if pid == 0:  # the fork server; it never returns
        code = 1
        try:
            ours.close()
            code = _serve(theirs)
        finally:
            os._exit(code)
    theirs.close()
    return _ForkServer(ours.detach(), pid)


def _reset_signals() -> None:
    """Default dispositions for the signals the parent handled in Python; Ctrl-C is the parent's
    to handle, so SIGINT is ignored; no wake-up descriptor (an event loop's) is written to."""
    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
        except (OSError, ValueError):
            continue
        if callable(handler):
            try:
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        signal.set_wakeup_fd(-1)
    except (OSError, ValueError):
        pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _let_go_of_pipes_and_sockets(keep: int) -> None:
    """Points each inherited pipe and socket of the parent (but stdin, stdout, stderr and the
    server's own socket ``keep``) at ``/dev/null``. The server lives as long as the parent: were
    it to hold the parent's end of a pipe or socket, the other end would never see it closed (a
    child waiting for EOF on its stdin, ``multiprocessing``'s resource tracker waiting to be
    stopped). The descriptor numbers stay taken, so that an object of the parent's that still
    names one can never close a descriptor opened later in a worker. Regular files stay open,
    as after any fork (a worker may log to the parent's log file)."""
    try:
        descriptors = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for fd in descriptors:
            if fd in (0, 1, 2, keep, null):
                continue
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                continue  # the listing's own descriptor, already closed
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                os.dup2(null, fd, inheritable=os.get_inheritable(fd))
    finally:
        os.close(null)
    # The parent's resource tracker is reached through one of those pipes: a worker that needs
    # a tracker starts its own, as a spawned child would.
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    if tracker is not None:
        tracker._resource_tracker._fd = None
        tracker._resource_tracker._pid = None


def _serve(sock: socket.socket) -> int:
    if not _die_with_parent(os.getppid()):
        return 1
    _let_go_of_pipes_and_sockets(sock.fileno())
    _reset_signals()
    # The parent's queues and pipes, copied by the fork: the server never uses them, and must not
    # count as one of their holders for as long as it lives.
    channels = sys.modules.get("treadle.multiprocessing.channel")
    if channels is not None:
        channels.forget_all()
    fd_size = array.array("i").itemsize
    ancillary = socket.CMSG_SPACE(_MAX_FDS * fd_size)
    sock.setblocking(True)
    while True:
        request = b""
        fds = array.array("i")
        while len(request) < MESSAGE.size:
            data, ancdata, _, _ = sock.recvmsg(MESSAGE.size - len(request), ancillary)
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(cdata[: len(cdata) - len(cdata) % fd_size])
            if not data:
                return 0  # the parent closed its end, or exited
            request += data
        kind, pid = MESSAGE.unpack(request)
        if kind == PROCESS:
            # The second word is the length of the child's start-up data, which follows.
            start_up = _read(sock, pid)
            if start_up is None:
                return 0
            reply = _start_process(sock, start_up, list(fds))
        elif kind == SPAWN and len(fds) == 1:
            serve = functools.partial(worker.main, fds[0], forked=True)
            reply = _spawn(sock, list(fds), serve)
        elif kind == WAIT:
            try:
                reply = (os.waitpid(pid, 0)[1], 0)
            except OSError as error:
                reply = (-1, error.errno or 0)
        else:
            for fd in fds:
                os.close(fd)
            reply = (-1, 22)  # EINVAL
        sock.sendall(MESSAGE.pack(*reply))
        if kind == PROCESS:
            _fork_waiting(sock)  # the next one, now that the parent has its answer


def _read(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``sock``; None if its other end closed first."""
    data = bytearray(size)
    view = memoryview(data)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(data)


# -- Process children: one forked ahead -----------------------------------------------------------
#
# A ``Process``'s child is forked before it is asked for, and waits for its start-up data: when
# the request comes, the child is already past the fork and the interpreter's at-fork work, and
# only the data is handed over. While it waits it ignores Ctrl-C, as the server does, so that a
# Ctrl-C the parent handled long before does not end it later; once handed its data it installs
# Python's handler and says so, and only then is the parent told its pid: a Ctrl-C after
# ``start()`` returned reaches the process.

#: The child forked ahead: its pid, and the server's end of the socket its data goes through.
_waiting: tuple[int, socket.socket] | None = None
#: What goes through it: the data's length and the number of descriptors (with the header).
_HANDOFF = struct.Struct("<QI")
#: The child's word that it has its Ctrl-C handler.
_READY = b"\1"


def _fork_waiting(sock: socket.socket) -> None:
    """Forks the next ``Process`` child ahead, unless one waits already."""
    global _waiting
    if _waiting is not None:
        return
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return
    if pid == 0:  # the waiting child; it never returns
        try:
            sock.close()
            ours.close()
            if _die_with_parent(server):
                _wait_for_start(theirs)
        finally:
            os._exit(1)
    theirs.close()
    _waiting = (pid, ours)


def _wait_for_start(handoff: socket.socket) -> None:
    fd_size = array.array("i").itemsize
    header = b""
    fds = array.array("i")
    while len(header) < _HANDOFF.size:
        chunk, ancdata, _, _ = handoff.recvmsg(
            _HANDOFF.size - len(header), socket.CMSG_SPACE(_MAX_FDS * fd_size)
        )
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cdata[: len(cdata) - len(cdata) % fd_size])
        if not chunk:
            return  # the server is gone
        header += chunk
    length, count = _HANDOFF.unpack(header)
    data = _read(handoff, length)
    if data is None or len(fds) != count:
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    handoff.sendall(_READY)
    handoff.close()
    child.run(data, list(fds))


def _start_process(sock: socket.socket, data: bytes, fds: list[int]) -> tuple[int, int]:
    """Hands ``data`` and ``fds`` (which the server then closes) to the child forked ahead (or
    forked now, if none waits); its pid, or -1 and an errno."""
    global _waiting
    try:
        for _ in range(2):
            _fork_waiting(sock)
            if _waiting is None:
                return -1, errno.EAGAIN
            pid, handoff = _waiting
            _waiting = None
            with handoff:
                try:
                    rights = array.array("i", fds).tobytes()
                    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)] if fds else []
                    handoff.sendmsg([_HANDOFF.pack(len(data), len(fds))], ancillary)
                    handoff.sendall(data)
                    if handoff.recv(1) == _READY:
                        return pid, 0
                except OSError:
                    pass
            os.waitpid(pid, 0)  # it died waiting: reap it and try a fresh one
        return -1, errno.ECHILD
    finally:
        for fd in fds:
            os.close(fd)


# -- pool workers -------------------------------------------------------------------------------


def _spawn(sock: socket.socket, fds: list[int], entry: Callable[[], object]) -> tuple[int, int]:
    """Forks a pool's worker that runs ``entry`` with the descriptors ``fds`` the request
    brought, which the server then closes."""
    server = os.getpid()
    try:
        pid = os.fork()
    except OSError as error:
        for fd in fds:
            os.close(fd)
        return -1, error.errno or 0
    if pid == 0:  # a worker; it never returns
        try:
            sock.close()
            if _die_with_parent(server):
                entry()
        finally:
            os._exit(1)
    for fd in fds:
        os.close(fd)
    return pid, 0
