"""Large buffers between a process pool and its workers: any number of them in one task or
result, shared memory made only when a task goes to a worker (so a long queue holds no copies
and no descriptors), and every transfer failure failing its own task clearly."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import _process_tasks as tasks
import pytest

import treadle
from treadle.multiprocessing import pickling

WAIT = 30  # seconds: every wait in these tests ends, a hang is a failure
TESTS = str(Path(__file__).parent)
SIZE = pickling.SHARED_MEMORY_THRESHOLD  # the smallest buffer that goes out of band


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("count", [253, 254, 256, 300])
def test_a_task_carries_any_number_of_large_buffers(count):
    buffers = [pickle.PickleBuffer(bytes([i % 256]) * SIZE) for i in range(count)]
    with treadle.ProcessPoolExecutor(1) as pool:
        assert pool.submit(tasks.square, 2).result(WAIT) == 4
        before = open_descriptors()
        future = pool.submit(tasks.lengths, buffers)
        assert future.result(WAIT) == [SIZE] * count
        # The worker and the pool go on.
        assert pool.submit(tasks.square, 3).result(WAIT) == 9
        assert open_descriptors() - before == set()


@pytest.mark.parametrize("count", [254, 300])
def test_a_result_carries_any_number_of_large_buffers(count):
    with treadle.ProcessPoolExecutor(1) as pool:
        assert pool.submit(tasks.square, 2).result(WAIT) == 4
        before = open_descriptors()
        result = pool.submit(tasks.make_buffers, count, SIZE).result(WAIT)
        assert [bytes(memoryview(b)[:1]) for b in result] == [
            bytes([i % 256]) for i in range(count)
        ]
        assert all(memoryview(b).nbytes == SIZE for b in result)
        del result
        assert pool.submit(tasks.square, 3).result(WAIT) == 9
        assert open_descriptors() - before == set()


QUEUED = """
    import gc, json, os, resource, sys
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle

    def memfd_bytes():
        total = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                if "memfd:" in os.readlink(f"/proc/self/fd/{{fd}}"):
                    total += os.fstat(int(fd)).st_size
            except OSError:
                pass
        return total

    limit = {limit!r}
    if limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    data = os.urandom(8 << 20)
    gate = os.path.join({folder!r}, "go")
    out = {{}}
    with treadle.ProcessPoolExecutor(1) as pool:
        pool.submit(tasks.square, 1).result(30)
        fds = len(os.listdir("/proc/self/fd"))
        blocker = pool.submit(tasks.wait_for_file, gate, 60)
        futures = [pool.submit(tasks.length, data) for _ in range(400)]
        out["extra_fds"] = len(os.listdir("/proc/self/fd")) - fds
        out["extra_memfd_bytes"] = memfd_bytes()
        open(gate, "w").close()
        out["blocker"] = blocker.result(60)
        out["results"] = sorted({{f.result(60) for f in futures}})
    print(json.dumps(out))
"""


def run_queued(tmp_path: Path, limit: int | None) -> dict:
    script = textwrap.dedent(QUEUED).format(tests=TESTS, folder=str(tmp_path), limit=limit)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT * 4
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_queued_tasks_hold_no_shared_memory_and_no_descriptors(tmp_path):
    out = run_queued(tmp_path, None)
    assert out["blocker"] is True
    assert out["results"] == [8 << 20]
    # A worker holds a bounded number of tasks: two, each with one segment at most.
    assert out["extra_fds"] <= 4
    assert out["extra_memfd_bytes"] <= 2 * (8 << 20) + (1 << 20)


def test_a_long_queue_of_large_tasks_fits_a_small_descriptor_limit(tmp_path):
    out = run_queued(tmp_path, 256)
    assert out["results"] == [8 << 20]


NO_DESCRIPTOR_LEFT = """
    import errno, json, os, resource, sys
    sys.path.insert(0, {tests!r})
    import _process_tasks as tasks
    import treadle

    data = os.urandom(4 << 20)
    out = {{}}
    with treadle.ProcessPoolExecutor(1) as pool:
        pool.submit(tasks.square, 1).result(30)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = os.open(os.devnull, os.O_RDONLY)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            pool.submit(tasks.length, data).result(30)
        except OSError as error:
            out["errno"] = error.errno
            out["message"] = str(error)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        out["after"] = pool.submit(tasks.length, data).result(30)
    print(json.dumps(out))
"""


def test_a_task_whose_shared_memory_cannot_be_made_fails_alone_and_clearly():
    script = textwrap.dedent(NO_DESCRIPTOR_LEFT).format(tests=TESTS)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT * 2
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["errno"] == 24, out  # EMFILE
    assert "could not be handed to a worker" in out["message"]
    assert "shared memory" in out["message"]
    assert out["after"] == 4 << 20


def test_what_goes_out_of_band_is_what_the_docs_say():
    # docs/process_pool.md: bytearrays travel in the frame wherever they are (pickle writes
    # them in band); large bytes and memoryviews go out of band at the top level, numpy arrays
    # and PickleBuffers anywhere.
    from treadle.multiprocessing import wire

    def lent(*args):
        return len(pickling.dump_task(wire.CALL, tasks.same, args, {}, SIZE)[1])

    data = bytes(SIZE)
    assert lent(bytearray(data)) == 0
    assert lent([bytearray(data)]) == 0
    assert lent(data) == 1
    assert lent([data]) == 0
    assert lent(memoryview(data)) == 1
    assert lent([pickle.PickleBuffer(data)]) == 1
    numpy = pytest.importorskip("numpy")
    assert lent({"nested": [numpy.zeros(SIZE, dtype=numpy.uint8)]}) == 1
    with treadle.ProcessPoolExecutor(1) as pool:
        assert pool.submit(tasks.same, [bytearray(data)]).result(WAIT) == [bytearray(data)]
