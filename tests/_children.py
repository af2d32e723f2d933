"""Helpers for tests that run a program in a child process and stop it as a user would."""

from __future__ import annotations

import signal
import subprocess
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
