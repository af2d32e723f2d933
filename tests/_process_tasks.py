"""Tasks for the process-pool tests. Standard library only, so that a worker imports this
module quickly."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def append_line(path: str, text: str) -> None:
    with open(path, "a") as file:
        file.write(text + "\n")


def announce_then_sleep(path: str, seconds: float) -> None:
    """Writes the worker's pid to ``path``, then sleeps: the test knows whom to kill."""
    tmp = Path(path + ".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.rename(path)
    time.sleep(seconds)


def fail(message: str) -> None:
    raise ValueError(message)


def fail_on(value: int, bad: int = 3) -> int:
    """``value``, or ``ValueError`` for ``bad``."""
    if value == bad:
        raise ValueError(value)
    return value


def exit_with(code: int) -> None:
    os._exit(code)


def unpicklable_result() -> object:
    return Holder(threading.Lock())


def refuse_to_load(message: str) -> object:
    raise ValueError(message)


class Unloadable:
    """Pickles in a worker; unpickling it (in the parent) raises ValueError."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (refuse_to_load, ("the value cannot be loaded here",))


def unloadable_result() -> object:
    return Unloadable()


def length(data: object) -> int:
    return len(data)  # type: ignore[arg-type]


def same(value: object) -> object:
    return value


def make_bytes(size: int) -> bytes:
    return b"x" * size


_initialized: list[object] = []


def remember(value: object) -> None:
    _initialized.append(value)


def remembered() -> list[object]:
    return list(_initialized)


class Holder:
    def __init__(self, inner: object) -> None:
        self.inner = inner


def has_module(name: str) -> bool:
    import sys

    return name in sys.modules


def exit_with_module(name: str) -> None:
    """Exits with 0 if this process has imported ``name``, else 3."""
    import sys

    os._exit(0 if name in sys.modules else 3)


def parent_pid() -> int:
    return os.getppid()


def has_exited(pid: int) -> bool:
    """Whether process ``pid`` has finished exiting (a zombie, or gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _children_by_state(parent: int) -> list[tuple[int, str]]:
    """The pids of the children of process ``parent``, with their states."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append((int(entry), fields[0]))
    return found


def zombies_of(parent: int) -> list[int]:
    """The pids of the children of process ``parent`` that exited and were not reaped."""
    return [pid for pid, state in _children_by_state(parent) if state == "Z"]


def children(parent: int) -> list[int]:
    """The pids of the live children of process ``parent``."""
    return [pid for pid, state in _children_by_state(parent) if state not in ("Z", "X")]


class ExitWhenPickled:
    """A value whose pickling (in the worker, as a result) calls ``sys.exit``."""

    def __reduce__(self):
        raise SystemExit(7)


def exit_when_result_pickled() -> ExitWhenPickled:
    return ExitWhenPickled()


class Item:
    """Something to hold a weak reference to."""

    def method(self) -> int:
        return 1


def make_item(_: object) -> Item:
    return Item()


def process_view() -> dict[str, object]:
    """What a worker sees of its process: working directory, the file ``data.txt`` there, an
    environment variable, umask, the open-files limit, its credentials and capabilities."""
    status = _status()
    try:
        with open("data.txt") as data:
            text = data.read()
    except OSError as error:
        text = f"error: {error}"
    return {
        "cwd": os.getcwd(),
        "data": text,
        "setting": os.environ.get("TREADLE_TEST_SETTING"),
        "removed": os.environ.get("TREADLE_TEST_REMOVED"),
        "umask": int(status["Umask"], 8),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "uids": list(os.getresuid()),
        "gids": list(os.getresgid()),
        "groups": sorted(os.getgroups()),
        "cap_eff": status["CapEff"],
        "cap_prm": status["CapPrm"],
        "no_new_privs": status.get("NoNewPrivs"),
        "ppid": os.getppid(),
    }


def _folder_with_data(text: str) -> str:
    import tempfile

    folder = tempfile.mkdtemp()
    Path(folder, "data.txt").write_text(text)
    return folder


def set_up_parent() -> str:
    """Puts this process in its first state, for :func:`process_view` to tell apart: a working
    directory whose ``data.txt`` says "A", ``TREADLE_TEST_SETTING=A``, ``TREADLE_TEST_REMOVED``
    set, umask 022. Returns the folder :func:`change_parent` moves to (its ``data.txt``: "B")."""
    os.chdir(_folder_with_data("A"))
    os.environ["TREADLE_TEST_SETTING"] = "A"
    os.environ["TREADLE_TEST_REMOVED"] = "present"
    os.umask(0o022)
    return _folder_with_data("B")


def change_parent(folder: str) -> None:
    """Puts this process in its second state: working directory ``folder``,
    ``TREADLE_TEST_SETTING=B``, ``TREADLE_TEST_REMOVED`` unset, umask 077, an open-files soft
    limit 7 lower."""
    os.chdir(folder)
    os.environ["TREADLE_TEST_SETTING"] = "B"
    del os.environ["TREADLE_TEST_REMOVED"]
    os.umask(0o077)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 7, hard))


def child_sends(target: object, *args: object) -> object:
    """What a ``treadle.multiprocessing.Process`` child (of treadle's default start method) that
    runs ``target(queue, *args)`` puts on ``queue``; the child must exit with 0."""
    import treadle.multiprocessing as mp

    queue = mp.SimpleQueue()
    child = mp.Process(target=target, args=(queue, *args))
    child.start()
    try:
        return queue.get()  # AbandonedQueueError, not a hang, if the child died first
    finally:
        child.join(30)
        assert child.exitcode == 0, child.exitcode


def send_process_view(queue: object) -> None:
    """A ``Process`` target: puts :func:`process_view` on ``queue``."""
    queue.put(process_view())  # type: ignore[attr-defined]


def send_can_write_in(queue: object, folder: str) -> None:
    """A ``Process`` target: puts :func:`can_write_in` on ``queue``."""
    queue.put(can_write_in(folder))  # type: ignore[attr-defined]


def _status() -> dict[str, str]:
    with open("/proc/self/status") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def can_write_in(folder: str) -> bool:
    try:
        with open(os.path.join(folder, f"written-by-{os.getpid()}"), "w") as out:
            out.write("x")
    except PermissionError:
        return False
    return True


def spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def lengths(buffers: list[object]) -> list[int]:
    return [memoryview(b).nbytes for b in buffers]  # type: ignore[arg-type]


def make_buffers(count: int, size: int) -> list[object]:
    """``count`` distinct buffers of ``size`` bytes, each pickled out of band."""
    import pickle

    return [pickle.PickleBuffer(bytes([i % 256]) * size) for i in range(count)]


def wait_for_file(path: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def wait_while_exists(path: str) -> None:
    """An initializer: holds a new worker back (it says it is ready only after) while ``path``
    exists, for at most 30 s."""
    deadline = time.monotonic() + 30
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.001)


class SlowToUnpickle:
    """A result whose unpickling, on the pool's supervisor thread, removes ``release`` and then
    keeps that thread from the pool's sockets until ``until`` exists, and 0.3 s more."""

    def __init__(self, release: str, until: str) -> None:
        self.release = release
        self.until = until

    def __reduce__(self):
        return (_unpickle_slowly, (self.release, self.until))


def _unpickle_slowly(release: str, until: str) -> None:
    os.remove(release)
    wait_for_file(until, 30)
    time.sleep(0.3)


def announce_then_return_slow_to_unpickle(
    path: str, go: str, release: str, until: str
) -> SlowToUnpickle:
    """Writes the worker's pid to ``path``, waits for ``go`` to exist, and returns a
    :class:`SlowToUnpickle`."""
    announce_then_sleep(path, 0)
    wait_for_file(go, 30)
    return SlowToUnpickle(release, until)


def set_item(mapping: object, key: object, value: object) -> None:
    """Stores ``mapping[key] = value``: a manager's dict proxy, passed as an argument."""
    mapping[key] = value  # type: ignore[index]


def asleep(pid: int) -> bool:
    """Whether process ``pid`` sleeps in ``time.sleep``'s system call. A signal that comes
    between the interpreter's last look at its signal flags and that call does not interrupt it
    (CPython's race, in every process): a test that interrupts a sleeper waits for this first."""
    try:
        with open(f"/proc/{pid}/wchan") as wchan:
            return wchan.read() == "hrtimer_nanosleep"
    except OSError:
        return False


def who_am_i(_: object = None) -> tuple[str, bool]:
    """This process's ``multiprocessing.current_process()`` name and daemon flag."""
    import multiprocessing

    current = multiprocessing.current_process()
    return current.name, current.daemon


def make_a_pool() -> str:
    """Makes a process pool here and says what happened."""
    import treadle.multiprocessing as mp

    try:
        mp.Pool(1).terminate()
    except AssertionError as error:
        return f"AssertionError: {error}"
    return "made"


def thread_pool_map() -> list[int]:
    """A thread pool here maps ``abs``."""
    from treadle.multiprocessing.pool import ThreadPool

    with ThreadPool(2) as pool:
        return pool.map(abs, [-1, -2])


#: What the code under test could name in /dev/shm: treadle's registry, the standard library's
#: segments, semaphores and heap arenas. Other programs' entries (a concurrent joblib's
#: memmapping folders) come and go as they please.
_OURS_IN_DEV_SHM = ("treadle", "psm_", "wnsm_", "sem.mp-", "mp-", "pym-")


def dev_shm() -> set[str]:
    """The entries of /dev/shm the code under test could have made."""
    if not os.path.isdir("/dev/shm"):
        return set()
    return {name for name in os.listdir("/dev/shm") if name.startswith(_OURS_IN_DEV_SHM)}


class Marked:
    """A value that a pool's reducers (``tests/test_mp_pool.py``) change on its way."""

    def __init__(self, label: str) -> None:
        self.label = label


class Arrived(Marked):
    """What a ``Marked`` argument becomes in a worker, through a forward reducer."""


class Returned(Marked):
    """What a ``Marked`` result becomes in the parent, through a backward reducer."""


def reduce_forward(value: Marked) -> tuple[object, tuple[str]]:
    return (Arrived, (value.label,))


def reduce_backward(value: Marked) -> tuple[object, tuple[str]]:
    return (Returned, (value.label,))


def describe(value: object) -> str:
    return f"{type(value).__name__} {getattr(value, 'label', value)}"


def make_marked(label: str) -> Marked:
    return Marked(label)


def private_dirty_after_collecting(_: object = None) -> int:
    """KiB of this process's memory written since its fork (Private_Dirty), after a full
    collection of its objects."""
    import gc

    gc.collect()
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    raise AssertionError("no Private_Dirty in smaps_rollup")
