"""Grading one submission: the whole pipeline, one stage per step.

    submission -> static checks -> sandboxed workers -> pytest grader -> result

Data flows one way.  The judge (this process) never imports the submission;
it reads its source for static checks, hands the bytes to a sandboxed worker
and drives that worker from the grader.  Only this process writes verdicts.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import io
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from . import static
from .client import Deadline, Worker
from .exercises import GRADERS, REFERENCE, ROOT, Exercise
from .plugin import GradingPlugin, SubmissionRejected
from .results import GradingResult
from .sandbox import Limits, WorkerSpec, container_identity, resolve_mode
from .submission import Submission

CHECKS_FILE = GRADERS / "checks.py"


@dataclass
class Options:
    seed: int | None = None
    sandbox: str = "auto"          # auto | required | none
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    tests: list[str] | None = None  # run only these tests (by name)
    overrides: dict = field(default_factory=dict)  # Exercise fields to replace (e.g. time limits)
    reference_workers: dict = field(default_factory=dict)  # reuse across gradings (verify)
    fork_server: object = None     # a warm.ForkServer: student workers start by fork, not import


def grader_version(exercise: Exercise) -> str:
    """Changes whenever anything that decides this exercise's scores changes."""
    h = hashlib.sha256()
    for path in (exercise.grader, CHECKS_FILE, exercise.reference,
                 exercise.stub.parent / "manifest.toml"):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


# ---- stages ---------------------------------------------------------------------

def static_rejection(submission: Submission, exercise: Exercise) -> SubmissionRejected | None:
    """Stage 1: reasons to fail every test without running anything."""
    if submission.syntax_error:
        return SubmissionRejected("error", f"your file does not parse: {submission.syntax_error}")
    if exercise.banned:
        findings = static.banned_uses(submission.tree, exercise.banned.names,
                                      exercise.banned.attributes)
        findings += static.dynamic_access(submission.tree)
        if findings:
            listed = "; ".join(str(f) for f in findings[:4])
            return SubmissionRejected("banned", f"banned API use: {listed}")
    return None


def uses_fixture(grader: Path, name: str) -> bool:
    """Does any test in the grader take the fixture ``name``? (Then start that worker early.)"""
    tree = ast.parse(grader.read_text())
    return any(isinstance(n, ast.FunctionDef) and any(a.arg == name for a in n.args.args)
               for n in ast.walk(tree))


HIDDEN = (REFERENCE, GRADERS, ROOT)


def fork_server(sandbox: str = "auto", device: str = "auto"):
    """A warm fork server fit for every exercise (None where the sandbox mode has none)."""
    from .exercises import all_exercises
    from .warm import ForkServer
    mode = resolve_mode(sandbox)
    if mode not in ("bwrap", "none"):
        return None
    tmp = max([e.limits.tmp_mb for e in all_exercises()] + [128])
    memory = max([e.limits.memory_mb for e in all_exercises()] + [4096])
    return ForkServer(mode, device=pick_device(device), hidden_paths=HIDDEN,
                      limits=Limits(memory_mb=memory, tmp_mb=tmp))


def start_workers(submission: Submission, exercise: Exercise, mode: str, device: str,
                  options: Options, rejected: bool) -> tuple[Worker | None, Worker]:
    """Stage 2: one sandboxed worker for the submission, one for the reference."""
    def spec(source: bytes, role: str) -> WorkerSpec:
        return WorkerSpec(source=source, module_name=exercise.name, limits=exercise.limits,
                          threads=exercise.threads, device=device,
                          hidden_paths=HIDDEN,
                          identity=container_identity(role) if mode == "setuid" else None)

    reference = options.reference_workers.get(exercise.name)
    if reference is None:
        reference = Worker(spec(exercise.reference.read_bytes(), "reference"), mode, role="reference",
                           call_timeout=max(60.0, 2 * exercise.call_timeout))
        options.reference_workers[exercise.name] = reference
    student = None
    if not rejected:
        launcher = options.fork_server if mode in ("bwrap", "none") else None
        student = Worker(spec(submission.data, "student"), mode, role="student",
                         call_timeout=exercise.call_timeout,
                         import_timeout=exercise.import_timeout,
                         deadline=Deadline(exercise.time_limit), launcher=launcher)
        student.start()
    if uses_fixture(exercise.grader, "reference"):
        reference.start()   # in parallel with the student's; otherwise only if a test asks
    return student, reference


def run_grader(exercise: Exercise, plugin: GradingPlugin, tests: list[str] | None) -> None:
    """Stage 3: pytest runs the grader in this (trusted) process."""
    targets = ([f"{exercise.grader}::{t}" for t in tests] if tests else [str(exercise.grader)])
    args = targets + ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist",
                      # these two run gc.collect() several times per session: ~0.5 s a grading
                      "-p", "no:unraisableexception", "-p", "no:threadexception",
                      "--rootdir", str(ROOT), "-c", str(GRADERS / "pytest.ini"),
                      "--import-mode=importlib", "-W", "ignore::DeprecationWarning"]
    sink = io.StringIO()
    # pytest.main may run inside another pytest session (the project's own tests):
    # keep the outer session's bookkeeping variable intact.
    outer = os.environ.get("PYTEST_CURRENT_TEST")
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            code = pytest.main(args, plugins=[plugin])
    finally:
        if outer is not None:
            os.environ["PYTEST_CURRENT_TEST"] = outer
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not plugin.outcomes:
        raise RuntimeError(f"the grader for {exercise.name} could not run (pytest exit {code}):\n"
                           f"{sink.getvalue()[-3000:]}")


def grade(submission: Submission, exercise: Exercise, options: Options | None = None) -> GradingResult:
    options = options or Options()
    if options.overrides:
        exercise = dataclasses.replace(exercise, **options.overrides)
    started = time.monotonic()
    seed = options.seed if options.seed is not None else secrets.randbits(48)
    mode = resolve_mode(options.sandbox)
    device = pick_device(options.device)

    rejection = static_rejection(submission, exercise)
    student, reference = start_workers(submission, exercise, mode, device, options,
                                       rejected=rejection is not None)
    plugin = GradingPlugin(exercise=exercise, submission=submission, seed=seed, device=device,
                           student=student, reference=reference, rejection=rejection)
    try:
        run_grader(exercise, plugin, options.tests)
    finally:
        output = student.output() if student is not None else ""
        if student is not None:
            student.stop()
        try:
            reference.reset()
        except Exception:
            reference.stop()   # restarted on demand by the next grading

    return GradingResult(
        exercise=exercise.name, submission=str(submission.path), sha256=submission.sha256,
        seed=seed, sandbox=mode, device=device, grader_version=grader_version(exercise),
        tests=plugin.outcomes, execution_time=time.monotonic() - started, output=output[-8000:],
        flags=[f"{t.name}: {t.message}" for t in plugin.outcomes if "flagged" in t.message])


def close_reference_workers(options: Options) -> None:
    for worker in options.reference_workers.values():
        worker.stop()
    options.reference_workers.clear()
