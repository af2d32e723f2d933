"""A task fails and nobody notices: its exception stays in a future nobody asks.

python examples/mistake_silent_failure.py        # prints "all submitted", and nothing else
treadle run examples/mistake_silent_failure.py   # the lost exception is reported; status 3
"""

import concurrent.futures


def save(record: dict) -> None:
    if "id" not in record:
        raise KeyError("id")  # this record is never saved, and nobody is told


records = [{"id": 1}, {"name": "no id"}, {"id": 3}]
with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    for record in records:
        pool.submit(save, record)  # the futures are dropped: their exceptions are lost
print("all submitted")
