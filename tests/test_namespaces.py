"""treadle's namespaces are whole drop-ins: ``treadle.threading``, ``treadle.queue`` and
``treadle.futures`` offer every public name of the standard module they replace, on whichever
Python runs the suite (CI runs it on 3.11, 3.12 and 3.13), and the top-level ``treadle`` has the
names CPython's own ``test_concurrent_futures`` looks up on its ``futures`` module."""

from __future__ import annotations

import builtins
import concurrent.futures
import queue
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest

import treadle
import treadle.futures
import treadle.patching
import treadle.queue
import treadle.threading

T = 10

PAIRS = [
    (treadle.threading, threading),
    (treadle.queue, queue),
    (treadle.futures, concurrent.futures),
]

# What treadle puts in place of the standard object (everything else must be the standard one).
REPLACED = {
    # What patch() replaces in threading, and treadle's tracked threads.
    "threading": {*treadle.patching._THREADING_NAMES, "Thread", "Timer", "TIMEOUT_MAX"},
    # ShutDown is the standard class where there is one (3.13+).
    "queue": {"Queue", "LifoQueue", "PriorityQueue", "SimpleQueue"},
    "concurrent.futures": {
        "Future",
        "ThreadPoolExecutor",
        "ProcessPoolExecutor",
        "wait",
        "as_completed",
    },
}


def public_api(module: types.ModuleType) -> set[str]:
    """A standard module's public names: its ``__all__``, and the public names it defines itself
    (``threading.currentThread``), not those it merely imported (``threading.functools``)."""
    names = set(getattr(module, "__all__", ()))
    for name in dir(module):
        if name.startswith("_"):
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType):
            continue
        if getattr(value, "__module__", module.__name__) == module.__name__:
            names.add(name)
    return names


@pytest.mark.parametrize(("ours", "standard"), PAIRS, ids=lambda m: m.__name__)
def test_every_public_name_of_the_standard_module_is_offered(ours, standard):
    missing = sorted(name for name in public_api(standard) if not hasattr(ours, name))
    assert missing == []
    assert sorted(public_api(standard) - set(dir(ours))) == []


@pytest.mark.parametrize(("ours", "standard"), PAIRS, ids=lambda m: m.__name__)
def test_all_lists_every_name_the_standard_modules_all_lists(ours, standard):
    assert sorted(set(standard.__all__) - set(ours.__all__)) == []
    for name in ours.__all__:
        assert getattr(ours, name) is not None


@pytest.mark.parametrize(("ours", "standard"), PAIRS, ids=lambda m: m.__name__)
def test_names_treadle_does_not_replace_are_the_standard_objects(ours, standard):
    replaced = REPLACED[standard.__name__]
    for name in sorted(public_api(standard) - replaced):
        assert getattr(ours, name) is getattr(standard, name), name
    for name in sorted(replaced & public_api(standard)):
        assert getattr(ours, name) is not getattr(standard, name), name


def test_treadle_threading_holds_what_patch_puts_into_threading():
    patched = treadle.patching._THREADING_NAMES
    for name in patched:
        assert getattr(treadle.threading, name) is getattr(treadle, name)
    assert treadle.threading.Thread is treadle.Thread
    assert treadle.threading.Timer is treadle.Timer


def test_the_top_level_has_the_names_cpythons_futures_suite_uses():
    import concurrent.futures.process

    assert treadle.TimeoutError is builtins.TimeoutError is concurrent.futures.TimeoutError
    assert treadle.Executor is concurrent.futures.Executor
    assert treadle.BrokenProcessPool is concurrent.futures.process.BrokenProcessPool
    assert isinstance(treadle.ThreadPoolExecutor(1), treadle.Executor)
    for name in ("TimeoutError", "Executor", "BrokenProcessPool", "Timer"):
        assert name in treadle.__all__
        assert name in dir(treadle)


def test_treadle_threading_is_a_whole_drop_in_for_a_program():
    """A program written for ``threading`` runs with ``import treadle.threading as
    threading``, its identities intact, its primitives treadle's."""
    code = textwrap.dedent(
        """
        import treadle.threading as threading
        results = []
        lock = threading.Lock()
        def work(n):
            with lock:
                results.append((n, threading.current_thread().name))
        threads = [threading.Thread(target=work, args=(n,), name=f"w{n}") for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        timer = threading.Timer(0.01, results.append, ("timer",))
        timer.start()
        timer.join()
        local = threading.local()
        local.x = 1
        print(sorted(results, key=str))
        print(threading.current_thread() is threading.main_thread(), threading.active_count())
        print(type(lock).__module__, threading.get_ident() == threading.main_thread().ident)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[(0, 'w0'), (1, 'w1'), (2, 'w2'), (3, 'w3'), 'timer']",
        "True 1",
        "treadle True",
    ]


def test_import_treadle_loads_the_threading_namespace_only_on_use():
    code = (
        "import sys, treadle\n"
        "print('treadle.threading' in sys.modules)\n"
        "treadle.threading.Lock\n"
        "print('treadle.threading' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "True"]


# --- Timer -------------------------------------------------------------------------------------


def test_timer_calls_its_function_after_the_interval():
    called = treadle.Event()
    start = time.monotonic()
    timer = treadle.Timer(0.1, called.set)
    timer.start()
    assert called.wait(T)
    assert time.monotonic() - start >= 0.09
    timer.join(T)
    assert not timer.is_alive()


def test_cancelled_timer_never_calls_its_function():
    calls = []
    timer = treadle.Timer(0.2, calls.append, args=(1,))
    timer.start()
    timer.cancel()
    timer.join(T)
    assert calls == []
    assert timer.finished.is_set()


def test_timer_passes_args_and_kwargs_and_is_a_standard_timer():
    got = []
    timer = treadle.Timer(0, lambda *a, **k: got.append((a, k)), args=(1, 2), kwargs={"x": 3})
    assert isinstance(timer, threading.Timer)
    assert isinstance(timer, treadle.Thread)
    timer.start()
    timer.join(T)
    assert got == [((1, 2), {"x": 3})]


def test_timer_waits_in_the_wait_graph_with_its_timeout():
    timer = treadle.Timer(30, lambda: None)
    timer.start()
    try:
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            waits = [w for w in treadle._treadle._waits() if w[0] == timer.ident]
            if waits:
                break
            time.sleep(0.01)
        [(_, kind, target, _, timed)] = waits
        assert (kind, timed) == ("event", True)
        assert target is timer.finished
    finally:
        timer.cancel()
        timer.join(T)


def test_a_timer_joining_the_thread_that_joins_it_raises_deadlock_error():
    errors = []
    main = treadle.main_thread()

    def join_main():
        try:
            main.join()
        except treadle.DeadlockError as err:
            errors.append(err)

    timer = treadle.Timer(0, join_main)
    timer.start()
    try:
        timer.join()
    except treadle.DeadlockError as err:
        errors.append(err)
    timer.join(T)
    assert len(errors) == 1
    assert [edge.kind for edge in errors[0].cycle] == ["join", "join"]
