"""Grading inside a fresh Docker container per submission (``--backend docker``).

The host never runs submission code.  For each submission it starts a
container from the grading image (Dockerfile.gpu) with:

* no network, a read-only root filesystem and a small tmpfs at /tmp;
* every capability dropped but the three the in-container judge needs to run
  workers under other identities (SETUID, SETGID, KILL), no-new-privileges;
* a pids limit, a memory limit with swap equal to it, a CPU quota, file-size
  and core ulimits, and a wall-clock limit after which it is killed;
* the submission alone, bind-mounted read-only;
* one GPU (``--gpu N``) or all of them (``--gpu all``) through device requests.

The judge inside grades it and prints the result as one JSON line on its own
stdout (``runner.container``), which is the only thing the host reads back
(decoded as JSON, size-capped).  The container is always removed: on success,
on error, on Ctrl-C; containers left behind by a host process that was
killed outright are swept at the next start.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .container import RESULT_MARKER
from .exercises import Exercise
from .grade import grader_version
from .results import GradingResult, TestOutcome
from .sandbox import scratch_dir
from .submission import Submission

IMAGE = "grade:latest"
LABEL = "org.grade.autograder"
MAX_RESULT_BYTES = 16 << 20
JUDGE_MEMORY_MB = 2048


class DockerUnavailable(Exception):
    """No Docker daemon, or no grading image."""


def client():
    import docker  # imported here: the local backend must not need Docker
    try:
        c = docker.from_env(timeout=120)
        c.ping()
        return c
    except Exception as e:  # docker.errors.DockerException, requests errors
        raise DockerUnavailable(f"cannot reach the Docker daemon: {e}") from None


@dataclass(frozen=True)
class ContainerPolicy:
    """The limits of one grading container, derived from the exercise manifest."""

    memory_mb: int
    cpus: float
    pids: int
    tmp_mb: int
    file_size_mb: int
    wall_seconds: float

    @classmethod
    def for_exercise(cls, exercise: Exercise) -> "ContainerPolicy":
        workers = 2 * exercise.limits.memory_mb          # student + reference
        return cls(memory_mb=workers + JUDGE_MEMORY_MB,
                   cpus=float(min(os.cpu_count() or 1, exercise.threads + 1)),
                   pids=512, tmp_mb=max(256, 2 * exercise.limits.tmp_mb),
                   file_size_mb=exercise.limits.file_size_mb,
                   # the judge enforces the exercise's own limits; this is the backstop
                   wall_seconds=1.5 * exercise.time_limit + 90)


def container_kwargs(policy: ContainerPolicy, input_dir: str, gpu: str | None) -> dict:
    from docker.types import DeviceRequest, Ulimit
    kwargs = dict(
        network_mode="none", read_only=True,
        tmpfs={"/tmp": f"size={policy.tmp_mb}m,mode=1777,exec"},
        cap_drop=["ALL"], cap_add=["SETUID", "SETGID", "KILL"],
        security_opt=["no-new-privileges"],
        pids_limit=policy.pids,
        mem_limit=f"{policy.memory_mb}m", memswap_limit=f"{policy.memory_mb}m",
        nano_cpus=int(policy.cpus * 1e9),
        ulimits=[Ulimit(name="fsize", soft=policy.file_size_mb << 20, hard=policy.file_size_mb << 20),
                 Ulimit(name="core", soft=0, hard=0)],
        volumes={input_dir: {"bind": "/input", "mode": "ro"}},
        labels={LABEL: "1", f"{LABEL}.host": socket.gethostname(), f"{LABEL}.pid": str(os.getpid())},
        detach=True,
    )
    if gpu is not None:  # GPU-only: never exercised in CI
        ids = None if gpu == "all" else [str(gpu)]
        kwargs["device_requests"] = [DeviceRequest(count=-1 if ids is None else None,
                                                   device_ids=ids, capabilities=[["gpu"]])]
    return kwargs


def sweep_stale(docker_client) -> int:
    """Remove grading containers whose host process is gone (it was SIGKILLed)."""
    removed = 0
    for c in docker_client.containers.list(all=True, filters={"label": LABEL}):
        labels = c.labels or {}
        if labels.get(f"{LABEL}.host") != socket.gethostname():
            continue
        try:
            os.kill(int(labels.get(f"{LABEL}.pid", "0")), 0)
            continue                      # its owner is alive
        except (ProcessLookupError, ValueError):
            pass
        except PermissionError:
            continue
        c.remove(force=True)
        removed += 1
    return removed


def failed_result(submission: Submission, exercise: Exercise, seed: int, status: str,
                  message: str, started: float, on_gpu: bool = False) -> GradingResult:
    """Every test failed for one reason (the container died or ran out of time).

    GPU-only tests are "skipped" when the container had no GPU, as in a normal grading there,
    so the maximum is the same whether the submission crashed or not."""
    from .verify import collect_tests
    collector = collect_tests(exercise)
    tests = []
    for n, p in collector.points.items():
        if n in collector.gpu and not on_gpu:
            tests.append(TestOutcome(name=n, title=n, max_score=0.0, score=0.0,
                                     status="skipped", message="no GPU"))
        else:
            tests.append(TestOutcome(name=n, title=n, max_score=p, score=0.0, status=status,
                                     message=message))
    return GradingResult(exercise=exercise.name, submission=str(submission.path),
                         sha256=submission.sha256, seed=seed, sandbox="docker",
                         device="cuda" if on_gpu else "cpu",
                         grader_version=grader_version(exercise), tests=tests,
                         execution_time=time.monotonic() - started)


def parse_result(stdout: bytes) -> dict:
    for line in reversed(stdout[-MAX_RESULT_BYTES:].decode("utf-8", "replace").splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise ValueError("the container printed no result")


def grade_in_container(submission: Submission, exercise: Exercise, *, seed: int,
                       image: str = IMAGE, device: str = "auto", gpu: str | None = None,
                       tests: list[str] | None = None, overrides: dict | None = None,
                       docker_client=None, wall_seconds: float | None = None) -> GradingResult:
    """Grade one submission in a fresh container; the container is always removed."""
    started = time.monotonic()
    dc = docker_client or client()
    sweep_stale(dc)
    policy = ContainerPolicy.for_exercise(
        dataclasses.replace(exercise, **overrides) if overrides else exercise)
    if wall_seconds is not None:
        policy = dataclasses.replace(policy, wall_seconds=wall_seconds)
    command = ["--exercise", exercise.name, "--submission", f"/input/{exercise.name}.py",
               "--device", "cuda" if gpu is not None else device]
    for t in tests or []:
        command += ["--test", t]
    if overrides:
        command += ["--overrides", json.dumps(overrides)]
    input_dir = scratch_dir("input")
    try:
        os.chmod(input_dir, 0o755)
        path = Path(input_dir) / f"{exercise.name}.py"
        path.write_bytes(submission.data)
        os.chmod(path, 0o644)
        try:
            container = dc.containers.create(image, command, environment={"GRADE_SEED": str(seed)},
                                             **container_kwargs(policy, input_dir, gpu))
        except Exception as e:
            raise DockerUnavailable(f"cannot create a container from {image!r}: {e}") from None
        try:
            container.start()
            try:
                container.wait(timeout=policy.wall_seconds)
            except Exception:  # requests' ReadTimeout/ConnectionError: over the wall limit
                container.kill()
                return failed_result(submission, exercise, seed, "timeout",
                                     f"the grading container ran past {policy.wall_seconds:.0f} s "
                                     "and was stopped", started, on_gpu=gpu is not None)
            out = container.logs(stdout=True, stderr=False, tail=50)
            try:
                data = parse_result(out)
            except ValueError:
                container.reload()
                state = container.attrs.get("State", {})
                why = ("was killed: out of memory" if state.get("OOMKilled")
                       else f"exited with status {state.get('ExitCode')}")
                result = failed_result(submission, exercise, seed, "crashed",
                                       f"the grading container {why}", started,
                                       on_gpu=gpu is not None)
                err = container.logs(stdout=False, stderr=True, tail=30)
                for t in result.tests:
                    t.internal = err.decode("utf-8", "replace")[-4000:]   # instructors only
                return result
            if "error" in data:
                raise ValueError(data["error"])
            result = GradingResult.from_dict(data)
            if result.grader_version != grader_version(exercise):
                raise DockerUnavailable(
                    f"the image {image!r} grades {exercise.name} with other graders than this "
                    "checkout (it is out of date): rebuild it with `grade image build`")
            result.sandbox = "docker"
            result.submission = str(submission.path)
            result.sha256 = submission.sha256   # of the file as submitted (a notebook, not its code)
            result.execution_time = time.monotonic() - started
            return result
        finally:
            container.remove(force=True)
    finally:
        shutil.rmtree(input_dir, ignore_errors=True)
