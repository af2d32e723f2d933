"""Workers forked from the pool's caller: the ``fork`` start method, when the caller asks for it
(``mp_context=multiprocessing.get_context("fork")``) or when the pool's initializer or its
arguments can only be inherited (``multiprocessing``'s locks, made in the default ``fork``
context before Python 3.14) and the default start method is ``fork``.

Such a worker is this very process, forked with ``os.fork()`` by the pool's supervisor thread
(the supervisor asks for each worker, replacements included), so the interpreter's and the
program's at-fork handlers run, and the worker sees the parent's modules and objects as they are
at that moment, as the standard library's fork start method gives; and, as there, forking a
process that has other threads may leave the child a lock held forever (Python 3.12 and later
warn of it). The worker dies with the supervisor thread that forked it (``PR_SET_PDEATHSIG``),
which lives as long as the pool. The initializer and its arguments are handed to the worker as
they are: nothing is pickled.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from treadle._treadle import _die_with_parent
from treadle.multiprocessing import worker


def forker(
    initializer: Callable[..., object] | None, initargs: tuple[Any, ...]
) -> Callable[[int, int], int]:
    """The supervisor's way to start a worker: ``fork(worker_end, pool_end)`` forks this process
    into a worker that serves ``worker_end`` (and closes ``pool_end``); returns its pid."""
    inherited = None if initializer is None else (initializer, tuple(initargs))

    def fork(worker_end: int, pool_end: int) -> int:
        # What is buffered now would be written again by every process that flushes its copy.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # a worker; it never returns
            try:
                os.close(pool_end)
                worker.reset_signals()
                if _die_with_parent(parent):
                    worker.main(worker_end, forked=True, initializer=inherited)
            finally:
                os._exit(1)
        return pid

    return fork
