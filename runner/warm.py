"""Warm workers: a fork server per sandbox, so a worker start costs a fork, not ``import torch``.

``ForkServer`` keeps one sandbox (the same bubblewrap sandbox a worker gets,
see sandbox.py) running ``forkserver.py``, which has torch imported.  Each
``spawn(spec)`` asks it for a fresh child, handing over the child's three
pipe ends, and returns a ``ForkedWorker``: the same interface as a
``WorkerProcess`` (channel fds, capped output, pause/resume/kill), so
``client.Worker`` does not care where its process came from.

A grading uses it for the student's worker only, one child at a time.  The
reference workers stay separate processes in sandboxes of their own (another
uid): a student's child must never share a uid with reference code.  A server
that dies (a child can kill it: same uid) is restarted on the next spawn.
"""
from __future__ import annotations

import array
import json
import os
import resource
import signal
import socket
import struct
import threading
from dataclasses import replace
from pathlib import Path

from .sandbox import Limits, WorkerProcess, WorkerSpec, process_tree

HEADER = struct.Struct("!I")


class ForkServerFailed(Exception):
    pass


def _ns_pid(pid: int) -> tuple[int, int] | None:
    """(parent host pid, pid inside its own namespace) of a host pid."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["PPid"]), int(fields["NSpid"].split()[-1])
    except (OSError, KeyError, ValueError):
        return None


class _ServerProcess(WorkerProcess):
    """The sandboxed fork server process and its control socket."""

    def _start(self) -> None:
        subdir = self._stage_files(None)
        ours, theirs = socket.socketpair()
        # In bwrap the whole /tmp is the sandbox's own; unisolated, only a folder of ours.
        scratch = "/tmp" if self.mode == "bwrap" else str(self.workdir / "scratch")
        self._launch("forkserver.py", subdir, ["--fd-ctl", str(theirs.fileno()), "--scratch", scratch],
                     keep_fds=(theirs.fileno(),), seccomp_filter=False)  # children filter themselves
        theirs.close()
        self.ctl = ours
        self.fd_in = self.fd_out = -1
        self.lock = threading.Lock()
        hello = self._reply(timeout=120)
        self.ns_pid = hello["pid"]
        # Its host pid (in a sandbox it has another pid in its own namespace).
        self.host_pid = next((p for p in process_tree(self.popen.pid)
                              if (_ns_pid(p) or (0, 0))[1] == self.ns_pid), None)

    def request(self, message: dict, fds: list[int] = (), payload: bytes = b"",
                timeout: float = 30) -> dict:
        with self.lock:
            data = json.dumps(message | {"source_bytes": len(payload)}).encode()
            frame = HEADER.pack(len(data)) + data
            try:
                self.ctl.settimeout(timeout)
                fdarr = array.array("i", fds)
                sent = self.ctl.sendmsg([frame[:HEADER.size]],
                                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fdarr)] if fds else [])
                assert sent == HEADER.size
                self.ctl.sendall(frame[HEADER.size:] + payload)
                return self._reply(timeout)
            except (OSError, AssertionError, ValueError, EOFError) as e:
                self.kill()   # a late reply would answer the next request: start afresh
                raise ForkServerFailed(f"fork server: {e}") from None

    def _reply(self, timeout: float) -> dict:
        self.ctl.settimeout(timeout)
        size = HEADER.unpack(self._exact(HEADER.size))[0]
        if size > 1 << 20:
            raise ForkServerFailed("fork server: oversized reply")
        value = json.loads(self._exact(size))
        if not isinstance(value, dict) or value.get("status") not in ("ok", "ready"):
            raise ForkServerFailed(f"fork server: {value!r:.200}")
        return value

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.ctl.recv(n - len(buf))
            if not chunk:
                raise EOFError("the fork server is gone")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        try:
            self.ctl.close()
        except OSError:
            pass
        super().close()


class ForkedWorker(WorkerProcess):
    """One worker forked by the server: looks like a WorkerProcess to the client."""

    scratch_kind = "forked"

    def __init__(self, spec: WorkerSpec, server: _ServerProcess):
        self.server = server
        self._code: int | None = None
        super().__init__(spec, server.mode)

    def _start(self) -> None:
        self.uid = self.server.uid
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            reply = self.server.request(self._spawn_request(), fds=[req_r, rep_w, out_w],
                                        payload=self.spec.source)
        finally:
            for fd in (req_r, rep_w, out_w):
                os.close(fd)
        self.ns_pid = int(reply["pid"])
        self.host_pid = next((p for p in process_tree(self.server.host_pid or -1)
                              if _ns_pid(p) == (self.server.host_pid, self.ns_pid)), None)
        self.fd_in, self.fd_out = rep_r, req_w
        self._drain = threading.Thread(target=self._drain_output, args=(out_r,), daemon=True)
        self._drain.start()

    def _spawn_request(self) -> dict:
        spec = self.spec
        limits = {"RLIMIT_CPU": spec.limits.cpu_seconds,
                  "RLIMIT_FSIZE": spec.limits.file_size_mb << 20,
                  "RLIMIT_NOFILE": spec.limits.open_files, "RLIMIT_CORE": 0}
        if not spec.device.startswith("cuda"):
            limits["RLIMIT_AS"] = spec.limits.memory_mb << 20
        return {"op": "spawn", "module_name": spec.module_name, "threads": spec.threads,
                "device": spec.device, "max_reply_mb": spec.limits.reply_mb, "limits": limits}

    def exit_status(self) -> int | None:
        if self._code is None:
            try:
                self._code = self.server.request({"op": "status", "pid": self.ns_pid})["code"]
            except ForkServerFailed:
                self._code = -signal.SIGKILL   # the server (and so its sandbox) is gone
        return self._code

    def alive(self) -> bool:
        return self.exit_status() is None

    def _tree(self) -> list[int]:
        return [self.host_pid] if self.host_pid and self._code is None else []

    def kill(self) -> None:
        if self.host_pid and self._code is None:
            try:
                os.kill(self.host_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> None:
        if self._code is None:
            try:
                self._code = self.server.request({"op": "status", "pid": self.ns_pid, "block": True},
                                                 timeout=timeout)["code"]
            except ForkServerFailed:
                self._code = -signal.SIGKILL


class ForkServer:
    """Hands out forked workers; (re)starts its sandboxed server on demand."""

    def __init__(self, mode: str, device: str = "cpu", hidden_paths: tuple[Path, ...] = (),
                 limits: Limits | None = None):
        if mode not in ("bwrap", "none"):
            raise ValueError(f"no fork server in {mode!r} sandbox mode")
        self.mode = mode
        limits = limits or Limits()
        # Children lower these to their exercise's limits; processes is per uid = one child.
        self.spec = WorkerSpec(source=b"", module_name="forkserver", device=device,
                               hidden_paths=hidden_paths,
                               limits=replace(limits, memory_mb=max(limits.memory_mb, 8192),
                                              cpu_seconds=resource.RLIM_INFINITY))
        self.server: _ServerProcess | None = None
        self.current: ForkedWorker | None = None
        self.starts = 0

    def _ensure_server(self) -> _ServerProcess:
        if self.server is not None and not self.server.alive():
            self.server.close()
            self.server = None
        if self.server is None:
            self.starts += 1
            self.server = _ServerProcess(self.spec, self.mode)
        return self.server

    def spawn(self, spec: WorkerSpec) -> ForkedWorker:
        if spec.device != self.spec.device or spec.limits.tmp_mb > self.spec.limits.tmp_mb:
            return WorkerProcess(spec, self.mode)   # this server's sandbox does not fit
        if self.current is not None:
            self.current.close()   # one child at a time: never two students side by side
        for attempt in range(2):
            server = self._ensure_server()
            try:
                self.current = ForkedWorker(spec, server)
                return self.current
            except ForkServerFailed:
                server.close()
                self.server = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
        if self.server is not None:
            self.server.close()
            self.server = None
