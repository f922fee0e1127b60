"""Starting a worker process inside a sandbox, and stopping it for good.

Two isolation levels:

* ``bwrap``: bubblewrap with every namespace unshared (no network, own PID
  namespace, own mounts), a seccomp filter that refuses new processes, a read-only view of the Python installation and
  the two harness files, the submission bound read-only at /submission, a
  size-capped tmpfs at /tmp, and nothing else: reference/, graders/ and the
  results location do not exist in there.  The worker runs under a fresh
  unprivileged uid (when the judge is root it drops to that uid before
  bwrap starts, staging bind sources that uid could not reach, e.g. a Python
  under /root, in a private mount namespace).
* ``none``: a plain subprocess with the same rlimits.  Not isolated; the
  judge prints a warning.  Fine for a student checking their own code.

Either way the process gets rlimits (address space, CPU time, file size,
processes, open files, no core dumps), its stdout/stderr are drained with a
cap, and ``kill()`` removes the whole process tree.
"""
from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import seccomp

HARNESS_FILES = ("worker.py", "wire.py", "seccomp.py", "forkserver.py")
HARNESS_DIR = Path(__file__).resolve().parent
SANDBOX_UID_RANGE = (100_000, 160_000)  # fresh, unused uids: one per worker
ALLOCATED_UIDS: list[int] = []          # every uid this process handed to a worker


class SandboxUnavailable(Exception):
    """The requested isolation level cannot be provided on this machine."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one worker (see the exercise manifest)."""

    memory_mb: int = 4096          # address space (CPU runs); GPU memory is capped in the worker
    cpu_seconds: int = 600         # CPU time over the worker's life
    file_size_mb: int = 64         # largest file it may write
    tmp_mb: int = 128              # size of its /tmp
    processes: int = 128           # threads of its uid (new processes are refused by seccomp)
    open_files: int = 256
    output_bytes: int = 1 << 20    # stdout+stderr kept; more than 64x this kills the worker
    reply_mb: int = 256            # largest reply the judge will read


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def resolve_mode(requested: str) -> str:
    """``auto``/``required``/``none``/``setuid`` -> the mode to use.

    ``setuid`` is for the judge inside the grading container (Dockerfile.gpu):
    the container is the outer sandbox, and each worker runs under its own
    unprivileged identity (``grade-student`` / ``grade-reference``).
    """
    if requested not in ("auto", "required", "none", "setuid"):
        raise ValueError(f"unknown sandbox mode {requested!r}")
    if requested in ("none", "setuid"):
        return requested
    if bwrap_path():
        return "bwrap"
    if requested == "required":
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, and --sandbox required was given; "
            "install it (Debian/Ubuntu: apt-get install bubblewrap)")
    return "none"


CONTAINER_USERS = {"student": "grade-student", "reference": "grade-reference"}


def container_identity(role: str) -> tuple[int, int]:
    """(uid, gid) a worker of ``role`` runs as in setuid mode (users made by Dockerfile.gpu)."""
    import pwd
    entry = pwd.getpwnam(CONTAINER_USERS[role])
    return entry.pw_uid, entry.pw_gid


NOT_ISOLATED_WARNING = (
    "WARNING: bubblewrap (bwrap) is not installed: student code runs as a plain "
    "subprocess with resource limits but NOT isolated (it can read your files and "
    "reach the network). Fine for checking your own code; install bubblewrap or pass "
    "--sandbox required for grading others.")


@dataclass
class WorkerSpec:
    """What to run in the sandbox."""

    source: bytes                  # the submission's bytes, already validated
    module_name: str               # it is imported under this name
    limits: Limits = field(default_factory=Limits)
    threads: int = 1
    device: str = "cpu"
    hidden_paths: tuple[Path, ...] = ()   # must not be visible even if under a bound path
    identity: tuple[int, int] | None = None   # setuid mode: (uid, gid) the worker runs as


def _set_rlimits(limits: Limits, device: str):
    def apply():
        caps = [
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_FSIZE, limits.file_size_mb << 20),
            (resource.RLIMIT_NOFILE, limits.open_files),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NPROC, limits.processes),
        ]
        if not device.startswith("cuda"):  # CUDA reserves huge address ranges
            caps.append((resource.RLIMIT_AS, limits.memory_mb << 20))
        for which, value in caps:
            resource.setrlimit(which, (value, value))
    return apply


def _python_roots() -> list[Path]:
    """Directories holding the interpreter, its stdlib and installed packages."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             Path(sys.executable).resolve().parent.parent}
    for entry in sys.path:
        p = Path(entry)
        if p.is_dir() and p.name in ("site-packages", "dist-packages"):
            roots.add(p.resolve())
    out: list[Path] = []
    for r in sorted(roots, key=lambda p: len(p.parts)):
        if r == Path("/") or r.is_relative_to("/usr"):
            continue  # /usr is bound whole already
        if not any(r.is_relative_to(o) for o in out):
            out.append(r)
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, by scanning /proc (host pids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:].split()[0].decode()
    except (OSError, ValueError, IndexError):
        return ""


_swept = False
SCRATCH_KINDS = ("worker", "forked", "input")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep_stale_scratch() -> int:
    """Remove the scratch folders of grading processes that were killed (SIGKILL skips every
    cleanup), found by the pid in their names; a live pid, maybe a reused one, keeps its own."""
    global _swept
    _swept = True
    removed = 0
    for old in Path(tempfile.gettempdir()).glob("grade-*-*-*"):
        _, kind, pid, _ = old.name.split("-", 3)
        if kind in SCRATCH_KINDS and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
    return removed


def scratch_dir(kind: str) -> Path:
    """A private temporary folder ``grade-<kind>-<pid>-*`` for one worker or container input;
    its owner removes it when done.  The first call in a process sweeps stale ones."""
    assert kind in SCRATCH_KINDS
    if not _swept:
        sweep_stale_scratch()
    return Path(tempfile.mkdtemp(prefix=f"grade-{kind}-{os.getpid()}-"))


class WorkerProcess:
    """A running worker: its channel, its capped output, and how to stop it."""

    scratch_kind = "worker"

    def __init__(self, spec: WorkerSpec, mode: str):
        self.spec = spec
        self.mode = mode
        self.workdir = scratch_dir(self.scratch_kind)
        self.stage_dir: Path | None = None
        self.uid: int | None = None   # the worker's own uid (when the judge runs as root)
        self._output = bytearray()
        self._output_total = 0
        self.output_exceeded = False
        try:
            self._start()
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)   # nothing started uses it
            raise

    # -- launching ------------------------------------------------------------
    def _start(self) -> None:
        spec = self.spec
        subdir = self._stage_files(spec.source)
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        worker_args = ["--module-name", spec.module_name, "--threads", str(spec.threads),
                       "--device", spec.device, "--max-reply-mb", str(spec.limits.reply_mb),
                       "--fd-in", str(req_r), "--fd-out", str(rep_w)]
        self._launch("worker.py", subdir, worker_args, keep_fds=(req_r, rep_w))
        os.close(req_r)
        os.close(rep_w)
        self.fd_in, self.fd_out = rep_r, req_w  # judge reads replies, writes requests

    def _stage_files(self, source: bytes | None) -> Path:
        """The harness and the submission, where the sandbox will see them."""
        # Files the worker reads: world-readable inside a bwrap sandbox (nothing else is
        # visible there); in setuid mode readable only through the worker's own group.
        dir_mode, file_mode = (0o750, 0o640) if self.mode == "setuid" else (0o755, 0o644)
        subdir = self.workdir / "submission"
        self.harness = self.workdir / "harness"
        subdir.mkdir()
        self.harness.mkdir()
        files = [self.harness / n for n in HARNESS_FILES]
        for name in HARNESS_FILES:
            shutil.copyfile(HARNESS_DIR / name, self.harness / name)
        if source is not None:
            files.append(subdir / f"{self.spec.module_name}.py")
            files[-1].write_bytes(source)
        for path in files:
            self._own(path, file_mode)
        for path in (self.workdir, subdir, self.harness):
            self._own(path, dir_mode)
        return subdir

    def _launch(self, program: str, subdir: Path, program_args: list[str],
                keep_fds: tuple[int, ...] = (), seccomp_filter: bool = True) -> None:
        """Start ``python -I <harness>/<program> ...`` in the sandbox, output drained and capped."""
        spec = self.spec
        out_r, out_w = os.pipe()
        self._extra_fds: list[int] = []
        user = {}
        submission = (["--submission", f"/submission/{spec.module_name}.py"]
                      if program == "worker.py" else [])
        if self.mode == "bwrap":
            argv = self._bwrap_argv(self.harness, subdir, [f"/harness/{program}"] + submission
                                    + program_args, seccomp_filter)
            env = {"PATH": "/usr/bin:/bin"}
        else:
            if program == "worker.py":
                # No outer filter: the worker loads the seccomp filter itself, before the submission.
                submission = ["--submission", str(subdir / f"{spec.module_name}.py"), "--seccomp"]
            argv = [sys.executable, "-I", str(self.harness / program)] + submission + program_args
            setuid = self.mode == "setuid"
            env = self._worker_env(tmp="/tmp" if setuid else str(self.workdir))
            if setuid:
                uid, gid = spec.identity
                user = {"user": uid, "group": gid, "extra_groups": []}
                self.uid = uid
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w,
            pass_fds=(*keep_fds, *self._extra_fds), env=env, cwd=str(self.workdir),
            start_new_session=True, preexec_fn=_set_rlimits(spec.limits, spec.device), **user)
        for fd in (out_w, *self._extra_fds):
            os.close(fd)
        self._drain = threading.Thread(target=self._drain_output, args=(out_r,), daemon=True)
        self._drain.start()

    def _own(self, path: Path, mode: int) -> None:
        if self.mode == "setuid":
            os.chown(path, -1, self.spec.identity[1])   # the judge is a member of that group
        os.chmod(path, mode)

    def _worker_env(self, tmp: str) -> dict:
        threads = str(self.spec.threads)
        return {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
                "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                "OMP_WAIT_POLICY": "PASSIVE",   # idle OpenMP threads sleep instead of spinning
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
                "PYTHONHASHSEED": "0", "TORCHINDUCTOR_CACHE_DIR": f"{tmp}/inductor",
                "TRITON_CACHE_DIR": f"{tmp}/triton", "MPLCONFIGDIR": tmp}

    def _bwrap_argv(self, harness: Path, subdir: Path, program_args: list[str],
                    seccomp_filter: bool = True) -> list[str]:
        spec = self.spec
        binds: list[tuple[Path, str]] = [(r, str(r)) for r in _python_roots()]
        binds += [(harness, "/harness"), (subdir, "/submission")]
        for extra in ("/etc/ld.so.cache", "/etc/localtime"):
            if os.path.exists(extra):
                binds.append((Path(extra), extra))
        # --die-with-parent: if the judge dies, bwrap and everything in the sandbox die too.
        args = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                "--new-session", "--hostname", "sandbox", "--uid", "65534", "--gid", "65534"]
        for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(spec.limits.tmp_mb << 20), "--tmpfs", "/tmp"]
        if spec.device.startswith("cuda"):  # GPU-only (never run in CI): the NVIDIA device nodes
            for node in sorted(Path("/dev").glob("nvidia*")):
                args += ["--dev-bind", str(node), str(node)]
        is_root = os.geteuid() == 0
        sources: list[str] = []
        for i, (src, dest) in enumerate(binds):
            source = str(src)
            if is_root:  # the unprivileged uid may not reach src (e.g. under /root)
                source = str(self._stage_path(i, src))
                sources.append(str(src))
            args += ["--ro-bind", source, dest]
        for hidden in spec.hidden_paths:
            hidden = hidden.resolve()
            if any(hidden.is_relative_to(src) for src, _ in binds) and hidden.exists():
                args += ["--tmpfs", str(hidden)] if hidden.is_dir() else ["--ro-bind", "/dev/null", str(hidden)]
        bpf = seccomp.compile_filter() if seccomp_filter else None
        if bpf is not None:
            bpf_path = self.workdir / "seccomp.bpf"
            bpf_path.write_bytes(bpf)
            fd = os.open(bpf_path, os.O_RDONLY)
            self._extra_fds.append(fd)
            args += ["--seccomp", str(fd)]
        args += ["--clearenv"]
        for k, v in self._worker_env(tmp="/tmp").items():
            args += ["--setenv", k, v]
        args += ["--chdir", "/tmp", sys.executable, "-I"] + program_args
        bwrap = [bwrap_path()] + args
        if not is_root:
            return bwrap
        # Root: private mount namespace -> bind the sources onto world-reachable
        # stage paths -> become a fresh unprivileged uid -> bwrap.
        uid = self.uid = random.randrange(*SANDBOX_UID_RANGE)
        ALLOCATED_UIDS.append(uid)
        script = ('i=0; for src in "$@"; do [ "$src" = "--" ] && break; '
                  'mount --bind "$src" "$STAGE/$i" || exit 97; i=$((i+1)); done; '
                  'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"')
        setpriv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                   "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
        return (["unshare", "--mount", "--propagation", "private", "env", f"STAGE={self.stage_dir}",
                 "sh", "-c", script, "sh"] + sources + ["--"] + setpriv + bwrap)

    def _stage_path(self, i: int, src: Path) -> Path:
        if self.stage_dir is None:
            self.stage_dir = self.workdir / "stage"
            self.stage_dir.mkdir(mode=0o755)
        target = self.stage_dir / str(i)
        if src.is_dir():
            target.mkdir(mode=0o755)
        else:
            target.touch(mode=0o644)
        return target

    # -- output ---------------------------------------------------------------
    def _drain_output(self, fd: int) -> None:
        cap = self.spec.limits.output_bytes
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                self._output_total += len(chunk)
                if len(self._output) < cap:
                    self._output += chunk[:cap - len(self._output)]
                if self._output_total > 64 * cap and not self.output_exceeded:
                    self.output_exceeded = True
                    self.kill()
        finally:
            os.close(fd)

    def output(self) -> str:
        text = bytes(self._output).decode("utf-8", "replace")
        if self._output_total > len(self._output):
            text += f"\n[... {self._output_total - len(self._output)} more bytes of output dropped]"
        return text

    # -- lifecycle ----------------------------------------------------------
    def alive(self) -> bool:
        return self.popen.poll() is None

    def exit_status(self) -> int | None:
        return self.popen.poll()

    def _tree(self) -> list[int]:
        """This worker's process and all its descendants (sandboxed ones too)."""
        return process_tree(self.popen.pid)

    def _signal_tree(self, sig: int) -> None:
        for pid in self._tree():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def pause(self) -> None:
        """Freeze the worker so it cannot compete for CPU while the other arm is timed."""
        if not self.alive():
            return
        self._signal_tree(signal.SIGSTOP)
        deadline = time.monotonic() + 1.0   # SIGSTOP lands asynchronously: wait for it
        while time.monotonic() < deadline and any(_state(p) not in ("T", "t", "Z", "X", "")
                                                  for p in self._tree()):
            time.sleep(0.001)

    def resume(self) -> None:
        if self.alive():
            self._signal_tree(signal.SIGCONT)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self._signal_tree(signal.SIGKILL)
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def wait(self, timeout: float) -> None:
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return   # never close fd numbers twice: they may belong to someone else by now
        self._closed = True
        self.kill()
        self.wait(10)
        for fd in (self.fd_in, self.fd_out):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        self._drain.join(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)
