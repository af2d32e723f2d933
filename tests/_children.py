"""Helpers for tests that run a program in a child process and stop it as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def run_until_interrupted(argv: list[str], seconds: float = 1.5, **popen) -> tuple[int, str, str]:
    """Runs ``argv`` until it prints its first line, lets it run ``seconds`` more, checks it is
    still running (nothing stopped it: no deadlock report), then interrupts it with SIGINT, as
    Ctrl-C would. Returns its exit status and its output after the first line."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )
    try:
        first = proc.stdout.readline()  # the program says when it is where the test wants it
        assert first, proc.stderr.read()
        time.sleep(seconds)
        still_running = proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(60)
    assert still_running, f"{first}{out}{err}"
    return proc.returncode, out, err


# -- holding one thread of a child back, as a busy machine can ---------------------------------

_PTRACE_SEIZE, _PTRACE_INTERRUPT, _PTRACE_DETACH = 0x4206, 0x4207, 17
_WALL = 0x40000000
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}


def _ptrace(request: int, tid: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(request, tid, None, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"ptrace({request:#x}, {tid}) failed")


def _in_timed_futex_wait(pid: int, tid: int) -> bool:
    """Whether thread ``tid`` sleeps in a futex wait with a time limit: where CPython's
    ``take_gil`` waits for the interpreter lock (treadle parks in untimed waits)."""
    import platform

    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as file:
            fields = file.read().split()
    except OSError:
        return False
    futex = _SYS_FUTEX.get(platform.machine())
    return len(fields) > 4 and fields[0] == str(futex) and int(fields[4], 16) != 0


def _let_go(tid: int) -> None:
    """Stops tracing thread ``tid``: it goes on; or, if it ended meanwhile (its program exited),
    reaps it, which its program's own end waits for."""
    try:
        _ptrace(_PTRACE_DETACH, tid)
    except ProcessLookupError:
        try:
            os.waitpid(tid, _WALL)
        except ChildProcessError:
            pass


def _stop_while_it_waits(proc: subprocess.Popen, tid: int, flag) -> None:
    """Stops thread ``tid`` (traced) once ``flag`` is set, inside its timed futex wait for the
    interpreter lock: not a moment later, when it would hold the lock's own mutex, which every
    other thread needs to take or give the interpreter lock."""
    deadline = time.monotonic() + 10
    while True:
        while not (flag[0] and _in_timed_futex_wait(proc.pid, tid)):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the thread never waited for the interpreter"
        _ptrace(_PTRACE_INTERRUPT, tid)
        os.waitpid(tid, _WALL)
        if _in_timed_futex_wait(proc.pid, tid):
            return
        _ptrace(_PTRACE_DETACH, tid)  # it had just woken: again, at its next wait
        _ptrace(_PTRACE_SEIZE, tid)


def run_with_a_thread_held_back(code: str, hold: float = 0.6, timeout: float = 60) -> str:
    """Runs ``code`` in a fresh interpreter, and holds one of its threads back, as a machine
    busy with other work can keep a thread off its CPU.

    The program prints the native id of that thread and waits for a line on stdin; then it lets
    the thread get what it waits for while the main thread holds the interpreter lock, and says
    that the thread has got it by setting the byte of the file named by ``$HELD_BACK_FLAG``
    (shared memory: no system call, which would let the interpreter lock go). Once the thread
    then waits for the interpreter lock, it is stopped (ptrace, that thread alone) for ``hold``
    seconds, and let go on. Returns the program's output (its exit status must be 0)."""
    import mmap
    import tempfile

    with tempfile.TemporaryFile() as file:
        file.write(b"\0")
        file.flush()
        flag = mmap.mmap(file.fileno(), 1)
        env = {**os.environ, "HELD_BACK_FLAG": f"/proc/{os.getpid()}/fd/{file.fileno()}"}
        try:
            return _hold_back(code, flag, env, hold, timeout)
        finally:
            flag.close()


def _hold_back(code: str, flag, env: dict[str, str], hold: float, timeout: float) -> str:
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    tid = None
    try:
        first = proc.stdout.readline()
        assert first.strip().isdigit(), first + proc.stderr.read()
        _ptrace(_PTRACE_SEIZE, int(first))
        tid = int(first)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        _stop_while_it_waits(proc, tid, flag)
        time.sleep(hold)
        _let_go(tid)
        tid = None
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        if tid is not None:
            _let_go(tid)
        proc.wait(60)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    assert proc.returncode == 0, out + err
    return out
