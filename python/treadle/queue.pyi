from queue import Empty as Empty
from queue import Full as Full

from treadle._treadle import LifoQueue as LifoQueue
from treadle._treadle import PriorityQueue as PriorityQueue
from treadle._treadle import Queue as Queue
from treadle._treadle import ShutDown as ShutDown
from treadle._treadle import SimpleQueue as SimpleQueue

__all__ = ["Empty", "Full", "LifoQueue", "PriorityQueue", "Queue", "ShutDown", "SimpleQueue"]
