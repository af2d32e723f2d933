"""Process-pool cases whose task functions live in a script's own ``__main__``, as tutorials and
most scripts write them. ``bench_process`` runs this file as a script, once per case and pool, in
a fresh interpreter of its own:

    python _script_cases.py CASE POOL REPEAT SCALE

and reads the JSON line it prints: ``{"seconds": best, "ops": n}`` for a timed case, or what the
case measures (``extra_fds``, ``extra_shared_mb``) otherwise. Every pool has 2 workers.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import multiprocessing
import operator
import os
import sys
import time

WORKERS = 2
TABLE = bytes(range(256)) * (1 << 16)  # 16 MiB, built at module level


def tiny(x):
    return x + 1


def lookup(i):
    return TABLE[i]


def length(data):
    return len(data)


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.001)


class Pool:
    """One interface over the pools: ``call`` (submit, then wait for the result), ``map``,
    ``submit`` (a handle with ``result()``)."""

    def __init__(self, name):
        self.name = name
        if name == "treadle":
            import treadle

            self.pool = treadle.ProcessPoolExecutor(WORKERS)
        elif name == "concurrent.futures":
            self.pool = concurrent.futures.ProcessPoolExecutor(WORKERS)
        else:
            self.pool = multiprocessing.Pool(WORKERS)

    def submit(self, fn, *args):
        if self.name == "multiprocessing.Pool":
            handle = self.pool.apply_async(fn, args)
            handle.result = handle.get
            return handle
        return self.pool.submit(fn, *args)

    def map(self, fn, items, chunksize):
        return list(self.pool.map(fn, items, chunksize=chunksize))

    def close(self):
        if self.name == "multiprocessing.Pool":
            self.pool.close()
            self.pool.join()
        else:
            self.pool.shutdown()


def best_of(repeat, run):
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def timed(pool, repeat, scale, case):
    if case in ("tiny", "tiny_module"):
        fn = tiny if case == "tiny" else operator.neg
        n = 1000 * scale

        def run():
            for i in range(n):
                pool.submit(fn, i).result()

        pool.map(fn, range(WORKERS * 4), 1)  # every worker started
        return best_of(repeat, run), n
    if case == "chunked":
        n = 400_000 * scale
        pool.map(tiny, range(WORKERS * 4), 1)
        return best_of(repeat, lambda: pool.map(tiny, range(n), 1000)), n
    if case == "table":
        n = 200
        pool.map(lookup, range(WORKERS * 4), 1)
        return best_of(repeat, lambda: pool.map(lookup, range(n), 1)), n
    raise ValueError(case)


def queued(pool, folder):
    """400 tasks of one 8 MiB array queued behind a blocked worker: what they hold meanwhile."""
    data = bytes(8 << 20)
    gate = os.path.join(folder, f"go-{os.getpid()}")
    pool.map(tiny, range(WORKERS * 4), 1)  # every worker started
    blockers = [pool.submit(wait_for, gate) for _ in range(WORKERS)]
    time.sleep(0.2)
    fds, shared = _descriptors(), _shared_bytes()
    futures = [pool.submit(length, data) for _ in range(400)]
    time.sleep(0.5)
    extra = {
        "extra_fds": _descriptors() - fds,
        "extra_shared_mb": (_shared_bytes() - shared) / (1 << 20),
    }
    open(gate, "w").close()
    assert all(f.result() == len(data) for f in futures)
    assert all(b.result() is None for b in blockers)
    os.unlink(gate)
    return extra


def _descriptors():
    return len(os.listdir("/proc/self/fd"))


def _shared_bytes():
    """Bytes of shared memory this process holds: memfd segments and files in /dev/shm."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(("/memfd:", "/dev/shm/")):
                total += os.fstat(int(fd)).st_size
        except OSError:
            pass
    return total


def main():
    case, name, repeat, scale = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    pool = Pool(name)
    try:
        if case == "queued":
            print(json.dumps(queued(pool, sys.argv[5])))
        else:
            seconds, ops = timed(pool, repeat, scale, case)
            print(json.dumps({"seconds": seconds, "ops": ops}))
    finally:
        pool.close()


if __name__ == "__main__":
    main()
