"""``treadle bench mp_pool``, from a checkout (see treadle.benchmarks.bench_mp_pool)."""

from treadle.benchmarks.bench_mp_pool import main

if __name__ == "__main__":
    main()
