"""Process pools: treadle.ProcessPoolExecutor against concurrent.futures.ProcessPoolExecutor and
multiprocessing.Pool (and loky, pebble, mpire when installed), in one run.

    treadle bench [--quick] process
    python benches/bench_process.py [--quick]        (the same, in a checkout)

Prints microseconds per operation and the speedup over concurrent.futures (its time / treadle's
time; above 1 means treadle is faster). Every pool has 2 workers and uses its default start
method (the standard library's is fork on Linux before 3.14); steady-state cases run on warm
pools, created outside the timing.

The cases whose task functions live in the script's own ``__main__`` (as in most scripts) run
``_script_cases.py`` as a script, in a fresh interpreter per case and pool: tiny tasks of a
``__main__`` function beside ``operator.neg``, a chunked ``map``, a ``map`` whose function reads
a 16 MiB module-level table, and what 400 queued tasks of one 8 MiB array hold meanwhile.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

import treadle
from treadle.benchmarks import _harness
from treadle.benchmarks import _process_work as work

WORKERS = 2


class Stdlib:
    """``concurrent.futures.ProcessPoolExecutor``."""

    def __init__(self):
        self.pool = concurrent.futures.ProcessPoolExecutor(WORKERS)

    def submit_all(self, fn, items):
        return [f.result() for f in [self.pool.submit(fn, x) for x in items]]

    def map(self, fn, items, chunksize):
        return list(self.pool.map(fn, items, chunksize=chunksize))

    def close(self):
        self.pool.shutdown()


class Treadle(Stdlib):
    def __init__(self):
        self.pool = treadle.ProcessPoolExecutor(WORKERS)


class MpPool:
    """``multiprocessing.Pool``: apply_async then get; ``map``."""

    def __init__(self):
        self.pool = multiprocessing.Pool(WORKERS)

    def submit_all(self, fn, items):
        return [r.get() for r in [self.pool.apply_async(fn, (x,)) for x in items]]

    def map(self, fn, items, chunksize):
        return self.pool.map(fn, items, chunksize=chunksize)

    def close(self):
        self.pool.close()
        self.pool.join()


class Loky(Stdlib):
    def __init__(self):
        import loky

        self.pool = loky.get_reusable_executor(max_workers=WORKERS)


class Pebble(Stdlib):
    def __init__(self):
        import pebble

        self.pool = pebble.ProcessPool(max_workers=WORKERS)

    def submit_all(self, fn, items):
        return [f.result() for f in [self.pool.schedule(fn, (x,)) for x in items]]

    def map(self, fn, items, chunksize):
        return list(self.pool.map(fn, items, chunksize=chunksize).result())

    def close(self):
        self.pool.close()
        self.pool.join()


POOLS = {"concurrent.futures": Stdlib, "treadle": Treadle, "multiprocessing.Pool": MpPool}
for name, cls in (("loky", Loky), ("pebble", Pebble)):
    if importlib.util.find_spec(name) is not None:
        POOLS[name] = cls


def first_result(cls):
    """Seconds from creating a pool to its first result (the shutdown is not timed)."""
    start = time.perf_counter()
    pool = cls()
    pool.submit_all(work.tiny, [1])
    elapsed = time.perf_counter() - start
    pool.close()
    return elapsed


SCRIPT_POOLS = ("concurrent.futures", "treadle", "multiprocessing.Pool")
SCRIPT_CASES = {
    "tiny": "tiny tasks of a __main__ function (submit, result)",
    "tiny_module": "tiny tasks of operator.neg (submit, result)",
    "chunked": "map of a __main__ function, chunksize=1000",
    "table": "map of 200, __main__ function, 16 MiB global",
}


def run_script_case(case: str, pool: str, repeat: int, scale: int, *extra: str) -> dict:
    script = os.path.join(os.path.dirname(__file__), "_script_cases.py")
    done = subprocess.run(
        [sys.executable, script, case, pool, str(repeat), str(scale), *extra],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def script_cases(repeat: int, scale: int) -> list[_harness.Result]:
    """The cases of a script's own functions, each pool in a fresh interpreter; the best of
    ``repeat`` runs of each, interleaved."""
    results = []
    for case, title in SCRIPT_CASES.items():
        seconds = {name: float("inf") for name in SCRIPT_POOLS}
        ops = 0
        for _ in range(2):
            for name in SCRIPT_POOLS:
                out = run_script_case(case, name, repeat, scale)
                seconds[name] = min(seconds[name], out["seconds"])
                ops = out["ops"]
        results.append(_harness.Result(title, ops, seconds))
    return results


def queued_case() -> str:
    """What 400 queued tasks of one 8 MiB array hold while they wait, pool by pool."""
    with tempfile.TemporaryDirectory() as folder:
        lines = []
        for name in SCRIPT_POOLS:
            out = run_script_case("queued", name, 1, 1, folder)
            lines.append(
                f"{name} +{out['extra_shared_mb']:.0f} MB shared memory, "
                f"+{out['extra_fds']} descriptors"
            )
    return "400 queued tasks of one 8 MiB array: " + "; ".join(lines)


def main() -> None:
    args = _harness.arguments(__doc__.splitlines()[0])
    scale = 1 if args.quick else 5
    repeat = 3 if args.quick else 5
    pools = {name: cls() for name, cls in POOLS.items()}
    for pool in pools.values():
        pool.submit_all(work.tiny, range(WORKERS * 4))  # every worker started
    results = []

    def case(title, ops, run):
        runs = {name: (lambda p=pool: run(p)) for name, pool in pools.items()}
        results.append(_harness.compare(title, ops, runs, repeat))

    n = 1_000 * scale
    items = list(range(n))
    case("tiny tasks: submit all, then results", n, lambda p: p.submit_all(work.tiny, items))
    case("map, chunksize=1", n, lambda p: p.map(work.tiny, items, 1))
    big = 20 * n
    auto = max(1, big // (4 * WORKERS))  # multiprocessing.Pool.map's own choice
    title = f"map of {big}, chunksize={auto} (auto)"
    case(title, big, lambda p: p.map(work.tiny, range(big), auto))
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is not None:
        for mib in (8, 64):
            array = numpy.ones(mib << 17)  # mib MiB of float64
            count = 4 if mib == 8 else 2
            arrays = [array] * count
            case(
                f"{mib} MiB numpy array in and out (per array)",
                count,
                lambda p, a=arrays: p.submit_all(work.same, a),
            )
    for pool in pools.values():
        pool.close()
    startup = {name: min(first_result(cls) for _ in range(repeat)) for name, cls in POOLS.items()}
    results.append(_harness.Result("start-up to first result (2 workers)", 1, startup))
    title = f"a script's own functions (best of {2 * repeat}; us per op)"
    _harness.print_table(title, script_cases(repeat, scale), "concurrent.futures")
    print(queued_case())
    title = f"treadle vs concurrent.futures (best of {repeat}; us per op)"
    _harness.print_table(title, results, "concurrent.futures")
    for r in results:
        if "numpy" in r.case:
            mib = int(r.case.split()[0])
            rates = {k: 2 * mib / 1024 / (v / r.ops) for k, v in r.seconds.items()}
            text = ", ".join(f"{k} {v:.2f} GB/s" for k, v in rates.items())
            print(f"{r.case}: {text} (in + out)")


if __name__ == "__main__":
    main()
