"""``treadle.multiprocessing.shared_memory``: ``SharedMemory`` and ``ShareableList`` with the
standard library's API, on anonymous memory that the kernel frees with its last user.

A segment is a memfd (mode 0600, sealed against resizing, so that no process can shrink it
under another's mapping), never a file in ``/dev/shm``: its memory is returned when the last
process that has it open or mapped closes it or dies, SIGKILL included, and there is no
resource tracker to warn about it. What a name needs, a way for another process to find the
segment, is a private registry (``registry_path()``: a directory of the user's, mode 0700)
holding, per name, a directory of symbolic links, one per process that holds the segment,
each pointing at the descriptor in that process (``/proc/<pid>/fd/<n>``) and named
``<pid>-<n>-<inode>``. Attaching opens the first link that still leads to a descriptor with
that inode (the kernel lets a process of the same user open another's descriptor this way
unless the holder made itself non-dumpable); a link whose process died, or whose descriptor
is now something else, is removed by whoever finds it. The registry holds no memory: a
registry left behind by killed processes names nothing that can be opened. Every change to
the registry is made under an ``flock`` of its directory, which the kernel releases if the
process dies.

A process that opened a segment stays one of its holders until it exits or the segment is
unlinked, even after ``close()`` (which releases the object's mapping): so a name stays
valid, as a POSIX segment does, until ``unlink()`` or until every process that opened it is
gone. ``unlink()`` removes the name (attaching by it then raises ``FileNotFoundError``);
processes that have the segment keep it until they close it or exit, as with
``shm_unlink``. A name that is not in the registry is looked up in ``/dev/shm`` too, so a
segment the standard library made (in a program that does not use treadle) can be attached
to; the reverse is not possible. Details and limits: ``docs/multiprocessing.md``.
"""

from __future__ import annotations

import _posixshmem
import _thread
import errno
import fcntl
import mmap
import os
import stat
import types
import weakref
from multiprocessing import shared_memory as _standard

__all__ = ["ShareableList", "SharedMemory"]

_USE_POSIX = True
_SHM_NAME_PREFIX = _standard._SHM_NAME_PREFIX
_O_CREX = os.O_CREAT | os.O_EXCL
#: What a memfd's name starts with, after the kernel's ``memfd:`` (``/proc/<pid>/fd`` shows it).
MEMFD_PREFIX = "treadle-shm:"
#: The kernel's limit on a memfd's name (249 bytes, with the prefix).
_MEMFD_NAME_MAX = 249
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


_REGISTRY_BASE = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"


def registry_path() -> str:
    """Where this user's segments are named: ``/dev/shm/treadle-<uid>`` (a tmpfs, where the
    registry's many small changes cost little), or ``/tmp/treadle-<uid>`` where there is no
    ``/dev/shm``."""
    return f"{_REGISTRY_BASE}/treadle-{os.getuid()}"


def _private_directory(path: str) -> None:
    """Makes ``path`` a directory only this user can enter, or refuses one that another user
    could have prepared."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    status, uid = os.lstat(path), os.getuid()
    if not (stat.S_ISDIR(status.st_mode) and status.st_uid == uid and status.st_mode & 0o077 == 0):
        raise PermissionError(
            errno.EACCES,
            f"treadle's shared-memory registry {path!r} is not a directory private to user "
            f"{uid} (mode 0700); remove it or fix its owner and mode",
            path,
        )


class _Registry:
    """The registry, locked: every method runs with the directory's ``flock`` held (against
    other processes) and a lock of the process (against its other threads, which share the
    descriptor the ``flock`` is on). One per process: a forked child makes its own, with a
    descriptor and a lock of its own."""

    _current: _Registry | None = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.path = registry_path()
        self._threads = _thread.allocate_lock()
        _private_directory(self.path)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        with self:
            self._sweep()

    @classmethod
    def locked(cls) -> _Registry:
        """This process's registry, to lock with ``with``."""
        registry = cls._current
        if registry is None or registry.pid != os.getpid() or registry.path != registry_path():
            registry = cls._current = cls()
        return registry

    def __enter__(self) -> _Registry:
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _sweep(self) -> None:
        """Forgets the names whose holders are all gone (killed before they could say so), once
        per process: names nobody looks up again would otherwise stay, empty of memory."""
        for key in os.listdir(self.path):
            try:
                found = self.open(key)
            except OSError:
                continue
            if found is not None:
                os.close(found[0])

    def entry(self, key: str) -> str:
        return f"{self.path}/{key}"

    def open(self, key: str) -> tuple[int, int] | None:
        """A descriptor of the segment named ``key`` and its inode, or None when no holder is
        left (the dead ones are forgotten). ``PermissionError`` when holders are alive but
        none lets this process open its descriptor."""
        entry = self.entry(key)
        try:
            links = os.listdir(entry)
        except FileNotFoundError:
            return None
        refused: OSError | None = None
        for link in links:
            try:
                pid, _, inode = (int(part) for part in link.split("-"))
            except ValueError:
                continue
            try:
                fd = os.open(f"{entry}/{link}", os.O_RDWR | os.O_CLOEXEC)
            except PermissionError as error:
                if _alive(pid):
                    refused = error
                    continue
                fd = -1
            except OSError:
                fd = -1
            if fd >= 0:
                if os.fstat(fd).st_ino == inode:
                    return fd, inode
                os.close(fd)  # the number is another file's now: the holder let go or died
            _remove(f"{entry}/{link}")
        _remove_directory(entry)
        if refused is not None:
            raise PermissionError(
                errno.EACCES,
                "the processes that hold this shared memory segment do not let this process "
                "open it (they are not dumpable, or run as another user)",
                key,
            ) from refused
        return None

    def claim(self, key: str) -> bool:
        """Takes the name ``key`` for a new segment: False if a live segment has it (or
        processes this one cannot reach hold it)."""
        entry = self.entry(key)
        try:
            os.mkdir(entry, 0o700)
            return True
        except FileExistsError:
            pass
        try:
            found = self.open(key)  # forgets the dead holders, and the name with the last
        except PermissionError:
            return False
        if found is not None:
            os.close(found[0])
            return False
        os.mkdir(entry, 0o700)
        return True

    def link(self, key: str, fd: int, inode: int) -> str:
        """The path of this process's link to its descriptor ``fd`` of the segment ``key``."""
        return f"{self.path}/{key}/{self.pid}-{fd}-{inode}"

    def add_holder(self, key: str, fd: int, inode: int) -> None:
        # The entry exists: claimed, or found.
        os.symlink(f"/proc/{self.pid}/fd/{fd}", self.link(key, fd, inode))

    def holds(self, key: str, fd: int, inode: int) -> bool:
        return os.path.lexists(self.link(key, fd, inode))

    def remove_name(self, key: str, own: list[_Holding]) -> bool:
        """Removes the name ``key``: its holders' links (``own``: this process's, which need
        no look at the directory when no other process holds the segment), then its entry."""
        entry = self.entry(key)
        for holding in own:
            _remove(self.link(key, holding.fd, holding.inode))
        try:
            os.rmdir(entry)
            return True
        except FileNotFoundError:
            return False
        except OSError:
            pass  # other holders' links are left
        try:
            links = os.listdir(entry)
        except FileNotFoundError:
            return False
        for link in links:
            _remove(f"{entry}/{link}")
        _remove_directory(entry)
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_directory(path: str) -> None:
    try:
        os.rmdir(path)
    except (FileNotFoundError, OSError):
        pass  # not empty: another holder is left


class _Holding:
    """This process's hold on one segment: one registered descriptor, however many
    ``SharedMemory`` objects of the process use it; kept until the segment is unlinked or the
    process exits."""

    __slots__ = ("fd", "inode", "key", "users")

    #: Guards every holding's ``users``: objects are closed without the registry's lock.
    _users_lock = _thread.allocate_lock()

    def __init__(self, key: str, fd: int, inode: int) -> None:
        self.key, self.fd, self.inode = key, fd, inode
        self.users = 0

    def count_user(self, change: int) -> None:
        with self._users_lock:
            self.users += change


# A thread of the parent may have held it at the fork.
os.register_at_fork(after_in_child=_Holding._users_lock._at_fork_reinit)


class _Holdings:
    """The segments this process holds, by (name, inode). A forked child inherits the
    descriptors but is no registered holder: it starts with an empty table."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.by_segment: dict[tuple[str, int], _Holding] = {}

    @classmethod
    def of_this_process(cls) -> _Holdings:
        global _holdings
        if _holdings.pid != os.getpid():
            _holdings = cls()
        return _holdings

    def take(self, registry: _Registry, key: str, fd: int, inode: int) -> _Holding:
        """The holding for a descriptor just opened (closed if the process already holds the
        segment)."""
        holding = self.by_segment.get((key, inode))
        if holding is None:
            registry.add_holder(key, fd, inode)
            holding = self.by_segment[key, inode] = _Holding(key, fd, inode)
        else:
            os.close(fd)
        holding.count_user(+1)
        return holding

    def registered(self, registry: _Registry, key: str) -> _Holding | None:
        """This process's holding of the segment now named ``key``, if it has one (its link in
        the name's entry shows that the name was not unlinked and taken again since)."""
        for holding in self.by_segment.values():
            if holding.key == key and registry.holds(key, holding.fd, holding.inode):
                return holding
        return None

    def drop(self, holding: _Holding) -> None:
        self.by_segment.pop((holding.key, holding.inode), None)
        os.close(holding.fd)

    def forget_unlinked(self, registry: _Registry) -> None:
        """Lets go of the segments nothing in this process uses whose name another process
        unlinked, so that their memory is not kept until this process exits."""
        for holding in list(self.by_segment.values()):
            if holding.users == 0 and not registry.holds(holding.key, holding.fd, holding.inode):
                self.drop(holding)


_holdings = _Holdings()
#: Every SharedMemory of the process not closed yet, for :func:`forget_all`.
_open_segments: weakref.WeakSet[SharedMemory] = weakref.WeakSet()


def forget_all() -> None:
    """In a copy of the process that must not keep the segments alive (the fork server, which
    lives as long as the program): lets go of every segment's mappings and descriptors,
    leaving the registry as it is (its links name the original process). A mapping whose
    buffer a live object still exports (a numpy array on ``buf``) cannot be unmapped and
    stays."""
    for segment in list(_open_segments):
        try:
            segment.close()
        except BufferError:
            pass
    for holding in list(_holdings.by_segment.values()):
        os.close(holding.fd)
    _holdings.by_segment.clear()


def _key(name: str) -> str:
    """The registry's key for a name as ``_name`` holds it (with its leading slash)."""
    key = name[1:] if name.startswith("/") else name
    if "\0" in key:
        raise ValueError("embedded null character")
    if not key or "/" in key or key in (".", ".."):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), name)
    if len(key.encode()) > 255:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), name)
    return key


def _new_segment(key: str, size: int) -> int:
    name = (MEMFD_PREFIX + key).encode()[:_MEMFD_NAME_MAX].decode(errors="ignore")
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _posix_exists(name: str) -> bool:
    try:
        fd = _posixshmem.shm_open(name, os.O_RDONLY, mode=0o600)
    except OSError:
        return False
    os.close(fd)
    return True


class SharedMemory:
    """A block of memory shared by processes, found by its name: the standard library's
    ``multiprocessing.shared_memory.SharedMemory``, on memory the kernel frees when the last
    process using it closes it or exits (see the module's documentation).

    ``SharedMemory(name=None, create=False, size=0, *, track=True)``: with ``create=True``, a
    new block of ``size`` bytes (``FileExistsError`` if ``name`` is taken; a random name if
    ``name`` is None); otherwise the block named ``name`` (``FileNotFoundError`` if there is
    none; ``size`` is then ignored). ``track`` is accepted for the standard library's
    signature; there is no resource tracker to tell.
    """

    _name: str | None = None
    _fd = -1
    _mmap: mmap.mmap | None = None
    _buf: memoryview | None = None
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True
    _track = True
    _holding: _Holding | None = None

    def __init__(
        self, name: str | None = None, create: bool = False, size: int = 0, *, track: bool = True
    ) -> None:
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            self._flags = _O_CREX | os.O_RDWR
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
        if name is None and not self._flags & os.O_EXCL:
            raise ValueError("'name' can only be None if create=True")
        self._track = track
        if name is not None:
            name = "/" + name if self._prepend_leading_slash else name
        creating, may_create = self._flags & _O_CREX == _O_CREX, bool(self._flags & os.O_CREAT)
        while True:
            self._name = _standard._make_filename() if name is None else name
            key = _key(self._name)
            try:
                if creating:
                    self._create(key, size, drawn=name is None)
                else:
                    self._attach(key, size if may_create else 0)
            except FileExistsError:
                if name is None:
                    continue  # a random name already taken: draw another, as the stdlib does
                raise
            break
        self._size = os.fstat(self._fd).st_size
        self._mmap = mmap.mmap(self._fd, self._size)
        self._buf = memoryview(self._mmap)
        _open_segments.add(self)

    def _create(self, key: str, size: int, drawn: bool = False) -> None:
        holdings = _Holdings.of_this_process()
        with _Registry.locked() as registry:
            holdings.forget_unlinked(registry)
            # A drawn name is checked against treadle's registry only: that a POSIX segment
            # has the same random name is as unlikely as two draws alike, and would only hide
            # it from attaching by name.
            if (not drawn and _posix_exists(self._name)) or not registry.claim(key):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), self._name)
            try:
                fd = _new_segment(key, size)
                try:
                    self._hold(holdings.take(registry, key, fd, os.fstat(fd).st_ino))
                except BaseException:
                    os.close(fd)
                    raise
            except BaseException:
                _remove_directory(registry.entry(key))
                raise

    def _attach(self, key: str, size_if_missing: int) -> None:
        holdings = _Holdings.of_this_process()
        with _Registry.locked() as registry:
            holdings.forget_unlinked(registry)
            held = holdings.registered(registry, key)
            if held is not None:  # this process has it: no need to look for another holder
                held.count_user(+1)
                self._hold(held)
                return
            found = registry.open(key)
            if found is not None:
                fd, inode = found
                self._hold(holdings.take(registry, key, fd, inode))
                return
        try:
            # Not treadle's: a segment the standard library (or any POSIX program) made.
            self._fd = _posixshmem.shm_open(self._name, os.O_RDWR, mode=self._mode)
        except FileNotFoundError:
            if not size_if_missing:
                raise FileNotFoundError(
                    errno.ENOENT, os.strerror(errno.ENOENT), self._name
                ) from None
            self._create(key, size_if_missing)

    def _hold(self, holding: _Holding) -> None:
        self._holding = holding
        self._fd = holding.fd

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __reduce__(self) -> tuple[type[SharedMemory], tuple[str, bool, int]]:
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self) -> memoryview | None:
        "A memoryview of contents of the shared memory block."
        return self._buf

    @property
    def name(self) -> str | None:
        "Unique name that identifies the shared memory block."
        reported_name = self._name
        if self._prepend_leading_slash and reported_name and reported_name.startswith("/"):
            reported_name = reported_name[1:]
        return reported_name

    @property
    def size(self) -> int:
        "Size in bytes."
        return self._size

    def close(self) -> None:
        """Closes access to the shared memory from this instance but does not destroy the
        shared memory block: this process stays one of its holders until it is unlinked or
        the process exits."""
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        if _open_segments is not None:  # None once the interpreter is tearing modules down
            _open_segments.discard(self)
        holding, self._holding = self._holding, None
        if holding is not None:
            holding.count_user(-1)
        elif self._fd >= 0:
            os.close(self._fd)  # a POSIX segment's descriptor
        self._fd = -1

    def unlink(self) -> None:
        """Removes the block's name, in every process: attaching by it raises
        ``FileNotFoundError`` from then on. The memory is freed once every process that has it
        closes it or exits. Unlinking a name twice raises ``FileNotFoundError``."""
        if not self._name:
            return
        key = _key(self._name)
        holdings = _Holdings.of_this_process()
        with _Registry.locked() as registry:
            own = [holding for holding in holdings.by_segment.values() if holding.key == key]
            removed = registry.remove_name(key, own)
            for holding in own:
                holdings.drop(holding)
        if not removed:
            # Not treadle's, or already unlinked: as shm_unlink says.
            _posixshmem.shm_unlink(self._name)


def _standard_list_init() -> types.FunctionType:
    """The standard library's ``ShareableList.__init__``, making its blocks with treadle's
    ``SharedMemory``: the same code (so the same formats, encodings and limits as the running
    Python's), looking ``SharedMemory`` up in a namespace where it is treadle's."""
    init = _standard.ShareableList.__init__
    namespace = dict(vars(_standard), SharedMemory=SharedMemory)
    return types.FunctionType(
        init.__code__, namespace, init.__name__, init.__defaults__, init.__closure__
    )


class ShareableList(_standard.ShareableList):
    """The standard library's ``ShareableList`` (its types, ``format``, ``count``, ``index``,
    ``shm`` and rules), stored in treadle's ``SharedMemory``."""

    __init__ = _standard_list_init()
    __init__.__kwdefaults__ = _standard.ShareableList.__init__.__kwdefaults__
    __init__.__qualname__ = "ShareableList.__init__"
