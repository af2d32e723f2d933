"""Thread pools: treadle.ThreadPoolExecutor against concurrent.futures, in one run.

    treadle bench [--quick] pool
    python benches/bench_pool.py [--quick]        (the same, in a checkout)

Prints, for each case, microseconds per task for concurrent.futures and treadle and the speedup
(concurrent.futures time / treadle time; above 1 means treadle is faster). Tasks are trivial, so
the figures are the pools' own overhead.
"""

from __future__ import annotations

import concurrent.futures

import treadle
from treadle.benchmarks import _harness


def task(x):
    return x


class Stdlib:
    ThreadPoolExecutor = concurrent.futures.ThreadPoolExecutor
    as_completed = staticmethod(concurrent.futures.as_completed)


def submit_all_then_result(impl, n, workers):
    """Submit ``n`` tasks, then take every result."""

    def run():
        with impl.ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(task, i) for i in range(n)]
            for future in futures:
                future.result()

    return run


def round_trip(impl, n):
    """One task at a time: submit, wait for its result, again (latency)."""

    def run():
        with impl.ThreadPoolExecutor(2) as pool:
            for i in range(n):
                pool.submit(task, i).result()

    return run


def map_all(impl, n):
    def run():
        with impl.ThreadPoolExecutor(4) as pool:
            for _ in pool.map(task, range(n)):
                pass

    return run


def as_completed_all(impl, n):
    def run():
        with impl.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(task, i) for i in range(n)]
            for future in impl.as_completed(futures):
                future.result()

    return run


def main() -> None:
    args = _harness.arguments(__doc__.splitlines()[0])
    scale = 1 if args.quick else 5
    repeat = 3 if args.quick else 5
    n = 4_000 * scale
    impls = {"concurrent.futures": Stdlib, "treadle": treadle}
    results = []

    def case(title, ops, make):
        runs = {name: make(impl) for name, impl in impls.items()}
        results.append(_harness.compare(title, ops, runs, repeat))

    case("submit all, then results (2 workers)", n, lambda m: submit_all_then_result(m, n, 2))
    case("submit all, then results (8 workers)", n, lambda m: submit_all_then_result(m, n, 8))
    rt = n // 4
    case("submit and wait, one at a time", rt, lambda m: round_trip(m, rt))
    case("map (4 workers)", n, lambda m: map_all(m, n))
    case("as_completed (4 workers)", n, lambda m: as_completed_all(m, n))
    _harness.print_table(
        f"treadle vs concurrent.futures (best of {repeat})", results, "concurrent.futures"
    )


if __name__ == "__main__":
    main()
