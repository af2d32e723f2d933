"""Tasks for the Dask executor's tests, which its workers import by name (the tests put this
folder on their path)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def wait_in_treadle_then_mark(path: str, seconds: float) -> str:
    """Waits in ``treadle.sleep``; if it is interrupted (``treadle.Cancelled``), writes
    ``interrupted`` to ``path`` before it ends, so the test sees the interrupt arrive."""
    import treadle

    try:
        treadle.sleep(seconds)
    except treadle.Cancelled:
        Path(path).write_text("interrupted")
        raise
    return "slept"


def mark_then_sleep(path: str, seconds: float) -> int:
    """Says where it runs (the worker's pid, in ``path``), then sleeps; returns that pid."""
    tmp = Path(f"{path}.{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()))
    tmp.rename(path)
    time.sleep(seconds)
    return os.getpid()


def initialized(_: object = None) -> object:
    return globals().get("INITIALIZED")


def initialize(value: object) -> None:
    global INITIALIZED
    INITIALIZED = value


def square_or_fail_if_odd(x: int) -> int:
    if x % 2:
        raise ValueError(x)
    return x * x
