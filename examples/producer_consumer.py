"""Producers put work on a queue, consumers take it; an Event tells the consumers to stop.

python examples/producer_consumer.py
treadle run examples/producer_consumer.py
"""

import queue
import threading

work: queue.Queue[int] = queue.Queue(maxsize=100)
results: queue.Queue[int] = queue.Queue()
done = threading.Event()


def produce(start: int) -> None:
    for n in range(start, start + 1000):
        work.put(n)


def consume() -> None:
    while not (done.is_set() and work.empty()):
        try:
            n = work.get(timeout=0.05)
        except queue.Empty:
            continue
        results.put(n * n)
        work.task_done()


producers = [threading.Thread(target=produce, args=(i * 1000,)) for i in range(3)]
consumers = [threading.Thread(target=consume) for _ in range(4)]
for thread in producers + consumers:
    thread.start()
for thread in producers:
    thread.join()
work.join()  # every item taken and processed
done.set()
for thread in consumers:
    thread.join()

total = 0
while not results.empty():
    total += results.get()
print(f"3 producers x 1000 items, 4 consumers: sum of squares = {total:,}")
