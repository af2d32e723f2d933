"""``treadle.AtomicInt``: a 64-bit signed integer that threads update without a lock."""

import operator
import pickle

import pytest
from _threads import run_threads

import treadle

MAX = 2**63 - 1
MIN = -(2**63)


def test_four_threads_adding_100_000_times_each_give_exactly_400_000():
    counter = treadle.AtomicInt()

    def add():
        for _ in range(100_000):
            counter.add(1)

    run_threads(4, add)
    assert counter.load() == 400_000


def test_threads_adding_and_subtracting_cancel_out():
    counter = treadle.AtomicInt(7)

    def churn():
        for _ in range(20_000):
            counter.fetch_add(3)
            counter.sub(3)

    run_threads(4, churn)
    assert counter.load() == 7


def test_a_compare_exchange_loop_under_threads_loses_no_update():
    counter = treadle.AtomicInt()

    def double_then_decrement():
        for _ in range(10_000):
            current = counter.load()
            while True:
                ok, current = counter.compare_exchange(current, current + 2)
                if ok:
                    break

    run_threads(4, double_then_decrement)
    assert counter.load() == 80_000


def test_add_and_sub_return_the_new_value_fetch_forms_the_old():
    n = treadle.AtomicInt(10)
    assert n.add(5) == 15
    assert n.fetch_add(5) == 15
    assert n.sub(1) == 19
    assert n.fetch_sub(4) == 19
    assert n.add() == 16
    assert n.sub() == 15
    assert n.load() == 15


def test_compare_exchange_returns_whether_it_stored_and_the_value_it_found():
    n = treadle.AtomicInt(1)
    assert n.compare_exchange(2, 9) == (False, 1)
    assert n.load() == 1
    assert n.compare_exchange(1, 9) == (True, 1)
    assert n.load() == 9


def test_exchange_and_store():
    n = treadle.AtomicInt()
    assert n.exchange(4) == 0
    n.store(-3)
    assert n.load() == -3


def test_it_is_an_integer_to_int_index_and_repr():
    n = treadle.AtomicInt(3)
    assert int(n) == 3
    assert operator.index(n) == 3
    assert [0, 1, 2, 3, 4][n] == 3
    assert repr(n) == "AtomicInt(3)"


def test_it_is_false_at_zero_as_an_int_is():
    n = treadle.AtomicInt(1)
    assert n
    n.sub(1)
    assert not n


@pytest.mark.parametrize(
    ("start", "operation", "delta"),
    [
        (MAX, "add", 1),
        (MAX, "fetch_add", 1),
        (MIN, "sub", 1),
        (MIN, "fetch_sub", 1),
        (MIN, "add", -1),
    ],
)
def test_a_result_out_of_64_bits_raises_overflow_error_and_changes_nothing(start, operation, delta):
    n = treadle.AtomicInt(start)
    with pytest.raises(OverflowError, match="64-bit signed"):
        getattr(n, operation)(delta)
    assert n.load() == start


@pytest.mark.parametrize("value", [MAX + 1, MIN - 1, 2**100])
def test_a_value_out_of_64_bits_raises_overflow_error(value):
    with pytest.raises(OverflowError):
        treadle.AtomicInt(value)
    n = treadle.AtomicInt()
    for call in (n.store, n.exchange, n.add, n.fetch_sub):
        with pytest.raises(OverflowError):
            call(value)
    with pytest.raises(OverflowError):
        n.compare_exchange(0, value)
    assert n.load() == 0


def test_the_limits_themselves_are_allowed():
    assert treadle.AtomicInt(MAX).load() == MAX
    assert treadle.AtomicInt(MIN).load() == MIN


@pytest.mark.parametrize("value", [1.5, "3", None])
def test_a_non_integer_raises_type_error(value):
    with pytest.raises(TypeError):
        treadle.AtomicInt(value)
    with pytest.raises(TypeError):
        treadle.AtomicInt().add(value)


def test_it_cannot_be_pickled_since_a_copy_would_not_be_shared():
    with pytest.raises(TypeError, match="cannot pickle 'AtomicInt' object"):
        pickle.dumps(treadle.AtomicInt(1))
