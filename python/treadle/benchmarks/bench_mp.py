"""Across processes: treadle.multiprocessing against multiprocessing (and faster-fifo when
installed), one producer process and one consumer process, in one run.

    treadle bench [--quick] mp
    python benches/bench_mp.py [--quick]        (the same, in a checkout)

Cases: small messages (ints) through a queue; 100 KiB ``bytes`` messages through a queue; a
``Pipe`` round trip (send, the other process sends it back); the start of a ``Process`` to the
first instruction of its target; shared state: a ``Lock`` taken and released with no
contention, a ``Value`` incremented by 2 processes under its lock (and by treadle's atomic
``fetch_add``, against multiprocessing's lock), a ``Barrier`` round between 2 processes.
Producers are forked children (every queue can be given to one); what is timed is the
transfer, from the moment the producer is told to go. Prints microseconds per operation, the
speedup over multiprocessing (its time / treadle's time; above 1 means treadle is faster), and
the rates.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import time

import treadle.multiprocessing as treadle_mp
from treadle.benchmarks import _harness

FORK = multiprocessing.get_context("fork")


def _produce(q, go, n: int, item: object) -> None:
    go.wait()
    put = q.put
    for _ in range(n):
        put(item)


def _produce_ints(q, go, n: int) -> None:
    go.wait()
    put = q.put
    for i in range(n):
        put(i)


def _transfer(make_queue, n: int, item: object | None) -> float:
    """Seconds for the consumer (this process) to get ``n`` messages a forked producer puts."""
    q = make_queue()
    go = FORK.Event()
    if item is None:
        producer = FORK.Process(target=_produce_ints, args=(q, go, n))
    else:
        producer = FORK.Process(target=_produce, args=(q, go, n, item))
    producer.start()
    time.sleep(0.05)
    get = q.get
    start = time.perf_counter()
    go.set()
    for _ in range(n):
        get()
    elapsed = time.perf_counter() - start
    producer.join()
    return elapsed


def _echo(conn, n: int) -> None:
    recv, send = conn.recv, conn.send
    for _ in range(n):
        send(recv())


def _round_trips(pipe, n: int) -> float:
    ours, theirs = pipe()
    echo = FORK.Process(target=_echo, args=(theirs, n))
    echo.start()
    ours.send(0)  # the first round trip starts the child; not timed
    ours.recv()
    send, recv = ours.send, ours.recv
    start = time.perf_counter()
    for i in range(n - 1):
        send(i)
        recv()
    elapsed = time.perf_counter() - start
    echo.join()
    return elapsed


def _first_instruction(conn) -> None:
    conn.send(time.monotonic())


def _start_to_target(context, pipe) -> float:
    """Seconds from ``Process.start()`` to the first instruction of its target."""
    ours, theirs = pipe(duplex=False)
    process = context.Process(target=_first_instruction, args=(theirs,))
    start = time.monotonic()
    process.start()
    reached = ours.recv()
    process.join()
    return reached - start


def _lock_round_trips(lock, n: int) -> None:
    acquire, release = lock.acquire, lock.release
    for _ in range(n):
        acquire()
        release()


def _increment_under_lock(value, n: int) -> None:
    lock = value.get_lock()
    for _ in range(n):
        with lock:
            value.value += 1


def _increment_atomically(value, n: int) -> None:
    add = value.fetch_add
    for _ in range(n):
        add(1)


def _barrier_rounds(barrier, n: int) -> None:
    wait = barrier.wait
    for _ in range(n):
        wait()


def _timed_child(work, shared, n: int, go, ends) -> None:
    go.wait()
    work(shared, n)
    ends.put(time.perf_counter())


def _in_two_processes(work, shared, n: int) -> float:
    """Seconds from the go until two forked children have each run ``work(shared, n)``."""
    go, ends = FORK.Event(), FORK.SimpleQueue()
    children = [FORK.Process(target=_timed_child, args=(work, shared, n, go, ends)) for _ in "ab"]
    for child in children:
        child.start()
    time.sleep(0.05)
    start = time.perf_counter()
    go.set()
    elapsed = max(ends.get() for _ in children) - start
    for child in children:
        child.join()
    return elapsed


def _shared_state(scale: int, repeat: int) -> list[_harness.Result]:
    n = 200_000 * scale
    locks = {"multiprocessing": multiprocessing.Lock(), "treadle": treadle_mp.Lock()}
    results = [
        _harness.compare(
            "Lock acquire+release, uncontended",
            n,
            {name: (lambda lock=lock: _lock_round_trips(lock, n)) for name, lock in locks.items()},
            repeat,
        )
    ]
    m = 10_000 * scale
    increments = {
        "multiprocessing": (_increment_under_lock, multiprocessing.Value),
        "treadle": (_increment_under_lock, treadle_mp.Value),
        "atomic": (_increment_atomically, treadle_mp.Value),
    }
    seconds = _best(
        lambda name: _in_two_processes(increments[name][0], increments[name][1]("i", 0), m),
        list(increments),
        repeat,
    )
    under_lock = {name: seconds[name] for name in ("multiprocessing", "treadle")}
    results.append(_harness.Result("Value += 1 under its lock, 2 processes", 2 * m, under_lock))
    atomic = {"multiprocessing": seconds["multiprocessing"], "treadle": seconds["atomic"]}
    results.append(_harness.Result("  the same, treadle's atomic fetch_add", 2 * m, atomic))
    rounds = 5_000 * scale
    barriers = {"multiprocessing": multiprocessing.Barrier, "treadle": treadle_mp.Barrier}
    results.append(
        _harness.Result(
            "Barrier round, 2 processes",
            rounds,
            _best(
                lambda name: _in_two_processes(_barrier_rounds, barriers[name](2), rounds),
                list(barriers),
                repeat,
            ),
        )
    )
    return results


def _queues() -> dict[str, object]:
    queues = {"multiprocessing": multiprocessing.Queue, "treadle": treadle_mp.Queue}
    if importlib.util.find_spec("faster_fifo") is not None:
        import faster_fifo

        queues["faster-fifo"] = lambda: faster_fifo.Queue(max_size_bytes=64 << 20)
    return queues


def _best(measure, names, repeat: int) -> dict[str, float]:
    best = {name: float("inf") for name in names}
    for _ in range(repeat):
        for name in names:
            best[name] = min(best[name], measure(name))
    return best


def main() -> None:
    args = _harness.arguments(__doc__.splitlines()[0])
    scale = 1 if args.quick else 4
    repeat = 3 if args.quick else 5
    # treadle's fork server is made while this process has one thread (multiprocessing's
    # queues start a feeder thread each).
    _start_to_target(treadle_mp.get_context(), treadle_mp.Pipe)
    starts = {
        "multiprocessing": (FORK, multiprocessing.Pipe),
        "treadle": (treadle_mp.get_context(), treadle_mp.Pipe),
    }
    startup = _best(lambda name: _start_to_target(*starts[name]), list(starts), 4 * repeat)
    queues = _queues()
    results = []
    n = 100_000 * scale
    results.append(
        _harness.Result(
            "queue: small messages (ints)",
            n,
            _best(lambda name: _transfer(queues[name], n, None), list(queues), repeat),
        )
    )
    big = b"x" * (100 * 1024)
    m = 5_000 * scale
    results.append(
        _harness.Result(
            "queue: 100 KiB bytes messages",
            m,
            _best(lambda name: _transfer(queues[name], m, big), list(queues), repeat),
        )
    )
    pipes = {"multiprocessing": multiprocessing.Pipe, "treadle": treadle_mp.Pipe}
    trips = 5_000 * scale
    results.append(
        _harness.Result(
            "Pipe round trip",
            trips - 1,
            _best(lambda name: _round_trips(pipes[name], trips), list(pipes), repeat),
        )
    )
    results.append(_harness.Result("Process start to its target's first line", 1, startup))
    title = f"treadle vs multiprocessing, across processes (best of {repeat}; us per op)"
    _harness.print_table(title + ": queues", results[:2], "multiprocessing")
    _harness.print_table(title + ": pipes and processes", results[2:], "multiprocessing")
    _harness.print_table(title + ": shared state", _shared_state(scale, repeat), "multiprocessing")
    small, large = results[0], results[1]
    print()
    for name, seconds in small.seconds.items():
        print(f"small messages, {name}: {small.ops / seconds:,.0f} /s")
    for name, seconds in large.seconds.items():
        print(f"100 KiB messages, {name}: {large.ops * len(big) / seconds / 1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
