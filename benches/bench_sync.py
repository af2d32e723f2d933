"""``treadle bench sync``, from a checkout (see treadle.benchmarks.bench_sync)."""

from treadle.benchmarks.bench_sync import main

if __name__ == "__main__":
    main()
