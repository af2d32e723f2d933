"""Shared memory: treadle's SharedMemory against multiprocessing.shared_memory's, in one run.

    treadle bench [--quick] shm
    python benches/bench_shm.py [--quick]        (the same, in a checkout)

A cycle makes a 64 KiB segment, attaches to it by name, writes through one handle and reads
through the other, closes both and unlinks it: what a program pays per segment it shares.
Prints microseconds per cycle and the speedup (above 1 means treadle is faster).
"""

from __future__ import annotations

from multiprocessing import shared_memory as standard

from treadle.benchmarks import _harness
from treadle.multiprocessing import shared_memory as ours


def cycles(module, n: int):
    def run():
        for _ in range(n):
            made = module.SharedMemory(create=True, size=65536)
            attached = module.SharedMemory(made.name)
            made.buf[0] = 1
            assert attached.buf[0] == 1
            attached.close()
            made.close()
            made.unlink()

    return run


def main() -> None:
    args = _harness.arguments(__doc__.splitlines()[0])
    n = 200 if args.quick else 2_000
    repeat = 3 if args.quick else 5
    result = _harness.compare(
        "SharedMemory create+attach+close+unlink",
        n,
        {"multiprocessing": cycles(standard, n), "treadle": cycles(ours, n)},
        repeat,
    )
    title = f"treadle vs multiprocessing.shared_memory (best of {repeat})"
    _harness.print_table(title, [result], "multiprocessing")


if __name__ == "__main__":
    main()
