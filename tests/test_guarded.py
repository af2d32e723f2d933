"""``treadle.Guarded``: a value reachable only while its lock is held."""

import pickle
import threading

import pytest
from _threads import run_threads

import treadle


def test_threads_updating_a_guarded_value_lose_no_update():
    counts = treadle.Guarded({"n": 0})
    total = treadle.Guarded(0)

    def bump():
        for _ in range(10_000):
            with counts as table:
                # A read-modify-write with a thread switch in the middle: safe only under the lock.
                current = table["n"]
                table["n"] = current + 1
            with total:
                total.value += 1

    run_threads(4, bump)
    with counts as table:
        assert table["n"] == 40_000
    with total:
        assert total.value == 40_000


def test_update_replaces_the_value_under_the_lock():
    total = treadle.Guarded(0)

    def bump():
        for _ in range(5_000):
            total.update(lambda n: n + 1)

    run_threads(4, bump)
    assert total.unguarded() == 20_000


def test_the_value_cannot_be_reached_without_the_lock():
    guarded = treadle.Guarded([1])
    with pytest.raises(RuntimeError, match="without holding its lock"):
        guarded.value  # noqa: B018
    with pytest.raises(RuntimeError, match="without holding its lock"):
        guarded.value = [2]
    assert not hasattr(guarded, "obj")
    assert "[1]" not in repr(guarded)


def test_another_thread_holding_the_lock_does_not_let_this_one_in():
    guarded = treadle.Guarded(0)
    taken, release = threading.Event(), threading.Event()

    def hold():
        with guarded:
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(RuntimeError):
            guarded.value  # noqa: B018
    finally:
        release.set()
        holder.join(10)


def test_the_default_lock_is_a_reentrant_treadle_rlock():
    guarded = treadle.Guarded(1)
    assert isinstance(guarded.lock, treadle.RLock)
    with guarded as outer, guarded as inner:
        assert outer is inner
        guarded.value = 2
    guarded.set(3)
    assert guarded.unguarded() == 3


def test_a_given_lock_is_the_one_used():
    lock = treadle.Lock()
    guarded = treadle.Guarded("x", lock)
    assert guarded.lock is lock
    with guarded as obj:
        assert obj == "x"
        assert lock.locked()
        assert guarded.value == "x"
    assert not lock.locked()


def test_the_lock_is_released_when_the_block_raises():
    guarded = treadle.Guarded(0)
    with pytest.raises(ZeroDivisionError), guarded:
        1 / 0  # noqa: B018
    assert not guarded.lock.locked()


def test_it_is_generic_and_cannot_be_pickled():
    assert treadle.Guarded[int] is not None
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(treadle.Guarded(0))
