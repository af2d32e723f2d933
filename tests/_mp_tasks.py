"""Targets for the multiprocessing tests' child processes (importable by a spawned child), and
the parent's side: starting and joining them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

from _process_tasks import dev_shm  # noqa: F401 (for the multiprocessing tests)

import treadle.multiprocessing as treadle_multiprocessing
from treadle.multiprocessing import synchronize as treadle_synchronize

#: Generous bound for things that happen at once (a loaded CI machine is slow).
WAIT = 30


def start(target, *args, method="fork"):
    """A daemon child running ``target(*args)``, started with ``multiprocessing``'s context
    ``method``."""
    process = multiprocessing.get_context(method).Process(target=target, args=args, daemon=True)
    process.start()
    return process


def joined(process) -> bool:
    """Whether ``process`` ended within ``WAIT`` seconds."""
    process.join(WAIT)
    return not process.is_alive()


def run_fresh(code: str) -> list[str]:
    """Runs ``code`` in a fresh interpreter (whose only thread is its main thread, which
    judgments of "nobody else can write" depend on) with this folder on its path; its output,
    as words. Fails on a non-zero exit."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def put_items(q, items) -> None:
    for item in items:
        q.put(item)


def put_many_then_exit(q, count: int, size: int) -> None:
    """Puts ``count`` messages of ``size`` bytes and returns: the process exits with them
    unread in the queue."""
    data = b"x" * size
    for _ in range(count):
        q.put(data)


def put_numbered_until_killed(q, size: int) -> None:
    """Puts messages of ``size`` bytes, message ``i`` filled with byte ``i % 256``, for ever."""
    i = 0
    while True:
        q.put(bytes([i % 256]) * size)
        i += 1


def hold_then_sleep(q, ready) -> None:
    """Holds ``q`` (for writing) and says so, then sleeps until killed."""
    ready.put(os.getpid())
    time.sleep(600)


def echo(conn) -> None:
    """Sends back what it receives until it receives None."""
    for obj in iter(conn.recv, None):
        conn.send(obj)


def echo_bytes(conn) -> None:
    for message in iter(conn.recv_bytes, b""):
        conn.send_bytes(message)


def recv_handle_and_send(conn) -> None:
    """Receives a connection over ``conn`` and sends a greeting over it."""
    other = conn.recv()
    other.send("hello from the child")
    other.close()
    conn.send("done")


def task_worker(q) -> None:
    for _ in iter(q.get, None):
        time.sleep(0.01)
        q.task_done()
    q.task_done()


def close_and_linger(conn, seconds: float) -> None:
    conn.close()
    time.sleep(seconds)


def send_then_kill_self(conn) -> None:
    conn.send("last words")
    os.kill(os.getpid(), signal.SIGKILL)


def report(q, *args, **kwargs) -> None:
    """Puts what the child sees of itself and of its parent."""
    import multiprocessing

    current = multiprocessing.current_process()
    parent = multiprocessing.parent_process()
    q.put(
        {
            "args": args,
            "kwargs": kwargs,
            "pid": os.getpid(),
            "name": current.name,
            "authkey": bytes(current.authkey),
            "parent": parent.pid if parent is not None else None,
            "cwd": os.getcwd(),
        }
    )


def exit_with(code) -> None:
    raise SystemExit(code)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def put_later(q, seconds: float, item) -> None:
    time.sleep(seconds)
    q.put(item)


def send_later(conn, seconds: float, item) -> None:
    time.sleep(seconds)
    conn.send(item)


def flag_value(q) -> None:
    q.put(FLAG)


#: Set by a test in the parent after its fork server started: a forked child sees the change.
FLAG = "as imported"


class ReportingProcess(treadle_multiprocessing.Process):
    """A subclass of treadle's Process with its own ``run``."""

    def __init__(self, q) -> None:
        super().__init__()
        self.q = q

    def run(self) -> None:
        self.q.put(("ran", multiprocessing.current_process().name))


def echo_on_one_end(ours, theirs) -> None:
    """Given both ends of a pipe: closes its parent's end and echoes on its own."""
    ours.close()
    for obj in iter(theirs.recv, None):
        theirs.send(obj)


def shared_memory_round_trip(segment, replies) -> None:
    """Attaches to ``segment`` (a name, or a ``SharedMemory`` sent to the child), sends what
    the parent wrote there, writes ``b"child"`` after it and says so."""
    from treadle.multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(segment) if isinstance(segment, str) else segment
    replies.put(bytes(shm.buf[:6]))
    shm.buf[6:11] = b"child"
    shm.close()
    replies.put("written")


def shareable_list_append_sum(items) -> None:
    """Sets the last item of a ``ShareableList`` to the sum of the others."""
    items[-1] = sum(items[i] for i in range(len(items) - 1))
    items.shm.close()


def memfd_holders(inode: int) -> list[str]:
    """Processes that hold or map the memfd with this inode."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.stat(f"/proc/{pid}/fd/{fd}").st_ino == inode and "memfd" in os.readlink(
                        f"/proc/{pid}/fd/{fd}"
                    ):
                        found.append(f"{pid} fd {fd}")
                except OSError:
                    continue
            with open(f"/proc/{pid}/maps") as maps:
                if any(f" {inode} " in line and "memfd:" in line for line in maps):
                    found.append(f"{pid} maps")
        except OSError:
            continue
    return found


def hold_lock_until_killed(lock, ready) -> None:
    """Takes ``lock``, says so, and sleeps until killed (holding it)."""
    lock.acquire()
    ready.set()
    time.sleep(600)


def increment_under_lock(value, times: int) -> None:
    for _ in range(times):
        with value.get_lock():
            value.value += 1


def increment_atomically(value, times: int) -> None:
    for _ in range(times):
        value.fetch_add(1)


def release_lock(lock) -> None:
    lock.release()


class TaggedLock(treadle_synchronize.Lock):
    """A user's lock class, with an ``__init__`` of its own."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag


def release_lock_of_class(lock, class_name: str) -> None:
    """Releases ``lock``; exit status 2 if it did not arrive as a ``class_name``."""
    lock.release()
    sys.exit(0 if type(lock).__qualname__ == class_name else 2)


def wait_on_barrier(barrier, times: int) -> None:
    for _ in range(times):
        barrier.wait(WAIT)


def set_event_later(event, seconds: float) -> None:
    time.sleep(seconds)
    event.set()


def notify_under_condition(condition, value) -> None:
    with condition:
        value.value = 1
        condition.notify_all()


_initialized = None


def keep_initializer_argument(obj) -> None:
    global _initialized
    _initialized = obj


def increment_initializer_value(_) -> int:
    return _initialized.fetch_add(1)


def interrupted_by_ctrl_c(setup: str, wait: str) -> bool:
    """Whether, in a fresh interpreter, Ctrl-C (SIGINT) 0.3 s after ``setup`` ran interrupts
    the blocking call ``wait`` with ``KeyboardInterrupt`` within 10 seconds."""
    code = textwrap.dedent(setup) + textwrap.dedent(
        f"""
        import os, signal, threading, time
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        began = time.monotonic()
        try:
            {wait}
        except KeyboardInterrupt:
            print("interrupted", time.monotonic() - began < 10)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT
    )
    assert done.stdout.split() in (["interrupted", "True"], []), done.stderr
    return done.stdout.split() == ["interrupted", "True"]


def take_in_order(first, second, ready, go, results) -> None:
    """Takes ``first``, says so, waits for the go, then takes ``second``; puts what happened
    (``("acquired", "")`` or the error's class name and message), having let go of both."""
    first.acquire()
    ready.set()
    go.wait(WAIT)
    try:
        second.acquire()
    except Exception as error:
        first.release()
        results.put((type(error).__name__, str(error)))
        return
    second.release()
    first.release()
    results.put(("acquired", ""))


def heap_report(values, results) -> None:
    """Puts the sum of ``values`` (raw shared integers) and how many descriptors their memory
    takes in this process."""
    descriptors = {value._wrapper._fd for value in values}
    results.put((sum(value.value for value in values), len(descriptors)))


def locks_report(locks, results) -> None:
    """Puts which of ``locks`` this process could take, and how many descriptors they take."""
    taken = [lock.acquire(False) for lock in locks]
    results.put((taken, len({lock._semlock.fd() for lock in locks})))


def make_and_hold_lock(made, done) -> None:
    """Makes a lock, takes it, says so on ``made`` and holds it until ``done`` is set."""
    lock = treadle_multiprocessing.Lock()
    lock.acquire()
    made.set()
    done.wait(WAIT)
