"""treadle.patch(), `treadle run` and the pytest plugin swap multiprocessing's Process, Queue,
SimpleQueue, JoinableQueue and Pipe for treadle's (module level and in every context object),
and unpatch() puts everything back; an unmodified program using multiprocessing (its locks,
events, Pool and Manager too) runs on them. The patch is process-wide: each case runs in a
child interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
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


def _pytest_with_plugin(folder) -> subprocess.CompletedProcess:
    """A pytest run of ``folder``, in a child, with treadle's plugin."""
    plugin = ("-p", "treadle.pytest_plugin", "-q", "-p", "no:cacheprovider")
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugin, str(folder)],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        cwd=folder,
    )


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
    done = _pytest_with_plugin(tmp_path)
    assert "1 passed" in done.stdout, done.stdout + done.stderr


def test_patch_swaps_futures_multiprocessing_and_the_cluster_and_unpatch_restores_all():
    pytest.importorskip("distributed")
    assert run_fresh(
        """
        import concurrent.futures, multiprocessing, queue, threading
        import multiprocessing.context as standard
        import treadle, treadle.futures
        import treadle.multiprocessing as ours

        places = {
            threading: ("Lock", "RLock", "Condition", "Semaphore", "Event", "Barrier"),
            queue: ("Queue", "SimpleQueue"),
            concurrent.futures: (
                "ThreadPoolExecutor", "ProcessPoolExecutor", "wait", "as_completed"
            ),
            multiprocessing: ("Process", "Queue", "SimpleQueue", "JoinableQueue", "Pipe"),
        }
        contexts = [standard._default_context, *standard._concrete_contexts.values()]
        for context in contexts:
            places[context] = places[multiprocessing]

        def names():
            found = {(id(o), n): getattr(o, n) for o, ns in places.items() for n in ns}
            return found, multiprocessing.get_start_method(allow_none=True)

        before = names()
        treadle.patch()
        treadle.patch(cluster="tcp://127.0.0.1:9")  # a cluster on top of the patch
        pool = concurrent.futures.ProcessPoolExecutor
        print(
            pool.__module__ == "treadle.futures.dask_executor",
            concurrent.futures.wait is treadle.futures.wait,
            concurrent.futures.as_completed is treadle.futures.as_completed,
            multiprocessing.Process is ours.Process,
            isinstance(multiprocessing.Queue(), ours.Queue),
            isinstance(multiprocessing.get_context("spawn").SimpleQueue(), ours.SimpleQueue),
            multiprocessing.get_start_method(),
        )
        treadle.unpatch()
        print(names() == before, concurrent.futures.wait.__module__)
        """
    ) == [*["True"] * 6, "forkserver", "True", "concurrent.futures._base"]


def test_the_pytest_plugin_patches_multiprocessing_before_conftests_import_code(tmp_path):
    """A conftest that imports the code under test gets it patched: a ``multiprocessing.Queue``
    (and a pipe) that code makes at import is treadle's, and works with a child process."""
    (tmp_path / "library.py").write_text(
        textwrap.dedent(
            """
            import multiprocessing

            RESULTS = multiprocessing.Queue()
            LEFT, RIGHT = multiprocessing.Pipe()
            PROCESS_CLASS = multiprocessing.Process

            def work(results, conn):
                results.put(conn.recv() * 2)
            """
        )
    )
    (tmp_path / "conftest.py").write_text("import library\n")
    (tmp_path / "test_library.py").write_text(
        textwrap.dedent(
            """
            import multiprocessing
            import library
            import treadle.multiprocessing

            def test_what_the_library_made_at_import_is_treadles():
                assert isinstance(library.RESULTS, treadle.multiprocessing.Queue)
                assert isinstance(library.LEFT, treadle.multiprocessing.connection.Connection)
                assert library.PROCESS_CLASS is treadle.multiprocessing.Process
                child = multiprocessing.Process(
                    target=library.work, args=(library.RESULTS, library.RIGHT)
                )
                child.start()
                library.LEFT.send(21)
                assert library.RESULTS.get(timeout=30) == 42
                child.join(30)
                assert child.exitcode == 0
            """
        )
    )
    done = _pytest_with_plugin(tmp_path)
    assert "1 passed" in done.stdout, done.stdout + done.stderr


def test_patch_swaps_shared_memory_and_unpatch_restores_it():
    assert run_fresh(
        """
        import multiprocessing.managers
        import multiprocessing.shared_memory as standard
        import treadle
        from treadle.multiprocessing import shared_memory as ours

        before = standard.SharedMemory, standard.ShareableList
        treadle.patch()
        print(standard.SharedMemory is ours.SharedMemory)
        print(standard.ShareableList is ours.ShareableList)
        # The standard library's SharedMemoryManager, unmodified, makes treadle's segments,
        # and unlinks them at its shutdown.
        with multiprocessing.managers.SharedMemoryManager() as manager:
            block = manager.SharedMemory(size=64)
            items = manager.ShareableList([1, 2])
            print(type(block) is ours.SharedMemory, type(items) is ours.ShareableList)
            names = block.name, items.shm.name
        for name in names:
            try:
                ours.SharedMemory(name)
            except FileNotFoundError:
                print("unlinked")
        treadle.unpatch()
        print((standard.SharedMemory, standard.ShareableList) == before)
        """
    ) == ["True", "True", "True", "True", "unlinked", "unlinked", "True"]


def test_patch_swaps_the_pools_and_a_manager_runs_on_treadles_process():
    pytest.importorskip("tqdm")
    assert run_fresh(
        """
        import multiprocessing, multiprocessing.dummy, multiprocessing.pool as standard
        import treadle
        from treadle.multiprocessing import pool as ours
        from tqdm.contrib.concurrent import process_map
        from _process_tasks import square

        if __name__ == "__main__":
            before = standard.Pool, standard.ThreadPool
            treadle.patch()
            pools = [
                multiprocessing.Pool(1),
                multiprocessing.get_context("spawn").Pool(1),
                multiprocessing.get_context("fork").Pool(1),
                standard.Pool(1),
            ]
            for pool in pools:
                print(type(pool) is ours.Pool, pool.apply(square, (3,)))
                pool.close()
                pool.join()
            with multiprocessing.dummy.Pool(1) as threads, standard.ThreadPool(1) as more:
                print(type(threads) is type(more) is ours.ThreadPool, threads.map(square, [2]))
            with multiprocessing.Manager() as manager:
                print(type(manager._process).__module__, manager.list([1])[0])
            print(sum(process_map(square, range(10), max_workers=2, disable=True)))
            treadle.unpatch()
            print((standard.Pool, standard.ThreadPool) == before)
        """
    ) == [
        *["True", "9"] * 4,
        "True",
        "[4]",
        "treadle.multiprocessing.context",
        "1",
        "285",
        "True",
    ]


def test_patch_swaps_the_locks_and_shared_values_in_every_context_and_unpatch_restores_them():
    assert run_fresh(
        """
        import multiprocessing, multiprocessing.context as standard
        import treadle
        from treadle.multiprocessing import synchronize, sharedctypes

        NAMES = ("Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event",
                 "Barrier", "RawValue", "RawArray", "Value", "Array")
        contexts = [standard._default_context, *standard._concrete_contexts.values()]
        before = {(id(c), n): getattr(c, n) for c in (multiprocessing, *contexts) for n in NAMES}
        treadle.patch()
        for context in (multiprocessing, *map(multiprocessing.get_context, ("fork", "spawn"))):
            value = context.Value("i", 1)
            print(
                isinstance(context.Lock(), synchronize.Lock),
                isinstance(context.RLock(), synchronize.RLock),
                isinstance(context.Condition(), synchronize.Condition),
                isinstance(context.BoundedSemaphore(), synchronize.BoundedSemaphore),
                isinstance(context.Event()._cond, synchronize.Condition),
                isinstance(context.Barrier(2), synchronize.Barrier),
                isinstance(value, sharedctypes.Synchronized) and value.fetch_add(1) == 1,
                isinstance(value.get_lock(), synchronize.RLock),
            )
        treadle.unpatch()
        after = {(id(c), n): getattr(c, n) for c in (multiprocessing, *contexts) for n in NAMES}
        print(after == before, type(multiprocessing.Lock()).__module__)
        """
    ) == [*["True"] * 24, "True", "multiprocessing.synchronize"]
