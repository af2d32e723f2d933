"""Deadlock detection's cost: treadle with detection on ("raise", the default) against off.

    treadle bench [--quick] deadlock
    python benches/bench_deadlock.py [--quick]        (the same, in a checkout)

The uncontended paths never touch the wait graph, so the goal is that "raise" stays within 10%
of "off" there. Contended cases publish and withdraw a wait each time a thread parks.
"""

from __future__ import annotations

import treadle
from treadle.benchmarks import _harness, bench_sync


def in_mode(mode, make_run):
    run = make_run()

    def timed():
        treadle.deadlock.set_mode(mode)
        try:
            run()
        finally:
            treadle.deadlock.set_mode("raise")

    return timed


def main() -> None:
    args = _harness.arguments(__doc__.splitlines()[0])
    scale = 1 if args.quick else 10
    repeat = 3 if args.quick else 9
    n = 20_000 * scale
    results = []

    def case(title, ops, make_run):
        runs = {mode: in_mode(mode, make_run) for mode in ("off", "raise")}
        results.append(_harness.compare(title, ops, runs, repeat))

    case("Lock acquire+release, uncontended", n, lambda: bench_sync.uncontended(treadle.Lock, n))
    case("RLock acquire+release, uncontended", n, lambda: bench_sync.uncontended(treadle.RLock, n))
    case("with Lock:", n, lambda: bench_sync.with_block(treadle.Lock, n))
    case(
        "Lock, 2 threads contending",
        2 * n // 4,
        lambda: bench_sync.contended(treadle.Lock, n // 4),
    )
    pp = 2_000 * scale
    case("Event ping-pong (round trip)", pp, lambda: bench_sync.event_ping_pong(treadle, pp))
    _harness.print_table(
        f"deadlock detection: on ('raise') vs off (best of {repeat}); speedup < 1 is overhead",
        results,
        baseline="off",
        subject="raise",
    )


if __name__ == "__main__":
    main()
