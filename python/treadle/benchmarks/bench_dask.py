"""The Dask executor: treadle.DaskExecutor against Dask's own ``client.submit`` and
``client.get_executor()``, on the same local cluster, in one run.

    treadle bench [--quick] dask
    python benches/bench_dask.py [--quick]        (the same, in a checkout)

Prints microseconds per task and the ratio to ``client.submit`` (its time / treadle's time;
above 1 means treadle is faster; treadle's goal is at most 1.2x ``client.submit``'s time). Both
cases measure the cost of a task: many in flight, and one at a time (the latency). The cluster
is a ``LocalCluster`` of 2 single-threaded worker processes on 127.0.0.1, warm before the
timing; every side submits the same tiny tasks and takes their results. Skipped, with a note, when
Dask is not installed (``pip install 'treadle[dask]'``).
"""

from __future__ import annotations

import importlib.util

from treadle.benchmarks import _harness
from treadle.benchmarks import _process_work as work

WORKERS = 2


class ClientSubmit:
    """Dask's own futures: ``client.submit`` then ``future.result()``."""

    def __init__(self, client):
        self.client = client

    def submit(self, fn, x):
        return self.client.submit(fn, x, pure=False)


class Executor:
    """A ``concurrent.futures.Executor``: Dask's ``client.get_executor()``, or treadle's."""

    def __init__(self, executor):
        self.submit = executor.submit


def submit_all(side, fn, items):
    submit = side.submit
    return [f.result() for f in [submit(fn, x) for x in items]]


def one_by_one(side, fn, items):
    submit = side.submit
    return [submit(fn, x).result() for x in items]


def main() -> None:
    args = _harness.arguments(__doc__.splitlines()[0])
    if importlib.util.find_spec("distributed") is None:
        print("bench dask: skipped, Dask is not installed (pip install 'treadle[dask]')")
        return
    import distributed

    import treadle

    scale = 1 if args.quick else 4
    repeat = 3 if args.quick else 7
    with (
        treadle.DaskExecutor(max_workers=WORKERS) as ours,
        ours.client.get_executor(pure=False) as theirs,
    ):
        assert isinstance(ours.client, distributed.Client)
        sides = {
            "client.submit": ClientSubmit(ours.client),
            "treadle": Executor(ours),
            "get_executor()": Executor(theirs),
        }
        for side in sides.values():
            submit_all(side, work.tiny, range(WORKERS * 8))  # every worker has run tasks
        results = []

        def case(title, ops, run):
            runs = {name: (lambda s=side: run(s)) for name, side in sides.items()}
            results.append(_harness.compare(title, ops, runs, repeat))

        n = 250 * scale
        items = list(range(n))
        case("tiny tasks: submit all, then results", n, lambda s: submit_all(s, work.tiny, items))
        rounds = items[: n // 4]
        case(
            "one submit-and-result round trip",
            len(rounds),
            lambda s: one_by_one(s, work.tiny, rounds),
        )
    title = f"treadle.DaskExecutor vs Dask's client.submit (best of {repeat}; us per task)"
    _harness.print_table(title, results, "client.submit")
    for r in results:
        overhead = r.seconds["treadle"] / r.seconds["client.submit"]
        print(f"{r.case}: treadle takes {overhead:.2f}x client.submit's time (goal: <= 1.2x)")


if __name__ == "__main__":
    main()
