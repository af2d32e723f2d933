"""The fork server: where process-pool workers and ``Process`` children are forked from,
quickly and safely.

Forking a process that has threads is unsafe: a lock another thread held (in ``malloc``, in an
I/O buffer, in any library) stays held forever in the child, which has only the forking thread.
So a pool never forks its parent when the parent has threads. But when the first pool (or the
first ``treadle.multiprocessing.Process``) is created while the process still has one thread
(the operating system's count, ``/proc/self/task``, not Python's), it forks the process once,
through ``os.fork()`` (so the interpreter's and the user's at-fork handlers run), into this fork
server. The server never starts a thread; every worker of every later pool of the process, every
replacement worker and every ``Process`` child is forked from it in about a millisecond, where a
fresh interpreter takes tens of milliseconds. Threads of a native library that stops them for a
fork (numpy's OpenBLAS starts a pool of them at import, and its at-fork handler stops it) do not
count: the process is forked, and a server that a thread lived through the fork with is killed
at once, the process not forked for a server again while that thread lives (:func:`may_fork`,
:func:`_start`). If the process has other threads when it first
needs one, there is no fork server: workers and children are fresh interpreters.

The server is the parent's child (it dies with the thread that forked it, by
``PR_SET_PDEATHSIG``, and exits when the parent closes its socket); its children die with it, so
with the parent. It reaps a child only when the parent asks, and replies with its wait status.
Protocol, the same framing for every request: ``crates/treadle-os/src/fork_server.rs``.
A child inherits what the parent had open and imported when the server was forked, as with the
standard library's ``fork`` start method, except its pipes and sockets (see
``_let_go_of_pipes_and_sockets``); the server's own socket is closed in it. A parent that
imported modules since, and has one thread again, forks a new server at its next start (see
:func:`get`).

But a child takes the parent's process state as it is when the child starts, not as it was when
the server was forked: each request that forks carries it (:func:`parent_state`, called by the
pool's supervisor at each worker's start and by ``popen`` at each ``Process.start()``) and the
server's child takes it (:func:`_take_state`) before it serves or runs: working directory,
environment, umask, resource limits, and credentials (groups, group ids, user ids, last). A child
never holds more privilege than its parent has now: it refuses, and the caller starts a fresh
interpreter instead, if after the change it would keep a capability, or lack a restriction
(``no_new_privs``, seccomp), that the parent does not.

``Process`` children are forked ahead (see "Process children" below), so that a start costs the
hand-over of its data, not a fork.
"""

from __future__ import annotations

import _thread
import array
import errno
import functools
import gc
import io
import operator
import os
import pickle
import resource
import signal
import socket
import stat
import struct
import sys
import threading
import time
import warnings

from treadle._treadle import _die_with_parent, _ForkServer
from treadle.multiprocessing import child, main_module, worker

REQUEST = struct.Struct("<iiI")
REPLY = struct.Struct("<ii")
SPAWN, WAIT, PROCESS = 1, 2, 3
#: The child's word to the server: 0, or the errno of what it could not take of the parent.
_TAKEN = struct.Struct("<i")
#: Descriptors one request may carry (a process's child may be handed many).
_MAX_FDS = 255

_RESOURCE_LIMITS = sorted(
    {getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}
)
_CAPABILITY_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
_RESTRICTIONS = ("NoNewPrivs", "Seccomp")
#: How each field a process's state reads starts a line of a ``/proc`` status file.
_STATUS_KEYS = [f"\n{name}:\t".encode() for name in ("Umask", *_CAPABILITY_SETS, *_RESTRICTIONS)]

_server: _ForkServer | None = None
_server_owner = 0


def _threads() -> set[int]:
    """This process's threads, by the kernel's count (empty if it cannot be read)."""
    try:
        return {int(tid) for tid in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def single_threaded() -> bool:
    """Whether this process has exactly one thread, by the kernel's count."""
    return len(_threads()) == 1


#: Threads that lived through a fork of this process into a server (a native library's that
#: no at-fork handler stops): while one of them lives, the process is not forked for a server
#: again unless it has one thread, so that each start does not pay for a fork let go of.
_survivors: set[int] = set()


def may_fork() -> bool:
    """Whether this process may be forked into a fork server now: it has one thread, or its
    other threads are none of Python's: a native library's, such as the pool of threads that
    numpy's OpenBLAS starts at import, which the library's own at-fork handler stops for the
    fork (and starts again when next needed). :func:`_start` checks that no thread outlived
    the fork, and lets the server go if one did."""
    threads = _threads()
    if len(threads) == 1:
        return True
    return bool(threads) and threading.active_count() == 1 and not threads & _survivors


#: A server started before the process needed one (:func:`start_reserve`), for when it first
#: needs one while it has threads.
_reserve: _ForkServer | None = None
_reserve_owner = 0
_reserve_modules = 0


#: How many modules the process had imported when its server was forked.
_server_modules = 0
#: Servers this process replaced: each lives on while a pool or a child of it holds it (its
#: children die with it), and is reaped once it has exited.
_retired: list[int] = []


def get() -> _ForkServer | None:
    """This process's fork server: started now if the process has one thread (a copy of the
    process as it is now); else the reserve, if one was started; None when the process has
    threads and no server was started before.

    A server is a copy of the process as it was when it was forked: a module imported since is
    imported again by each worker and child that needs it (a pool made anew for each batch of
    work pays that for each of its workers). So when the process has imported modules since
    and has one thread again, a new server, a copy of it as it is now, takes over; the one it
    replaces serves on the pools and children it started, and exits when they let it go."""
    global _server, _server_owner, _server_modules, _reserve
    pid = os.getpid()
    _reap_retired()
    if _server is not None and _server_owner == pid and _server.alive():
        if len(sys.modules) == _server_modules or not may_fork():
            return _server
        server = _start()
        if server is None:
            return _server
        _retired.append(_server.pid)
        _server, _server_modules = server, len(sys.modules)
        return server
    if hasattr(os, "fork") and may_fork():
        server = _start()
        if server is not None:
            _server, _server_owner, _server_modules = server, pid, len(sys.modules)
            if _reserve is not None and _reserve_owner == pid:
                retired, _reserve = _reserve.pid, None  # its socket closed: it exits
                _reap(retired)
            _reserve = None
            return server
    if _reserve is not None and _reserve_owner == pid and _reserve.alive():
        _server, _server_owner, _reserve = _reserve, pid, None
        _server_modules = _reserve_modules
        return _server
    return None


def _reap_retired() -> None:
    """Reaps the replaced servers that have exited."""
    for pid in list(_retired):
        try:
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                continue  # still serving
        except ChildProcessError:
            pass  # reaped already
        _retired.remove(pid)


def _reap(pid: int) -> None:
    """Waits for the exit of the fork server ``pid``, whose socket this process closed (it
    exits at once), so that it leaves no zombie; one that has not exited within a second is
    killed."""
    deadline = time.monotonic() + 1.0
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.0005)
    except ChildProcessError:
        pass  # reaped already


def start_reserve() -> None:
    """Starts a fork server in reserve, if the process has one thread and no server: when the
    process first needs one, it starts a server then if it still has one thread (a copy with
    all the program loaded by then), and otherwise takes the reserve, where it would have had
    to start fresh interpreters (a program that imports numpy, whose OpenBLAS starts threads,
    before its first pool). ``treadle.patch()`` (so ``treadle run`` and the pytest plugin)
    starts one."""
    global _reserve, _reserve_owner, _reserve_modules
    pid = os.getpid()
    if _server is not None and _server_owner == pid and _server.alive():
        return
    if _reserve is not None and _reserve_owner == pid and _reserve.alive():
        return
    if hasattr(os, "fork") and may_fork():
        _reserve, _reserve_owner, _reserve_modules = _start(), pid, len(sys.modules)


def _forget() -> None:
    global _server, _reserve
    _server = _reserve = None
    _retired.clear()  # the parent's children, not this process's
    _survivors.clear()  # the parent's threads


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
    previous = main_module.remember_server_fork()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns of a fork with threads: threads other than this one are a
            # native library's that stop for a fork, which is checked below.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        main_module.forget_server_fork(previous)
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
    survivors = _threads() - {threading.get_native_id()}
    if survivors:
        # A thread lived through the fork (none of Python's, which may_fork() rules out, but
        # a native one that no at-fork handler stopped): it may have held a lock that the
        # server holds for ever now, so the server is killed before it does anything.
        _survivors.update(survivors)
        main_module.forget_server_fork(previous)
        ours.close()
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
        return None
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


# -- the parent's state, for a child to take ----------------------------------------------------


def parent_state() -> tuple[bytes, int]:
    """This process's state now, as a request that forks carries it: the pickled state, and a
    descriptor of the working directory (an ``O_PATH`` one: it names the directory even if it
    was removed or the path to it changed). Called by the supervisor at each worker's start,
    and by ``popen`` at each ``Process`` start."""
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # The process's status, and the calling thread's if it is not the main one:
        # capabilities are per thread.
        statuses = [_status("/proc/self/status")]
        if _thread.get_native_id() != os.getpid():
            statuses.append(_status("/proc/thread-self/status"))
        umask = statuses[0].get("Umask")
        state = {
            "environ": _environment(),
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


def _environment() -> dict[bytes, bytes]:
    """``dict(os.environb)``, from the mapping's own dictionary when it has one (a copy of it
    costs a twentieth of a copy through the mapping)."""
    data = getattr(os.environb, "_data", None)
    if type(data) is dict:
        return data.copy()
    return dict(os.environb)


def _resource_limits() -> list[tuple[int, tuple[int, int]]]:
    limits = []
    for limit in _RESOURCE_LIMITS:
        try:
            limits.append((limit, resource.getrlimit(limit)))
        except (OSError, ValueError):
            continue  # one this kernel does not know
    return limits


def _status(path: str) -> dict[str, str]:
    """The fields of a ``/proc`` status file that a process's state reads."""
    try:
        with open(path, "rb") as status:
            text = status.read()
    except OSError:
        return {}
    fields = {}
    for key in _STATUS_KEYS:
        at = text.find(key)
        if at >= 0:
            at += len(key)
            fields[key[1:-2].decode()] = text[at : text.find(b"\n", at)].decode()
    return fields


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


def _take_state(state: dict, cwd: int, own: _OwnState) -> int:
    """Makes this process (the server's new child) take the parent's state and working
    directory ``cwd`` (closed here); 0, or the errno of what it could not take."""
    try:
        if _as_server(state, cwd, own):
            os.close(cwd)
            return 0
        os.fchdir(cwd)
        os.close(cwd)
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
            raise PermissionError(errno.EPERM, f"a child would keep capabilities ({name})")
    for name in _RESTRICTIONS:
        if mine.get(name, 0) < parent.get(name, 0):
            raise PermissionError(errno.EPERM, f"a child would lack a restriction ({name})")


#: The server's own state and its working directory's identity (:func:`_own_state`).
_OwnState = tuple[dict, tuple[int, int]]


def _own_state() -> _OwnState:
    """The server's own state, as :func:`parent_state` captures a parent's, and its working
    directory's identity: a child forked while the parent is as the server is takes nothing."""
    payload, cwd = parent_state()
    try:
        return pickle.loads(payload), _identity(cwd)
    finally:
        os.close(cwd)


def _identity(fd: int) -> tuple[int, int]:
    where = os.fstat(fd)
    return where.st_dev, where.st_ino


def _as_server(state: dict, cwd: int, own: _OwnState) -> bool:
    """Whether the parent is now as the server is (its state ``state``, its working directory
    ``cwd``)."""
    return state == own[0] and _identity(cwd) == own[1]


def _split(payload: bytes, fds: list[int]) -> tuple[dict, bytes, int, list[int]]:
    """A forking request's parts: the parent's state, the rest of the payload, the working
    directory's descriptor and the other descriptors. ``ValueError`` if it has no state."""
    if not fds:
        raise ValueError("a forking request without the parent's working directory")
    stream = io.BytesIO(payload)
    state = pickle.load(stream)
    if not isinstance(state, dict):
        raise ValueError("a forking request without the parent's state")
    return state, payload[stream.tell() :], fds[0], fds[1:]


# -- the server ----------------------------------------------------------------------------------


def _serve(sock: socket.socket) -> int:
    if not _die_with_parent(os.getppid()):
        return 1
    _let_go_of_pipes_and_sockets(sock.fileno())
    worker.reset_signals()
    # The parent's queues and pipes, copied by the fork: the server never uses them, and must not
    # count as one of their holders for as long as it lives.
    channels = sys.modules.get("treadle.multiprocessing.channel")
    if channels is not None:
        channels.forget_all()
    # Nor its shared-memory segments: mapped here, they would outlive their last user.
    segments = sys.modules.get("treadle.multiprocessing.shared_memory")
    if segments is not None:
        segments.forget_all()
    # A child may give up the privilege to read the standard library (it takes the parent's
    # credentials): what a worker loads only once a task raises is loaded here, once.
    import traceback  # noqa: F401

    # Every object the server holds now is its children's too: kept out of their collections
    # (the permanent generation), a collection in a child neither walks them nor writes to
    # them, which would copy each of their pages into the child.
    gc.freeze()
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
            _close(fds)
            return 0
        if kind == SPAWN:
            reply = _spawn(sock, payload, fds, own)
        elif kind == PROCESS:
            reply = _start_process(sock, payload, fds, own)
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
        if kind == PROCESS:
            _fork_waiting(sock, own)  # the next one, now that the parent has its answer


def _receive(sock: socket.socket, size: int) -> tuple[bytes | None, list[int]]:
    """``size`` bytes from ``sock`` and the descriptors that came with them; None for the bytes
    if its other end closed first."""
    fd_size = array.array("i").itemsize
    data = bytearray()
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
    return bytes(data), list(fds)


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _told(fd: int) -> int:
    """The word a child wrote to ``fd`` (:data:`_TAKEN`): 0 once it took the parent's state, or
    an errno; ``ECHILD`` if it ended without a word."""
    word = b""
    while len(word) < _TAKEN.size:
        try:
            chunk = os.read(fd, _TAKEN.size - len(word))
        except OSError:
            break
        if not chunk:
            break
        word += chunk
    return _TAKEN.unpack(word)[0] if len(word) == _TAKEN.size else errno.ECHILD


# -- pool workers -------------------------------------------------------------------------------


def _spawn(sock: socket.socket, payload: bytes, fds: list[int], own: _OwnState) -> tuple[int, int]:
    """A ``SPAWN`` request: forks a worker that takes the parent's state and serves its channel;
    its pid, or -1 and the errno of why it could not be."""
    try:
        state, rest, cwd, (channel,) = _split(payload, fds)
        if rest:
            raise ValueError("a spawn request carries nothing after the parent's state")
    except Exception:
        _close(fds)
        return -1, errno.EINVAL
    if _as_server(state, cwd, own):
        return _spawn_as_is(sock, channel, cwd)
    server = os.getpid()
    taken, told = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as error:
        _close([*fds, taken, told])
        return -1, error.errno or 0
    if pid == 0:  # a worker; it never returns
        try:
            sock.close()
            os.close(taken)
            error = _take_state(state, cwd, own)
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
    _close([*fds, told])
    error = _told(taken)
    os.close(taken)
    if error:
        os.waitpid(pid, 0)
        return -1, error
    return pid, 0


def _spawn_as_is(sock: socket.socket, channel: int, cwd: int) -> tuple[int, int]:
    """Forks a worker of a parent whose state is the server's: it has nothing to take, so the
    server replies at once."""
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


# -- Process children: one forked ahead -----------------------------------------------------------
#
# A ``Process``'s child is forked before it is asked for, and waits for its request: when the
# request comes, the child is already past the fork and the interpreter's at-fork work, and only
# the request's payload (the parent's state and the child's start-up data) and descriptors are
# handed over, as they came. While it waits it ignores Ctrl-C, as the server does, so that a
# Ctrl-C the parent handled long before does not end it later. Handed its request, it takes the
# parent's state, installs Python's Ctrl-C handler and says so (or says why it could not), and
# only then is the parent told its pid: a Ctrl-C after ``start()`` returned reaches the process.

#: The child forked ahead: its pid, and the server's end of the socket its request goes through.
_waiting: tuple[int, socket.socket] | None = None
#: What goes through it first: the payload's length and the number of descriptors.
_HANDOFF = struct.Struct("<QI")


def _fork_waiting(sock: socket.socket, own: _OwnState) -> None:
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
                _wait_for_start(theirs, server, own)
        finally:
            os._exit(1)
    theirs.close()
    _waiting = (pid, ours)


def _wait_for_start(handoff: socket.socket, server: int, own: _OwnState) -> None:
    header, fds = _receive(handoff, _HANDOFF.size)
    if header is None:
        return  # the server is gone
    length, count = _HANDOFF.unpack(header)
    payload, more = _receive(handoff, length)
    fds += more
    if payload is None or len(fds) != count:
        return
    try:
        state, data, cwd, fds = _split(payload, fds)
    except Exception:
        error = errno.EINVAL
    else:
        error = _take_state(state, cwd, own)
    # A change of credentials cleared the death signal: ask for it again (and check that the
    # server did not die meanwhile).
    if error == 0 and not _die_with_parent(server):
        error = errno.ESRCH
    if error == 0:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    handoff.sendall(_TAKEN.pack(error))
    handoff.close()
    if error == 0:
        child.run(data, fds)


def _start_process(
    sock: socket.socket, payload: bytes, fds: list[int], own: _OwnState
) -> tuple[int, int]:
    """A ``PROCESS`` request: hands its payload and descriptors (which the server then closes)
    to the child forked ahead (or forked now, if none waits); its pid, or -1 and an errno."""
    global _waiting
    try:
        for _ in range(2):
            _fork_waiting(sock, own)
            if _waiting is None:
                return -1, errno.EAGAIN
            pid, handoff = _waiting
            _waiting = None
            error = errno.ECHILD
            with handoff:
                try:
                    rights = array.array("i", fds).tobytes()
                    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)] if fds else []
                    handoff.sendmsg([_HANDOFF.pack(len(payload), len(fds))], ancillary)
                    handoff.sendall(payload)
                    error = _told(handoff.fileno())
                except OSError:
                    pass
            if error == 0:
                return pid, 0
            os.waitpid(pid, 0)
            if error != errno.ECHILD:
                return -1, error  # it could not take the parent's state
            # It died waiting: try a fresh one.
        return -1, errno.ECHILD
    finally:
        _close(fds)
