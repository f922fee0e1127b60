"""A warm fork server inside the sandbox: torch imported once, a fresh child per worker.

Started by the judge (``runner/warm.py``) in the same bubblewrap sandbox a
worker gets, but it never loads student code itself.  It imports torch and
the worker harness, then waits on a control socket.  For each ``spawn``
request (with the worker's three pipe ends passed as SCM_RIGHTS) it forks a
child that, before anything of the submission exists in it, drops the
control socket, lowers its resource limits to the exercise's, writes the
submission into the (wiped) /tmp, installs the seccomp filter and becomes an
ordinary worker (``worker.Worker.serve``).  The child starts in ~50 ms
instead of the 1.5-3 s of ``python -c 'import torch'``.

The server makes itself non-dumpable, so a child running under the same uid
can neither ptrace it nor read its /proc entries; it only ever has one child
(the judge kills one before asking for the next), and it wipes /tmp between
children, so nothing passes from one submission to the next.
"""
from __future__ import annotations

import argparse
import array
import ctypes
import json
import os
import resource
import shutil
import signal
import socket
import struct
import sys
import tempfile

HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))
if HARNESS_DIR not in sys.path:
    sys.path.insert(0, HARNESS_DIR)

import worker  # noqa: E402  (imports torch: the whole point)
import seccomp  # noqa: E402

PR_SET_DUMPABLE = 4
HEADER = struct.Struct("!I")
MAX_REQUEST = 64 << 20


def receive(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """One request: a length-prefixed JSON header (+ fds), then ``source_bytes`` of payload."""
    fds = array.array("i")
    msg, anc, _, _ = sock.recvmsg(HEADER.size, socket.CMSG_SPACE(8 * fds.itemsize))
    if not msg:
        return None, []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    size = HEADER.unpack(_exact(sock, HEADER.size - len(msg), msg))[0]
    if size > MAX_REQUEST:
        raise ValueError("request too large")
    request = json.loads(_exact(sock, size))
    if request.get("source_bytes"):
        request["source"] = _exact(sock, int(request["source_bytes"]))
    return request, list(fds)


def _exact(sock: socket.socket, n: int, start: bytes = b"") -> bytes:
    buf = bytearray(start)
    while len(buf) < n + len(start):
        chunk = sock.recv(n + len(start) - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def reply(sock: socket.socket, value: dict) -> None:
    data = json.dumps(value).encode()
    sock.sendall(HEADER.pack(len(data)) + data)


def wipe(scratch: str) -> None:
    """Empty the children's scratch folder (the sandbox's own /tmp, or a private folder)."""
    os.makedirs(scratch, exist_ok=True)
    for entry in os.listdir(scratch):
        path = os.path.join(scratch, entry)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                for root, dirs, _ in os.walk(path):
                    for d in dirs:
                        try:
                            os.chmod(os.path.join(root, d), 0o700)
                        except OSError:
                            pass
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            pass


def become_worker(request: dict, fds: list[int], ctl: socket.socket, scratch: str) -> None:
    """In the child: shed the server, enter the worker's limits, serve.  Never returns."""
    try:
        req_r, rep_w, out_w = fds
        ctl.close()
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        for fd in map(int, os.listdir("/proc/self/fd")):   # nothing of the server's stays open
            if fd > 2 and fd not in (req_r, rep_w):
                try:
                    os.close(fd)
                except OSError:
                    pass
        limits = request["limits"]
        for name, value in limits.items():
            which = getattr(resource, name)
            resource.setrlimit(which, (value, value))
        os.makedirs(f"{scratch}/submission", exist_ok=True)
        path = f"{scratch}/submission/{request['module_name']}.py"
        with open(path, "wb") as f:
            f.write(request["source"])
        os.chmod(path, 0o444)
        os.chdir(scratch)
        threads = str(request["threads"])
        os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TMPDIR=scratch,
                          HOME=scratch)
        tempfile.tempdir = None
        seccomp.install()
        args = argparse.Namespace(submission=path, module_name=request["module_name"],
                                  threads=request["threads"], device=request["device"],
                                  memory_fraction=request.get("memory_fraction", 0.9),
                                  max_reply_mb=request["max_reply_mb"])
        # What a worker started fresh sees (argparse in a student's file reads this).
        sys.argv = [os.path.join(HARNESS_DIR, "worker.py"), "--submission", path,
                    "--module-name", args.module_name, "--threads", threads, "--device",
                    args.device, "--fd-in", str(req_r), "--fd-out", str(rep_w)]
        worker.configure_torch(args.threads, args.device, args.memory_fraction)
        os.set_inheritable(req_r, False)
        os.set_inheritable(rep_w, False)
        worker.Worker(args).serve(req_r, rep_w)
    except BaseException:
        import traceback
        traceback.print_exc()
        os._exit(70)
    os._exit(0)


def status_of(pid: int, block: bool) -> int | None:
    """The child's exit code (negative: killed by that signal), or None while it runs."""
    try:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return EXITED.get(pid)
    if done == 0:
        return None
    EXITED[pid] = code = os.waitstatus_to_exitcode(status)
    return code


EXITED: dict[int, int] = {}


def serve(ctl: socket.socket, scratch: str) -> None:
    child: int | None = None
    reply(ctl, {"status": "ready", "pid": os.getpid()})
    while True:
        request, fds = receive(ctl)
        if request is None:
            return
        op = request.get("op")
        if op == "spawn":
            if child is not None and status_of(child, block=False) is None:
                os.kill(child, signal.SIGKILL)   # the judge always stops one before the next
                status_of(child, block=True)
            wipe(scratch)
            child = os.fork()
            if child == 0:
                become_worker(request, fds, ctl, scratch)
            for fd in fds:
                os.close(fd)
            reply(ctl, {"status": "ok", "pid": child})
        elif op == "status":
            reply(ctl, {"status": "ok", "code": status_of(int(request["pid"]),
                                                          bool(request.get("block")))})
        else:
            for fd in fds:
                os.close(fd)
            reply(ctl, {"status": "error", "message": f"unknown op {op!r}"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd-ctl", type=int, required=True)
    parser.add_argument("--scratch", required=True,
                        help="emptied before each child: /tmp in a sandbox, a private folder without")
    args = parser.parse_args()
    # Children run under this uid: keep them out of this process (ptrace, /proc/<pid>/mem, fds).
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = socket.socket(fileno=args.fd_ctl)
    os.set_inheritable(args.fd_ctl, False)
    serve(ctl, args.scratch)


if __name__ == "__main__":
    main()
