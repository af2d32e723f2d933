"""``_treadle._Interruptible``: a call outside any pool that another thread can ask to stop (what
the Dask executor's workers run each task in)."""

import threading
import time

import pytest

import treadle
from treadle import _treadle

T = 30  # seconds: every wait in these tests ends, a hang is a failure


def test_run_returns_the_call_s_result():
    assert _treadle._Interruptible().run(lambda a, b=0: a + b, 2, b=3) == 5


def test_interrupt_makes_the_call_s_treadle_waits_raise_cancelled():
    call = _treadle._Interruptible()
    outcome = []

    def body():
        assert not treadle.cancelled()
        try:
            treadle.sleep(T)
        except treadle.Cancelled:
            outcome.append(treadle.cancelled())

    runner = threading.Thread(target=call.run, args=(body,))
    start = time.monotonic()
    runner.start()
    time.sleep(0.1)
    call.interrupt()
    runner.join(T)
    assert outcome == [True]
    assert call.interrupted
    assert time.monotonic() - start < 5


def test_an_interrupted_call_raises_at_its_first_check_and_others_are_untouched():
    call = _treadle._Interruptible()
    call.interrupt()
    with pytest.raises(treadle.Cancelled):
        call.run(treadle.check_cancelled)
    # Outside the call, this thread runs no task.
    treadle.check_cancelled()
    assert _treadle._Interruptible().run(treadle.cancelled) is False
