"""The child's side of treadle's start method: a ``Process`` child forked by the fork server
runs the process, from the start-up data and descriptors the fork server received with the
request (so the child has them the moment it is forked). It took the parent's process state of
the moment (working directory, environment, umask, limits, credentials) before it got here
(``fork_server._take_state``, as a pool's worker does).

The data is what the standard library's ``forkserver`` start method sends: how the parent is
prepared (``multiprocessing.spawn.get_preparation_data``: ``sys.path``, ``sys.argv``,
authentication key, logging; not its directory's path: the child has the directory itself, by
descriptor, so one renamed since is still the same), then the pickled ``Process`` object, whose
descriptors (its arguments' queues and pipes, through ``multiprocessing.reduction.DupFd``) came
with the request as ``SCM_RIGHTS`` and are found by their index (:class:`DupFd`).

The child is a fork of the fork server, itself a fork of the parent: its ``__main__`` is the
parent's as it was when the server was forked, as with the ``fork`` start method. Only if the
process object cannot be unpickled against it (a function defined since) is the main module
loaded again from its file, as ``spawn`` and ``forkserver`` always do.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from multiprocessing import process, reduction, spawn, util
from typing import Any, NoReturn

_inherited: list[int] = []


def inherited_fds() -> list[int]:
    """The descriptors this child received with its start-up data, in order."""
    return _inherited


class DupFd:
    """A descriptor handed to a child started by treadle (``Popen.duplicate_for_child`` gives
    its index in the child's list)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def detach(self) -> int:
        return _inherited[self.index]


def run(data: bytes, fds: list[int]) -> NoReturn:
    """Runs the child whose start-up data is ``data``, with the descriptors ``fds`` it names,
    then ends the process with its exit code."""
    exitcode = 1
    try:
        # The fork server ignores Ctrl-C (the parent decides what happens to a pool); a process
        # gets it with its process group, as the standard library's children do (the server
        # set the handler already, before the parent learnt the child's pid).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _inherited[:] = fds
        exitcode = _run(data)
    finally:
        os._exit(exitcode)


def _run(data: bytes) -> int:
    current = process.current_process()
    current._inheriting = True  # type: ignore[attr-defined]
    try:
        file = io.BytesIO(data)
        preparation = reduction.pickle.load(file)
        _prepare(preparation)
        start = file.tell()
        try:
            process_obj = reduction.pickle.load(file)
        except (AttributeError, ImportError):
            # Pickled by reference to something the server's __main__ does not have: load the
            # main module again, as spawn does, and try once more.
            if not _load_main_again(preparation):
                raise
            file.seek(start)
            process_obj = reduction.pickle.load(file)
    finally:
        del current._inheriting  # type: ignore[attr-defined]
    return process_obj._bootstrap(parent_sentinel=_parent_sentinel(process_obj._parent_pid))


def _prepare(data: dict[str, Any]) -> None:
    """``multiprocessing.spawn.prepare`` but for the main module, which the child has (and the
    start method, which treadle's process class sets)."""
    current = process.current_process()
    if "name" in data:
        current.name = data["name"]
    if "authkey" in data:
        current.authkey = data["authkey"]
    if data.get("log_to_stderr"):
        util.log_to_stderr()
    if "log_level" in data:
        util.get_logger().setLevel(data["log_level"])
    if "sys_path" in data:
        sys.path = data["sys_path"]
    if "sys_argv" in data:
        sys.argv = data["sys_argv"]
    if "orig_dir" in data:
        process.ORIGINAL_DIR = data["orig_dir"]
    tracker = data.get("treadle_tracker")
    if tracker is not None:
        from multiprocessing import resource_tracker

        resource_tracker._resource_tracker._fd = _inherited[tracker]


def _load_main_again(data: dict[str, Any]) -> bool:
    if "init_main_from_name" in data:
        spawn._fixup_main_from_name(data["init_main_from_name"])
        return True
    if "init_main_from_path" in data:
        spawn._fixup_main_from_path(data["init_main_from_path"])
        return True
    return False


def _parent_sentinel(parent: int) -> int:
    """A descriptor that polls readable once the parent has ended (``parent_process()``'s
    sentinel): its pidfd, or, if it has ended already, a pipe with no writer."""
    try:
        return os.pidfd_open(parent)
    except OSError:
        read, write = os.pipe()
        os.close(write)
        return read
