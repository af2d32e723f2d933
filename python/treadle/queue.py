"""``treadle.queue``: a drop-in for the standard library's ``queue`` module: ``Queue``,
``LifoQueue``, ``PriorityQueue`` and ``SimpleQueue``.

The same API and semantics as the standard library's ``queue`` module (Python 3.13's
``shutdown()`` included, on every supported Python), implemented in Rust. The exceptions are the
standard library's own classes: ``Empty`` and ``Full`` are ``queue.Empty`` and ``queue.Full``, and
``ShutDown`` is ``queue.ShutDown`` where it exists (Python 3.13+), so existing ``except`` clauses
work. On older Pythons ``ShutDown`` is treadle's own exception class.
"""

from queue import Empty, Full

from treadle._treadle import LifoQueue, PriorityQueue, Queue, ShutDown, SimpleQueue

__all__ = ["Empty", "Full", "LifoQueue", "PriorityQueue", "Queue", "ShutDown", "SimpleQueue"]
