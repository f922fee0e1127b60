"""Warm workers forked by a fork server: as isolated as fresh ones, and nothing carries over."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from runner.client import RemoteNamespace, Worker, WorkerFailed
from runner.grade import HIDDEN, fork_server
from runner.sandbox import Limits, WorkerSpec, bwrap_path, process_tree

pytestmark = pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap is required")

SNOOP = b'''
import os, resource, sys, tempfile
TMP = tempfile.gettempdir()   # /tmp in a sandbox; the server's scratch folder without one

def tmp_listing():
    return sorted(os.listdir(TMP))

def leave_a_file():
    with open(f"{TMP}/left-behind", "w") as f:
        f.write("secret of the previous student")
    os.makedirs(f"{TMP}/locked/deeper", exist_ok=True)
    os.chmod(f"{TMP}/locked", 0)
    return True

def parent_secrets():
    out = {}
    for what in ("environ", "mem", "fd"):
        try:
            path = f"/proc/{os.getppid()}/{what}"
            os.listdir(path) if what == "fd" else open(path, "rb").read(16)
            out[what] = "readable"
        except OSError as e:
            out[what] = type(e).__name__
    return out

def memory_limit():
    return resource.getrlimit(resource.RLIMIT_AS)[0]

def who():
    return {"uid": os.getuid(), "argv": sys.argv[1:3], "tmp": os.getcwd()}

def cpus():
    return sorted(os.sched_getaffinity(0))

def widen_cpus():
    try:
        os.sched_setaffinity(0, range(os.cpu_count()))
        return "widened"
    except OSError as e:
        return type(e).__name__

def kill_the_server():
    os.kill(os.getppid(), 9)
    import time
    time.sleep(30)
'''


@pytest.fixture
def server():
    s = fork_server("required")
    yield s
    s.close()


def spawn(server, memory_mb=1024):
    return Worker(WorkerSpec(SNOOP, "snoop", limits=Limits(memory_mb=memory_mb),
                             hidden_paths=HIDDEN), "bwrap", call_timeout=10, launcher=server)


def test_children_get_their_own_limits_and_a_clean_tmp(server):
    first = spawn(server, memory_mb=1024)
    ns = RemoteNamespace(first)
    assert ns.memory_limit() == 1024 << 20
    info = ns.who()
    assert info["uid"] != 0 and info["argv"][0] == "--submission"
    assert ns.leave_a_file() is True
    assert "left-behind" in ns.tmp_listing()
    first.stop()
    second = spawn(server, memory_mb=2048)
    ns = RemoteNamespace(second)
    try:
        assert ns.memory_limit() == 2048 << 20
        assert ns.tmp_listing() == ["submission"]   # only its own file: nothing of the first child
    finally:
        second.stop()
    assert server.starts == 1   # both came from one warm server


def test_a_child_cannot_look_into_the_server(server):
    w = spawn(server)
    try:
        seen = RemoteNamespace(w).parent_secrets()
    finally:
        w.stop()
    assert seen == {"environ": "PermissionError", "mem": "PermissionError", "fd": "PermissionError"}


def test_killing_the_server_costs_only_the_attacker(server):
    w = spawn(server)
    with pytest.raises(WorkerFailed) as failed:
        RemoteNamespace(w).kill_the_server()
    assert failed.value.status == "crashed"
    w.stop()
    nxt = spawn(server)
    try:
        assert RemoteNamespace(nxt).tmp_listing() == ["submission"]
    finally:
        nxt.stop()
    assert server.starts == 2   # restarted once, on demand


def test_a_new_child_replaces_one_still_running(server):
    a = spawn(server)
    RemoteNamespace(a).who()
    first_pid = a.process.host_pid
    b = spawn(server)
    try:
        RemoteNamespace(b).who()   # spawning b stopped a: never two students side by side
        assert not os.path.exists(f"/proc/{first_pid}") or \
            open(f"/proc/{first_pid}/stat").read().split(") ")[1][0] in "ZX"
        assert len(process_tree(server.server.host_pid)) == 2
    finally:
        a.stop()
        b.stop()


def test_unisolated_server_wipes_only_its_own_folder(tmp_path):
    """--sandbox none has no private /tmp: the server must not empty the host's."""
    canary = Path(tempfile.gettempdir()) / f"grade-canary-{os.getpid()}"
    canary.write_text("still here")
    s = fork_server("none")
    try:
        for _ in range(2):
            w = spawn(s)
            try:
                assert RemoteNamespace(w).leave_a_file() is True
            finally:
                w.stop()
        assert canary.read_text() == "still here"
    finally:
        s.close()
        canary.unlink()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
@pytest.mark.parametrize("launcher", ["fresh", "warm"])
def test_a_worker_keeps_the_cpus_of_its_grading_process(launcher):
    # grade batch --jobs N pins each grading process to its share of the CPUs (cpu_shares.py);
    # its workers inherit the share and may not widen it.
    everything = os.sched_getaffinity(0)
    one = {min(everything)}
    os.sched_setaffinity(0, one)      # this thread: what it starts inherits its set
    server = fork_server("required") if launcher == "warm" else None
    try:
        worker = Worker(WorkerSpec(SNOOP, "snoop", limits=Limits(), hidden_paths=HIDDEN), "bwrap",
                        call_timeout=10, launcher=server)
        worker.start()
        os.sched_setaffinity(0, everything)   # the worker's set was fixed when it started
        ns = RemoteNamespace(worker)
        try:
            assert ns.cpus() == sorted(one)
            assert ns.widen_cpus() == "PermissionError"
            assert ns.cpus() == sorted(one)
        finally:
            worker.stop()
    finally:
        os.sched_setaffinity(0, everything)
        if server is not None:
            server.close()



def test_scratch_folders_of_killed_processes_are_swept():
    from runner import sandbox
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"grade-worker-{dead.pid}-abc"
    live = Path(tempfile.gettempdir()) / f"grade-forked-{os.getppid()}-abc"
    other = Path(tempfile.gettempdir()) / f"grade-image-{dead.pid}-abc"   # not ours
    for folder in (stale, live, other):
        (folder / "stage").mkdir(parents=True)
    try:
        assert sandbox.sweep_stale_scratch() >= 1
        assert not stale.exists() and live.exists() and other.exists()
        made = sandbox.scratch_dir("worker")
        assert made.name.startswith(f"grade-worker-{os.getpid()}-")
        made.rmdir()
    finally:
        for folder in (stale, live, other):
            shutil.rmtree(folder, ignore_errors=True)
