"""The ``treadle`` command (also ``python -m treadle``).

``treadle run script.py [args...]`` / ``treadle run -m module [args...]`` runs a program as
``python`` would, with the standard library's concurrency replaced by treadle's: a deadlock ends it
with a report on stderr and exit status 3 instead of a hang; at exit it says which non-daemon
threads are still alive (the interpreter will wait for them) and which task exceptions nobody
retrieved (and a program that would have exited 0 exits 3 when it lost some; tasks stopped on
purpose, such as a process pool's at a Ctrl-C the program handles, are not lost). With
``--stats`` it prints every pool's statistics at exit.

``treadle run --cluster ADDRESS ...`` (or ``TREADLE_CLUSTER=ADDRESS``) runs every
``ProcessPoolExecutor`` the program makes on the Dask cluster at ADDRESS (``local``: a
``LocalCluster`` started first), as a ``treadle.DaskExecutor``.

``treadle bench [--quick] [name ...]`` runs the benchmark harness (``treadle.benchmarks``).
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import runpy
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, TextIO

from treadle import benchmarks, deadlock
from treadle._treadle import __version__
from treadle.futures import ExecutorStats, set_unretrieved_handler
from treadle.futures.executor import StatsSource, keep_stats
from treadle.patching import patch

DEADLOCK_EXIT_STATUS = 3
# A program that ends normally but lost task exceptions exits with this status too: treadle
# found a problem. A program's own non-zero status is kept.
FINDINGS_EXIT_STATUS = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="treadle",
        description=(
            "Python's concurrency toolkit on a Rust core. `treadle run` runs an unmodified "
            "program on treadle: deadlocks stop it with a report (exit status 3) instead of "
            "hanging."
        ),
    )
    parser.add_argument("--version", action="version", version=f"treadle {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a Python program with its concurrency on treadle",
        description=(
            "Run SCRIPT (or -m MODULE) like `python` would, with threading's locks, conditions, "
            "events, semaphores and barriers, Thread.join, and queue's queues replaced by "
            "treadle's. A deadlock prints a report on stderr and exits with status 3."
        ),
    )
    run.add_argument(
        "--lock-order",
        action="store_true",
        help="also warn about locks taken in a circle of orders, which did not hang this time",
    )
    run.add_argument(
        "--report",
        choices=("text", "json"),
        default="text",
        help="how findings are written (default: text)",
    )
    run.add_argument(
        "--report-file",
        metavar="PATH",
        help="write findings to PATH instead of stderr",
    )
    run.add_argument(
        "--stats",
        action="store_true",
        help="at exit, print every pool's statistics (tasks, times, queue waits, workers)",
    )
    run.add_argument(
        "--cluster",
        metavar="ADDRESS",
        default=os.environ.get("TREADLE_CLUSTER") or None,
        help=(
            "run the program's ProcessPoolExecutors on the Dask cluster whose scheduler is at "
            "ADDRESS (tcp://HOST:PORT), or on a local one started first (local); default: "
            "$TREADLE_CLUSTER. Needs treadle[dask]"
        ),
    )
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a library module as a script")
    run.add_argument(
        "target", nargs=argparse.REMAINDER, help="script.py [args...] (or module args)"
    )

    bench = commands.add_parser(
        "bench",
        help="run the benchmark harness (ratios against the standard library)",
    )
    bench.add_argument("--quick", action="store_true", help="fewer operations and repeats")
    bench.add_argument(
        "names",
        nargs="*",
        metavar="name",
        help=f"which benchmarks to run (default: all): {', '.join(benchmarks.NAMES)}",
    )
    return parser


class _Findings:
    """Where `treadle run` writes what it finds: text or JSON, stderr or a file."""

    def __init__(self, form: str, path: str | None):
        self.form = form
        self.path = path
        self.items: list[dict[str, Any]] = []

    def _stream(self) -> TextIO:
        if self.path is None:
            return sys.stderr
        return open(self.path, "a", encoding="utf-8")

    def emit(self, kind: str, text: str, **data: Any) -> None:
        item = {"kind": kind, "message": text, **data}
        stream = self._stream()
        try:
            if self.form == "json":
                stream.write(json.dumps(item) + "\n")
            else:
                stream.write(f"treadle: {text}\n")
            stream.flush()
        finally:
            if stream is not sys.stderr:
                stream.close()


def _edge_json(edge: deadlock.WaitEdge) -> dict[str, Any]:
    return {
        "waiter": edge.waiter,
        "waiter_ident": edge.waiter_ident,
        "kind": edge.kind,
        "target": edge.target,
        "created_at": edge.created_at,
        "owner": edge.owner,
        "owner_ident": edge.owner_ident,
        "timed": edge.timed,
    }


def _install_deadlock_exit(findings: _Findings) -> None:
    def on_deadlock(message: str, edges: list[deadlock.WaitEdge]) -> None:
        findings.emit("deadlock", message, cycle=[_edge_json(e) for e in edges])
        sys.stdout.flush()
        os._exit(DEADLOCK_EXIT_STATUS)

    deadlock._set_deadlock_handler(on_deadlock)


class _LostExceptions:
    """Task exceptions nobody retrieved, as the thread pool reports them."""

    def __init__(self, findings: _Findings):
        self.findings = findings
        self.reported = 0
        self.pending: list[tuple[BaseException, object]] = []
        set_unretrieved_handler(self.record)

    def record(self, exception: BaseException, name: object) -> None:
        self.pending.append((exception, name))

    def flush(self) -> None:
        """Reports what was recorded so far."""
        gc.collect()  # futures dropped but not yet freed report their exception when freed
        while self.pending:
            exception, name = self.pending.pop(0)
            task = f"task {name!r}" if name is not None else "a task"
            trace = "".join(
                traceback.format_exception(type(exception), exception, exception.__traceback__)
            ).rstrip()
            self.findings.emit(
                "unretrieved-exception",
                f"exception in {task} was never retrieved:\n{trace}",
                task=None if name is None else str(name),
                exception=repr(exception),
            )
            self.reported += 1


def _install_exit_summary(findings: _Findings, lost: _LostExceptions) -> None:
    def at_shutdown() -> None:
        alive = [
            t
            for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()
        ]
        if alive:
            names = ", ".join(repr(t.name) for t in alive)
            findings.emit(
                "threads-alive-at-exit",
                f"{len(alive)} non-daemon thread(s) still alive at exit, "
                f"which the interpreter now waits for: {names}",
                threads=[t.name for t in alive],
            )
        lost.flush()

    threading._register_atexit(at_shutdown)  # type: ignore[attr-defined]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"


def _busy(workers: Any) -> str:
    lifetime = sum(w.lifetime for w in workers)
    return f"{sum(w.busy for w in workers) / lifetime:.0%}" if lifetime > 0 else "-"


_STATS_HEAD = (
    f"{'pool':<24} {'tasks':>7} {'done':>7} {'failed':>6} {'cancel':>6} {'t/out':>5}"
    f" {'task p50':>8} {'p99':>8} {'max':>8} {'wait p50':>8} {'p99':>8} {'workers':>7} {'busy':>4}"
)


def stats_table(pools: list[tuple[str, ExecutorStats]], workers_shown: int = 8) -> str:
    """The ``--stats`` table: a line per pool, a line per worker (the first ``workers_shown``)
    under it, and a process pool's restarts."""
    lines = [_STATS_HEAD, "-" * len(_STATS_HEAD)]
    for name, s in pools:
        task, wait = s.task_time, s.queue_wait
        lines.append(
            f"{name:<24} {s.submitted:>7} {s.done:>7} {s.failed:>6} {s.cancelled:>6}"
            f" {s.timed_out:>5} {_duration(task.p50):>8} {_duration(task.p99):>8}"
            f" {_duration(task.max):>8} {_duration(wait.p50):>8} {_duration(wait.p99):>8}"
            f" {len(s.workers):>7} {_busy(s.workers):>4}"
        )
        for worker in s.workers[:workers_shown]:
            state = "" if worker.alive else ", ended"
            lines.append(
                f"  {worker.name:<22} {worker.tasks:>7} tasks, "
                f"{worker.busy_fraction:.0%} busy{state}"
            )
        if len(s.workers) > workers_shown:
            lines.append(f"  ... and {len(s.workers) - workers_shown} more workers")
        if s.restarts is not None and s.restarts.total:
            r = s.restarts
            lines.append(
                f"  workers restarted: {r.crashed} crashed, {r.timed_out} timed out, "
                f"{r.interrupted} interrupted, {r.recycled} recycled"
            )
    return "\n".join(lines)


def _stats_json(s: ExecutorStats) -> dict[str, Any]:
    def times(t: Any) -> dict[str, Any]:
        return {"count": t.count, "mean": t.mean, "p50": t.p50, "p99": t.p99, "max": t.max}

    restarts = s.restarts
    return {
        "submitted": s.submitted,
        "done": s.done,
        "failed": s.failed,
        "cancelled": s.cancelled,
        "timed_out": s.timed_out,
        "task_time": times(s.task_time),
        "queue_wait": times(s.queue_wait),
        "workers": [
            {"name": w.name, "pid": w.pid, "tasks": w.tasks, "busy_fraction": w.busy_fraction}
            for w in s.workers
        ],
        "restarts": None
        if restarts is None
        else {
            "crashed": restarts.crashed,
            "timed_out": restarts.timed_out,
            "interrupted": restarts.interrupted,
            "recycled": restarts.recycled,
        },
        "uptime": s.uptime,
    }


def _install_stats_report(findings: _Findings) -> None:
    """At exit, once the pools have finished (``atexit`` runs after ``threading``'s exit hooks,
    which shut the pools down), report every pool's statistics."""
    kept: list[tuple[str, StatsSource]] = keep_stats()

    def report() -> None:
        pools = [(name, source.stats()) for name, source in kept]
        if not pools:
            findings.emit("stats", "no pool was made", pools={})
            return
        findings.emit(
            "stats",
            f"statistics of {len(pools)} pool(s):\n{stats_table(pools)}",
            pools={name: _stats_json(s) for name, s in pools},
        )

    atexit.register(report)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _run(args: argparse.Namespace) -> int:
    if args.module is None and not args.target:
        print("treadle run: give a script (treadle run script.py) or -m module", file=sys.stderr)
        return 2
    findings = _Findings(args.report, args.report_file)
    deadlock.set_mode("raise")
    _install_deadlock_exit(findings)
    if args.lock_order:
        deadlock.enable_lock_order()
    if args.cluster is not None and not _connect_cluster(args.cluster):
        return 2
    patch(cluster=args.cluster)
    if args.stats:
        _install_stats_report(findings)
    lost = _LostExceptions(findings)
    _install_exit_summary(findings, lost)
    try:
        if args.module is not None:
            sys.argv = [args.module, *args.target]
            runpy.run_module(args.module, run_name="__main__", alter_sys=True)
        else:
            script = args.target[0]
            sys.argv = list(args.target)
            sys.path[0] = str(Path(script).resolve().parent)
            runpy.run_path(script, run_name="__main__")
        status = 0
    except SystemExit as exit:
        status = _exit_status(exit.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        # Die of SIGINT, as python does, so that the caller sees the signal.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    lost.flush()
    if status == 0 and lost.reported:
        return FINDINGS_EXIT_STATUS
    return status


def _connect_cluster(cluster: str) -> bool:
    """Connects to the cluster (or starts the local one) before the program runs: a cluster
    out of reach is said at once, and a LocalCluster's processes, started while this command
    is ``__main__``, never import the program as multiprocessing's spawn would."""
    from treadle.futures.dask_executor import shared_client

    try:
        shared_client(cluster)
    except ImportError as error:
        print(f"treadle run --cluster: {error}", file=sys.stderr)
        return False
    except (OSError, TimeoutError, ValueError) as error:
        print(
            f"treadle run --cluster: cannot reach the Dask cluster {cluster!r}: {error}",
            file=sys.stderr,
        )
        return False
    return True


def _bench(args: argparse.Namespace) -> int:
    unknown = [name for name in args.names if name not in benchmarks.NAMES]
    if unknown:
        print(
            f"treadle bench: no benchmark named {', '.join(unknown)} "
            f"(there are: {', '.join(benchmarks.NAMES)})",
            file=sys.stderr,
        )
        return 2
    status = 0
    for name in args.names or benchmarks.NAMES:
        # Each in a fresh interpreter, so that one's threads and pools do not disturb the next.
        module = f"{benchmarks.__name__}.bench_{name}"
        command = [sys.executable, "-m", module, *(["--quick"] if args.quick else [])]
        status |= subprocess.call(command)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "bench":
        return _bench(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
