"""``treadle bench process``, from a checkout (see treadle.benchmarks.bench_process)."""

from treadle.benchmarks.bench_process import main

if __name__ == "__main__":
    main()
