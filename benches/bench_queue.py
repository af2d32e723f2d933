"""``treadle bench queue``, from a checkout (see treadle.benchmarks.bench_queue)."""

from treadle.benchmarks.bench_queue import main

if __name__ == "__main__":
    main()
