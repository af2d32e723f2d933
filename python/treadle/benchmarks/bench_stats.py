"""What statistics cost: the pools' tiny-task cases with ``executor.stats()`` gathering (the
default) against pools made with them off (``TREADLE_STATS=0``), in one run.

    treadle bench [--quick] stats
    python benches/bench_stats.py [--quick]        (the same, in a checkout)

The two sides alternate, run after run, and each keeps its best time of a round (the least
disturbed by the rest of the machine); a case is measured in several rounds, the side that runs
first changing each round, and the overhead printed, (on - off) / off in percent, is the median
of the rounds' (on a machine loaded by others, one round's figure moves by several percent
either way). The thread pools are made inside each timed run (as in ``bench pool``), the
process pools once per side, warm, outside the timing (as in ``bench process``).
"""

from __future__ import annotations

import statistics

import treadle
from treadle import _treadle
from treadle.benchmarks import _harness
from treadle.benchmarks import _process_work as work
from treadle.benchmarks.bench_pool import (
    as_completed_all,
    map_all,
    round_trip,
    submit_all_then_result,
)

SIDES = ("stats off", "stats on")


def switched(enabled: bool, run):
    """``run`` with the pools it makes gathering statistics or not."""

    def timed():
        _treadle._set_stats_enabled(enabled)
        try:
            run()
        finally:
            _treadle._set_stats_enabled(True)

    return timed


def measure(title: str, ops: int, runs: dict, repeat: int, rounds: int) -> list[_harness.Result]:
    """``rounds`` comparisons of the sides, the first side changing each round."""
    order = list(runs)
    measured = []
    for round_number in range(rounds):
        sides = order if round_number % 2 == 0 else order[::-1]
        measured.append(_harness.compare(title, ops, {s: runs[s] for s in sides}, repeat))
    return measured


def print_overheads(title: str, cases: list[list[_harness.Result]]) -> None:
    head = f"{'case':<46} {'off us/task':>11} {'on us/task':>11} {'overhead':>9} {'rounds':>16}"
    print(f"\n{title}")
    print(head)
    print("-" * len(head))
    for rounds in cases:
        overheads = [r.seconds["stats on"] / r.seconds["stats off"] - 1 for r in rounds]
        best = {side: min(r.seconds[side] for r in rounds) / rounds[0].ops * 1e6 for side in SIDES}
        spread = f"{100 * min(overheads):+.1f}..{100 * max(overheads):+.1f}%"
        print(
            f"{rounds[0].case:<46} {best['stats off']:>11.3f} {best['stats on']:>11.3f}"
            f" {100 * statistics.median(overheads):>+8.1f}% {spread:>16}"
        )


def main() -> None:
    args = _harness.arguments(__doc__.splitlines()[0])
    scale = 1 if args.quick else 5
    repeat = 5 if args.quick else 10
    rounds = 3 if args.quick else 9
    results = []

    def case(title, ops, make):
        runs = {side: switched(side == "stats on", make()) for side in SIDES}
        results.append(measure(title, ops, runs, repeat, rounds))

    n = 4_000 * scale
    case(
        "threads: submit all, then results (2 workers)",
        n,
        lambda: submit_all_then_result(treadle, n, 2),
    )
    case(
        "threads: submit all, then results (8 workers)",
        n,
        lambda: submit_all_then_result(treadle, n, 8),
    )
    case("threads: submit and wait, one at a time", n // 4, lambda: round_trip(treadle, n // 4))
    case("threads: map (4 workers)", n, lambda: map_all(treadle, n))
    case("threads: as_completed (4 workers)", n, lambda: as_completed_all(treadle, n))

    pools = {}
    for side in SIDES:
        _treadle._set_stats_enabled(side == "stats on")
        try:
            pools[side] = treadle.ProcessPoolExecutor(2)
        finally:
            _treadle._set_stats_enabled(True)
        list(pools[side].map(work.tiny, range(8)))  # every worker started
    m = 1_000 * scale
    items = list(range(m))

    def process_case(title, run):
        runs = {side: (lambda pool=pools[side]: run(pool)) for side in SIDES}
        results.append(measure(title, m, runs, repeat, rounds))

    process_case(
        "processes: submit all, then results",
        lambda pool: [f.result() for f in [pool.submit(work.tiny, x) for x in items]],
    )
    process_case("processes: map, chunksize=1", lambda pool: list(pool.map(work.tiny, items)))
    for pool in pools.values():
        pool.shutdown()
    title = f"statistics on against off (median of {rounds} rounds of best of {repeat})"
    print_overheads(title, results)


if __name__ == "__main__":
    main()
