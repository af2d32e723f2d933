"""CPython's own ``test.test_queue`` suite, run against treadle's queues.

``test_queue`` runs its mixins against the pure-Python and the C implementations by setting a
``queue`` attribute to a module; here that attribute is a namespace holding treadle's classes and
the exceptions they raise. On Python 3.13+ the installed suite includes the ``shutdown()`` tests.
Nothing is skipped or overridden.
"""

import types
import unittest

from test import test_queue as cpython

import treadle

treadle_queue = types.SimpleNamespace(
    Queue=treadle.Queue,
    LifoQueue=treadle.LifoQueue,
    PriorityQueue=treadle.PriorityQueue,
    SimpleQueue=treadle.SimpleQueue,
    Empty=treadle.Empty,
    Full=treadle.Full,
    ShutDown=treadle.ShutDown,
)


class QueueTest(cpython.QueueTest, unittest.TestCase):
    queue = treadle_queue


class LifoQueueTest(cpython.LifoQueueTest, unittest.TestCase):
    queue = treadle_queue


class PriorityQueueTest(cpython.PriorityQueueTest, unittest.TestCase):
    queue = treadle_queue


class FailingQueueTest(cpython.FailingQueueTest, unittest.TestCase):
    queue = treadle_queue


class SimpleQueueTest(cpython.CSimpleQueueTest):
    queue = treadle_queue
