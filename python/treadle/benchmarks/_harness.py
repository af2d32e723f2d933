"""The benchmark harness: time a case for the standard library and for treadle in the same run,
and print the ratio.

A case is a function ``make(impl) -> run`` where ``impl`` is the module-like object under test
and ``run()`` does ``ops`` operations once. Each side is timed ``repeat`` times, interleaved, and
the best time is kept (the least disturbed by the rest of the machine). The ratio is
``baseline time / treadle time``: above 1 means treadle is faster.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    case: str
    ops: int
    seconds: dict[str, float]

    def per_op_us(self, name: str) -> float:
        return self.seconds[name] / self.ops * 1e6


def time_once(run: Callable[[], object]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        gc.enable()


def compare(case: str, ops: int, runs: dict[str, Callable[[], object]], repeat: int) -> Result:
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            best[name] = min(best[name], time_once(run))
    return Result(case, ops, best)


def print_table(title: str, results: list[Result], baseline: str, subject: str = "treadle") -> None:
    others = [n for n in results[0].seconds if n not in (baseline, subject)] if results else []
    head = f"{'case':<44} {baseline + ' us/op':>16} {subject + ' us/op':>16} {'speedup':>8}"
    for other in others:
        head += f" {other + ' us/op':>16}"
    print(f"\n{title}")
    print(head)
    print("-" * len(head))
    for r in results:
        line = (
            f"{r.case:<44} {r.per_op_us(baseline):>16.3f} {r.per_op_us(subject):>16.3f} "
            f"{r.seconds[baseline] / r.seconds[subject]:>7.2f}x"
        )
        for other in others:
            line += f" {r.per_op_us(other):>16.3f}"
        print(line)


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer operations and repeats")
    return parser.parse_args()
