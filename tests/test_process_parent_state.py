"""A process pool's workers, and ``treadle.multiprocessing.Process`` children, see their parent as
it is when they start, not as it was when the fork server was forked: working directory,
environment, umask, resource limits, and above all credentials (a worker or child never holds
more privilege than its parent has now, and its parent can always signal it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WAIT = 30  # seconds: every wait in these tests ends, a hang is a failure
TESTS = str(Path(__file__).parent)


def run_script(script: str, timeout: float = WAIT * 3) -> dict:
    """Runs ``script`` in a fresh interpreter (single-threaded, so its first pool forks a fork
    server) and returns the JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script).format(tests=TESTS)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


LATER_POOL = """
    import json, os, resource, signal, sys, time
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle

    second = tasks.set_up_parent()
    out = {{"parent": os.getpid()}}
    with treadle.ProcessPoolExecutor(1) as pool:  # the fork server is forked now
        out["first"] = pool.submit(tasks.process_view).result(30)
        # The parent changes; so does what a replacement worker of this pool sees.
        tasks.change_parent(second)
        victim = pool.worker_pids[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in pool.worker_pids or not pool.worker_pids:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        while True:
            try:
                out["replacement"] = pool.submit(tasks.process_view).result(30)
                break
            except treadle.WorkerCrashedError:
                assert time.monotonic() < deadline
    with treadle.ProcessPoolExecutor(1) as pool:
        out["later"] = pool.submit(tasks.process_view).result(30)
    out["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    out["second"] = second
    print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def later_pool() -> dict:
    return run_script(LATER_POOL)


def test_the_fork_server_is_what_the_workers_here_come_from(later_pool):
    # The cases below are about forked workers: their parent is the fork server.
    for view in ("first", "replacement", "later"):
        assert later_pool[view]["ppid"] != later_pool["parent"]


def test_a_later_worker_works_in_the_parents_current_directory(later_pool):
    assert later_pool["first"]["data"] == "A"
    for view in ("replacement", "later"):
        assert later_pool[view]["cwd"] == later_pool["second"]
        assert later_pool[view]["data"] == "B"


def test_a_later_worker_has_the_parents_current_environment(later_pool):
    assert later_pool["first"]["setting"] == "A"
    assert later_pool["first"]["removed"] == "present"
    for view in ("replacement", "later"):
        assert later_pool[view]["setting"] == "B"
        assert later_pool[view]["removed"] is None


def test_a_later_worker_has_the_parents_current_umask(later_pool):
    assert later_pool["first"]["umask"] == 0o022
    for view in ("replacement", "later"):
        assert later_pool[view]["umask"] == 0o077


def test_a_later_worker_has_the_parents_current_resource_limits(later_pool):
    assert later_pool["first"]["nofile"] != later_pool["nofile"]
    for view in ("replacement", "later"):
        assert later_pool[view]["nofile"] == later_pool["nofile"]


DROPPED_PRIVILEGE = """
    import json, os, signal, sys, tempfile, time
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle

    guarded = tempfile.mkdtemp()  # root's, mode 0700
    os.chdir("/")
    with treadle.ProcessPoolExecutor(1) as pool:  # the fork server is forked as root
        root_view = pool.submit(tasks.process_view).result(30)
        # The parent gives up root while this pool's worker still serves.
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        parent = tasks.process_view()
    out = {{"root_view": root_view, "parent": parent}}
    with treadle.ProcessPoolExecutor(1, task_timeout=1) as pool:
        out["later"] = pool.submit(tasks.process_view).result(30)
        out["later_writes"] = pool.submit(tasks.can_write_in, guarded).result(30)
        start = time.monotonic()
        try:
            pool.submit(tasks.spin, 60).result(30)
        except treadle.TaskTimeoutError:
            out["timed_out_in"] = time.monotonic() - start
        pool.submit(tasks.sleep, 60)
        time.sleep(0.2)
        start = time.monotonic()
        pool.kill_workers()
        out["killed_in"] = time.monotonic() - start
    print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give up privilege for real")
def test_a_worker_never_holds_more_privilege_than_its_parent_has_now():
    out = run_script(DROPPED_PRIVILEGE)
    assert out["root_view"]["uids"] == [0, 0, 0]
    parent = out["parent"]
    assert parent["uids"] == [65534] * 3 and parent["gids"] == [65534] * 3
    later = out["later"]
    # The worker is the parent's user, groups and capabilities, no more.
    assert later["uids"] == parent["uids"]
    assert later["gids"] == parent["gids"]
    assert later["groups"] == parent["groups"]
    assert later["cap_eff"] == parent["cap_eff"] == "0000000000000000"
    assert later["cap_prm"] == parent["cap_prm"]
    assert out["later_writes"] is False, "the worker wrote to root's folder"
    # And the parent can stop it: a time limit and kill_workers() work.
    assert out["timed_out_in"] < 10
    assert out["killed_in"] < 10


# -- treadle.multiprocessing.Process children, forked by the same server --------------------------

PROCESS_PRELUDE = """
    import json, os, resource, signal, sys, tempfile, time
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    from _process_tasks import child_sends
    import treadle.multiprocessing as mp
"""

LATER_PROCESS = """
    second = tasks.set_up_parent()
    out = {{"parent": os.getpid(), "method": mp.get_start_method()}}
    out["first"] = child_sends(tasks.send_process_view)  # the fork server is forked now
    # The parent changes; so does what its next child sees.
    tasks.change_parent(second)
    out["later"] = child_sends(tasks.send_process_view)
    out["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    out["second"] = second
    print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def later_process() -> dict:
    return run_script(PROCESS_PRELUDE + LATER_PROCESS)


def test_process_children_here_come_from_the_fork_server(later_process):
    assert later_process["method"] == "forkserver"
    for view in ("first", "later"):
        assert later_process[view]["ppid"] != later_process["parent"]


def test_a_later_process_works_in_the_parents_current_directory(later_process):
    assert later_process["first"]["data"] == "A"
    assert later_process["later"]["cwd"] == later_process["second"]
    assert later_process["later"]["data"] == "B"


def test_a_later_process_has_the_parents_current_environment(later_process):
    assert later_process["first"]["setting"] == "A"
    assert later_process["first"]["removed"] == "present"
    assert later_process["later"]["setting"] == "B"
    assert later_process["later"]["removed"] is None


def test_a_later_process_has_the_parents_current_umask(later_process):
    assert later_process["first"]["umask"] == 0o022
    assert later_process["later"]["umask"] == 0o077


def test_a_later_process_has_the_parents_current_resource_limits(later_process):
    assert later_process["first"]["nofile"] != later_process["nofile"]
    assert later_process["later"]["nofile"] == later_process["nofile"]


RESTRICTED_PROCESS = """
    import ctypes

    out = {{"parent": os.getpid()}}
    out["before"] = child_sends(tasks.send_process_view)  # the fork server is forked now
    PR_SET_NO_NEW_PRIVS = 38
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, ctypes.get_errno()
    out["after"] = child_sends(tasks.send_process_view)
    print(json.dumps(out))
"""


def test_a_process_the_server_cannot_restrict_as_its_parent_is_a_fresh_interpreter():
    # The fork server was forked before the parent took on no_new_privs: a child forked from
    # it would lack that restriction, so the server refuses, and the child is spawned instead
    # (a fresh interpreter inherits the parent as it is).
    out = run_script(PROCESS_PRELUDE + RESTRICTED_PROCESS)
    assert out["before"]["no_new_privs"] == "0"
    assert out["before"]["ppid"] != out["parent"]
    assert out["after"]["no_new_privs"] == "1"
    assert out["after"]["ppid"] == out["parent"]


DROPPED_PRIVILEGE_PROCESS = """
    guarded = tempfile.mkdtemp()  # root's, mode 0700
    os.chdir("/")
    out = {{"parent_pid": os.getpid()}}
    out["root_view"] = child_sends(tasks.send_process_view)  # the fork server is forked as root
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    out["parent"] = tasks.process_view()
    out["later"] = child_sends(tasks.send_process_view)
    out["later_writes"] = child_sends(tasks.send_can_write_in, guarded)
    # And the parent can stop it.
    sleeper = mp.Process(target=tasks.sleep, args=(60,))
    sleeper.start()
    start = time.monotonic()
    sleeper.terminate()
    sleeper.join(30)
    out["terminated_in"] = time.monotonic() - start
    out["exitcode"] = sleeper.exitcode
    print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give up privilege for real")
def test_a_process_never_holds_more_privilege_than_its_parent_has_now():
    out = run_script(PROCESS_PRELUDE + DROPPED_PRIVILEGE_PROCESS)
    assert out["root_view"]["uids"] == [0, 0, 0]
    parent = out["parent"]
    assert parent["uids"] == [65534] * 3 and parent["gids"] == [65534] * 3
    later = out["later"]
    assert later["ppid"] != out["parent_pid"], "not forked by the fork server"
    # The child is the parent's user, groups and capabilities, no more.
    assert later["uids"] == parent["uids"]
    assert later["gids"] == parent["gids"]
    assert later["groups"] == parent["groups"]
    assert later["cap_eff"] == parent["cap_eff"] == "0000000000000000"
    assert later["cap_prm"] == parent["cap_prm"]
    assert out["later_writes"] is False, "the child wrote to root's folder"
    assert out["exitcode"] == -signal.SIGTERM
    assert out["terminated_in"] < 10
