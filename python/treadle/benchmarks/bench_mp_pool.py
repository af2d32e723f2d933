"""Pools: treadle.multiprocessing's Pool and ThreadPool against multiprocessing's, in one run.

    treadle bench [--quick] mp_pool
    python benches/bench_mp_pool.py [--quick]   (the same, in a checkout)

Cases, each with two workers: ``Pool.map`` of tiny tasks (the default chunk size, as
``multiprocessing`` computes it); ``apply_async`` of tiny tasks, every result then taken with
``get()``; ``imap`` of tiny tasks (one call per chunk), and in chunks of 100 calls; the same
``apply_async`` on the thread pools. The pools are made and warmed up before the timing. Prints
microseconds per task and the speedup over multiprocessing (its time / treadle's; above 1 means
treadle is faster).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool

import treadle.multiprocessing as treadle_mp
from treadle.benchmarks import _harness
from treadle.benchmarks._process_work import tiny
from treadle.multiprocessing import pool as treadle_pool

WORKERS = 2


def _map(pool, n: int) -> None:
    assert pool.map(tiny, range(n))[-1] == n


def _apply_async(pool, n: int) -> None:
    apply_async = pool.apply_async
    results = [apply_async(tiny, (i,)) for i in range(n)]
    for result in results:
        result.get()


def _imap(pool, n: int) -> None:
    for _ in pool.imap(tiny, range(n)):
        pass


def _imap_chunked(pool, n: int) -> None:
    for _ in pool.imap(tiny, range(n), chunksize=100):
        pass


def main() -> None:
    args = _harness.arguments(__doc__.splitlines()[0])
    scale = 1 if args.quick else 4
    repeat = 3 if args.quick else 5
    # treadle's first: its fork server is made while this process has one thread.
    pools = {"treadle": treadle_mp.Pool(WORKERS), "multiprocessing": multiprocessing.Pool(WORKERS)}
    threads = {
        "treadle": treadle_pool.ThreadPool(WORKERS),
        "multiprocessing": multiprocessing.pool.ThreadPool(WORKERS),
    }
    try:
        for pool in (*pools.values(), *threads.values()):
            _map(pool, 1000)
            _apply_async(pool, 100)
        cases = [
            ("Pool.map, tiny tasks", pools, _map, 50_000 * scale),
            ("Pool.apply_async + get, tiny tasks", pools, _apply_async, 5_000 * scale),
            ("Pool.imap, tiny tasks", pools, _imap, 5_000 * scale),
            ("Pool.imap, chunksize=100", pools, _imap_chunked, 50_000 * scale),
            ("ThreadPool.apply_async + get, tiny tasks", threads, _apply_async, 5_000 * scale),
        ]
        results = [
            _harness.compare(
                case,
                n,
                {name: (lambda p=p, f=f, n=n: f(p, n)) for name, p in chosen.items()},
                repeat,
            )
            for case, chosen, f, n in cases
        ]
    finally:
        for pool in (*pools.values(), *threads.values()):
            pool.terminate()
            pool.join()
    title = f"treadle vs multiprocessing, pools of {WORKERS} (best of {repeat}; us per task)"
    _harness.print_table(title, results, "multiprocessing")


if __name__ == "__main__":
    main()
