"""treadle.multiprocessing's processes: the standard library's Process, started by treadle's
fork server (or a fresh interpreter when there is none), by spawn or by fork, with its
semantics; children die with their parent, Ctrl-C stops the tree, join is interruptible and
shows in the wait graph, and the channels a child is given count as its own from its start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import _mp_tasks as tasks
import _process_tasks as process_tasks
import pytest
from _mp_tasks import WAIT, run_fresh

import treadle
import treadle.multiprocessing as mp
from treadle import _treadle

METHODS = ["forkserver", "spawn", "fork"]


def joined(process) -> bool:
    process.join(WAIT)
    return not process.is_alive()


@pytest.mark.parametrize("method", METHODS)
def test_a_process_runs_its_target_with_its_arguments_and_reports_its_exit(method):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=tasks.report, args=(q, 1, "two"), kwargs={"k": 3}, name="Named")
    assert (p.is_alive(), p.exitcode, p.pid) == (False, None, None)
    with pytest.raises(ValueError):
        p.sentinel  # noqa: B018
    p.start()
    seen = q.get(timeout=WAIT)
    assert joined(p)
    assert p.exitcode == 0
    assert seen["args"] == (1, "two") and seen["kwargs"] == {"k": 3}
    assert seen["pid"] == p.pid != os.getpid()
    assert seen["name"] == "Named"
    assert seen["authkey"] == bytes(mp.current_process().authkey)
    assert seen["parent"] == os.getpid()
    assert seen["cwd"] == os.getcwd()


def test_the_default_start_method_is_the_fork_server():
    assert mp.get_start_method() == "forkserver"
    assert mp.get_all_start_methods()[0] == "forkserver"
    assert isinstance(mp.get_context(), mp.context.TreadleContext)


@pytest.mark.parametrize("method", METHODS)
def test_exit_codes_are_the_standard_librarys(method):
    ctx = mp.get_context(method)
    for code, expected in ((None, 0), (0, 0), (3, 3), ("message", 1), (True, 1)):
        p = ctx.Process(target=tasks.exit_with, args=(code,))
        p.start()
        assert joined(p)
        assert p.exitcode == expected


@pytest.mark.parametrize("method", METHODS)
def test_terminate_and_kill_end_a_process_with_their_signal(method):
    ctx = mp.get_context(method)
    for stop, signum in (
        (ctx.Process.terminate, signal.SIGTERM),
        (ctx.Process.kill, signal.SIGKILL),
    ):
        p = ctx.Process(target=tasks.sleep, args=(60,))
        p.start()
        assert p.is_alive()
        assert p in mp.active_children()
        stop(p)
        assert joined(p)
        assert p.exitcode == -signum
        assert p not in mp.active_children()


def test_a_subclass_runs_its_own_run():
    q = mp.Queue()
    p = tasks.ReportingProcess(q)
    p.start()
    assert q.get(timeout=WAIT) == ("ran", p.name)
    assert joined(p) and p.exitcode == 0


def test_the_sentinel_is_a_pidfd_that_polls_readable_once_the_process_ended():
    # In a fresh interpreter: a process that had threads before it first needed the fork
    # server has none, and starts fresh interpreters (whose sentinel is a pipe).
    assert run_fresh(
        f"""
        import os
        import treadle.multiprocessing as mp
        from _mp_tasks import sleep
        p = mp.Process(target=sleep, args=(0.2,))
        p.start()
        print(os.readlink(f"/proc/self/fd/{{p.sentinel}}"))
        print(mp.connection.wait([p.sentinel], timeout=0) == [])
        print(mp.connection.wait([p.sentinel], timeout={WAIT}) == [p.sentinel])
        p.join()
        print(p.exitcode)
        """
    ) == ["anon_inode:[pidfd]", "True", "True", "0"]


def test_join_with_a_timeout_returns_while_the_process_runs():
    p = mp.Process(target=tasks.sleep, args=(60,))
    p.start()
    began = time.monotonic()
    p.join(0.1)
    assert time.monotonic() - began >= 0.09
    assert p.is_alive()
    p.kill()
    assert joined(p)


def test_close_frees_a_finished_process_and_refuses_a_running_one():
    p = mp.Process(target=tasks.sleep, args=(60,))
    p.start()
    with pytest.raises(ValueError):
        p.close()
    p.kill()
    assert joined(p)
    p.close()
    with pytest.raises(ValueError):
        p.is_alive()


@pytest.mark.parametrize("method", METHODS)
def test_a_queue_and_a_pipe_given_to_a_child_count_as_its_own_from_its_start(method):
    # A child slow to start must not leave its parent's get() or recv() judging that nobody
    # can write (a fresh interpreter: this one's threads would change the judgment).
    assert run_fresh(
        f"""
        import treadle.multiprocessing as mp
        from _mp_tasks import put_later, send_later
        ctx = mp.get_context({method!r})
        q = ctx.Queue()
        ours, theirs = ctx.Pipe()
        first = ctx.Process(target=put_later, args=(q, 1.5, "late"))
        second = ctx.Process(target=send_later, args=(theirs, 1.5, "later"))
        first.start()
        second.start()
        theirs.close()
        print(q.get(), ours.recv())
        first.join()
        second.join()
        """
    ) == ["late", "later"]


def test_without_a_fork_server_children_are_fresh_interpreters():
    # A process that had threads when it first needed a fork server never forks one.
    assert run_fresh(
        """
        import threading, time
        import treadle.multiprocessing as mp
        from _mp_tasks import report
        threading.Thread(target=time.sleep, args=(3,), daemon=True).start()
        q = mp.Queue()
        p = mp.Process(target=report, args=(q, 1))
        p.start()
        print(type(p._popen).__name__, q.get()["args"])
        p.join()
        print(p.exitcode)
        """
    ) == ["SpawnPopen", "(1,)", "0"]


def test_an_explicit_fork_forks_the_caller_as_it_is_now():
    tasks.FLAG = "changed"
    try:
        q = mp.Queue()
        p = mp.get_context("fork").Process(target=tasks.flag_value, args=(q,))
        p.start()
        assert q.get(timeout=WAIT) == "changed"
        assert joined(p)
    finally:
        tasks.FLAG = "as imported"


def test_join_is_a_wait_the_wait_graph_lists():
    p = mp.Process(target=tasks.sleep, args=(60,))
    p.start()
    joiner = threading.Thread(target=p.join)
    joiner.start()
    deadline = time.monotonic() + WAIT
    while not any(kind == "join" for _, kind, *_ in _treadle._waits()):
        assert time.monotonic() < deadline, "the join is not in the wait graph"
        time.sleep(0.01)
    assert "join" in treadle.dump_waits()
    p.kill()
    joiner.join(WAIT)
    assert not joiner.is_alive()


def test_ctrl_c_interrupts_a_join():
    assert run_fresh(
        """
        import os, signal, threading, time
        import treadle.multiprocessing as mp
        from _mp_tasks import sleep
        p = mp.Process(target=sleep, args=(60,))
        p.start()
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            p.join()
        except KeyboardInterrupt:
            print("interrupted", p.is_alive())
        p.kill()
        p.join()
        """
    ) == ["interrupted", "True"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _wait_gone(pids, seconds=WAIT) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


PARENT = """
import os, sys, time
import treadle.multiprocessing as mp
from treadle.multiprocessing import fork_server
from _mp_tasks import sleep
q = mp.Queue()
ring, _ = q._rings()
children = [mp.Process(target=sleep, args=(600,), kwargs={}) for _ in range(3)]
for child in children:
    child.start()
q.put("held")
print(os.fstat(ring.fds()[0]).st_ino, fork_server.get().pid, *[c.pid for c in children], flush=True)
time.sleep(600)
"""


def _start_parent(code: str) -> tuple[subprocess.Popen, list[int]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(tasks.__file__), *sys.path]))
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    with parent.stdout:
        line = parent.stdout.readline()
    assert line, "the parent did not start its children"
    return parent, [int(word) for word in line.split()]


def _end_group(parent: subprocess.Popen) -> None:
    """Whatever a test found, the parent's process group ends with it."""
    try:
        os.killpg(parent.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    parent.wait(WAIT)


def test_killing_the_parent_leaves_no_orphan_and_no_shared_memory():
    before = tasks.dev_shm()
    parent, (inode, server, *children) = _start_parent(PARENT)
    try:
        assert all(_alive(pid) for pid in (server, *children))
        assert tasks.memfd_holders(inode)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(WAIT)
        assert _wait_gone([server, *children]) == [], "orphans outlived their parent"
        assert tasks.memfd_holders(inode) == []
        assert tasks.dev_shm() == before
    finally:
        _end_group(parent)


def _wait_asleep(pids, seconds=WAIT) -> None:
    deadline = time.monotonic() + seconds
    for pid in pids:
        while not process_tasks.asleep(pid):
            assert time.monotonic() < deadline, f"process {pid} never went to sleep"
            time.sleep(0.01)


def test_ctrl_c_stops_the_whole_tree():
    parent, (_, server, *children) = _start_parent(PARENT)
    try:
        _wait_asleep([parent.pid, *children])
        os.killpg(parent.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        parent.wait(WAIT)
        assert parent.returncode != 0
        assert _wait_gone([server, *children]) == []
    finally:
        _end_group(parent)


@pytest.mark.parametrize("method", METHODS)
def test_a_child_given_both_ends_of_a_pipe_opens_each_ring_once(method):
    # One ring reached through two handles travels as one descriptor (spawn refuses the same
    # descriptor twice; opening it twice would close it twice).
    ctx = mp.get_context(method)
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=tasks.echo_on_one_end, args=(parent_end, child_end))
    p.start()
    parent_end.send("hello")
    assert parent_end.recv() == "hello"
    parent_end.send(None)
    assert joined(p) and p.exitcode == 0


def test_a_queue_passes_to_a_pools_initializer():
    # A Pool's workers are processes of the context: its initializer's arguments travel with
    # the worker's start, where a queue may go.
    q = mp.Queue()
    with mp.Pool(2, initializer=tasks.put_items, initargs=(q, ["ready"])) as pool:
        assert pool.apply(abs, (-3,)) == 3
        assert [q.get(timeout=WAIT), q.get(timeout=WAIT)] == ["ready", "ready"]


RESERVE = """
    import os, threading, multiprocessing
    import treadle
    treadle.patch()
    from treadle.multiprocessing import fork_server
    reserve = fork_server._reserve.pid
    THREADS
    p = multiprocessing.Process(target=os.getpid)
    p.start()
    p.join()
    print(type(p._popen).__name__, fork_server.get().pid == reserve)
"""


def test_a_reserve_fork_server_left_unused_exits_and_is_reaped():
    # A program that still has one thread at its first process gets a server forked then; the
    # reserve exits, and leaves no zombie behind.
    code = """
        import os, multiprocessing
        import treadle
        treadle.patch()
        from treadle.multiprocessing import fork_server
        reserve = fork_server._reserve.pid
        p = multiprocessing.Process(target=os.getpid)
        p.start()
        p.join()
        print(fork_server.get().pid != reserve, os.path.exists(f"/proc/{reserve}"))
    """
    assert run_fresh(code) == ["True", "False"]


@pytest.mark.parametrize(
    "threads, from_reserve",
    [
        ("threading.Thread(target=threading.Event().wait, daemon=True).start()", "True"),
        ("", "False"),
    ],
    ids=["threads-first", "one-thread"],
)
def test_patch_keeps_a_fork_server_in_reserve_for_a_program_that_starts_threads(
    threads, from_reserve
):
    # numpy's OpenBLAS starts threads at import: a program that imports it before its first
    # process would otherwise start fresh interpreters. One that still has one thread gets a
    # server forked then, with all it loaded since.
    assert run_fresh(RESERVE.replace("THREADS", threads)) == ["ForkServerPopen", from_reserve]
