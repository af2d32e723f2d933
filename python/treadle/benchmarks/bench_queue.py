"""Throughput of treadle's queues against the standard library's, measured in the same run.

    treadle bench [--quick] queue
    python benches/bench_queue.py [--quick]        (the same, in a checkout)

Each case moves ``items`` objects from producer threads to consumer threads through one queue;
each implementation is timed ``repeat`` times, interleaved with the others, and its best time is
kept (the least disturbed by the machine).
The table gives microseconds per item and ratios: ``speedup`` is the standard library's time over
treadle's (above 1: treadle is faster); ``vs C SimpleQueue`` is treadle's time over the C
``queue.SimpleQueue``'s in the same threads (below 1.5: within the goal of 1.5x).
"""

from __future__ import annotations

import argparse
import gc
import queue
import threading
import time
from collections.abc import Callable

import treadle

# Ints throughout, so that PriorityQueue can compare the sentinel with items.
STOP = 1 << 62


def transfer(make_queue: Callable[[], object], producers: int, consumers: int, items: int) -> float:
    """Seconds to move `items` items from `producers` threads to `consumers` threads."""
    q = make_queue()
    per_producer = items // producers
    start = threading.Barrier(producers + consumers + 1)

    def produce() -> None:
        put = q.put
        start.wait()
        for i in range(per_producer):
            put(i)

    def consume() -> None:
        get = q.get
        start.wait()
        while get() is not STOP:
            pass

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    threads += [threading.Thread(target=consume) for _ in range(consumers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads[:producers]:
        thread.join()
    for _ in range(consumers):
        q.put(STOP)
    for thread in threads[producers:]:
        thread.join()
    return time.perf_counter() - began


def transfer_batches(make_queue: Callable[[], object], items: int, batch: int) -> float:
    """Seconds to move `items` items from one thread to another in batches of `batch`."""
    q = make_queue()
    chunk = list(range(batch))
    start = threading.Barrier(2)

    def produce() -> None:
        start.wait()
        for _ in range(items // batch):
            q.put_many(chunk)
        q.put(STOP)

    thread = threading.Thread(target=produce)
    thread.start()
    start.wait()
    began = time.perf_counter()
    done = False
    while not done:
        for item in q.get_many(batch):
            if item is STOP:
                done = True
    thread.join()
    return time.perf_counter() - began


def transfer_one_by_one_batches(make_queue: Callable[[], object], items: int, batch: int) -> float:
    """The standard library's way to do the same: a loop of put() and get()."""
    q = make_queue()
    chunk = list(range(batch))
    start = threading.Barrier(2)

    def produce() -> None:
        put = q.put
        start.wait()
        for _ in range(items // batch):
            for item in chunk:
                put(item)
        put(STOP)

    thread = threading.Thread(target=produce)
    thread.start()
    get = q.get
    start.wait()
    began = time.perf_counter()
    while get() is not STOP:
        pass
    thread.join()
    return time.perf_counter() - began


def best_of(repeat: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            best[name] = min(best[name], run())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer items and repeats")
    args = parser.parse_args()
    items = 40_000 if args.quick else 200_000
    repeat = 3 if args.quick else 5

    def threads(p: int, c: int, make: Callable[[], object]) -> Callable[[], float]:
        return lambda: transfer(make, p, c, items)

    cases = [
        ("Queue() 1 producer -> 1 consumer", 1, 1, queue.Queue, treadle.Queue),
        (
            "Queue(1000) 1 producer -> 1 consumer",
            1,
            1,
            lambda: queue.Queue(1000),
            lambda: treadle.Queue(1000),
        ),
        (
            "Queue(1000) 4 producers -> 4 consumers",
            4,
            4,
            lambda: queue.Queue(1000),
            lambda: treadle.Queue(1000),
        ),
        ("LifoQueue() 1 producer -> 1 consumer", 1, 1, queue.LifoQueue, treadle.LifoQueue),
        (
            "PriorityQueue() 1 producer -> 1 consumer",
            1,
            1,
            queue.PriorityQueue,
            treadle.PriorityQueue,
        ),
        ("SimpleQueue() 1 producer -> 1 consumer", 1, 1, queue.SimpleQueue, treadle.SimpleQueue),
        ("SimpleQueue() 4 producers -> 4 consumers", 4, 4, queue.SimpleQueue, treadle.SimpleQueue),
    ]
    header = f"{'case':<44} {'queue us/item':>14} {'treadle us/item':>16} {'speedup':>8}"
    header += f" {'vs C SimpleQueue':>17}"
    print(f"items per run: {items}, best of {repeat}")
    print(header)
    print("-" * len(header))
    for name, p, c, stdlib, ours in cases:
        best = best_of(
            repeat,
            {
                "queue": threads(p, c, stdlib),
                "treadle": threads(p, c, ours),
                "simple": threads(p, c, queue.SimpleQueue),
            },
        )
        print(
            f"{name:<44} {best['queue'] / items * 1e6:>14.3f} "
            f"{best['treadle'] / items * 1e6:>16.3f} {best['queue'] / best['treadle']:>7.2f}x "
            f"{best['treadle'] / best['simple']:>16.2f}x"
        )
    for batch in (16, 256):
        best = best_of(
            repeat,
            {
                "queue": lambda b=batch: transfer_one_by_one_batches(queue.Queue, items, b),
                "treadle": lambda b=batch: transfer_batches(treadle.Queue, items, b),
                "simple": lambda b=batch: transfer_one_by_one_batches(queue.SimpleQueue, items, b),
            },
        )
        name = f"put_many/get_many({batch}) vs put/get loop"
        print(
            f"{name:<44} {best['queue'] / items * 1e6:>14.3f} "
            f"{best['treadle'] / items * 1e6:>16.3f} {best['queue'] / best['treadle']:>7.2f}x "
            f"{best['treadle'] / best['simple']:>16.2f}x"
        )


if __name__ == "__main__":
    main()
