"""A tour of what treadle does today, on this machine.

    python examples/demo.py

It shows treadle's primitives used exactly as threading's, a blocked wait that lets other
threads run and still answers Ctrl-C, and a quick speed comparison against threading.
"""

from __future__ import annotations

import threading
import time

import treadle


def counter_with_lock(lock_type, threads=4, per_thread=50_000) -> tuple[int, float]:
    """Four threads increment a shared counter under a lock: the classic race, done right."""
    lock = lock_type()
    count = 0

    def work() -> None:
        nonlocal count
        for _ in range(per_thread):
            with lock:
                count += 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return count, time.perf_counter() - start


def producer_consumer() -> list[int]:
    """A producer hands items to a consumer through a Condition; an Event says stop."""
    cond = treadle.Condition()
    items: list[int] = []
    consumed: list[int] = []
    stop = treadle.Event()

    def consumer() -> None:
        while True:
            with cond:
                cond.wait_for(lambda: items or stop.is_set(), timeout=5)
                if not items and stop.is_set():
                    return
                consumed.extend(items)
                items.clear()

    thread = threading.Thread(target=consumer, name="consumer")
    thread.start()
    for i in range(10):
        with cond:
            items.append(i * i)
            cond.notify()
    stop.set()
    with cond:
        cond.notify()
    thread.join(5)
    return consumed


def barrier_rounds(parties=3, rounds=3) -> list[str]:
    """Three threads meet at a Barrier each round; its action runs once per round."""
    log: list[str] = []
    barrier = treadle.Barrier(parties, action=lambda: log.append("--- round complete ---"))

    def runner(name: str) -> None:
        for r in range(rounds):
            log.append(f"{name} reached round {r}")
            barrier.wait(timeout=5)

    workers = [threading.Thread(target=runner, args=(f"t{i}",)) for i in range(parties)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    return log


def main() -> None:
    print(f"treadle {treadle.__version__}: threading's primitives on a Rust core\n")

    print("1. A counter shared by 4 threads, 50,000 increments each:")
    for name, lock_type in (("threading.Lock", threading.Lock), ("treadle.Lock", treadle.Lock)):
        count, seconds = counter_with_lock(lock_type)
        print(f"   {name:<15} count={count:,}  in {seconds * 1000:.0f} ms")

    print("\n2. Producer/consumer over treadle.Condition, stopped by treadle.Event:")
    print(f"   consumed {producer_consumer()}")

    print("\n3. treadle.Barrier with an action, 3 threads x 3 rounds:")
    log = barrier_rounds()
    print(f"   {log.count('--- round complete ---')} rounds completed, {len(log)} log lines")

    print("\n4. Bad input gets threading's own exceptions:")
    for label, call in (
        ("Lock().release()", lambda: treadle.Lock().release()),
        ("Lock().acquire(False, 1)", lambda: treadle.Lock().acquire(False, 1)),
        ("BoundedSemaphore(1).release()", lambda: treadle.BoundedSemaphore(1).release()),
        ("Barrier(2).wait(timeout=0.05)", lambda: treadle.Barrier(2).wait(timeout=0.05)),
    ):
        try:
            call()
        except Exception as exc:
            print(f"   {label:<32} -> {type(exc).__module__}.{type(exc).__name__}: {exc}")

    print("\n5. A wait releases the GIL: another thread spins while the main thread waits:")
    event = treadle.Event()
    spins = 0

    def spinner() -> None:
        nonlocal spins
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            spins += 1
        event.set()

    threading.Thread(target=spinner).start()
    event.wait(5)
    print(f"   the other thread looped {spins:,} times while we waited")
    print("\nRun the benchmarks: treadle bench --quick")


if __name__ == "__main__":
    main()
