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

But a worker takes the parent's process state as it is when the worker starts, not as it was
when the server was forked: each spawn request carries it (:func:`parent_state`, called by the
supervisor at each start) and the server's child takes it (:func:`_take_state`) before it
serves: working directory, environment, umask, resource limits, and credentials (groups, group
ids, user ids, last). A worker never holds more privilege than its parent has now: it refuses to
serve, and the supervisor starts a fresh interpreter instead, if after the change it would keep
a capability, or lack a restriction (``no_new_privs``, seccomp), that the parent does not.
"""

from __future__ import annotations

import array
import errno
import functools
import operator
import os
import pickle
import resource
import socket
import stat
import struct
import sys

from treadle._treadle import _die_with_parent, _ForkServer
from treadle.multiprocessing import main_module, worker

REQUEST = struct.Struct("<iiI")
REPLY = struct.Struct("<ii")
SPAWN, WAIT = 1, 2
#: The child's word to the server: 0, or the errno of what it could not take of the parent.
_TAKEN = struct.Struct("<i")
#: Descriptors one request may carry (a spawn carries two).
_MAX_FDS = 8

_RESOURCE_LIMITS = sorted(
    {getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}
)
_CAPABILITY_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
_RESTRICTIONS = ("NoNewPrivs", "Seccomp")

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
    # What the server's __main__ will hold, for the pickles of its workers' tasks.
    main_module.remember_server_fork()
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


# -- the parent's state, for a worker to take ---------------------------------------------------


def parent_state() -> tuple[bytes, int]:
    """This process's state now, as a spawn request carries it: the pickled state, and a
    descriptor of the working directory (an ``O_PATH`` one: it names the directory even if it
    was removed or the path to it changed). Called by the supervisor at each worker's start."""
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # The process's status, and the calling thread's: capabilities are per thread.
        statuses = [_status("/proc/self/status"), _status("/proc/thread-self/status")]
        umask = statuses[0].get("Umask")
        state = {
            "environ": dict(os.environb),
            "umask": int(umask, 8) if umask is not None else None,
            "rlimits": _resource_limits(),
            "uids": os.getresuid(),
            "gids": os.getresgid(),
            "groups": sorted(os.getgroups()),
            "privileges": _privileges(statuses),
        }
        return pickle.dumps(state, protocol=5), cwd
    except BaseException:
        os.close(cwd)
        raise


def _resource_limits() -> list[tuple[int, tuple[int, int]]]:
    limits = []
    for limit in _RESOURCE_LIMITS:
        try:
            limits.append((limit, resource.getrlimit(limit)))
        except (OSError, ValueError):
            continue  # one this kernel does not know
    return limits


def _status(path: str) -> dict[str, str]:
    try:
        with open(path) as status:
            return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)
    except OSError:
        return {}


def _privileges(statuses: list[dict[str, str]]) -> dict[str, int]:
    """The capability sets every status has (bitwise and), and the strongest restrictions any
    has: the least privilege among them."""
    privileges = {}
    for name in _CAPABILITY_SETS:
        masks = [int(status[name], 16) for status in statuses if name in status]
        if masks:
            privileges[name] = functools.reduce(operator.and_, masks)
    for name in _RESTRICTIONS:
        levels = [int(status[name]) for status in statuses if name in status]
        if levels:
            privileges[name] = max(levels)
    return privileges


def _take_state(state: dict | None, cwd: int | None) -> int:
    """Makes this process (the server's new child) take the parent's state; 0, or the errno of
    what it could not take."""
    try:
        if cwd is not None:
            os.fchdir(cwd)
            os.close(cwd)
        if state is not None:
            _become(state)
    except OSError as error:
        return error.errno or errno.EPERM
    except Exception:
        return errno.EINVAL
    return 0


def _become(state: dict) -> None:
    if state["umask"] is not None:
        os.umask(state["umask"])
    environ = state["environ"]
    if os.environb != environ:
        os.environb.clear()
        os.environb.update(environ)
    # Limits before credentials: raising a hard limit back takes the privilege the server has.
    for limit, values in state["rlimits"]:
        if resource.getrlimit(limit) != values:
            resource.setrlimit(limit, values)
    uids, gids, groups = tuple(state["uids"]), tuple(state["gids"]), state["groups"]
    if sorted(os.getgroups()) != groups or os.getresgid() != gids or os.getresuid() != uids:
        if os.geteuid() != 0 and 0 in os.getresuid():
            os.seteuid(0)  # root again for a moment, to change groups; the last step drops it
        if sorted(os.getgroups()) != groups:
            os.setgroups(groups)
        os.setresgid(*gids)
        os.setresuid(*uids)
    _check_privileges(state["privileges"])


def _check_privileges(parent: dict[str, int]) -> None:
    """Raises ``PermissionError`` if this process holds a capability the parent does not, or
    lacks a restriction it has."""
    mine = _privileges([_status("/proc/self/status")])
    for name in _CAPABILITY_SETS:
        if name in parent and mine.get(name, 0) & ~parent[name]:
            raise PermissionError(errno.EPERM, f"a worker would keep capabilities ({name})")
    for name in _RESTRICTIONS:
        if mine.get(name, 0) < parent.get(name, 0):
            raise PermissionError(errno.EPERM, f"a worker would lack a restriction ({name})")


# -- the server ----------------------------------------------------------------------------------


def _serve(sock: socket.socket) -> int:
    if not _die_with_parent(os.getppid()):
        return 1
    _let_go_of_pipes_and_sockets(sock.fileno())
    worker.reset_signals()
    # A worker may give up the privilege to read the standard library (it takes the parent's
    # credentials): what it loads only once a task raises is loaded here, once.
    import traceback  # noqa: F401

    own = _own_state()
    sock.setblocking(True)
    while True:
        header, fds = _receive(sock, REQUEST.size)
        if header is None:
            return 0  # the parent closed its end, or exited
        kind, pid, length = REQUEST.unpack(header)
        payload, more = _receive(sock, length)
        fds += more
        if payload is None:
            return 0
        if kind == SPAWN and fds:
            reply = _spawn(sock, fds, payload, own)
        elif kind == WAIT:
            _close(fds)
            try:
                reply = (os.waitpid(pid, 0)[1], 0)
            except OSError as error:
                reply = (-1, error.errno or 0)
        else:
            _close(fds)
            reply = (-1, errno.EINVAL)
        sock.sendall(REPLY.pack(*reply))


def _receive(sock: socket.socket, size: int) -> tuple[bytes | None, list[int]]:
    """``size`` bytes from the parent and the descriptors that came with them; None for the
    bytes if the parent closed its end first."""
    fd_size = array.array("i").itemsize
    data = b""
    fds = array.array("i")
    while len(data) < size:
        chunk, ancdata, _, _ = sock.recvmsg(size - len(data), socket.CMSG_SPACE(_MAX_FDS * fd_size))
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cdata[: len(cdata) - len(cdata) % fd_size])
        if not chunk:
            _close(list(fds))
            return None, []
        data += chunk
    return data, list(fds)


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _own_state() -> tuple[dict, tuple[int, int]]:
    """The server's own state, as :func:`parent_state` captures a parent's, and its working
    directory's identity: a worker forked while the parent is as the server is takes nothing."""
    payload, cwd = parent_state()
    try:
        where = os.fstat(cwd)
    finally:
        os.close(cwd)
    return pickle.loads(payload), (where.st_dev, where.st_ino)


def _spawn(
    sock: socket.socket, fds: list[int], payload: bytes, own: tuple[dict, tuple[int, int]]
) -> tuple[int, int]:
    """Forks a worker serving ``fds[0]`` that takes the parent's state (the payload, and the
    working directory ``fds[1]``); its pid, or -1 and the errno of why it could not be."""
    channel, cwd = fds[0], (fds[1] if len(fds) > 1 else None)
    _close(fds[2:])
    try:
        state = pickle.loads(payload) if payload else None
    except Exception:
        _close(fds[:2])
        return -1, errno.EINVAL
    if state == own[0] and cwd is not None and _identity(cwd) == own[1]:
        return _spawn_as_is(sock, channel, cwd)
    server = os.getpid()
    taken, told = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as error:
        _close([*fds[:2], taken, told])
        return -1, error.errno or 0
    if pid == 0:  # a worker; it never returns
        try:
            sock.close()
            os.close(taken)
            error = _take_state(state, cwd)
            # A change of credentials cleared the death signal: ask for it again (and check
            # that the server did not die meanwhile).
            if error == 0 and not _die_with_parent(server):
                error = errno.ESRCH
            os.write(told, _TAKEN.pack(error))
            os.close(told)
            if error == 0:
                worker.main(channel, forked=True)
        finally:
            os._exit(1)
    _close([*fds[:2], told])
    word = b""
    while len(word) < _TAKEN.size:
        chunk = os.read(taken, _TAKEN.size - len(word))
        if not chunk:
            break
        word += chunk
    os.close(taken)
    error = _TAKEN.unpack(word)[0] if len(word) == _TAKEN.size else errno.ECHILD
    if error:
        os.waitpid(pid, 0)
        return -1, error
    return pid, 0


def _identity(fd: int) -> tuple[int, int]:
    where = os.fstat(fd)
    return where.st_dev, where.st_ino


def _spawn_as_is(sock: socket.socket, channel: int, cwd: int) -> tuple[int, int]:
    """Forks a worker of a parent whose state is the server's: it has nothing to take."""
    server = os.getpid()
    try:
        pid = os.fork()
    except OSError as error:
        _close([channel, cwd])
        return -1, error.errno or 0
    if pid == 0:  # a worker; it never returns
        try:
            sock.close()
            os.close(cwd)
            if _die_with_parent(server):
                worker.main(channel, forked=True)
        finally:
            os._exit(1)
    _close([channel, cwd])
    return pid, 0
