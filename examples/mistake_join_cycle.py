"""A thread waits for the main thread to finish while the main thread waits for it.

python examples/mistake_join_cycle.py        # hangs forever
treadle run examples/mistake_join_cycle.py   # a deadlock report, exit status 3
"""

import threading


def reporter() -> None:
    # "Wait until the program is done, then write the report": but the program waits for us.
    threading.main_thread().join()
    print("report written")


thread = threading.Thread(target=reporter, name="reporter")
thread.start()
thread.join()
print("finished")
