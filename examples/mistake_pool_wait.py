"""A pool task waits for something only a task queued behind it would do.

    python examples/mistake_pool_wait.py        # hangs forever
    treadle run examples/mistake_pool_wait.py   # a deadlock report, exit status 3

With one worker, `consumer` runs first and waits for the event that `producer` would set; but
`producer` is queued behind it and never gets a worker. The main thread waits for both.
"""

import concurrent.futures
import threading

ready = threading.Event()


def consumer() -> str:
    ready.wait()
    return "consumed"


def producer() -> str:
    ready.set()
    return "produced"


with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
    first = pool.submit(consumer)
    second = pool.submit(producer)
    print(first.result(), second.result())
