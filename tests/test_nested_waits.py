"""Pool tasks that wait on their own pool: a worker blocked submitting to its own full pool
(``max_pending``, ``on_full="block"``) is in the wait graph, and when nothing else can make room
the stall is reported as a deadlock. Every wait has a timeout, or ends in a deadlock report."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import treadle

T = 10  # seconds: the longest any wait in these tests may take


# --- a worker blocked submitting to its own full pool (max_pending, on_full="block") ---------
# A stall is judged over the whole process, and pytest-timeout's SIGALRM handler could wake any
# thread: these run in a fresh interpreter.


def _run_child(code):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_workers_blocked_submitting_to_their_own_full_pool_are_a_reported_deadlock():
    lines = _run_child(
        """
        import threading, treadle
        pool = treadle.ThreadPoolExecutor(1, max_pending=1)
        go = threading.Event()
        def parent():
            go.wait()
            return [pool.submit(int) for _ in range(3)]
        first = pool.submit(parent)
        pool.submit(int)  # the queue is full: parent's first submit will block
        go.set()
        try:
            first.result()
        except treadle.DeadlockError as error:
            print(sorted(edge.kind for edge in error.cycle))
            print(str(error))
        pool.shutdown(wait=False, cancel_futures=True)
        for thread in list(pool._threads):
            thread.join(10)
        """
    )
    assert lines[0] == "['future', 'submit']"
    assert "none of them can wake another" in lines[1]
    waits = "\n".join(lines[2:4])
    assert "thread 'MainThread' waits for future" in waits
    assert "run by thread 'ThreadPoolExecutor-0_0'" in waits
    assert "thread 'ThreadPoolExecutor-0_0' waits for room to submit to" in waits


def test_leaving_the_with_block_ends_submits_blocked_in_workers_with_runtime_error():
    go = threading.Event()
    with treadle.ThreadPoolExecutor(2, max_pending=2) as pool:

        def parent():
            go.wait(T)
            return [pool.submit(int) for _ in range(10)]

        parents = [pool.submit(parent) for _ in range(4)]  # two run, two fill the queue
        go.set()
    for future in parents:
        error = future.exception(timeout=T)
        assert isinstance(error, RuntimeError)
        assert str(error) == "cannot schedule new futures after shutdown"


def test_a_submitter_outside_the_pool_blocked_on_room_is_not_a_deadlock():
    lines = _run_child(
        """
        import threading, time, treadle
        with treadle.ThreadPoolExecutor(1, max_pending=1) as pool:
            gate = treadle.Event()
            pool.submit(gate.wait)
            time.sleep(0.05)
            pool.submit(int)
            threading.Timer(0.5, gate.set).start()
            print(pool.submit(pow, 2, 3).result())
        """
    )
    assert lines == ["8"]
