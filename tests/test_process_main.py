"""A script's own functions, classes and globals in a process pool, as the standard library's
workers see them: by reference to the worker's ``__main__`` (the fork server's copy of the
script's module, or the script run again in a fresh interpreter), by value only what the worker
cannot find there."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from _mp_tasks import run_fresh

WAIT = 30  # seconds: every wait in these tests ends, a hang is a failure

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, multiprocessing, sys, threading
    import treadle

    MODE = sys.argv[1]
    PICKLED = 0


    class Table:
        # Large module-level data: counts how often the parent pickles it.
        def __init__(self):
            self.rows = list(range(1000))

        def __reduce__(self):
            global PICKLED
            PICKLED += 1
            return (Table, ())


    TABLE = Table()
    LOCK = threading.Lock()
    OFFSET = 1
    SETTING = None


    class ScriptError(Exception):
        pass


    @dataclasses.dataclass
    class Point:
        x: int
        y: int


    def fail(message):
        raise ScriptError(message)


    def point(x):
        return Point(x, -x)


    def locked(x):
        with LOCK:
            return x + 1


    def row(i):
        return TABLE.rows[i]


    def shifted(x):
        return x + OFFSET


    def version():
        return "module level"


    def set_setting(value):
        global SETTING
        SETTING = value


    def setting(_):
        return SETTING


    def pool(**kwargs):
        if MODE == "spawn":
            kwargs["mp_context"] = multiprocessing.get_context("spawn")
        return treadle.ProcessPoolExecutor(2, **kwargs)


    def case(name, run):
        # Each case records its outcome, or what it raised, so that one failure hides no other.
        try:
            out[name] = run()
        except BaseException as error:
            out[name] = f"raised {error!r}"


    def caught(executor):
        try:
            executor.submit(fail, "boom").result(30)
        except ScriptError as error:
            return [type(error) is ScriptError, str(error)]


    def point_back(executor):
        value = executor.submit(point, 3).result(30)
        return [type(value) is Point, value == Point(3, -3)]


    if __name__ == "__main__":
        if MODE == "fresh":  # a parent with a thread at its first pool: fresh interpreters
            threading.Thread(target=threading.Event().wait, daemon=True).start()
        out = {}
        with pool() as executor:
            case("caught", lambda: caught(executor))
            case("point", lambda: point_back(executor))
            case("locked", lambda: list(executor.map(locked, range(5))))
            case("rows", lambda: sum(executor.map(row, range(200))))
            out["table_pickled"] = PICKLED
            case("rows_chunked", lambda: sum(executor.map(row, range(1000), chunksize=100)))
            case("version_before", lambda: executor.submit(version).result(30))

            def version():  # noqa: F811: the name now stands for another function
                return "redefined"

            case("version", lambda: executor.submit(version).result(30))
            case("shifted_before", lambda: executor.submit(shifted, 1).result(30))
            OFFSET = 50  # rebound while the pool has sent shifted already
            case("shifted_after", lambda: executor.submit(shifted, 1).result(30))
        OFFSET = 100  # rebound after the first pool (and its fork server)
        with pool() as executor:
            case("shifted", lambda: executor.submit(shifted, 1).result(30))
        with pool(initializer=set_setting, initargs=("set",)) as executor:
            case("setting", lambda: sorted(set(executor.map(setting, range(10)))))
            case("setting_by_value", lambda: executor.submit(lambda: SETTING).result(30))
        print(json.dumps(out))
    """
)


@pytest.fixture(scope="module", params=["forked", "fresh", "spawn"])
def run(request, tmp_path_factory) -> dict:
    script = tmp_path_factory.mktemp("main") / "script.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), request.param],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        cwd=script.parent,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_exception_class_of_the_script_is_caught_by_its_except_clause(run):
    assert run["caught"] == [True, "boom"]


def test_a_dataclass_of_the_script_comes_back_as_the_scripts_class(run):
    assert run["point"] == [True, True]


def test_a_task_may_use_a_module_level_lock_of_the_script(run):
    assert run["locked"] == [1, 2, 3, 4, 5]


def test_a_module_level_table_is_not_sent_with_the_tasks(run):
    assert run["rows"] == sum(range(200))
    assert run["rows_chunked"] == sum(range(1000))
    assert run["table_pickled"] == 0


def test_a_function_redefined_under_the_main_guard_is_the_one_that_runs(run):
    assert run["version"] == "redefined"


def test_a_function_redefined_after_the_pool_sent_it_is_sent_anew(run):
    assert run["version_before"] == "module level"
    assert run["version"] == "redefined"


def test_a_global_rebound_after_the_pool_sent_a_function_reading_it_is_seen(run):
    assert run["shifted_before"] == 2
    assert run["shifted_after"] == 51


def test_a_global_rebound_since_the_workers_copy_was_made_is_seen_anew(run):
    assert run["shifted"] == 101


def test_an_initializers_global_is_seen_by_tasks_sent_by_reference_and_by_value(run):
    assert run["setting"] == ["set"]
    assert run["setting_by_value"] == "set"


NO_GUARD = textwrap.dedent(
    """
    import json, sys, threading
    import treadle

    if sys.argv[1] == "fresh":
        threading.Thread(target=threading.Event().wait, daemon=True).start()

    def double(x):
        return 2 * x

    with treadle.ProcessPoolExecutor(2) as pool:
        print(json.dumps(list(pool.map(double, range(5)))))
    """
)


@pytest.mark.parametrize("mode", ["forked", "fresh"])
def test_a_script_without_a_main_guard_still_runs_its_functions(tmp_path, mode):
    # Run again in a worker, its whole body would start pools: it is not; its functions go by
    # value, as before.
    script = tmp_path / "script.py"
    script.write_text(NO_GUARD)
    done = subprocess.run(
        [sys.executable, str(script), mode], capture_output=True, text=True, timeout=WAIT * 2
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [0, 2, 4, 6, 8]


def test_a_global_dropped_after_the_fork_server_was_forked_is_freed():
    # What the server's workers hold of __main__ is remembered without keeping it alive: a
    # large array the script lets go of is freed in the script.
    code = """
        import gc, weakref
        import treadle.multiprocessing as mp

        class Table:
            pass

        table = Table()
        freed = weakref.ref(table)
        child = mp.Process(target=sorted, args=([],))
        child.start()  # forks the fork server, a copy of the script with its table
        child.join()
        del table
        gc.collect()
        print(freed() is None)
        """
    assert run_fresh(code) == ["True"]
