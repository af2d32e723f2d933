"""treadle.multiprocessing.shared_memory: the standard library's SharedMemory and
ShareableList on memfd segments (mode 0600, never in /dev/shm), found by name through a
private registry of the processes that hold them, and freed with the last of them, SIGKILL
included, with no resource tracker."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from multiprocessing import shared_memory as standard

import _mp_tasks as tasks
import pytest
from _mp_tasks import WAIT
from _threads import run_threads

import treadle.multiprocessing as mp
from treadle.multiprocessing import shared_memory
from treadle.multiprocessing.shared_memory import ShareableList, SharedMemory

METHODS = ["forkserver", "spawn", "fork"]


@pytest.fixture
def segment():
    shm = SharedMemory(create=True, size=4096)
    yield shm
    shm.close()
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


def start_python(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


HOLD = """
    import os, sys, time
    from treadle.multiprocessing.shared_memory import SharedMemory
    name = {name!r}
    shm = SharedMemory(create=True, size=1 << 20) if name is None else SharedMemory(name)
    shm.buf[0] += 1
    print(shm.name, shm.buf[0], os.fstat(shm._fd).st_ino, flush=True)
    time.sleep(120)
"""


def test_no_segment_is_left_after_sigkill_of_every_user():
    shared_memory._Registry.locked()  # the registry's directory, made before the listing
    dev_shm_before = tasks.dev_shm()
    creator = start_python(HOLD.format(name=None))
    name, _, inode = creator.stdout.readline().split()
    attached = start_python(HOLD.format(name=name))
    try:
        # The second process found the first's segment by name (and saw its write).
        assert attached.stdout.readline().split() == [name, "2", inode], attached.stderr.read()
        # Both have it, open and mapped.
        assert len(tasks.memfd_holders(int(inode))) >= 4
    finally:
        for process in (creator, attached):
            process.send_signal(signal.SIGKILL)
            process.wait(WAIT)
            process.stdout.close()
            process.stderr.close()
    # The kernel took the memory back: no process has a descriptor or a mapping of it.
    assert tasks.memfd_holders(int(inode)) == []
    assert tasks.dev_shm() - dev_shm_before == set()
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)
    # Whoever found the dead holders removed them, and with them the name.
    assert name not in os.listdir(shared_memory.registry_path())


def test_a_process_that_exits_without_unlinking_leaves_nothing_and_no_tracker_warning():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from treadle.multiprocessing.shared_memory import SharedMemory, ShareableList\n"
            "shm = SharedMemory(create=True, size=100)\n"
            "items = ShareableList([1, 2])\n"
            "import os\n"
            "print(os.fstat(shm._fd).st_ino, os.fstat(items.shm._fd).st_ino)\n"
            "print(shm.name, items.shm.name)\n",
        ],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    inodes, names = (line.split() for line in done.stdout.splitlines())
    for inode in inodes:
        assert tasks.memfd_holders(int(inode)) == []
    for name in names:
        with pytest.raises(FileNotFoundError):
            SharedMemory(name)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("by", ["name", "object"])
def test_a_segment_attached_in_another_process_sees_writes_both_ways(segment, method, by):
    ctx = mp.get_context(method)
    replies = ctx.Queue()
    segment.buf[:6] = b"parent"
    child = ctx.Process(
        target=tasks.shared_memory_round_trip,
        args=(segment.name if by == "name" else segment, replies),
    )
    child.start()
    assert replies.get(timeout=WAIT) == b"parent"
    assert replies.get(timeout=WAIT) == "written"
    child.join(WAIT)
    assert child.exitcode == 0
    assert bytes(segment.buf[6:11]) == b"child"


@pytest.mark.parametrize("method", METHODS)
def test_a_shareable_list_passes_to_a_child(method):
    items = ShareableList([1, 2, 3, 0])
    try:
        child = mp.get_context(method).Process(
            target=tasks.shareable_list_append_sum, args=(items,)
        )
        child.start()
        child.join(WAIT)
        assert child.exitcode == 0
        assert list(items) == [1, 2, 3, 6]
    finally:
        items.shm.close()
        items.shm.unlink()


def test_a_segment_is_a_memfd_of_mode_0600_not_a_file_in_dev_shm(segment):
    assert stat.S_IMODE(os.fstat(segment._fd).st_mode) == 0o600
    link = os.readlink(f"/proc/self/fd/{segment._fd}")
    assert link.startswith(f"/memfd:{shared_memory.MEMFD_PREFIX}{segment.name}")
    assert not os.path.exists(f"/dev/shm/{segment.name}")


def test_a_segment_cannot_be_resized_under_another_mapping(segment):
    with pytest.raises(PermissionError):
        os.ftruncate(segment._fd, 1)
    with pytest.raises(PermissionError):
        os.ftruncate(segment._fd, 1 << 20)
    assert segment.size == 4096


def test_the_name_outlives_close_until_unlink_or_exit(segment):
    segment.buf[0] = 7
    name = segment.name
    segment.close()
    again = SharedMemory(name)
    assert again.buf[0] == 7
    again.close()


def test_unlink_removes_the_name_but_not_the_memory_of_open_handles(segment):
    other = SharedMemory(segment.name)
    segment.unlink()
    with pytest.raises(FileNotFoundError):
        SharedMemory(segment.name)
    other.buf[0] = 9
    assert segment.buf[0] == 9
    other.close()
    with pytest.raises(FileNotFoundError):
        segment.unlink()
    # The name can be taken again, by a new segment.
    fresh = SharedMemory(segment.name, create=True, size=10)
    assert fresh.buf[0] == 0
    fresh.close()
    fresh.unlink()


def test_a_name_in_use_cannot_be_created_again(segment):
    with pytest.raises(FileExistsError):
        SharedMemory(segment.name, create=True, size=10)


def test_a_segment_of_the_standard_library_can_be_attached_to_by_name():
    theirs = standard.SharedMemory(create=True, size=64)
    try:
        theirs.buf[:3] = b"abc"
        ours = SharedMemory(theirs.name)
        assert bytes(ours.buf[:3]) == b"abc"
        ours.buf[3] = ord("d")
        assert bytes(theirs.buf[:4]) == b"abcd"
        ours.close()
        with pytest.raises(FileExistsError):
            SharedMemory(theirs.name, create=True, size=64)
    finally:
        theirs.close()
        theirs.unlink()


@pytest.mark.parametrize("size", [-1, 0])
def test_a_bad_size_is_value_error_as_in_the_standard_library(size):
    for module in (standard, shared_memory):
        with pytest.raises(ValueError):
            module.SharedMemory(create=True, size=size)
    with pytest.raises(ValueError, match="'name' can only be None"):
        SharedMemory()


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="null"):
        SharedMemory("a\0b")
    with pytest.raises(OSError) as caught:
        SharedMemory("a/b", create=True, size=1)
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(OSError) as caught:
        SharedMemory("x" * 300, create=True, size=1)
    assert caught.value.errno == errno.ENAMETOOLONG


def test_a_missing_name_is_file_not_found():
    with pytest.raises(FileNotFoundError):
        SharedMemory("treadle-test-never-made")


def test_pickling_reattaches_by_name(segment):
    segment.buf[0] = 5
    copy = pickle.loads(pickle.dumps(segment))
    assert (copy.name, copy.size, copy.buf[0]) == (segment.name, segment.size, 5)
    copy.close()


def test_a_registry_another_user_could_prepare_is_refused(tmp_path, monkeypatch):
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    monkeypatch.setattr(shared_memory, "registry_path", lambda: str(open_to_all))
    with pytest.raises(PermissionError, match="not a directory private"):
        SharedMemory(create=True, size=1)


def test_the_fork_server_forked_while_a_segment_is_open_does_not_keep_it_alive():
    # The fork server is a copy of the program made at its first Process: it must let go of
    # the program's segments, or their memory would outlive their last user.
    assert tasks.run_fresh(
        """
        import os
        import _mp_tasks as tasks
        import treadle.multiprocessing as mp
        from treadle.multiprocessing.shared_memory import SharedMemory

        if __name__ == "__main__":
            shm = SharedMemory(create=True, size=1 << 20)
            inode = os.fstat(shm._fd).st_ino
            child = mp.Process(target=print, args=("child",))
            child.start()
            child.join(30)
            print(len(tasks.memfd_holders(inode)) > 0)
            shm.close()
            shm.unlink()
            print(tasks.memfd_holders(inode) == [])
        """
    ) == ["child", "True", "True"]


DUMPABLE_HOLDER = """
    import ctypes, time
    from treadle.multiprocessing.shared_memory import SharedMemory
    # A process whose credentials changed is not dumpable until it says so.
    ctypes.CDLL(None).prctl(4, {dumpable}, 0, 0, 0)  # PR_SET_DUMPABLE
    shm = SharedMemory(create=True, size=64)
    print(shm.name, flush=True)
    time.sleep(120)
"""

TRY_ATTACH = """
    import ctypes, sys
    from treadle.multiprocessing.shared_memory import SharedMemory
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)
    try:
        SharedMemory(sys.argv[1]).close()
        print("attached")
    except PermissionError as error:
        print("refused" if "do not let this process open it" in str(error) else error)
"""


#: Root may open any process's descriptors (CAP_SYS_PTRACE): its processes here run without.
UNPRIVILEGED = ["setpriv", "--bounding-set", "-sys_ptrace"] if os.getuid() == 0 else []


@pytest.mark.skipif(
    bool(UNPRIVILEGED) and shutil.which("setpriv") is None, reason="needs setpriv to run as root"
)
@pytest.mark.parametrize(("dumpable", "outcome"), [(1, "attached"), (0, "refused")])
def test_a_holder_that_is_not_dumpable_cannot_be_attached_through(dumpable, outcome):
    holder = subprocess.Popen(
        [
            *UNPRIVILEGED,
            sys.executable,
            "-c",
            textwrap.dedent(DUMPABLE_HOLDER.format(dumpable=dumpable)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        name = holder.stdout.readline().strip()
        assert name, holder.stderr.read()
        done = subprocess.run(
            [*UNPRIVILEGED, sys.executable, "-c", textwrap.dedent(TRY_ATTACH), name],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert done.stdout.split() == [outcome], done.stderr
    finally:
        holder.kill()
        holder.wait(WAIT)
        holder.stdout.close()
        holder.stderr.close()


def test_threads_creating_attaching_and_unlinking_at_once_keep_the_registry_consistent():
    errors = []

    def churn():
        try:
            for _ in range(200):
                made = SharedMemory(create=True, size=64)
                attached = SharedMemory(made.name)
                attached.buf[0] = 1
                assert made.buf[0] == 1
                attached.close()
                made.close()
                made.unlink()
                with pytest.raises(FileNotFoundError):
                    SharedMemory(made.name)
        except BaseException as error:
            errors.append(error)

    run_threads(4, churn)
    assert errors == []
    assert shared_memory._Holdings.of_this_process().by_segment == {}
