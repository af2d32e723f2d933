"""Every exception treadle raises round-trips through pickle, so that it reaches a caller in
another process whole (a process-pool task's exception is pickled by its worker)."""

from __future__ import annotations

import pickle

import pytest

import treadle
from treadle.deadlock.report import WaitEdge
from treadle.futures.process import WorkerCrashedError

WAIT = 60

EDGE = WaitEdge(
    waiter="MainThread",
    waiter_ident=1,
    kind="lock",
    target="<locked treadle.Lock object at 0x1>",
    created_at="app.py:3",
    owner="MainThread",
    owner_ident=1,
    timed=False,
)

EXCEPTIONS = [
    treadle.DeadlockError("deadlock: a thread waits for something only it can release", [EDGE]),
    treadle.DeadlockWarning("deadlock: ..."),
    treadle.PotentialDeadlockWarning("lock order inversion: ..."),
    treadle.Cancelled("the task was cancelled"),
    treadle.TaskTimeoutError("task 'f' ran longer than its time limit of 1 s"),
    treadle.ShutDown(),
    WorkerCrashedError(
        "the worker process (pid 7) running task 'f' was killed by SIGKILL",
        pid=7,
        signal=9,
        task_name="f",
        out_of_memory=True,
    ),
]


def test_the_list_covers_every_exception_class_treadle_exports():
    exported = {
        value
        for name in dir(treadle)
        if isinstance(value := getattr(treadle, name), type)
        and issubclass(value, BaseException)
        and value.__module__.startswith("treadle")
    }
    assert exported <= {type(error) for error in EXCEPTIONS}


@pytest.mark.parametrize("error", EXCEPTIONS, ids=lambda error: type(error).__name__)
def test_every_treadle_exception_round_trips_through_pickle(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.args == error.args
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_a_deadlock_error_keeps_its_cycle_through_pickle():
    error = pickle.loads(pickle.dumps(EXCEPTIONS[0]))
    assert error.cycle == [EDGE]
    assert error.cycle[0].describe() == EDGE.describe()


def lock_taken_twice() -> None:
    lock = treadle.Lock()
    lock.acquire()
    lock.acquire()  # the only thread of the worker: nobody is left to release it


def test_a_deadlock_in_a_process_task_reaches_the_caller_as_deadlock_error():
    with treadle.ProcessPoolExecutor(1) as pool:
        future = pool.submit(lock_taken_twice)
        with pytest.raises(treadle.DeadlockError) as info:
            future.result(timeout=WAIT)
    assert "deadlock" in str(info.value)
    assert [edge.kind for edge in info.value.cycle] == ["lock"]
