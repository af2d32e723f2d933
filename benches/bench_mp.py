"""``treadle bench mp``, from a checkout (see treadle.benchmarks.bench_mp)."""

from treadle.benchmarks.bench_mp import main

if __name__ == "__main__":
    main()
