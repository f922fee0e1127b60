"""What a worker can and cannot see or do, checked from inside a real sandbox."""
import os
import time

import pytest
import torch

from runner.client import RemoteNamespace, Worker
from runner.exercises import ROOT
from runner.sandbox import WorkerSpec, bwrap_path

PROBE = b'''
import os, socket

def look():
    out = {"uid": os.getuid(), "cwd": os.getcwd(), "env": dict(os.environ)}
    out["root"] = sorted(os.listdir("/"))
    for p in ["/work", "%(root)s", "%(root)s/reference", "/root/.ssh", "/etc/passwd", "/home"]:
        out[p] = os.path.exists(p)
    out["ifaces"] = sorted(n for _, n in socket.if_nameindex())
    try:
        open("/usr/bin/newfile", "w")
        out["write_usr"] = True
    except OSError:
        out["write_usr"] = False
    try:
        with open("/tmp/big", "wb") as f:
            f.write(b"x" * (300 << 20))
        out["big_tmp_file"] = True
    except OSError:
        out["big_tmp_file"] = False
    return out
''' % {b"root": str(ROOT).encode()}


@pytest.fixture
def worker():
    os.environ["JUDGE_SECRET"] = "do-not-leak"
    w = Worker(WorkerSpec(PROBE, "probe_module"), "bwrap")
    yield w
    w.stop()
    del os.environ["JUDGE_SECRET"]


@pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap is required")
def test_the_worker_sees_only_what_it_needs(worker):
    seen = RemoteNamespace(worker).look()
    assert seen["uid"] != 0
    assert seen[str(ROOT)] is False and seen[f"{ROOT}/reference"] is False
    assert seen["/work"] is False and seen["/root/.ssh"] is False and seen["/home"] is False
    assert "JUDGE_SECRET" not in seen["env"]
    assert seen["ifaces"] == ["lo"]
    assert seen["write_usr"] is False
    assert seen["big_tmp_file"] is False          # /tmp is a small tmpfs, files are capped
    assert set(seen["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "proc", "dev", "tmp",
                                 "etc", "root", "harness", "submission", "opt", "home"}


@pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap is required")
def test_pause_freezes_and_resume_thaws(worker):
    RemoteNamespace(worker).look()
    worker.pause()
    try:
        states = [open(f"/proc/{p}/stat").read().split(") ")[1][0] for p in worker.process._tree()]
        assert set(states) == {"T"}
    finally:
        worker.resume()
    assert RemoteNamespace(worker).look()["uid"] != 0


def test_unisolated_mode_still_enforces_limits():
    src = b"import resource\ndef limits():\n    return resource.getrlimit(resource.RLIMIT_AS)[0]\n"
    w = Worker(WorkerSpec(src, "limits_module"), "none")
    try:
        assert RemoteNamespace(w).limits() == 4096 << 20
    finally:
        w.stop()
