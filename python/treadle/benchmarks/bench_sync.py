"""Synchronization primitives: treadle against threading, in one run.

    treadle bench [--quick] sync
    python benches/bench_sync.py [--quick]        (the same, in a checkout)

Prints, for each case, microseconds per operation for threading and treadle and the speedup
(threading time / treadle time; above 1 means treadle is faster).
"""

from __future__ import annotations

import itertools
import threading

import treadle
from treadle.benchmarks import _harness


def uncontended(factory, n):
    lock = factory()
    acquire, release = lock.acquire, lock.release

    def run():
        for _ in range(n):
            acquire()
            release()

    return run


def with_block(factory, n):
    lock = factory()

    def run():
        for _ in range(n):
            with lock:
                pass

    return run


def contended(factory, n, threads=2):
    """``threads`` threads taking the same lock ``n`` times each; ops = threads * n pairs."""

    def run():
        lock = factory()
        acquire, release = lock.acquire, lock.release

        def worker():
            for _ in range(n):
                acquire()
                release()

        run_threads(worker, threads)

    return run


def run_threads(target, threads: int) -> None:
    """Runs ``target`` in ``threads`` threads at once, and joins them."""
    workers = [threading.Thread(target=target) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()


def event_ping_pong(impl, n):
    """Two threads handing a turn back and forth through two events; ops = round trips."""

    def run():
        ping, pong = impl.Event(), impl.Event()

        def other():
            for _ in range(n):
                ping.wait()
                ping.clear()
                pong.set()

        thread = threading.Thread(target=other)
        thread.start()
        for _ in range(n):
            ping.set()
            pong.wait()
            pong.clear()
        thread.join()

    return run


def condition_ping_pong(impl, n):
    """Two threads alternating under one condition; ops = round trips."""

    def run():
        cond = impl.Condition()
        turn = [0]

        def player(me, other):
            for _ in range(n):
                with cond:
                    while turn[0] != me:
                        cond.wait()
                    turn[0] = other
                    cond.notify()

        threads = [
            threading.Thread(target=player, args=(0, 1)),
            threading.Thread(target=player, args=(1, 0)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return run


def counter_runs(n: int, threads: int) -> dict[str, object]:
    """``threads`` threads counting ``n`` each: an int under a ``threading.Lock``,
    ``treadle.AtomicInt.add``, and ``next()`` on a shared ``itertools.count`` (atomic only
    through the GIL, and only ever by one)."""

    def in_threads(count_n):
        return lambda: run_threads(count_n, threads)

    def locked_int():
        lock, box = threading.Lock(), [0]

        def count_n():
            for _ in range(n):
                with lock:
                    box[0] += 1

        return count_n

    def atomic_int():
        add = treadle.AtomicInt().add

        def count_n():
            for _ in range(n):
                add(1)

        return count_n

    def itertools_count():
        step = itertools.count().__next__

        def count_n():
            for _ in range(n):
                step()

        return count_n

    return {
        "threading": in_threads(locked_int()),
        "treadle": in_threads(atomic_int()),
        "itertools.count": in_threads(itertools_count()),
    }


def counters(n: int, repeat: int) -> None:
    """The counters' table: AtomicInt.add against a locked int and against itertools.count."""
    results = [
        _harness.compare(
            f"count, {threads} thread(s)", threads * n, counter_runs(n, threads), repeat
        )
        for threads in (1, 4)
    ]
    title = f"treadle.AtomicInt.add vs an int under threading.Lock (best of {repeat})"
    _harness.print_table(title, results, "threading")
    for r in results:
        ratio = r.seconds["itertools.count"] / r.seconds["treadle"]
        print(f"{r.case}: AtomicInt.add is {ratio:.2f}x next(itertools.count())")


def main() -> None:
    args = _harness.arguments(__doc__.splitlines()[0])
    scale = 1 if args.quick else 10
    repeat = 3 if args.quick else 7
    n = 20_000 * scale
    impls = {"threading": threading, "treadle": treadle}
    results = []

    def case(title, ops, make):
        results.append(
            _harness.compare(title, ops, {name: make(impl) for name, impl in impls.items()}, repeat)
        )

    case("Lock acquire+release, uncontended", n, lambda m: uncontended(m.Lock, n))
    case("RLock acquire+release, uncontended", n, lambda m: uncontended(m.RLock, n))
    case("with Lock:", n, lambda m: with_block(m.Lock, n))
    case("Lock, 2 threads contending", 2 * n // 4, lambda m: contended(m.Lock, n // 4))
    case("RLock, 2 threads contending", 2 * n // 4, lambda m: contended(m.RLock, n // 4))
    pp = 2_000 * scale
    case("Event set/wait ping-pong (round trip)", pp, lambda m: event_ping_pong(m, pp))
    case("Condition notify/wait ping-pong (round trip)", pp, lambda m: condition_ping_pong(m, pp))
    case("Semaphore acquire+release", n, lambda m: uncontended(lambda: m.Semaphore(1), n))
    case(
        "Semaphore(2), 4 threads contending",
        4 * n // 8,
        lambda m: contended(lambda: m.Semaphore(2), n // 8, threads=4),
    )
    _harness.print_table(f"treadle vs threading (best of {repeat})", results, "threading")
    counters(n, repeat)


if __name__ == "__main__":
    main()
