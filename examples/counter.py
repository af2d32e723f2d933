"""A counter shared by four threads, each adding 100,000 under a lock.

    python examples/counter.py
    treadle run examples/counter.py

Prints the same under both: the lock makes the read-modify-write atomic.
"""

import threading

counter = 0
lock = threading.Lock()


def work(n: int) -> None:
    global counter
    for _ in range(n):
        with lock:
            counter += 1


threads = [threading.Thread(target=work, args=(100_000,), name=f"adder-{i}") for i in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(f"counter = {counter:,} (expected 400,000)")
