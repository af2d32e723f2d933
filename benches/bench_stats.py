"""``treadle bench stats``, from a checkout (see treadle.benchmarks.bench_stats)."""

from treadle.benchmarks.bench_stats import main

if __name__ == "__main__":
    main()
