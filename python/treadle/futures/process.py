"""``treadle.ProcessPoolExecutor``: ``concurrent.futures.ProcessPoolExecutor`` on a supervisor
in Rust, with per-task timeouts, ``cancel(interrupt=True)``, and a pool that heals itself.

Workers are forked from a fork server (``treadle/multiprocessing/fork_server.py``) that the first
pool forks while the process has one thread; when it has threads by then, workers are fresh
interpreters (``python -S -P treadle/multiprocessing/worker.py``) started by the supervisor
(``crates/treadle-os/src/supervisor/``). A process with threads is forked only when the caller
asks for the ``fork`` start method (``multiprocessing/caller_fork.py``), as the standard library
does. Arguments
are pickled here, in the caller's thread; results are unpickled by the pool's supervisor thread,
which waits in Rust without the interpreter. Design and limits: ``docs/process_pool.md``.
"""

from __future__ import annotations

import functools
import itertools
import os
import pickle
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool, _RemoteTraceback  # type: ignore[attr-defined]
from types import BuiltinFunctionType, FunctionType
from typing import Any, NamedTuple

from treadle._treadle import (
    TaskTimeoutError,
    _Broken,
    _CancelOutcome,
    _Closed,
    _Crashed,
    _Failed,
    _Raised,
    _Returned,
    _Supervisor,
    _Terminated,
    _TimedOut,
    _Unretrieved,
    _WorkerEnded,
)
from treadle.futures import process_future as _process_futures
from treadle.futures.executor import Executor, MapSubmit, call_chunk, check_timeout
from treadle.futures.process_future import Future
from treadle.multiprocessing import caller_fork as _caller_fork
from treadle.multiprocessing import fork_server as _forkserver
from treadle.multiprocessing import main_module as _main_module
from treadle.multiprocessing import pickling as _pickling
from treadle.multiprocessing import wire, worker

__all__ = ["ProcessPoolExecutor", "TaskTimeoutError", "WorkerCrashedError"]

#: Tasks a worker holds at once: the one it runs and the next, so that it never waits for a
#: round trip between tiny tasks.
PREFETCH = 2

_WORKER_SCRIPT = worker.__file__
_new_tuple = tuple.__new__
_dumps = pickle.dumps
_in_band = _pickling.in_band
_CALL = wire.CALL
_MAIN = _pickling.MAIN
_NO_KWARGS: dict[str, Any] = {}
_NO_BUFFERS: list[Any] = []
_MISSING = _main_module.MISSING

#: A function sent by reference: its pickle, how often that names ``__main__``, the namespace
#: it is found in, and the bindings there it is sent so on (see ``_still_bound``).
_Known = tuple[bytes, int, dict[str, Any], tuple[tuple[str, Any], ...]]


def _still_bound(namespace: dict[str, Any], bindings: tuple[tuple[str, Any], ...]) -> bool:
    """Whether every name of ``bindings`` is still bound in ``namespace`` to its object."""
    get = namespace.get
    for name, value in bindings:
        if get(name, _MISSING) is not value:
            return False
    return True


_pool_numbers = itertools.count(1)


class WorkerCrashedError(BrokenProcessPool):
    """The worker process running a task died. Only that task fails; the pool replaced the
    worker. A subclass of ``BrokenProcessPool``, so existing ``except`` clauses catch it.
    ``worker`` is the address of a Dask worker (``DaskExecutor``), else None."""

    def __init__(
        self,
        message: str,
        *,
        pid: int | None = None,
        exitcode: int | None = None,
        signal: int | None = None,
        task_name: str | None = None,
        out_of_memory: bool = False,
        worker: str | None = None,
    ) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal
        self.task_name = task_name
        self.out_of_memory = out_of_memory
        self.worker = worker


class _Task(NamedTuple):
    future: Future
    #: The task's name, or the callable it is named after (named when needed).
    label: Any

    @property
    def name(self) -> str:
        if isinstance(self.label, str):
            return self.label
        return _name_of(self.label)


def _name_of(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _crash_error(task: _Task, event: _WorkerEnded, cause: str) -> WorkerCrashedError:
    pid, code, signum = event.pid, event.exitcode, event.signal
    oom = isinstance(event, _Crashed) and event.out_of_memory
    if signum is not None:
        how = f"was killed by {_signal_name(signum)}"
    else:
        how = f"exited with code {code}"
    message = f"the worker process (pid {pid}) running task {task.name!r} {how}"
    if oom:
        message += ", likely out of memory (the kernel's OOM killer)"
    message += cause
    return WorkerCrashedError(
        message, pid=pid, exitcode=code, signal=signum, task_name=task.name, out_of_memory=oom
    )


def _resolve(
    task: _Task,
    event: _Returned | _Raised | _Crashed | _Terminated | _TimedOut | _Failed | _Broken,
    unretrieved: _Unretrieved,
) -> None:
    future = task.future
    if isinstance(event, _Returned):
        try:
            value = _pickling.load(event.payload, event.fds)
        except BaseException as error:
            _process_futures.set_exception(future, error, unretrieved)
        else:
            _process_futures.set_result(future, value)
    elif isinstance(event, _Raised):
        try:
            raised, text = _pickling.load(event.payload, event.fds)
            raised.__cause__ = _RemoteTraceback(text)
        except BaseException as unpickling:
            raised = unpickling
        _process_futures.set_exception(future, raised, unretrieved)
    elif isinstance(event, _Crashed):
        _process_futures.set_exception(
            future, _crash_error(task, event, "; the pool replaced it and goes on"), unretrieved
        )
    elif isinstance(event, _Terminated):
        # Stopped at the program's request: not a failure for shutdown() to report or raise.
        _process_futures.set_stopped(
            future, _crash_error(task, event, ", stopped by terminate_workers() or kill_workers()")
        )
    elif isinstance(event, _TimedOut):
        _process_futures.set_exception(
            future,
            TaskTimeoutError(
                f"task {task.name!r} ran longer than its time limit of {event.seconds:g} s; its "
                f"worker (pid {event.pid}) was killed and replaced"
            ),
            unretrieved,
        )
    elif isinstance(event, _Failed):
        message = f"task {task.name!r} could not be handed to a worker: {event.message}"
        failure = OSError(event.errno, message) if event.errno is not None else OSError(message)
        _process_futures.set_exception(future, failure, unretrieved)
    else:
        _process_futures.set_exception(future, BrokenProcessPool(event.message), unretrieved)


def _supervise(supervisor: _Supervisor, tasks: dict[int, _Task], unretrieved: _Unretrieved) -> None:
    """The pool's supervisor thread: runs the Rust supervisor and resolves futures (a value
    with no segments natively, in ``poll_resolving``; the rest here)."""
    loads = pickle.loads
    poll = supervisor.poll_resolving
    while True:
        # Nothing of a batch outlives it here: while this thread waits for the next one, the
        # last task's callable and value belong to their future alone (a dropped callable, such
        # as a bound method, and its object can be freed).
        event = task = None
        for event in poll(tasks, loads, None):
            if type(event) is _Closed:
                return
            task = tasks.pop(event.task_id, None)
            if task is not None:
                _resolve(task, event, unretrieved)


def _authkey() -> bytes | None:
    """The parent's ``multiprocessing`` authentication key, if it uses ``multiprocessing``: a
    fresh worker takes it, as the standard library's spawned children do, so that it can talk
    to the parent's managers (a ``Manager().Lock()`` passed as an argument)."""
    process = sys.modules.get("multiprocessing.process")
    if process is None:
        return None
    return bytes(process.current_process().authkey)


def _finder_needs_site() -> bool:
    """Whether the parent imports through a finder that a ``.pth`` file installed (editable
    installs), which a worker started without ``site`` would lack."""
    for finder in sys.meta_path:
        module = getattr(finder, "__module__", "") or ""
        if "editable" in module.lower():
            return True
    return False


def _workers_main(forked_from_here: bool, from_fork_server: bool) -> _main_module.View:
    if forked_from_here:
        return _main_module.inherited_now()
    if from_fork_server:
        return _main_module.at_server_fork()
    return _main_module.fresh()


#: What ``multiprocessing`` says of an object that travels to a child only as it starts (its
#: locks, queues and pipes; treadle's too): ``... should only be shared between processes
#: through inheritance``.
_INHERITANCE_ONLY = "through inheritance"


def _default_start_method() -> str:
    """The start method of ``multiprocessing``'s default context (``fork`` on Linux before
    Python 3.14), without fixing it as ``get_start_method()`` would."""
    import multiprocessing

    chosen = multiprocessing.get_start_method(allow_none=True)
    return chosen or multiprocessing.get_all_start_methods()[0]


def _start_method(mp_context: Any) -> str | None:
    get = getattr(mp_context, "get_start_method", None)
    try:
        return get() if get is not None else None
    except Exception:
        return None


def _chunks(calls: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(calls, size)):
        yield chunk


def _submit_replaced(pool: Executor) -> bool:
    """Whether ``pool.submit`` is not the pool's own (a subclass's, or one set on the instance,
    as ``tqdm.contrib.concurrent`` does to count tasks)."""
    return "submit" in vars(pool) or type(pool).submit is not ProcessPoolExecutor.submit


class ProcessPoolExecutor(Executor):
    """A pool of worker processes with ``concurrent.futures.ProcessPoolExecutor``'s interface
    (3.14's included), per-task timeouts, and ``cancel(interrupt=True)``.

    A worker that crashes fails only its own task, with :class:`WorkerCrashedError`, and is
    replaced. ``task_timeout`` (seconds) limits every task; ``schedule(timeout=)`` one task.
    Workers are forked from a fork server made when the process had one thread, or are fresh
    interpreters when there is none. An ``mp_context`` whose start method is ``"spawn"`` asks for
    fresh interpreters; one whose start method is ``"fork"`` for forks of this process, as the
    standard library's (so does an initializer or ``initargs`` that can only be inherited, such
    as a ``multiprocessing.RLock()``, a ``treadle.multiprocessing.Queue()`` or a ``Pipe()``'s
    end, unless the start method is ``"spawn"``); otherwise it is ignored. With
    ``raise_unretrieved=True``, ``shutdown()`` raises an ``ExceptionGroup`` of the exceptions
    nobody retrieved (of dropped futures too), instead of logging them.
    """

    #: The dispatch table tasks are pickled with, if not pickle's own (set by
    #: ``treadle.multiprocessing.pool``: a standard ``Pool`` subclass's forward reducers).
    _forward_table: dict[Any, Any] | None = None

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
        *,
        task_timeout: float | None = None,
        raise_unretrieved: bool = False,
    ) -> None:
        if getattr(sys.modules.get(wire.MAIN_NAMESPACE_MODULE), "loading", False):
            raise RuntimeError(
                "a process pool cannot be started while a worker runs the main script again: "
                "start it under `if __name__ == '__main__':`"
            )
        if max_workers is None:
            count = getattr(os, "process_cpu_count", os.cpu_count)()
            max_workers = count or 1
        self._check_arguments(max_workers, initializer, task_timeout)
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        self._max_workers = max_workers
        self._task_timeout = task_timeout
        self._threshold = _pickling.SHARED_MEMORY_THRESHOLD
        #: A task's pickle shorter than this holds no buffer that should go out of band.
        self._in_band_limit = min(self._threshold, _pickling.SHARED_MEMORY_THRESHOLD)
        start_method = _start_method(mp_context)
        fork = fork_server = None
        if start_method == "fork":
            # Asked for: workers are forks of this process, the initializer inherited.
            fork = _caller_fork.forker(initializer, tuple(initargs))
        elif start_method != "spawn":
            fork_server = _forkserver.get()
        # What the workers find in their __main__: this process's, the fork server's copy, or
        # the script run again. A worker's answer may name the script's classes as __mp_main__'s.
        self._main = _workers_main(fork is not None, fork_server is not None)
        if "__main__" in sys.modules:
            sys.modules.setdefault("__mp_main__", sys.modules["__main__"])
        initializer_payload = None
        if initializer is not None and fork is None:
            # A treadle queue or pipe among them cannot be unpickled by every worker: such
            # arguments are inherited instead (below).
            from treadle.multiprocessing import channel

            try:
                with channel.inherited_only():
                    initializer_payload = _pickling.dump_initializer(
                        initializer, tuple(initargs), self._main
                    )
            except Exception as error:
                inherited_only = _INHERITANCE_ONLY in str(error.__cause__ or error)
                if not (
                    (start_method is None and _default_start_method() == "fork")
                    or (inherited_only and start_method != "spawn")
                ):
                    raise
                # What only a fork can hand over (multiprocessing's locks made in the default
                # fork context, queues and pipes, treadle's among them, that pickle only for a
                # child being started): as the standard library's fork workers, these are forks
                # of this process, and the initializer and its arguments are inherited.
                fork = _caller_fork.forker(initializer, tuple(initargs))
                fork_server = None
                self._main = _workers_main(True, False)
        init = _pickling.dumps_any(
            {
                "sys_path": list(sys.path),
                "run_site": _finder_needs_site(),
                "threshold": self._threshold,
                "initializer": initializer_payload,
                "authkey": _authkey(),
                "main": self._main.script(),
                # As the standard library's workers are named: by their start method.
                "name": "ForkProcess"
                if fork
                else "ForkServerProcess"
                if fork_server
                else "SpawnProcess",
            }
        )
        self._supervisor = _Supervisor(
            sys.executable,
            ["-S", "-P", _WORKER_SCRIPT],
            max_workers,
            max_tasks_per_child,
            init,
            PREFETCH,
            fork_server=fork_server,
            parent_state=_forkserver.parent_state if fork_server is not None else None,
            fork=fork,
        )
        self._tasks: dict[int, _Task] = {}
        # A thread that waits on a future reads its worker's answer itself, as the supervisor
        # thread would: one thread fewer to wake on a quick task's way back.
        self._supervisor.resolve_with(self._tasks, pickle.loads)
        #: Functions sent by reference: what ``_by_reference`` made for each.
        self._functions: dict[Any, _Known] = {}
        self._ids = itertools.count(1)
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        unretrieved = self._keep_unretrieved(raise_unretrieved)
        self._thread = threading.Thread(
            target=_supervise,
            args=(self._supervisor, self._tasks, unretrieved),
            name=f"treadle-process-pool-{next(_pool_numbers)}",
            daemon=True,
        )
        self._thread.start()
        self._register_for_exit()
        # A pool dropped without shutdown() still lets its workers finish and exit.
        # (In a forked child, _Supervisor.shutdown does nothing: the pool is the parent's.)
        weakref.finalize(self, self._supervisor.shutdown, False)

    # -- submitting ----------------------------------------------------------------------

    def schedule(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Future:
        """Runs ``fn(*args, **kwargs)`` in a worker and returns its future. ``timeout`` limits
        how long it may run (seconds, from when a worker starts it); ``name`` appears in
        errors."""
        check_timeout("timeout", timeout)
        return self._schedule(wire.CALL, fn, tuple(args), kwargs or {}, timeout, name)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        # The common case in as few steps as can be: a function sent by reference before,
        # still bound as then, positional arguments that pickle small, by reference (as
        # _schedule would send it, without its checks' calls).
        if (
            (type(fn) is FunctionType or type(fn) is BuiltinFunctionType)
            and not kwargs
            and not self._shutdown
            and self._forward_table is None
        ):
            known = self._functions.get(fn)
            if known is not None and _still_bound(known[2], known[3]):
                try:
                    payload = _dumps(
                        (_CALL, known[0], args, _NO_KWARGS), 5, buffer_callback=_in_band
                    )
                except Exception:
                    payload = None
                if (
                    payload is not None
                    and len(payload) < self._in_band_limit
                    and payload.count(_MAIN) == known[1]
                ):
                    return self._enqueue(payload, _NO_BUFFERS, fn, self._task_timeout)
        return self._submit_call(fn, *args, **kwargs)

    def _submit_call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """``submit`` by ``_schedule``, which every executor of this kind has."""
        return self._schedule(wire.CALL, fn, args, kwargs, self._task_timeout, None)

    def _schedule(
        self,
        kind: int,
        fn: Any,
        args: Any,
        kwargs: dict[str, Any],
        timeout: float | None,
        name: str | None,
    ) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        pickled, named = self._pickled(fn)
        payload, buffers = _pickling.dump_task(
            kind, pickled, args, kwargs, self._threshold, self._main, named, self._forward_table
        )
        return self._enqueue(payload, buffers, fn if name is None else name, timeout)

    def _enqueue(self, payload: bytes, buffers: Any, label: Any, timeout: float | None) -> Future:
        """Hands a pickled task to the supervisor; its future."""
        task_id = next(self._ids)
        future = _process_futures.new_future(self, task_id)
        # As _Task(...), without the Python-level __new__ of a named tuple.
        self._tasks[task_id] = _new_tuple(_Task, (future, label))
        try:
            self._supervisor.submit(task_id, payload, buffers, timeout, future)
        except BaseException:
            self._tasks.pop(task_id, None)
            raise
        return future

    def _pickled(self, fn: Any) -> tuple[Any, int]:
        """``fn``, or, for a function pickle sends by reference, its pickle, made once (workers
        keep what they unpickled from it); with how often that pickle names ``__main__``."""
        if type(fn) is not FunctionType and type(fn) is not BuiltinFunctionType:
            return fn, 0
        known = self._functions.get(fn)
        if known is not None:
            if _still_bound(known[2], known[3]):
                return known[0], known[1]
            # The name now stands for something else, or a global of __main__ it reads was
            # rebound since the workers' copy was made: pickle it afresh.
            del self._functions[fn]
        known = self._by_reference(fn)
        return (fn, 0) if known is None else (known[0], known[1])

    def _by_reference(self, fn: Any) -> _Known | None:
        """What ``_functions`` keeps for ``fn`` when pickle sends it by reference, made now."""
        data = _pickling.function_by_reference(fn, self._main)
        module = sys.modules.get(getattr(fn, "__module__", None) or "")
        if data is None or module is None:
            return None
        if _main_module.is_main_definition(fn):
            bindings = self._main.bindings(fn)
            if bindings is None:
                return None
        else:
            bindings = {fn.__qualname__: fn}
        if len(self._functions) >= 256:
            self._functions.clear()
        known = (data, data.count(_MAIN), vars(module), tuple(bindings.items()))
        self._functions[fn] = known
        return known

    def _map_tasks(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], chunksize: int
    ) -> tuple[Iterator[Any], MapSubmit, bool]:
        """``map``'s tasks, as ``concurrent.futures.ProcessPoolExecutor.map``'s: ``chunksize``
        calls travel as one task, ``fn`` is pickled once for all of them."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        calls = zip(*iterables, strict=False)
        if chunksize == 1:
            return calls, self._sender(wire.CALL, fn), False
        # Single arguments travel as they are, not as 1-tuples.
        spread = len(iterables) != 1
        chunks = _chunks(calls if spread else iter(iterables[0]), chunksize)
        send = self._sender(wire.CHUNK if spread else wire.CHUNK1, fn)

        def submit(pool: ProcessPoolExecutor, chunk: list[Any]) -> Any:
            return send(pool, chunk), len(chunk)

        return chunks, submit, True

    def _calls_submitter(self, fn: Callable[..., Any], spread: bool) -> Callable[[list[Any]], Any]:
        return functools.partial(self._sender(wire.CHUNK if spread else wire.CHUNK1, fn), self)

    def _sender(self, kind: int, fn: Callable[..., Any]) -> Callable[[Any, Any], Future]:
        """Sends one task of a batch of calls of ``fn``: ``send(pool, args)``, ``args`` a call's
        arguments (``kind`` ``wire.CALL``) or a chunk of calls; ``fn`` is pickled once."""
        if _submit_replaced(self):
            # The standard library's map submits through self.submit; so does this one when it
            # is not the pool's own, so that what it adds sees every task.
            if kind == wire.CALL:
                return lambda pool, args: pool.submit(fn, *args)
            return lambda pool, chunk: pool.submit(call_chunk, fn, chunk, kind == wire.CHUNK)
        fn_bytes = _pickling.dump_function(fn, self._main)
        name = _name_of(fn)

        def send(pool: ProcessPoolExecutor, args: Any) -> Future:
            return pool._schedule(kind, fn_bytes, args, {}, pool._task_timeout, name)

        return send

    # -- cancelling and stopping ---------------------------------------------------------

    def _task_queued(self, task_id: int) -> bool:
        return self._supervisor.queued(task_id)

    def _cancel_task(self, task_id: int, interrupt: bool) -> bool:
        outcome = self._supervisor.cancel(task_id, interrupt)
        if outcome in (_CancelOutcome.CANCELLED, _CancelOutcome.INTERRUPTED):
            self._tasks.pop(task_id, None)
            return True
        return False

    def _cancel_dropped(self, dropped: list[int]) -> None:
        for task_id in dropped:
            task = self._tasks.pop(task_id, None)
            if task is not None:
                _process_futures.mark_cancelled(task.future)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``Executor.shutdown``; then (if ``wait``) reports the exceptions of tasks that
        nobody retrieved, or raises them as an ``ExceptionGroup`` if ``raise_unretrieved``."""
        with self._shutdown_lock:
            self._shutdown = True
            self._cancel_dropped(self._supervisor.shutdown(cancel_futures))
        if not wait:
            return
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._report_unretrieved()

    def _stop_workers(self, signum: int) -> None:
        with self._shutdown_lock:
            self._shutdown = True
            self._cancel_dropped(self._supervisor.terminate(signum))
        self.shutdown(wait=True)

    def terminate_workers(self) -> None:
        """Stops every worker now with SIGTERM and shuts the pool down; queued tasks are
        cancelled, running ones fail with :class:`WorkerCrashedError` (stopped on purpose, a
        failure nobody reads is not reported as lost)."""
        self._stop_workers(signal.SIGTERM)

    def kill_workers(self) -> None:
        """As :meth:`terminate_workers`, with SIGKILL."""
        self._stop_workers(signal.SIGKILL)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._leaving_with_error = exc_type is not None
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C: stop now rather than wait for every queued task.
            self.kill_workers()
        else:
            self.shutdown(wait=True)

    # -- introspection -------------------------------------------------------------------

    def _stats_source(self) -> _Supervisor:
        return self._supervisor

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the workers serving now."""
        return list(self._supervisor.pids())
