"""The exceptions and warnings of deadlock detection. Loaded with ``treadle``, so that a deadlock
can always be raised, whatever else is loaded yet."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from treadle.deadlock.report import WaitEdge


class DeadlockError(RuntimeError):
    """Raised by the wait that would have completed a deadlock.

    ``str(err)`` is the report; ``err.cycle`` is the same as a list of :class:`WaitEdge`.
    The other threads of the cycle keep waiting, so the program can recover (for example by
    releasing what the raising thread holds). It pickles (a process-pool task's deadlock
    reaches the caller whole), as every treadle exception does.
    """

    def __init__(self, message: str, cycle: list[WaitEdge] | None = None):
        super().__init__(message)
        self.cycle = [] if cycle is None else cycle


class DeadlockWarning(RuntimeWarning):
    """Issued instead of raising :class:`DeadlockError` in ``"warn"`` mode."""


class PotentialDeadlockWarning(RuntimeWarning):
    """Lock-order mode saw locks taken in a circle by different threads (two locks in both
    orders, or A while holding B, B while holding C, C while holding A...).

    No thread hung this time, but threads running those paths at once can deadlock. The message
    has the acquisition stack of each order.
    """
