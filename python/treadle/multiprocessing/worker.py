"""A process-pool worker: runs the tasks its parent sends over descriptor 3, one after another.

Started by the parent's supervisor as ``python -S -P .../treadle/multiprocessing/worker.py`` (no
``site``, so that it starts fast); the first frame (``INIT``) brings the parent's ``sys.path``,
which makes the parent's modules importable. Forked workers (``fork_server``) call :func:`main`
instead. Its ``__main__`` is ``worker_main``'s (the parent's, inherited by a fork, or the
parent's script run again). The frames are ``wire``'s, the large buffers ``segments``'; run as a
script, the worker
finds them by putting the folder that holds ``treadle`` on ``sys.path`` (``import treadle``
costs what ``import threading`` does).
"""

from __future__ import annotations

import copyreg
import itertools
import os
import pickle
import signal
import socket
import sys

if not __package__:
    # Run as a script: the modules beside this one are found as treadle's. Last on the path, so
    # that nothing there hides a module of the standard library.
    sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from treadle.multiprocessing import wire, worker_main
from treadle.multiprocessing.segments import dump, map_segments, wrap_large
from treadle.multiprocessing.wire import (
    CHANNEL_FD,
    CHUNK,
    CHUNK1,
    EXIT,
    INIT,
    INIT_FAILED,
    RAISED,
    READY,
    RETURNED,
    SKIPPED,
    TASK,
    Channel,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class Worker:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.threshold = 1 << 62
        self.functions: dict[bytes, Callable[..., object]] = {}

    def start(
        self,
        forked: bool = False,
        inherited: tuple[Callable[..., object], tuple[object, ...]] | None = None,
    ) -> bool:
        frame = self.channel.next_frame()
        if frame is None or frame[0] != INIT:
            return False
        setup = pickle.loads(frame[2])
        sys.path[:] = setup["sys_path"]
        if setup["run_site"] and not forked:
            import site

            site.main()
            sys.path[:] = setup["sys_path"]
        self.threshold = setup["threshold"]
        if setup.get("authkey") is not None and not forked:
            from multiprocessing import process

            process.current_process().authkey = setup["authkey"]
        if setup.get("name"):
            from multiprocessing import process

            process.current_process().name = f"{setup['name']}-{os.getpid()}"
        if forked:
            worker_main.inherit()
        else:
            worker_main.install(setup.get("main"))
        if setup["initializer"] is not None or inherited is not None:
            try:
                initializer, initargs = inherited or pickle.loads(setup["initializer"])
                initializer(*initargs)
            except BaseException:
                import traceback

                text = traceback.format_exc()
                self.channel.send(INIT_FAILED, 0, f"the initializer failed:\n{text}".encode())
                return False
        self.channel.send(READY, 0, b"")
        return True

    def function(self, fn: object) -> Callable[..., object]:
        if not isinstance(fn, bytes):
            return fn  # type: ignore[return-value]
        found = self.functions.get(fn)
        if found is None:
            if len(self.functions) > 64:
                self.functions.clear()
            found = self.functions[fn] = pickle.loads(fn)
        return found

    def run(self, payload: bytes | bytearray, fds: Sequence[int]) -> object:
        if fds:
            kind, fn, args, kwargs = pickle.loads(payload, buffers=map_segments(fds))
        else:
            kind, fn, args, kwargs = pickle.loads(payload)
        fn = self.functions.get(fn) or self.function(fn) if type(fn) is bytes else fn
        if kind == CHUNK1:
            return list(map(fn, args))
        if kind == CHUNK:
            return list(itertools.starmap(fn, args))
        return fn(*args, **kwargs)

    def answer(self, task: int, payload: bytes | bytearray, fds: Sequence[int]) -> None:
        try:
            outcome = self.run(payload, fds)
        except BaseException as exc:
            self.send_exception(task, exc)
            return
        try:
            try:
                out_fds: list[int] = []
                if wire.result_table is None:
                    # The common case in one step: no buffer large enough for shared memory.
                    data = pickle.dumps(outcome, 5, buffer_callback=self.in_band)
                else:
                    # Reducers the pool installed: they choose how values travel.
                    data = wire.dumps_with(wire.result_table, outcome)
                if len(data) >= self.threshold and isinstance(outcome, bytes | memoryview):
                    raise _Large  # held in band: it is wrapped to go out of band
            except _Large:
                data, out_fds = dump(wrap_large(outcome, self.threshold), self.threshold)
        except Exception as exc:
            self.send_exception(task, unpicklable_result(outcome, exc))
            return
        except BaseException as exc:  # SystemExit, KeyboardInterrupt...: the task's outcome
            self.send_exception(task, exc)
            return
        if not out_fds:
            try:
                self.channel.send(RETURNED, task, data)
            except OSError as error:
                if self.channel.broken:
                    raise
                self.send_exception(task, _unsendable(error))
            return
        try:
            self.channel.send(RETURNED, task, data, out_fds)
        except OSError as error:
            if self.channel.broken:
                raise
            # Nothing of the frame left: the task fails, saying why, and the worker goes on.
            self.send_exception(task, _unsendable(error))
        finally:
            for fd in out_fds:
                os.close(fd)

    def in_band(self, buffer: pickle.PickleBuffer) -> bool:
        """The first try's ``buffer_callback``: a buffer that may go to shared memory sends the
        result down the path that collects them."""
        if buffer.raw().nbytes >= self.threshold:
            raise _Large
        return True

    def send_exception(self, task: int, exc: BaseException) -> None:
        import traceback  # loaded once a task raises: a fresh worker starts without it

        text = "".join(traceback.format_exception(exc))
        try:
            data, fds = dump((exc, text), self.threshold)
        except Exception as error:
            substitute = RuntimeError(
                f"the task raised {type(exc).__qualname__}: {exc}, "
                f"which cannot be pickled ({error})"
            )
            data, fds = dump((substitute, text), self.threshold)
        try:
            self.channel.send(RAISED, task, data, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def serve(self) -> None:
        channel = self.channel
        frames = channel.frames
        next_frame = channel.next_frame
        answer = self.answer
        while True:
            frame = frames.popleft() if frames else next_frame()
            if frame is None:
                return
            kind, task, payload, fds = frame
            if kind != TASK:
                if kind == EXIT:
                    return
                continue
            cancelled = channel.take_cancellations()
            if cancelled and task in cancelled:
                cancelled.discard(task)
                for fd in fds:
                    os.close(fd)
                channel.send(SKIPPED, task, b"")
                continue
            answer(task, payload, fds)


class _Large(Exception):
    """A result holds a buffer for shared memory, or pickles long enough to hold one."""


class PoolWorkerStart:
    """How a pool's worker starts: as the standard library's pool workers are, it is a daemonic
    process (so a task that starts a process raises ``AssertionError``, and libraries that
    look, such as joblib, do not nest pools) named as the executor's worker it is, with
    ``PoolWorker`` for ``Process`` (``ForkServerPoolWorker-<pid>``); then it runs the pool's
    initializer. It lives here, with what every worker imports anyway, not with the pool: a
    worker forked from a fork server that was made before the program imported the pool would
    otherwise import the pool and the executors (tens of milliseconds) at each start, and a
    pool with ``maxtasksperchild`` starts one per task or so."""

    def __init__(
        self,
        initializer: Callable[..., object] | None,
        backward_reducers: dict[object, object] | None = None,
    ) -> None:
        self.initializer = initializer
        self.backward_reducers = backward_reducers

    def __call__(self, *initargs: object) -> None:
        from multiprocessing import current_process  # only a pool's workers need it

        current = current_process()
        current.name = current.name.replace("Process-", "PoolWorker-", 1)
        current.daemon = True
        if self.backward_reducers:
            wire.result_table = {**copyreg.dispatch_table, **self.backward_reducers}
        if self.initializer is not None:
            self.initializer(*initargs)


def _unsendable(error: OSError) -> OSError:
    return OSError(error.errno, f"the result could not be sent to the parent: {error.strerror}")


def unpicklable_result(value: object, error: Exception) -> Exception:
    """The error for a result that cannot be pickled, naming the part that cannot be; its
    ``unpicklable_result`` is the result's ``repr()`` (``multiprocessing.pool`` makes it a
    ``MaybeEncodingError``)."""
    try:
        from treadle.multiprocessing.pickling import unpicklable_error

        failure = unpicklable_error("result", value, error)
    except ImportError:
        failure = type(error)(f"the result cannot be pickled: {error}")
    try:
        failure.unpicklable_result = repr(value)  # type: ignore[attr-defined]
    except Exception:
        pass  # a repr that fails, an exception class without a __dict__
    return failure


def reset_signals() -> None:
    """In a fork of the parent: default dispositions for the signals the parent handled in
    Python; Ctrl-C is the parent's to handle, so SIGINT is ignored; no wake-up descriptor (an
    event loop's) is written to."""
    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
        except (OSError, ValueError):
            continue
        if callable(handler):
            try:
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        signal.set_wakeup_fd(-1)
    except (OSError, ValueError):
        pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def main(
    channel: int = CHANNEL_FD,
    forked: bool = False,
    initializer: tuple[Callable[..., object], tuple[object, ...]] | None = None,
) -> None:
    """Serves the parent on descriptor ``channel``, then exits the process. ``forked``: this
    process is a fork of the parent (by the fork server, or by the pool's caller), not a fresh
    interpreter; its signal dispositions were reset (:func:`reset_signals`). ``initializer``:
    the pool's initializer and its arguments, inherited by a fork of the caller (not sent in
    ``INIT``)."""
    if not forked:
        # Ctrl-C reaches the whole process group; the parent decides what happens to the pool.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=channel)
    sock.set_inheritable(False)
    worker = Worker(Channel(sock))
    if worker.start(forked, initializer):
        worker.serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
