"""Helpers for tests that run the same code in several threads."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_threads(count: int, target: Callable[[], object], timeout: float = 60.0) -> None:
    """Run ``target`` in ``count`` threads at once and join them; a thread still running after
    ``timeout`` seconds fails the test."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a thread did not finish in time"
