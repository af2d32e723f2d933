"""Progress bars for ``map(progress=...)`` and ``as_completed(progress=...)``: tqdm's, which
Python users know, in a terminal and in a notebook (``tqdm.auto`` draws a widget there).

``progress`` is ``None``/``False`` (no bar, and nothing else either: the code paths are those of
no bar), ``True`` (a bar), a dict of tqdm's options (``{"desc": "pages", "unit": "page"}``), or a
bar of the caller's (anything with tqdm's ``update``). A bar made here is closed when the
iteration ends, however it ends (exhausted, raised, abandoned halfway, its iterator freed); a
caller's bar is counted on, never closed nor given a total.

The bar counts tasks that ended, returned or raised, as they end: a ``map`` counts each as its
future completes (a done-callback), not as the caller takes its result, so a slow first task
does not hold the bar still while the others finish. A chunk of a process pool's ``map`` counts
as its number of calls. Tasks that raised and tasks cancelled are shown in the bar's postfix
(``failed=2, cancelled=5``); a cancelled task is not counted in the bar itself, so a ``map``
abandoned halfway closes at where it was. tqdm is imported only when a bar is asked for:
``pip install 'treadle[progress]'`` brings it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

EXTRA = "pip install 'treadle[progress]'"


def start(progress: Any, total: int | None) -> Progress | None:
    """A ``Progress`` for ``progress`` (see the module documentation), or None for no bar. Checks
    ``progress`` before any task is submitted, so that a wrong one costs nothing."""
    if progress is None or progress is False:
        return None
    if progress is True or isinstance(progress, dict):
        options = {"total": total, **(progress if isinstance(progress, dict) else {})}
        return Progress(_tqdm()(**options), owned=True)
    if callable(getattr(progress, "update", None)):
        return Progress(progress, owned=False)
    raise TypeError(
        "progress must be True, False, None, a dict of tqdm options or a tqdm bar, "
        f"not {type(progress).__name__}"
    )


def _tqdm() -> Any:
    """``tqdm.auto.tqdm``: a widget in a notebook, text elsewhere."""
    try:
        auto = importlib.import_module("tqdm.auto")
    except ImportError as error:
        message = f"progress=True draws a tqdm bar, and tqdm is not installed: {EXTRA}"
        raise ImportError(message) from error
    return auto.tqdm


def total_of(iterables: Iterable[Any]) -> int | None:
    """How many calls ``map`` makes over ``iterables`` (as ``zip`` pairs them), if they all
    have a length."""
    lengths = []
    for iterable in iterables:
        try:
            lengths.append(len(iterable))
        except TypeError:
            return None
    return min(lengths) if lengths else 0


def for_map(
    tracker: Progress, submit: Any, collect: Any, chunked: bool
) -> tuple[Callable[[Any, Any], Any], Callable[[Any, float | None], Any]]:
    """``map``'s ``submit`` and ``collect`` (see ``executor.py``), counting on ``tracker``:
    each future is watched as it is submitted, and counted (if not yet) as its outcome is
    taken."""

    def submit_watched(executor: Any, task: Any) -> Any:
        entry = submit(executor, task)
        if chunked:
            tracker.watch(entry[0], entry[1])
        else:
            tracker.watch(entry)
        return entry

    def collect_counted(future: Any, timeout: float | None) -> Any:
        try:
            return collect(future, timeout)
        finally:
            tracker.count(future)
            del future

    return submit_watched, collect_counted


class Progress:
    """A bar counting a batch of tasks. Each future is counted once, by whichever sees it end
    first: its done-callback (``watch``) or the caller taking its outcome (``count``), since the
    standard library's futures wake their waiters before they run their callbacks."""

    def __init__(self, bar: Any, *, owned: bool) -> None:
        self.bar = bar
        self.owned = owned
        self._lock = threading.Lock()
        #: id(future) -> how many calls it stands for, for the futures watched and not counted.
        self._watched: dict[int, int] = {}
        self._failed = 0
        self._cancelled = 0
        self._closed = False

    def watch(self, future: Any, calls: int = 1) -> None:
        """Counts ``future`` (standing for ``calls`` calls) once it is done. A treadle future is
        watched without its outcome counting as retrieved: a lost exception is still reported."""
        with self._lock:
            self._watched[id(future)] = calls
        getattr(future, "_add_watcher", future.add_done_callback)(self.count)

    def count(self, future: Any) -> None:
        """Counts a watched future that is done, unless it was counted already."""
        if not future.done():
            return
        with self._lock:
            calls = self._watched.pop(id(future), None)
            if calls is not None:
                self._update(future, calls)

    def counted(self, future: Any) -> Any:
        """Counts a done future that is not watched (``as_completed``), and returns it."""
        with self._lock:
            self._update(future, 1)
        return future

    def _update(self, future: Any, calls: int) -> None:
        if self._closed:
            return
        # ``_exception``, not ``exception()``: looking does not retrieve (treadle's futures).
        if future.cancelled():
            self._cancelled += calls
        elif future._exception is not None:
            self._failed += calls
        else:
            self.bar.update(calls)
            return
        postfix = {"failed": self._failed} if self._failed else {}
        if self._cancelled:
            postfix["cancelled"] = self._cancelled
        set_postfix = getattr(self.bar, "set_postfix", None)
        if set_postfix is not None:
            # Drawn with the next update, or when the bar closes.
            set_postfix(postfix, refresh=False)
        if not future.cancelled():
            self.bar.update(calls)

    def close(self) -> None:
        """The iteration is over: no more counting; a bar made here is closed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._watched.clear()
        if self.owned:
            self.bar.close()
