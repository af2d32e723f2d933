"""``treadle bench pool``, from a checkout (see treadle.benchmarks.bench_pool)."""

from treadle.benchmarks.bench_pool import main

if __name__ == "__main__":
    main()
