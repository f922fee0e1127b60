"""`grade verify`: evidence that each grader is right.

For every exercise:
  * the reference scores full marks;
  * the stub scores 0, every test failing cleanly as "not implemented";
  * every ``tests/solutions/<exercise>/correct_*.py`` scores full marks;
  * every ``tests/solutions/<exercise>/wrong_*.py`` (a mutant: one classic
    mistake) fails the tests its docstring names in an ``expect-fail:`` line,
    with a message containing its ``expect-message:`` text if it has one;
  * no test ever ends in a grader error.
"""
from __future__ import annotations

import ast
import contextlib
import io
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import exercises
from .exercises import GRADERS, ROOT, Exercise
from .grade import Options, close_reference_workers, fork_server, grade, grader_version
from .results import GradingResult
from .submission import read


@dataclass
class Case:
    kind: str                      # reference | stub | correct | mutant
    path: Path
    expect_fail: list[str] = field(default_factory=list)
    expect_message: str | None = None

    @property
    def label(self) -> str:
        return self.kind if self.kind in ("reference", "stub") else self.path.stem


def parse_expectations(path: Path) -> tuple[list[str], str | None]:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    fails, message = [], None
    for line in doc.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "expect-fail":
            fails += [t.strip() for t in value.split(",") if t.strip()]
        elif key.strip() == "expect-message":
            message = value.strip()
    return fails, message


def cases(exercise: Exercise) -> list[Case]:
    out = [Case("reference", exercise.reference), Case("stub", exercise.stub)]
    if exercise.solutions.is_dir():
        for path in sorted(exercise.solutions.glob("correct_*.py")):
            out.append(Case("correct", path))
        for path in sorted(exercise.solutions.glob("wrong_*.py")):
            fails, message = parse_expectations(path)
            out.append(Case("mutant", path, fails, message))
    return out


def problems(case: Case, result: GradingResult, known_tests: set[str]) -> list[str]:
    found = [f"{t.name}: grader error: {t.internal.strip().splitlines()[-1] if t.internal else t.message}"
             for t in result.tests if t.status == "grader_error"]
    graded = [t for t in result.tests if t.status != "skipped"]
    if case.kind in ("reference", "correct"):
        found += [f"{t.name}: {t.status}: {t.message.splitlines()[0] if t.message else ''}"
                  for t in graded if not t.passed and t.status != "grader_error"]
    elif case.kind == "stub":
        found += [f"{t.name}: {t.status} (expected not implemented)"
                  for t in graded if t.status != "not_implemented"]
        if result.score != 0:
            found.append(f"stub scored {result.score:g}")
    else:
        if not case.expect_fail:
            found.append("mutant names no expect-fail tests in its docstring")
        for name in case.expect_fail:
            if name not in known_tests:
                found.append(f"{name}: no such test in the grader")
                continue
            outcome = result.test(name)
            if outcome.passed:
                found.append(f"{name}: passed, but this mutant should fail it")
        if case.expect_message:
            msgs = [t.message for t in result.tests if t.name in case.expect_fail]
            if not any(case.expect_message.lower() in m.lower() for m in msgs):
                found.append(f"no failure message mentions {case.expect_message!r}")
        if result.score >= result.max_score:
            found.append("mutant scored full marks")
    return found


class GraderCollector:
    def __init__(self):
        self.points: dict[str, float] = {}
        self.gpu: set[str] = set()

    def pytest_collection_modifyitems(self, items):
        for item in items:
            marker = item.get_closest_marker("points")
            self.points[item.name] = float(marker.args[0]) if marker else 1.0
            if item.get_closest_marker("gpu"):
                self.gpu.add(item.name)


_collected: dict[tuple[str, str], GraderCollector] = {}


def collect_tests(exercise: Exercise) -> GraderCollector:
    """Read the grader's tests and markers without running it (a pytest collection, ~0.6 s;
    kept per exercise and grader version, so a batch pays it once per exercise)."""
    key = (exercise.name, grader_version(exercise))
    if key not in _collected:
        collector = GraderCollector()
        with contextlib.redirect_stdout(io.StringIO()):
            pytest.main([str(exercise.grader), "--collect-only", "-q", "-p", "no:cacheprovider",
                         "--rootdir", str(ROOT), "-c", str(GRADERS / "pytest.ini"),
                         "--import-mode=importlib"], plugins=[collector])
        _collected[key] = collector
    return _collected[key]


def collect_points(exercise: Exercise) -> dict[str, float]:
    """Test name -> points, read from the grader's markers without running it."""
    return collect_tests(exercise).points


def max_points(exercise: Exercise, device: str) -> float:
    """The maximum a grading on ``device`` can award (GPU-only tests count only on a GPU)."""
    collector = collect_tests(exercise)
    on_gpu = device.startswith("cuda")
    return sum(p for name, p in collector.points.items() if on_gpu or name not in collector.gpu)


def verify_exercise(exercise: Exercise, *, sandbox: str = "auto", quick: bool = False,
                    options: Options | None = None, seed: int | None = None,
                    backend: str = "local") -> list[tuple[Case, GradingResult, list[str]]]:
    options = options or Options(sandbox=sandbox, seed=seed)
    known = set(collect_points(exercise))
    rows = []
    for case in cases(exercise):
        options.tests = case.expect_fail if (quick and case.kind == "mutant" and case.expect_fail) else None
        if backend == "docker":
            from .docker_backend import grade_in_container
            result = grade_in_container(read(case.path), exercise, tests=options.tests,
                                        seed=options.seed if options.seed is not None else secrets.randbits(48))
        else:
            result = grade(read(case.path), exercise, options)
        rows.append((case, result, problems(case, result, known)))
    options.tests = None
    return rows


def verify_all(names: list[str], *, sandbox: str = "auto", quick: bool = False,
               console: Console | None = None, backend: str = "local") -> bool:
    console = console or Console()
    table = Table(title="grade verify")
    for col in ("exercise", "solution", "score", "time", "verdict"):
        table.add_column(col)
    ok = True
    server = fork_server(sandbox) if backend == "local" else None   # warm student workers
    for name in names:
        exercise = exercises.load(name)
        options = Options(sandbox=sandbox, fork_server=server)
        try:
            with console.status(f"verifying {name}..."):
                rows = verify_exercise(exercise, quick=quick, options=options, backend=backend)
        finally:
            close_reference_workers(options)
        for case, result, found in rows:
            ok &= not found
            verdict = Text("ok", style="green") if not found else Text("\n".join(found), style="red")
            table.add_row(name, case.label, f"{result.score:g}/{result.max_score:g}",
                          f"{result.execution_time:.1f} s", verdict)
    if server is not None:
        server.close()
    console.print(table)
    console.print("[green]all graders verified[/green]" if ok else "[red]verification failed[/red]")
    return ok
