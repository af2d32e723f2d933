"""Work across processes. Today: the process pool's transport, below ``treadle.futures.process``:
``wire`` (frames between a pool and its workers), ``segments`` (large buffers in shared memory),
``pickling`` (the parent's side of pickling), ``worker`` (the worker process) and
``fork_server`` (where workers are forked from). Later, above ``treadle.futures``: ``Process``,
``Queue``, ``Pipe``, shared locks, ``Pool`` and ``Manager``.

Nothing is imported here: a worker imports the transport modules through this package, and the
modules that will sit above the executors must not load with them.
"""
