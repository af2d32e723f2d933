"""What ``import treadle`` costs: what ``import threading`` does, and the extension. The pools,
the deadlock reports, patch() and what they import load on first use. Compared as sets of
imported modules, in fresh interpreters, rather than as timings, which would flake."""

import json
import subprocess
import sys

import pytest

import treadle

HEAVY = (
    "tqdm",
    "logging",
    "dataclasses",
    "inspect",
    "typing",
    "traceback",
    "concurrent.futures",
    "concurrent.futures.process",
    "multiprocessing",
    "dask",
    "distributed",
)


def modules_imported_by(statement: str) -> set[str]:
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{statement}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout))


def test_import_treadle_loads_none_of_the_heavy_modules():
    loaded = modules_imported_by("import treadle")
    assert [name for name in HEAVY if name in loaded] == []


def test_import_treadle_loads_of_the_standard_library_only_what_threading_and_queue_load():
    extra = modules_imported_by("import treadle") - modules_imported_by("import threading, queue")
    assert {name for name in extra if not name.startswith("treadle")} <= {"__future__"}


@pytest.mark.parametrize("name", sorted(treadle.__all__))
def test_every_public_name_is_reachable_and_listed(name):
    assert getattr(treadle, name) is not None
    assert name in dir(treadle)


def test_a_lazily_loaded_name_is_the_object_of_its_module():
    from treadle import futures, patching

    assert treadle.futures is futures
    assert treadle.ThreadPoolExecutor is futures.thread.ThreadPoolExecutor
    assert treadle.ProcessPoolExecutor is futures.process.ProcessPoolExecutor
    assert treadle.Future is futures.future.Future
    assert treadle.patch is patching.patch
    assert treadle.dump_waits is treadle.deadlock.dump_waits


def test_the_dask_executor_class_loads_without_dask_which_loads_when_one_is_made():
    loaded = modules_imported_by(
        "import treadle; treadle.DaskExecutor; treadle.futures.DaskExecutor"
    )
    assert "treadle.futures.dask_executor" in loaded
    assert not {"dask", "distributed"} & loaded


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        treadle.Nothing  # noqa: B018


def test_tqdm_loads_only_when_a_bar_is_asked_for():
    assert "tqdm" not in modules_imported_by("import treadle")
    without_bar = modules_imported_by(
        "import treadle\n"
        "with treadle.ThreadPoolExecutor(2) as pool:\n"
        "    list(pool.map(abs, range(10)))\n"
        "    list(treadle.as_completed([pool.submit(abs, 1)]))"
    )
    assert "tqdm" not in without_bar
    with_bar = modules_imported_by(
        "import io, treadle\n"
        "with treadle.ThreadPoolExecutor(2) as pool:\n"
        "    list(pool.map(abs, range(10), progress={'file': io.StringIO()}))"
    )
    assert "tqdm" in with_bar
