"""A process pool whose workers are forks of the caller, as the standard library's ``fork`` start
method makes them: when the caller asks for it (``mp_context=get_context("fork")``), even in a
process with threads, and when the pool's initializer or its arguments can only be inherited
(``multiprocessing``'s locks, made in the default ``fork`` context), as ``tqdm``'s
``process_map`` passes them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WAIT = 30  # seconds: every wait in these tests ends, a hang is a failure
TESTS = str(Path(__file__).parent)
FORK_IS_DEFAULT = sys.version_info < (3, 14)


def run_script(script: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script).format(tests=TESTS)],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


FORK_CONTEXT = """
    import json, multiprocessing, os, sys, threading
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle

    # Threads already running, as after `import numpy` (OpenBLAS starts its own).
    threading.Thread(target=threading.Event().wait, daemon=True).start()
    sys.modules["FAKE_MODULE_FOR_TEST"] = 1  # state that only a fork hands over
    fork = multiprocessing.get_context("fork")
    with treadle.ProcessPoolExecutor(2, mp_context=fork, max_tasks_per_child=2) as pool:
        seen = [pool.submit(tasks.has_module, "FAKE_MODULE_FOR_TEST").result(30) for _ in range(6)]
        parents = {{pool.submit(tasks.parent_pid).result(30) for _ in range(4)}}
    print(json.dumps({{"seen": seen, "parents": sorted(parents), "pid": os.getpid()}}))
"""


def test_an_explicit_fork_context_forks_the_caller_even_with_threads():
    out = run_script(FORK_CONTEXT)
    # Replacements too (max_tasks_per_child): every worker is a fork of the caller.
    assert out["seen"] == [True] * 6
    assert out["parents"] == [out["pid"]]


INHERITED_LOCK = """
    import json, multiprocessing, sys
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle

    LOCK = None

    def init(lock):
        global LOCK
        LOCK = lock

    def try_lock(_):
        if LOCK.acquire(timeout=0.2):
            LOCK.release()
            return True
        return False

    if __name__ == "__main__":
        lock = multiprocessing.RLock()  # made in the default (fork) context: inherited only
        out = {{}}
        with treadle.ProcessPoolExecutor(2, initializer=init, initargs=(lock,)) as pool:
            with lock:
                out["while_held"] = pool.submit(try_lock, 0).result(30)
            out["once_released"] = pool.submit(try_lock, 0).result(30)
        try:
            spawn = multiprocessing.get_context("spawn")
            treadle.ProcessPoolExecutor(1, mp_context=spawn, initializer=init, initargs=(lock,))
        except Exception as error:
            out["spawn"] = f"{{type(error).__name__}}: {{error}}"
        print(json.dumps(out))
"""


@pytest.mark.skipif(not FORK_IS_DEFAULT, reason="the default start method is fork before 3.14")
def test_a_multiprocessing_lock_in_initargs_is_inherited_by_forked_workers(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(INHERITED_LOCK).format(tests=TESTS))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=WAIT * 3
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # The workers hold the very lock the parent holds.
    assert out["while_held"] is False
    assert out["once_released"] is True
    # A spawned worker cannot be handed it: named at construction.
    assert out["spawn"].startswith("RuntimeError: cannot pickle initargs[0]._semlock"), out


PROCESS_MAP = """
    import concurrent.futures, json
    from unittest import mock
    import treadle
    from tqdm.contrib.concurrent import process_map

    def square(x):
        return x * x

    if __name__ == "__main__":
        # process_map takes the executor from concurrent.futures when called.
        pool = treadle.ProcessPoolExecutor
        with mock.patch.object(concurrent.futures, "ProcessPoolExecutor", pool):
            print(json.dumps(process_map(square, range(20), max_workers=2, disable=True)))
"""


@pytest.mark.skipif(not FORK_IS_DEFAULT, reason="the default start method is fork before 3.14")
def test_tqdms_process_map_runs_on_treadles_pool(tmp_path):
    pytest.importorskip("tqdm")
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(PROCESS_MAP))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=WAIT * 3
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [x * x for x in range(20)]
