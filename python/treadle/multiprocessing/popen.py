"""How treadle starts a ``Process``: the ``Popen`` classes of its start methods.

``ForkServerPopen`` (treadle's default, ``"forkserver"``): the child is forked by treadle's fork
server (``fork_server``), the single-threaded copy of this process that the process pool uses,
so a process with threads is never forked; it takes this process's state and runs
(``child``). Its ``pid`` is the server's child, reaped by the server when asked, so the pid
cannot be reused while the ``Popen`` lives; its ``sentinel`` is a pidfd. It dies with the server,
which dies with this process (``PR_SET_PDEATHSIG``). Channels pickled for it are counted as the
child's from the moment its pid is known, before it reads its start-up data
(``channel.counting_for_child``).

When there is no fork server (this process had threads when it first needed one), children
are fresh interpreters, started by the standard library's ``spawn`` (``SpawnPopen``, also the
``"spawn"`` start method's); the ``"fork"`` start method forks the caller (``ForkPopen``). Both
are the standard library's, with treadle's channels counted for the child and, when started
from the main thread, the child set to die with this process. Every ``wait`` (``join``) waits
through treadle's runtime: Ctrl-C interrupts it, and it shows in the wait graph.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from multiprocessing import context, popen_fork, popen_spawn_posix, reduction, spawn, util
from typing import Any

from treadle._treadle import _wait_for_exit
from treadle.multiprocessing import channel, child, fork_server


class NoForkServer(Exception):
    """This process has no fork server (it had threads when it first needed one)."""


def _dies_with_parent(process_obj: Any) -> None:
    """Asks the child (a fork or an exec of this thread) to die with this process: only when
    this thread is the main thread, which lives as long as the process (``PR_SET_PDEATHSIG``
    follows the thread that started the child)."""
    main = threading.current_thread() is threading.main_thread()
    process_obj._treadle_die_with = os.getpid() if main else None


class _WaitsThroughTreadle:
    """``wait`` on the sentinel through treadle's runtime, for the standard library's Popens."""

    sentinel: int
    returncode: int | None
    poll: Any  # the standard library's

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            if not _wait_for_exit(self.sentinel, timeout, self):
                return None
            return self.poll(os.WNOHANG if timeout == 0.0 else 0)
        return self.returncode


class ForkPopen(_WaitsThroughTreadle, popen_fork.Popen):
    """The ``"fork"`` start method: the standard library's fork of the caller."""

    def _launch(self, process_obj: Any) -> None:
        _dies_with_parent(process_obj)
        super()._launch(process_obj)


class SpawnPopen(_WaitsThroughTreadle, popen_spawn_posix.Popen):
    """The ``"spawn"`` start method (and the default's when there is no fork server): the
    standard library's fresh interpreter, with the channels pickled for it counted as its own
    once its pid is known."""

    def _launch(self, process_obj: Any) -> None:
        _dies_with_parent(process_obj)
        with channel.counting_for_child() as roles:
            try:
                super()._launch(process_obj)
            except BaseException:
                channel.not_sent(roles)
                raise
        channel.count_for(roles, self.pid)


class ForkServerPopen:
    """The default start method: a child forked by treadle's fork server (see the module's
    documentation)."""

    method = "forkserver"
    DupFd = child.DupFd

    def __init__(self, process_obj: Any) -> None:
        util._flush_std_streams()
        self.returncode: int | None = None
        self.finalizer: util.Finalize | None = None
        self._fds: list[int] = []
        self._launch(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        self._fds.append(fd)
        return len(self._fds) - 1

    def _launch(self, process_obj: Any) -> None:
        server = fork_server.get()
        if server is None:
            raise NoForkServer
        process_obj._treadle_die_with = None  # the server's death signal covers it
        preparation = spawn.get_preparation_data(process_obj._name)
        tracker = _running_resource_tracker()
        if tracker is not None:
            preparation["treadle_tracker"] = self.duplicate_for_child(tracker)
        data = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            with channel.counting_for_child() as roles:
                reduction.dump(preparation, data)
                reduction.dump(process_obj, data)
        finally:
            context.set_spawning_popen(None)
        start_up = data.getvalue()
        try:
            server, pid = self._fork(server, start_up)
        except BaseException:
            channel.not_sent(roles)
            raise
        self._server = server
        self.pid = pid
        self.sentinel = os.pidfd_open(pid)
        self.finalizer = util.Finalize(self, util.close_fds, (self.sentinel,))
        channel.count_for(roles, pid)

    def _fork(self, server: Any, start_up: bytes) -> tuple[Any, int]:
        """Has ``server`` fork the child, which takes this process's state of the moment; the
        server that did, and the child's pid."""
        try:
            return server, server.spawn_process(fork_server.parent_state(), start_up, self._fds)
        except OSError:
            if server.alive():
                # The server answered: it could not fork a child that takes this process's
                # state (credentials it cannot give, a restriction it lacks). A fresh
                # interpreter inherits this process as it is.
                raise NoForkServer from None
        # The server is gone (killed?): a new one, if this process can fork one.
        server = fork_server.get()
        if server is None:
            raise NoForkServer
        try:
            return server, server.spawn_process(fork_server.parent_state(), start_up, self._fds)
        except OSError:
            raise NoForkServer from None

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        if self.returncode is None:
            if flag == os.WNOHANG and not _wait_for_exit(self.sentinel, 0.0, self):
                return None
            if flag != os.WNOHANG:
                _wait_for_exit(self.sentinel, None, self)
            try:
                status = self._server.wait(self.pid)
            except OSError:
                # The server died, and its child with it (its death signal is SIGKILL).
                status = signal.SIGKILL
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            if not _wait_for_exit(self.sentinel, timeout, self):
                return None
            return self.poll(0)
        return self.returncode

    def _send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                signal.pidfd_send_signal(self.sentinel, sig)
            except ProcessLookupError:
                pass
            except OSError:
                if self.wait(timeout=0.1) is None:
                    raise

    def terminate(self) -> None:
        self._send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self._send_signal(signal.SIGKILL)

    def close(self) -> None:
        if self.finalizer is not None:
            self.finalizer()


def _running_resource_tracker() -> int | None:
    """The descriptor of this process's resource tracker, if one runs (a child that needs one
    then uses it, as a spawned child does; none is started for a child that may not)."""
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    if tracker is None:
        return None
    fd = tracker._resource_tracker._fd
    return fd if fd is not None and tracker._resource_tracker._check_alive() else None


def start(process_obj: Any) -> Any:
    """The default start method's Popen for ``process_obj``: forked by the fork server, or a
    fresh interpreter when there is none."""
    try:
        return ForkServerPopen(process_obj)
    except NoForkServer:
        return SpawnPopen(process_obj)
