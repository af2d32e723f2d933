"""`treadle run`, `python -m treadle` and the pytest plugin, driven as a user would: as
subprocesses, each with a timeout (a hang is a failure)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _children import run_until_interrupted

import treadle

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run(*args, timeout=60, cwd=None):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def treadle_run(*args, timeout=60, cwd=None):
    return run("-m", "treadle", "run", *args, timeout=timeout, cwd=cwd)


@pytest.mark.parametrize(
    "example", ["counter.py", "producer_consumer.py", "download.py", "cpu_pool.py"]
)
def test_correct_examples_print_the_same_under_python_and_treadle_run(example):
    plain = run(str(EXAMPLES / example))
    under = treadle_run(str(EXAMPLES / example))
    assert plain.returncode == 0, plain.stderr
    assert under.returncode == 0, under.stderr
    assert plain.stdout == under.stdout
    assert under.stderr == ""


@pytest.mark.parametrize(
    ("example", "headline", "kinds"),
    [
        ("mistake_lock_order.py", "deadlock: 2 threads wait on each other", ["lock"]),
        ("mistake_join_cycle.py", "deadlock: 2 threads wait on each other", ["join"]),
        (
            "mistake_pool_wait.py",
            "deadlock: all 2 live threads are waiting in treadle",
            ["future", "event"],
        ),
    ],
)
def test_deadlocking_mistakes_end_with_a_report_and_status_3(example, headline, kinds):
    result = treadle_run(str(EXAMPLES / example), timeout=30)
    assert result.returncode == 3, result.stderr
    assert headline in result.stderr
    for kind in kinds:
        assert f"waits for {kind}" in result.stderr
    assert "finished" not in result.stdout


@pytest.mark.parametrize(
    "example", ["mistake_lock_order.py", "mistake_join_cycle.py", "mistake_pool_wait.py"]
)
def test_deadlocking_mistakes_really_hang_under_plain_python(example):
    with pytest.raises(subprocess.TimeoutExpired):
        run(str(EXAMPLES / example), timeout=2)


def test_silent_failure_is_silent_under_python_and_reported_under_treadle_run():
    example = str(EXAMPLES / "mistake_silent_failure.py")
    plain = run(example)
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, "all submitted\n", "")
    under = treadle_run(example)
    assert under.returncode == 3
    assert under.stdout == "all submitted\n"
    assert "exception in a task was never retrieved" in under.stderr
    assert "KeyError: 'id'" in under.stderr
    assert under.stderr.count("never retrieved") == 1


DAEMON_IDIOM = """
    import queue, threading

    jobs = queue.Queue()
    def worker():
        while True:
            print("job", jobs.get(), flush=True)

    for n in range(3):
        threading.Thread(target=worker, daemon=True).start()
    print("serving", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopped by Ctrl-C")
"""

CTRL_C_DURING_PROCESS_TASKS = """
    import concurrent.futures, time

    def slow(x):
        time.sleep(3)
        return x

    if __name__ == "__main__":
        try:
            with concurrent.futures.ProcessPoolExecutor(2) as pool:
                futures = [pool.submit(slow, n) for n in range(4)]
                print("submitted", flush=True)
                for future in futures:
                    future.result()
        except KeyboardInterrupt:
            print("stopped by Ctrl-C")
"""


@pytest.mark.parametrize(
    "program",
    [DAEMON_IDIOM, CTRL_C_DURING_PROCESS_TASKS],
    ids=["daemon idiom", "process tasks stopped at Ctrl-C"],
)
def test_a_program_that_handles_ctrl_c_exits_as_under_python(tmp_path, program):
    """A server idle until Ctrl-C is not a deadlock; the tasks treadle itself stops at the
    Ctrl-C are not lost exceptions: the program exits as it does under ``python``."""
    script = write(tmp_path, "prog.py", program)
    for command in ([str(script)], ["-m", "treadle", "run", str(script)]):
        status, out, err = run_until_interrupted([sys.executable, *command])
        assert (status, out, err) == (0, "stopped by Ctrl-C\n", ""), command


def test_report_json(tmp_path):
    path = tmp_path / "findings.jsonl"
    result = treadle_run(
        "--report", "json", "--report-file", str(path), str(EXAMPLES / "mistake_lock_order.py")
    )
    assert result.returncode == 3
    (finding,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert finding["kind"] == "deadlock"
    assert {edge["waiter"] for edge in finding["cycle"]} == {"transfer", "audit"}
    assert {edge["kind"] for edge in finding["cycle"]} == {"lock"}


def write(tmp_path, name, code):
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def test_argv_main_and_exit_status_are_the_scripts(tmp_path):
    script = write(
        tmp_path,
        "prog.py",
        """
        import sys
        print(__name__, sys.argv[1:])
        sys.exit(7)
        """,
    )
    result = treadle_run(str(script), "a", "--flag")
    assert result.stdout.strip() == "__main__ ['a', '--flag']"
    assert result.returncode == 7


def test_uncaught_exception_exits_1_with_traceback(tmp_path):
    script = write(tmp_path, "boom.py", "raise ValueError('boom')\n")
    result = treadle_run(str(script))
    assert result.returncode == 1
    assert "ValueError: boom" in result.stderr


def test_run_module(tmp_path):
    write(
        tmp_path,
        "mymod.py",
        "import sys, threading\nprint(threading.Lock.__module__, sys.argv[1:])\n",
    )
    result = treadle_run("-m", "mymod", "x", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "treadle ['x']"


def test_threads_alive_at_exit_are_named(tmp_path):
    script = write(
        tmp_path,
        "linger.py",
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(0.5,), name="lingerer").start()
        """,
    )
    result = treadle_run(str(script))
    assert result.returncode == 0
    assert "non-daemon thread(s) still alive at exit" in result.stderr
    assert "'lingerer'" in result.stderr


def test_lock_order_option_warns(tmp_path):
    script = write(
        tmp_path,
        "order.py",
        """
        import threading
        a = threading.Lock()
        b = threading.Lock()
        def take(x, y):
            with x, y:
                pass
        for pair in ((a, b), (b, a)):
            t = threading.Thread(target=take, args=pair)
            t.start()
            t.join()
        print("no hang")
        """,
    )
    result = treadle_run("--lock-order", str(script))
    assert result.returncode == 0
    assert result.stdout.strip() == "no hang"
    assert "PotentialDeadlockWarning" in result.stderr


def test_version_and_help():
    version = run("-m", "treadle", "--version")
    assert version.stdout.strip() == f"treadle {treadle.__version__}"
    helptext = run("-m", "treadle", "run", "--help")
    assert "exit" in helptext.stdout and "--lock-order" in helptext.stdout


def test_bench_runs_from_an_installation_anywhere(tmp_path):
    # Run outside the source tree: the harness ships in the package.
    unknown = run("-m", "treadle", "bench", "nosuch", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no benchmark named nosuch" in unknown.stderr and "sync" in unknown.stderr
    quick = run("-m", "treadle", "bench", "--quick", "sync", cwd=tmp_path, timeout=100)
    assert quick.returncode == 0, quick.stderr
    assert "speedup" in quick.stdout
    assert "Lock acquire+release, uncontended" in quick.stdout


def test_run_without_a_target_is_a_usage_error():
    result = run("-m", "treadle", "run")
    assert result.returncode == 2


def pytest_with_plugin(tmp_path, *args):
    """A pytest run, in a child, with treadle's plugin."""
    plugin = ("-p", "treadle.pytest_plugin", "-q", "-p", "no:cacheprovider")
    return run("-m", "pytest", *plugin, *args, cwd=tmp_path, timeout=300)


def test_pytest_plugin_fails_a_deadlocking_test_instead_of_hanging(tmp_path):
    write(
        tmp_path,
        "test_sample.py",
        """
        import threading

        def test_fine():
            with threading.Lock():
                pass

        def test_deadlocks():
            a = threading.Lock()
            b = threading.Lock()
            both = threading.Barrier(2)
            def worker(x, y):
                with x:
                    both.wait()
                    with y:
                        pass
            threads = [threading.Thread(target=worker, args=p) for p in ((a, b), (b, a))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        """,
    )
    result = pytest_with_plugin(
        tmp_path, "-W", "ignore::pytest.PytestUnhandledThreadExceptionWarning", str(tmp_path)
    )
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    assert "treadle detected a deadlock" in result.stdout


def test_pytest_plugin_patches_before_conftest_imports_the_code_under_test(tmp_path):
    """A conftest that imports the code under test (as dask's and tqdm's do) gets it patched:
    what that code makes at import (a module-level lock, queue, executor) is treadle's."""
    write(
        tmp_path,
        "library.py",
        """
        import concurrent.futures, queue, threading

        LOCK = threading.Lock()
        JOBS = queue.Queue()
        EXECUTOR_CLASS = concurrent.futures.ThreadPoolExecutor
        """,
    )
    write(tmp_path, "conftest.py", "import library\n")
    write(
        tmp_path,
        "test_library.py",
        """
        import library, treadle

        def test_module_level_objects_made_at_import_are_treadles():
            assert type(library.LOCK) is treadle.Lock
            assert type(library.JOBS) is treadle.Queue
            assert library.EXECUTOR_CLASS is treadle.ThreadPoolExecutor
        """,
    )
    result = pytest_with_plugin(tmp_path, str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout


def test_a_third_party_threaded_suite_runs_green_under_the_plugin(tmp_path):
    """numpy's own multithreading tests (ThreadPoolExecutor, Barrier, threads hammering shared
    arrays) pass with the standard library patched; a probe test in the same session proves the
    patch was in force."""
    write(
        tmp_path,
        "test_probe.py",
        """
        import queue, threading, treadle

        def test_patch_is_in_force():
            assert threading.Lock is treadle.Lock
            assert queue.Queue is treadle.Queue
        """,
    )
    result = pytest_with_plugin(
        tmp_path,
        "--pyargs",
        "numpy._core.tests.test_multithreading",
        str(tmp_path / "test_probe.py"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
