"""``treadle bench shm``, from a checkout (see treadle.benchmarks.bench_shm)."""

from treadle.benchmarks.bench_shm import main

if __name__ == "__main__":
    main()
