"""treadle.multiprocessing's queues: what goes in comes out, across processes started every
way, with multiprocessing's semantics, and the safety the standard library lacks: a writer
killed mid-message tears nothing, a get() nobody can satisfy raises, a process exits at once
with items in its queue, an unpicklable item fails in put()."""

from __future__ import annotations

import enum
import os
import pickle
import queue
import signal
import threading
import time

import _mp_tasks as tasks
import numpy
import pytest
from _mp_tasks import WAIT, joined, run_fresh, start

from treadle.multiprocessing import JoinableQueue, Queue, SimpleQueue

#: Standard-library start methods (the queues reduce through DupFd, so they pass to each).
METHODS = ["fork", "spawn"]


class Color(enum.IntEnum):
    RED = 1


ITEMS = [
    0,
    -(2**63),
    2**63 - 1,
    2**100,
    1.5,
    float("inf"),
    "text",
    "caf\u00e9 \U0001f600",
    "\udcff surrogate",
    b"",
    b"bytes" * 100,
    None,
    True,
    False,
    Color.RED,
    [1, (2, 3), {"k": {4}}],
    bytearray(b"ba" * 5000),
    ValueError("boom"),
]


@pytest.mark.parametrize("cls", [Queue, JoinableQueue, SimpleQueue])
def test_every_kind_of_item_comes_out_equal_and_of_its_type(cls):
    q = cls()
    for item in ITEMS:
        q.put(item)
    for item in ITEMS:
        got = q.get()
        assert type(got) is type(item)
        if isinstance(item, Exception):
            assert got.args == item.args
        else:
            assert got == item


def test_a_numpy_array_comes_out_equal_and_writable():
    q = Queue()
    array = numpy.arange(1_000_000, dtype=numpy.float64).reshape(1000, 1000)
    q.put(array)
    got = q.get()
    assert got.flags.writeable
    numpy.testing.assert_array_equal(got, array)
    got[0, 0] = -1.0
    assert array[0, 0] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_items_cross_to_a_child_and_back(method):
    q = Queue()
    child = start(tasks.put_items, q, ITEMS[:12], method=method)
    got = [q.get(timeout=WAIT) for _ in range(12)]
    assert got == ITEMS[:12]
    assert joined(child) and child.exitcode == 0


def test_an_unpicklable_item_fails_in_put_naming_the_culprit():
    q = Queue()
    with pytest.raises(TypeError, match=r"cannot pickle the item\['key'\]\[1\] \(a _thread.lock"):
        q.put({"key": [1, threading.Lock()]})
    q.put("next")
    assert q.get(timeout=WAIT) == "next"
    assert q.empty()


def test_get_and_put_wait_as_multiprocessing_says():
    q = Queue(2)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(True, -1)  # a negative timeout does not wait
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    with pytest.raises(queue.Full):
        q.put(3, False)
    with pytest.raises(TypeError):
        q.get(timeout="soon")
    assert [q.get(), q.get()] == [1, 2]
    assert q.empty() and not q.full()


def test_a_bounded_put_waits_for_a_get_in_another_thread():
    q = Queue(1)
    q.put(0)
    getter = threading.Timer(0.1, q.get)
    getter.start()
    q.put(1, timeout=WAIT)
    getter.join(WAIT)
    assert q.get(timeout=WAIT) == 1


def test_put_many_and_get_many_move_items_in_order():
    q = Queue()
    q.put_many(range(10))
    assert q.get_many(4) == [0, 1, 2, 3]
    assert q.get_many(100) == [4, 5, 6, 7, 8, 9]
    with pytest.raises(queue.Empty):
        q.get_many(3, timeout=0.01)
    bounded = Queue(3)
    with pytest.raises(queue.Full):
        bounded.put_many(range(5), timeout=0.05)
    assert bounded.get_many(10) == [0, 1, 2]


def test_a_closed_queue_refuses_put_and_get():
    for q in (Queue(), JoinableQueue()):
        q.close()
        with pytest.raises(ValueError, match="is closed"):
            q.put(1)
        with pytest.raises(ValueError, match="is closed"):
            q.get()
        q.join_thread()
        q.cancel_join_thread()


def test_the_queues_are_the_standard_librarys_queue_classes_to_code_that_checks():
    # logging.config takes a queue that is a multiprocessing.queues.Queue (Python 3.12+).
    import multiprocessing.queues

    assert isinstance(Queue(), multiprocessing.queues.Queue)
    assert isinstance(JoinableQueue(), multiprocessing.queues.JoinableQueue)
    assert isinstance(SimpleQueue(), multiprocessing.queues.SimpleQueue)


def test_empty_after_close_is_as_the_standard_librarys():
    unused = Queue()
    unused.close()
    assert unused.empty()  # closing a queue nothing was put to changes nothing
    used = Queue()
    used.put(1)
    used.close()
    with pytest.raises(OSError, match="is closed"):
        used.empty()
    simple = SimpleQueue()
    simple.close()
    with pytest.raises(OSError, match="is closed"):
        simple.empty()


def test_join_thread_wants_a_closed_queue():
    with pytest.raises(AssertionError, match="not closed"):
        Queue().join_thread()


def test_a_queue_passes_to_children_only_by_inheritance():
    with pytest.raises(RuntimeError, match="through inheritance"):
        pickle.dumps(Queue())


def test_only_a_joinable_queue_counts_tasks_as_the_standard_librarys():
    # Code tells them apart by hasattr(q, "task_done") (logging's QueueListener does).
    assert not hasattr(Queue(), "task_done") and not hasattr(Queue(), "join")
    assert not hasattr(SimpleQueue(), "task_done")
    assert hasattr(JoinableQueue(), "task_done") and hasattr(JoinableQueue(), "join")


def test_joinable_queue_join_waits_for_every_task_done_in_other_processes():
    q = JoinableQueue()
    workers = [start(tasks.task_worker, q) for _ in range(3)]
    for i in range(20):
        q.put(i)
    q.join()
    for _ in workers:
        q.put(None)
    q.join()
    assert all(joined(worker) for worker in workers)
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()


# Whether another thread of the process could put is part of the judgment, so these run in a
# fresh interpreter: this one may have threads of earlier tests (the resource sharer's).


def test_a_get_nobody_can_satisfy_raises_within_a_second():
    assert run_fresh(
        """
        import time
        from treadle.multiprocessing import AbandonedQueueError, Queue
        q = Queue()
        began = time.monotonic()
        try:
            q.get()
        except AbandonedQueueError as error:
            print(isinstance(error, EOFError), time.monotonic() - began < 1.0)
        """
    ) == ["True", "True"]


def test_a_get_after_every_writer_exited_takes_what_is_left_then_raises():
    assert run_fresh(
        """
        import time
        from _mp_tasks import joined, put_items, start
        from treadle.multiprocessing import AbandonedQueueError, Queue
        q = Queue()
        child = start(put_items, q, [1, 2, 3])
        print(joined(child), [q.get(), q.get(), q.get()] == [1, 2, 3])
        began = time.monotonic()
        try:
            q.get()
        except AbandonedQueueError:
            print(time.monotonic() - began < 1.0)
        """
    ) == ["True", "True", "True"]


def test_a_get_raises_within_a_second_of_its_only_writer_being_killed():
    assert run_fresh(
        """
        import os, signal, threading, time
        from _mp_tasks import hold_then_sleep, joined, start
        from treadle.multiprocessing import AbandonedQueueError, Queue
        q, ready = Queue(), Queue()
        child = start(hold_then_sleep, q, ready)
        print(ready.get(timeout=30) == child.pid)
        began = time.monotonic()
        threading.Timer(0.2, os.kill, (child.pid, signal.SIGKILL)).start()
        try:
            q.get()
        except AbandonedQueueError:
            print(time.monotonic() - began < 0.2 + 1.0)
            print(joined(child), child.exitcode == -signal.SIGKILL)
        """
    ) == ["True", "True", "True", "True"]


def test_a_get_waits_while_another_thread_could_put():
    q = Queue()
    putter = threading.Timer(1.5, q.put, ("late",))
    putter.start()
    assert q.get(timeout=WAIT) == "late"
    putter.join(WAIT)


def test_a_writer_killed_in_the_middle_of_a_message_tears_nothing():
    size = 64 << 20
    for _ in range(20):
        q = Queue()
        (ring, _) = q._rings()
        child = start(tasks.put_numbered_until_killed, q, size)
        first = q.get(timeout=WAIT)
        assert first == b"\0" * size
        time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        assert joined(child)
        q.put(b"after")
        count = 1
        while (message := q.get(timeout=WAIT)) != b"after":
            assert len(message) == size
            assert message == bytes([count % 256]) * size, f"message {count} is torn"
            count += 1
        if ring.writers_recovered == 1:
            return  # the kill landed in the middle of a message
    pytest.fail("the writer was never killed in the middle of a message")


def test_a_process_exits_at_once_with_items_unread_in_its_queue():
    # The standard library's queue keeps such a process alive until its feeder thread has
    # written everything to the pipe, which no one reads: joining it deadlocks.
    q = Queue()
    child = start(tasks.put_many_then_exit, q, 1000, 100 * 1024)
    assert joined(child), "the child did not exit with items in its queue"
    assert child.exitcode == 0
    assert q.qsize() == 1000
    assert q.get() == b"x" * 100 * 1024


def test_ctrl_c_interrupts_a_get_that_waits():
    setup = """
        from treadle.multiprocessing import Queue
        q = Queue()
        """
    assert tasks.interrupted_by_ctrl_c(setup, "q.get(timeout=60)")


def test_a_waiting_get_lets_other_threads_run():
    q = Queue()
    ticks = []

    def tick():
        for _ in range(20):
            ticks.append(None)
            time.sleep(0.005)
        q.put("done")

    ticker = threading.Thread(target=tick)
    ticker.start()
    assert q.get(timeout=WAIT) == "done"
    ticker.join(WAIT)
    assert len(ticks) == 20


def test_fileno_polls_readable_exactly_while_an_item_waits():
    import select

    q = Queue()
    fd = q.fileno()
    assert select.select([fd], [], [], 0)[0] == []
    q.put(1)
    assert select.select([fd], [], [], 0)[0] == [fd]
    q.get()
    assert select.select([fd], [], [], 0)[0] == []


def test_a_queue_is_anonymous_shared_memory_not_a_file():
    before = tasks.dev_shm()
    q = Queue()
    (ring, _) = q._rings()
    memfd, _ = ring.fds()
    assert os.readlink(f"/proc/self/fd/{memfd}").startswith("/memfd:treadle-channel")
    assert os.stat(f"/proc/self/fd/{memfd}").st_mode & 0o777 == 0o600
    assert tasks.dev_shm() == before
