"""``treadle bench deadlock``, from a checkout (see treadle.benchmarks.bench_deadlock)."""

from treadle.benchmarks.bench_deadlock import main

if __name__ == "__main__":
    main()
