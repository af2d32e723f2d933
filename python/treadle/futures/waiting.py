"""``wait`` and ``as_completed`` for any futures, treadle's or the standard library's, waiting in
Rust (``_Completions``) without the interpreter, in the wait graph."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent import futures as _cf
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from concurrent.futures._base import DoneAndNotDoneFutures
from typing import Any

from treadle._treadle import _Completions
from treadle.futures import progress as _progress


def wait(
    fs: Iterable[_cf.Future[Any]],
    timeout: float | None = None,
    return_when: str = ALL_COMPLETED,
    *,
    cancel_pending: bool = False,
) -> DoneAndNotDoneFutures[Any]:
    """Wait for the futures (treadle's or the standard library's) as ``concurrent.futures.wait``
    does; with ``cancel_pending=True``, cancel those not done when it returns."""
    fs = set(fs)
    order = list(fs)
    watch = _Completions(order)
    done: set[_cf.Future[Any]] = set()
    deadline = None if timeout is None else time.monotonic() + timeout
    watch.watch()
    try:
        ready = watch.ready()
        while True:
            for index in ready:
                done.add(order[index])
            if len(done) == len(order):
                break
            if return_when == FIRST_COMPLETED and done:
                break
            if return_when == FIRST_EXCEPTION and any(
                not f.cancelled() and f._exception is not None
                for f in (order[index] for index in ready)
            ):
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            arrived = watch.next(remaining)
            if arrived is None:
                break
            ready = [arrived, *watch.ready()]
    finally:
        watch.close()
    not_done = fs - done
    if cancel_pending:
        for future in not_done:
            future.cancel()
    return DoneAndNotDoneFutures(done, not_done)


def as_completed(
    fs: Iterable[_cf.Future[Any]], timeout: float | None = None, *, progress: Any = None
) -> Iterator[Any]:
    """Yield the futures (treadle's or the standard library's) as they complete, as
    ``concurrent.futures.as_completed`` does. ``progress=True`` (or a dict of tqdm options, or a
    tqdm bar) shows a progress bar of them, failures and cancellations in its postfix."""
    end_time = None if timeout is None else timeout + time.monotonic()
    futures = list(set(fs))
    total = pending = len(futures)
    watch = _Completions(futures)
    del fs, futures
    watch.watch()
    tracker = None
    try:
        if progress is not None:
            tracker = _progress.start(progress, total)
        while pending:
            ready = watch.ready()
            if not ready:
                wait_timeout = None if end_time is None else end_time - time.monotonic()
                arrived = None
                if wait_timeout is None or wait_timeout >= 0:
                    arrived = watch.next(wait_timeout)
                if arrived is None:
                    raise TimeoutError(f"{pending} (of {total}) futures unfinished")
                ready = [arrived]
            for index in ready:
                pending -= 1
                # Nothing here keeps a future once it is yielded (as the standard library's).
                if tracker is None:
                    yield watch.take(index)
                else:
                    yield tracker.counted(watch.take(index))
    finally:
        watch.close()
        if tracker is not None:
            tracker.close()
