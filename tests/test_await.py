"""Futures of both pools are awaitable: ``await pool.submit(...)`` in a coroutine gives the result
or raises the task's exception, ``asyncio.gather``/``wait_for`` take them, and cancelling the
awaiting task cancels a queued future and leaves nothing behind for a running one."""

from __future__ import annotations

import asyncio
import logging
import threading

import _process_tasks as tasks
import pytest

import treadle

T = 30  # seconds: every wait in these tests ends, a hang is a failure
POOLS = [treadle.ThreadPoolExecutor, treadle.ProcessPoolExecutor]


@pytest.fixture(params=POOLS, ids=["threads", "processes"])
def pool(request):
    with request.param(1) as executor:
        yield executor


def test_awaiting_a_future_gives_its_result_or_raises_its_exception(pool):
    async def main():
        value = await pool.submit(tasks.square, 7)
        with pytest.raises(ValueError, match="boom"):
            await pool.submit(tasks.fail, "boom")
        return value

    assert asyncio.run(asyncio.wait_for(main(), T)) == 49


def test_gather_and_wait_for_take_futures(pool):
    async def main():
        both = await asyncio.gather(pool.submit(tasks.square, 2), pool.submit(tasks.add, 1, 2))
        one = await asyncio.wait_for(pool.submit(tasks.square, 5), T)
        return both, one

    assert asyncio.run(main()) == ([4, 3], 25)


def test_cancelling_the_awaiting_task_cancels_a_queued_future(pool):
    async def main():
        # A process pool's worker holds two tasks at once: the third is queued.
        busy = [pool.submit(tasks.sleep, 0.3) for _ in range(2)]
        queued = pool.submit(tasks.square, 3)
        waiter = asyncio.ensure_future(_await(queued))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiter, T)
        return busy, queued

    busy, queued = asyncio.run(main())
    assert queued.cancelled()
    assert [f.result(timeout=T) for f in busy] == [0.3, 0.3]


async def _await(future):
    return await future


def test_cancelling_the_awaiting_task_leaves_a_running_task_to_finish_quietly(caplog):
    gate = threading.Event()
    with caplog.at_level(logging.DEBUG), treadle.ThreadPoolExecutor(1) as pool:
        running = pool.submit(gate.wait, T)

        async def main():
            waiter = asyncio.ensure_future(_await(running))
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiter, T)

        asyncio.run(main())  # the loop is closed before the task ends
        assert not running.done()
        gate.set()
        assert running.result(timeout=T) is True
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_awaiting_outside_an_event_loop_is_a_clear_error(pool):
    future = pool.submit(tasks.square, 2)
    with pytest.raises(RuntimeError, match="no running event loop"):
        future.__await__()
    assert future.result(timeout=T) == 4
