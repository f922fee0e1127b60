"""What grading produces: per-test outcomes and the whole result.

Written only by the judge.  ``to_gradescope()`` gives the Gradescope
``results.json`` schema (score, max_score, execution_time, tests[] with name,
score, max_score, status passed|failed, output, visibility), plus our own
fields under ``extra_data``.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# Statuses a test can end with.  Only "passed" earns points; "skipped" tests
# (GPU tests on a machine without one) are left out of the maximum.
STATUSES = {
    "passed": "passed",
    "failed": "wrong result",
    "not_implemented": "not implemented",
    "error": "raised an exception",
    "banned": "uses a banned API",
    "timeout": "time limit",
    "memory": "memory limit",
    "output_limit": "output limit",
    "crashed": "worker crashed",
    "protocol": "bad reply",
    "grader_error": "grader error",
    "skipped": "skipped",
}


@dataclass
class TestOutcome:
    name: str
    title: str
    max_score: float
    score: float
    status: str
    message: str = ""
    visibility: str = "visible"
    duration: float = 0.0
    internal: str = ""   # details for instructors only (grader errors); never student-facing

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class GradingResult:
    exercise: str
    submission: str
    sha256: str
    seed: int
    sandbox: str
    device: str
    grader_version: str
    tests: list[TestOutcome] = field(default_factory=list)
    execution_time: float = 0.0
    output: str = ""      # what the submission printed (capped)
    flags: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests if t.status != "skipped")

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests if t.status != "skipped")

    def test(self, name: str) -> TestOutcome:
        for t in self.tests:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_gradescope(self) -> dict:
        tests = []
        for t in self.tests:
            if t.status == "skipped":
                continue
            label = STATUSES.get(t.status, t.status)
            out = t.message if t.passed else f"[{label}] {t.message}".strip()
            tests.append({"name": t.title or t.name, "score": t.score, "max_score": t.max_score,
                          "status": "passed" if t.passed else "failed", "output": out,
                          "visibility": t.visibility})
        return {
            "score": self.score, "max_score": self.max_score,
            "execution_time": round(self.execution_time, 3),
            "output": f"{self.exercise}: {self.score:g}/{self.max_score:g}",
            "visibility": "visible", "stdout_visibility": "hidden",
            "tests": tests,
            "extra_data": {"exercise": self.exercise, "sha256": self.sha256, "seed": self.seed,
                           "sandbox": self.sandbox, "device": self.device,
                           "grader_version": self.grader_version, "flags": self.flags,
                           "statuses": {t.name: t.status for t in self.tests},
                           "durations": {t.name: round(t.duration, 3) for t in self.tests}},
        }

    def to_dict(self) -> dict:
        return asdict(self) | {"score": self.score, "max_score": self.max_score}

    @classmethod
    def from_dict(cls, data: dict) -> "GradingResult":
        """Rebuild a result from ``to_dict()`` output (e.g. sent by the judge in a container)."""
        def pick(kind, raw):
            if not isinstance(raw, dict):
                raise ValueError("malformed result")
            out = {}
            for f in fields(kind):
                if f.name in raw:
                    value = raw[f.name]
                    if f.name != "tests" and not isinstance(value, (str, int, float, list, type(None))):
                        raise ValueError(f"malformed result field {f.name}")
                    out[f.name] = value
            return out
        top = pick(cls, data)
        top["tests"] = [TestOutcome(**pick(TestOutcome, t)) for t in data.get("tests", [])]
        return cls(**top)


def write_json_atomic(path: Path | str, data: dict) -> None:
    """Write-then-rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, allow_nan=False, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
