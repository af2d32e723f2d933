"""``treadle bench dask``, from a checkout (see treadle.benchmarks.bench_dask)."""

from treadle.benchmarks.bench_dask import main

if __name__ == "__main__":
    main()
