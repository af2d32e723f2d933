"""The probe run beside each third-party suite (``scripts/external-suites``), in the same
pytest session: it proves that treadle's plugin was in force, and in force early enough, before
the suite's ``conftest.py`` imported the code under test (a green run that was not patched would
prove nothing). Not collected by the project's own test run (its name is not ``test_*``)."""

from __future__ import annotations

import concurrent.futures
import queue
import sys
import threading

import pytest

import treadle

# What the code under test makes when it is imported, if the run imported it.
MADE_AT_IMPORT = {
    "dask.threaded": [
        ("pools_lock", lambda value: type(value) is treadle.Lock),
        ("ThreadPoolExecutor", lambda value: value is treadle.ThreadPoolExecutor),
    ],
    "tqdm.std": [
        ("TqdmDefaultWriteLock", lambda value: type(value.th_lock) is treadle.RLock),
    ],
    "pebble.decorators": [
        ("_synchronized_lock", lambda value: type(value) is treadle.Lock),
    ],
}


def test_the_standard_library_is_patched():
    assert threading.Lock is treadle.Lock
    assert threading.RLock is treadle.RLock
    assert queue.Queue is treadle.Queue
    assert concurrent.futures.ThreadPoolExecutor is treadle.ThreadPoolExecutor


def test_the_code_under_test_made_treadles_objects_at_import():
    imported = [name for name in MADE_AT_IMPORT if name in sys.modules]
    if not imported:
        pytest.fail("the run imported none of the libraries this probe knows")
    for name in imported:
        module = sys.modules[name]
        for attribute, is_treadles in MADE_AT_IMPORT[name]:
            assert is_treadles(getattr(module, attribute)), f"{name}.{attribute}"
