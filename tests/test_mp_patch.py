"""treadle.patch(), `treadle run` and the pytest plugin swap multiprocessing's Process, Queue,
SimpleQueue, JoinableQueue and Pipe for treadle's (module level and in every context object),
and unpatch() puts everything back; an unmodified program using multiprocessing (its locks,
events, Pool and Manager too) runs on them. The patch is process-wide: each case runs in a
child interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from _mp_tasks import WAIT, run_fresh


def test_patch_swaps_every_name_in_every_context_and_unpatch_restores_them():
    assert run_fresh(
        """
        import multiprocessing, multiprocessing.context as standard
        import treadle
        import treadle.multiprocessing as ours

        NAMES = ("Process", "Queue", "SimpleQueue", "JoinableQueue", "Pipe")
        contexts = [standard._default_context, *standard._concrete_contexts.values()]
        before = {(id(c), n): getattr(c, n) for c in (multiprocessing, *contexts) for n in NAMES}
        treadle.patch()
        print(multiprocessing.Process is ours.Process, multiprocessing.get_start_method())
        for method in ("fork", "spawn", "forkserver"):
            context = multiprocessing.get_context(method)
            q, (a, b) = context.Queue(), context.Pipe()
            print(
                context.Process is ours.get_context(method).Process,
                isinstance(q, ours.Queue),
                isinstance(context.SimpleQueue(), ours.SimpleQueue),
                isinstance(context.JoinableQueue(), ours.JoinableQueue),
                isinstance(a, ours.connection.Connection),
            )
        treadle.unpatch()
        after = {(id(c), n): getattr(c, n) for c in (multiprocessing, *contexts) for n in NAMES}
        print(after == before, multiprocessing.get_start_method(allow_none=True))
        """
    ) == ["True", "forkserver", *["True"] * 15, "True", "None"]


def test_a_start_method_the_program_sets_is_obeyed_under_the_patch():
    assert run_fresh(
        """
        import multiprocessing, treadle
        from _mp_tasks import report
        treadle.patch()
        multiprocessing.set_start_method("spawn")
        q = multiprocessing.Queue()
        p = multiprocessing.Process(target=report, args=(q,))
        p.start()
        q.get(timeout=30)
        p.join()
        print(type(p._popen).__name__, p.exitcode)
        """
    ) == ["SpawnPopen", "0"]


PROGRAM = """
import multiprocessing, os

def child(q, lock, event, conn):
    with lock:
        q.put(os.getpid())
    conn.send("hello")
    event.set()

def square(x):
    return x * x

if __name__ == "__main__":
    q, lock, event = multiprocessing.Queue(), multiprocessing.Lock(), multiprocessing.Event()
    ours, theirs = multiprocessing.Pipe()
    p = multiprocessing.Process(target=child, args=(q, lock, event, theirs))
    p.start()
    print(type(q).__module__, q.get(timeout=30) == p.pid, ours.recv(), event.wait(30))
    p.join()
    print(p.exitcode)
    with multiprocessing.Pool(2) as pool:
        print(sum(pool.map(square, range(10))))
    with multiprocessing.Manager() as manager:
        shared = manager.dict(a=1)
        print(shared["a"])
"""


def test_an_unmodified_program_runs_under_treadle_run(tmp_path):
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(PROGRAM))
    done = subprocess.run(
        [sys.executable, "-m", "treadle", "run", str(script)],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "treadle.multiprocessing.queues",
        "True",
        "hello",
        "True",
        "0",
        "285",
        "1",
    ]


def test_the_pytest_plugin_patches_multiprocessing(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent(
            """
            import multiprocessing
            import treadle.multiprocessing

            def test_multiprocessing_is_treadles():
                assert multiprocessing.Process is treadle.multiprocessing.Process
                q = multiprocessing.Queue()
                q.put(1)
                assert q.get() == 1
                assert isinstance(q, treadle.multiprocessing.Queue)
            """
        )
    )
    plugin = ("-p", "treadle.pytest_plugin", "-q", "-p", "no:cacheprovider")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *plugin, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        cwd=tmp_path,
    )
    assert "1 passed" in done.stdout, done.stdout + done.stderr
