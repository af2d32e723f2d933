"""The classic mistake: two threads take the same two locks in opposite orders.

    python examples/mistake_lock_order.py        # hangs forever
    treadle run examples/mistake_lock_order.py   # a deadlock report, exit status 3

The barrier makes both threads hold their first lock before either asks for its second, so the
deadlock happens every time instead of once in a while.
"""

import threading

accounts_lock = threading.Lock()
audit_lock = threading.Lock()
both_started = threading.Barrier(2)


def transfer() -> None:
    with accounts_lock:
        both_started.wait()
        with audit_lock:
            print("transfer recorded")


def audit() -> None:
    with audit_lock:
        both_started.wait()
        with accounts_lock:
            print("audit done")


threads = [
    threading.Thread(target=transfer, name="transfer"),
    threading.Thread(target=audit, name="audit"),
]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("finished")
