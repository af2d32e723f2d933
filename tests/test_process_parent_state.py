"""A process pool's workers see their parent as it is when they start, not as it was when the
fork server was forked: working directory, environment, umask, resource limits, and above all
credentials (a worker never holds more privilege than its parent has now, and its parent can
always signal it)."""

from __future__ import annotations

import json
import os
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
    import json, os, resource, signal, sys, tempfile, time
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle

    def in_dir(text):
        folder = tempfile.mkdtemp()
        with open(os.path.join(folder, "data.txt"), "w") as data:
            data.write(text)
        return folder

    first, second = in_dir("A"), in_dir("B")
    os.chdir(first)
    os.environ["TREADLE_TEST_SETTING"] = "A"
    os.environ["TREADLE_TEST_REMOVED"] = "present"
    os.umask(0o022)
    out = {{"parent": os.getpid()}}
    with treadle.ProcessPoolExecutor(1) as pool:  # the fork server is forked now
        out["first"] = pool.submit(tasks.process_view).result(30)
        # The parent changes; so does what a replacement worker of this pool sees.
        os.chdir(second)
        os.environ["TREADLE_TEST_SETTING"] = "B"
        del os.environ["TREADLE_TEST_REMOVED"]
        os.umask(0o077)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 7, hard))
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
