"""The exercises this installation can grade, read from ``assignments/*/manifest.toml``.

Each exercise has the same shape (adding one is copying a folder):

    assignments/<name>/<name>.py       the stub students fill in (docstrings = contract)
    assignments/<name>/manifest.toml   title, limits, banned APIs, speed budget
    reference/<name>.py                the hidden reference solution
    graders/test_<name>.py             the pytest grader
    tests/solutions/<name>/            correct_*.py and wrong_*.py (mutants) for `grade verify`
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .sandbox import Limits

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "assignments"
REFERENCE = ROOT / "reference"
GRADERS = ROOT / "graders"
SOLUTIONS = ROOT / "tests" / "solutions"


class UnknownExercise(Exception):
    pass


@dataclass(frozen=True)
class Banned:
    """APIs a submission may not use: checked statically and by tracing ATen ops."""

    names: tuple[str, ...] = ()        # dotted names, fnmatch patterns: "torch.nn.BatchNorm*"
    attributes: tuple[str, ...] = ()   # attribute names on anything: "sigmoid" (Tensor.sigmoid)
    aten: tuple[str, ...] = ()         # operators, e.g. "aten.sigmoid"

    def __bool__(self) -> bool:
        return bool(self.names or self.attributes or self.aten)


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    notes: str
    time_limit: float           # wall seconds for one whole submission
    call_timeout: float         # wall seconds for one call into the worker
    threads: int
    limits: Limits
    banned: Banned
    speed_budget: float | None
    settings: dict = field(default_factory=dict)   # [grader] table: free-form, for the grader
    # wall seconds for the submission's top-level code (a notebook's training cells); None: the
    # call_timeout.  It still counts against time_limit.
    import_timeout: float | None = None

    @property
    def stub(self) -> Path:
        return ASSIGNMENTS / self.name / f"{self.name}.py"

    @property
    def reference(self) -> Path:
        return REFERENCE / f"{self.name}.py"

    @property
    def grader(self) -> Path:
        return GRADERS / f"test_{self.name}.py"

    @property
    def solutions(self) -> Path:
        return SOLUTIONS / self.name


def load(name: str) -> Exercise:
    path = ASSIGNMENTS / name / "manifest.toml"
    if not name.isidentifier() or not path.is_file():
        known = ", ".join(names()) or "none"
        raise UnknownExercise(f"unknown exercise {name!r} (known: {known})")
    data = tomllib.loads(path.read_text())
    limits = data.get("limits", {})
    banned = data.get("banned", {})
    return Exercise(
        name=name,
        title=data.get("title", name),
        notes=data.get("notes", ""),
        time_limit=float(limits.get("time_limit", 120)),
        call_timeout=float(limits.get("call_timeout", 30)),
        threads=int(limits.get("threads", 2)),
        limits=Limits(memory_mb=int(limits.get("memory_mb", 4096)),
                      cpu_seconds=int(limits.get("cpu_seconds", 4 * limits.get("time_limit", 120))),
                      tmp_mb=int(limits.get("tmp_mb", 128)),
                      file_size_mb=int(limits.get("file_size_mb", 64)),
                      reply_mb=int(limits.get("reply_mb", 256))),
        banned=Banned(tuple(banned.get("names", ())), tuple(banned.get("attributes", ())),
                      tuple(banned.get("aten", ()))),
        speed_budget=data.get("speed", {}).get("budget"),
        settings=data.get("grader", {}),
        import_timeout=(float(limits["import_timeout"]) if "import_timeout" in limits else None),
    )


def names() -> list[str]:
    if not ASSIGNMENTS.is_dir():
        return []
    return sorted(p.parent.name for p in ASSIGNMENTS.glob("*/manifest.toml"))


def all_exercises() -> list[Exercise]:
    return [load(n) for n in names()]
