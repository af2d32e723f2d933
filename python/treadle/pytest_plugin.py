"""A pytest plugin that runs a test suite on treadle: ``pytest -p treadle.pytest_plugin``.

The standard library is patched (``treadle.patch()``) for the whole session, so the suite's
threads, locks, queues and joins are treadle's. A test during which a deadlock is detected fails
with the deadlock report instead of hanging the run; the thread that closed the cycle gets
``treadle.DeadlockError``, which lets it unwind and release what it holds.

The patch is made before pytest imports the first ``conftest.py`` (in
``pytest_load_initial_conftests``, which pytest calls for plugins given with ``-p`` or
installed): a conftest that imports the code under test (dask, tqdm...) imports it patched, so
the locks, queues and executors that code makes at import are treadle's too. Registered later
(``pytest_plugins`` in a conftest), the plugin patches when it is configured, and the modules
that conftest imported before keep what they made.

It is not registered as an entry point on purpose: patching the standard library is a choice
for a run to make, not a side effect of installing treadle.
"""

from __future__ import annotations

import _thread

import pytest

from treadle import deadlock
from treadle.patching import patch, unpatch

_reports: list[str] = []
_reports_lock = _thread.allocate_lock()


def _record(message: str, edges: list[deadlock.WaitEdge]) -> None:
    with _reports_lock:
        _reports.append(message)


def _start() -> None:
    deadlock.set_mode("raise")
    deadlock._set_deadlock_handler(_record)
    patch()


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    _start()


def pytest_configure(config: pytest.Config) -> None:
    _start()  # idempotent; it patches here when the plugin came too late for the hook above


def pytest_unconfigure(config: pytest.Config) -> None:
    unpatch()
    deadlock._set_deadlock_handler(None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _reports_lock:
        _reports.clear()
    try:
        result = yield
    finally:
        with _reports_lock:
            found = list(_reports)
            _reports.clear()
    if found:
        pytest.fail("treadle detected a deadlock:\n\n" + "\n\n".join(found), pytrace=False)
    return result
