"""Progress bars: ``map(progress=...)`` on both pools (from their one base) and
``as_completed(progress=...)`` draw tqdm bars that reach their total, count failures and
cancellations, work with ``buffersize`` and close however the iteration ends."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import io
import sys
import time

import _process_tasks as tasks
import pytest
import tqdm.auto

import treadle

T = 30  # seconds: every wait in these tests ends, a hang is a failure
POOLS = [treadle.ThreadPoolExecutor, treadle.ProcessPoolExecutor]


#: tqdm's bar, as ``tqdm.auto`` gives it here.
Bar = tqdm.auto.tqdm


class Recorded(Bar):
    """tqdm's own bar, kept for the test to look at, drawn into a buffer."""

    made: list[Recorded] = []

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("file", io.StringIO())
        super().__init__(*args, **kwargs)
        Recorded.made.append(self)

    @property
    def closed(self) -> bool:
        return bool(self.disable)

    @property
    def text(self) -> str:
        return self.fp.getvalue()


@pytest.fixture(autouse=True)
def recorded_bars(monkeypatch):
    Recorded.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)


@pytest.fixture(params=POOLS, ids=["threads", "processes"])
def pool(request):
    with request.param(2) as executor:
        yield executor


def the_bar() -> Recorded:
    [bar] = Recorded.made
    return bar


def eventually(condition, timeout: float = T) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def fail_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(x)
    return x


def test_the_bar_reaches_the_total_and_closes(pool):
    assert list(pool.map(tasks.square, range(50), progress=True)) == [x * x for x in range(50)]
    bar = the_bar()
    assert (bar.n, bar.total) == (50, 50)
    assert bar.closed
    assert "50/50" in bar.text


def test_a_chunk_counts_as_its_calls(pool):
    results = pool.map(tasks.square, range(23), chunksize=5, progress=True)
    assert list(results) == [x * x for x in range(23)]
    assert (the_bar().n, the_bar().total) == (23, 23)


def test_the_total_is_the_shortest_iterable_s_as_zip_pairs_them(pool):
    assert list(pool.map(tasks.add, range(10), range(4), progress=True)) == [0, 2, 4, 6]
    assert (the_bar().n, the_bar().total) == (4, 4)


def test_failures_are_counted_and_shown_in_the_postfix():
    with treadle.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(fail_on_odd, range(10), return_exceptions=True, progress=True))
    assert sum(isinstance(r, ValueError) for r in results) == 5
    bar = the_bar()
    assert bar.n == 10
    assert "failed=5" in bar.postfix
    assert "failed=5" in bar.text


def test_a_process_pool_s_failures_are_counted_too():
    with treadle.ProcessPoolExecutor(2) as pool:
        results = list(pool.map(tasks.fail, ["a", "b", "c"], return_exceptions=True, progress=True))
    assert all(isinstance(r, ValueError) for r in results)
    assert the_bar().n == 3
    assert "failed=3" in the_bar().postfix


def test_a_map_ended_by_a_failure_closes_its_bar_with_the_failure_counted():
    with treadle.ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError):
            list(pool.map(fail_on_odd, [0, 1, 2, 4], progress=True))
    bar = the_bar()
    assert bar.closed
    assert "failed=1" in bar.postfix


def test_the_bar_works_with_buffersize_and_an_iterable_of_unknown_length(pool):
    items = (x for x in range(30))
    assert list(pool.map(tasks.square, items, buffersize=4, progress=True)) == [
        x * x for x in range(30)
    ]
    bar = the_bar()
    assert (bar.n, bar.total) == (30, None)
    assert bar.closed


def test_the_bar_works_with_buffersize_and_a_sized_iterable(pool):
    assert len(list(pool.map(tasks.square, range(30), buffersize=3, progress=True))) == 30
    assert (the_bar().n, the_bar().total) == (30, 30)


def test_a_map_abandoned_halfway_closes_its_bar_with_the_rest_cancelled():
    gate = treadle.Event()
    started = treadle.Semaphore(0)

    def wait_for_gate(x: int) -> int:
        if x >= 2:
            started.release()
            gate.wait(T)
        return x

    with treadle.ThreadPoolExecutor(2) as pool:
        try:
            results = pool.map(wait_for_gate, range(20), progress=True)
            assert [next(results), next(results)] == [0, 1]
            assert started.acquire(timeout=T) and started.acquire(timeout=T)
            results.close()
            bar = the_bar()
            assert bar.closed
            assert bar.n == 2
            # The two tasks running go on; the 16 queued were cancelled.
            assert "cancelled=16" in bar.postfix
        finally:
            gate.set()
    assert bar.n == 2  # nothing counted once the bar closed


def test_a_map_iterator_freed_before_it_started_closes_its_bar():
    with treadle.ThreadPoolExecutor(2) as pool:
        results = pool.map(tasks.square, range(5), progress=True)
        bar = the_bar()
        assert not bar.closed
        del results
        gc.collect()
        assert bar.closed


def test_the_bar_counts_tasks_as_they_end_not_as_results_are_taken():
    gate = treadle.Event()

    def first_waits(x: int) -> int:
        if x == 0:
            gate.wait(T)
        return x

    with treadle.ThreadPoolExecutor(2) as pool:
        try:
            results = pool.map(first_waits, range(10), progress=True)
            # The first result is not there yet; the nine others ended.
            assert eventually(lambda: the_bar().n == 9)
        finally:
            gate.set()
        assert list(results) == list(range(10))
    assert the_bar().n == 10


def test_a_dict_gives_tqdm_options_and_may_set_the_total():
    with treadle.ThreadPoolExecutor(2) as pool:
        list(pool.map(tasks.square, range(5), progress={"desc": "squares", "total": 7}))
    bar = the_bar()
    assert (bar.desc, bar.total, bar.n) == ("squares", 7, 5)
    assert "squares" in bar.text


def test_a_bar_of_the_caller_s_is_counted_on_and_left_open():
    own = Bar(total=20, file=io.StringIO())
    with treadle.ThreadPoolExecutor(2) as pool:
        list(pool.map(tasks.square, range(10), progress=own))
        list(pool.map(tasks.square, range(10), progress=own))
    assert (own.n, own.total) == (20, 20)
    assert not own.disable
    own.close()


def test_as_completed_draws_a_bar_of_its_futures(pool):
    futures = [pool.submit(tasks.square, x) for x in range(12)]
    futures.append(pool.submit(tasks.fail, "boom"))
    done = list(treadle.as_completed(futures, timeout=T, progress=True))
    assert len(done) == 13
    bar = the_bar()
    assert (bar.n, bar.total) == (13, 13)
    assert "failed=1" in bar.postfix
    assert bar.closed


def test_as_completed_shows_cancelled_futures_apart():
    with treadle.ThreadPoolExecutor(1) as pool:
        gate = treadle.Event()
        first = pool.submit(gate.wait, T)
        queued = [pool.submit(tasks.square, x) for x in range(3)]
        assert queued[0].cancel()
        gate.set()
        list(treadle.as_completed([first, *queued], timeout=T, progress=True))
    bar = the_bar()
    assert (bar.n, bar.total) == (3, 4)
    assert "cancelled=1" in bar.postfix


def test_as_completed_abandoned_closes_its_bar():
    with treadle.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(tasks.square, x) for x in range(4)]
        iterator = treadle.as_completed(futures, timeout=T, progress=True)
        next(iterator)
        iterator.close()
    assert the_bar().closed


def test_as_completed_running_out_of_time_closes_its_bar():
    with treadle.ThreadPoolExecutor(1) as pool:
        gate = treadle.Event()
        future = pool.submit(gate.wait, T)
        with pytest.raises(TimeoutError):
            list(treadle.as_completed([future], timeout=0.05, progress=True))
        gate.set()
    assert the_bar().closed


def test_without_tqdm_progress_true_names_the_extra_and_submits_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with treadle.ThreadPoolExecutor(2) as pool:
        with pytest.raises(ImportError, match=r"treadle\[progress\]"):
            pool.map(tasks.square, range(5), progress=True)
        assert pool.stats().submitted == 0
        with pytest.raises(ImportError, match=r"treadle\[progress\]"):
            list(treadle.as_completed([pool.submit(tasks.square, 2)], progress=True))


@pytest.mark.parametrize("wrong", [1, "yes", object()])
def test_progress_of_the_wrong_type_is_a_type_error_before_any_submission(wrong):
    with treadle.ThreadPoolExecutor(2) as pool:
        with pytest.raises(TypeError, match=r"^progress must be True, False, None"):
            pool.map(tasks.square, range(5), progress=wrong)
        assert pool.stats().submitted == 0


def test_progress_false_or_none_draws_nothing(pool):
    assert list(pool.map(tasks.square, range(3), progress=False)) == [0, 1, 4]
    assert list(pool.map(tasks.square, range(3), progress=None)) == [0, 1, 4]
    assert Recorded.made == []


def test_a_bar_does_not_retrieve_a_failure_that_nobody_retrieved():
    # The bar looks at each outcome; a failure nobody took is still raised at shutdown.
    with pytest.raises(ExceptionGroup) as raised:
        with treadle.ThreadPoolExecutor(1, raise_unretrieved=True) as pool:
            results = pool.map(fail_on_odd, [1], progress=True)
            assert eventually(lambda: the_bar().n == 1)
            del results
    assert isinstance(raised.value.exceptions[0], ValueError)
    assert "failed=1" in the_bar().postfix


class LateCallbacks(cf.Future):
    """A future whose done-callbacks run only when told: as when a waiter wakes before the
    thread that completed the future has run them."""

    def __init__(self):
        super().__init__()
        self.held = []

    def add_done_callback(self, fn):
        self.held.append(fn)

    def run_callbacks(self):
        for fn in self.held:
            fn(self)


def test_a_future_is_counted_once_by_whichever_sees_it_end_first():
    from treadle.futures.progress import Progress

    bar = Bar(total=2, file=io.StringIO())
    tracker = Progress(bar, owned=True)
    seen_by_caller, seen_by_callback = LateCallbacks(), LateCallbacks()
    tracker.watch(seen_by_caller)
    tracker.watch(seen_by_callback)
    seen_by_caller.set_result(1)
    seen_by_callback.set_exception(ValueError())
    tracker.count(seen_by_caller)  # the caller took its result before its callback ran
    seen_by_callback.run_callbacks()
    seen_by_caller.run_callbacks()
    tracker.count(seen_by_callback)
    assert bar.n == 2
    assert bar.postfix == "failed=1"
    tracker.close()
    assert bar.disable
