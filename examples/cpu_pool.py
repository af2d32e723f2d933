"""A CPU-bound job spread over worker processes.

    python examples/cpu_pool.py
    treadle run examples/cpu_pool.py

Counts the primes below 200,000 in 8 chunks on a process pool (under `treadle run`, treadle's
self-healing ProcessPoolExecutor).
"""

import concurrent.futures


def count_primes(bounds: tuple[int, int]) -> int:
    low, high = bounds
    count = 0
    for n in range(max(low, 2), high):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


def main() -> None:
    limit, chunks = 200_000, 8
    step = limit // chunks
    ranges = [(i * step, (i + 1) * step) for i in range(chunks)]
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(count_primes, ranges))
    print(f"primes below {limit:,}: {sum(counts):,} (per chunk: {counts})")


if __name__ == "__main__":
    main()
