"""The pytest plugin that runs a grader against one submission.

It provides the fixtures graders use (``student``, ``reference``,
``submission``, ``rng``, ``device``, ``exercise``), turns markers into points,
visibility and hints, skips GPU tests where there is no GPU, and records one
``TestOutcome`` per test, classifying why a test failed (wrong result,
exception, not implemented, time/memory/output limit, crash, grader error).
"""
from __future__ import annotations

import hashlib
import time
import traceback

import pytest
import torch

from .client import ReferenceFailed, RemoteNamespace, StudentRaised, Worker, WorkerFailed
from .results import TestOutcome


class SubmissionRejected(Exception):
    """Every test fails for the same reason (syntax error, banned API)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class GradingPlugin:
    def __init__(self, *, exercise, submission, seed: int, device: str,
                 student: Worker | None, reference: Worker, rejection: SubmissionRejected | None):
        # Underscored: pytest reads public attributes of a plugin as fixtures.
        self._exercise = exercise
        self._submission = submission
        self._seed = seed
        self._device = device
        self._student = student
        self._reference = reference
        self._rejection = rejection
        self.outcomes: list[TestOutcome] = []
        self._started: dict[str, float] = {}

    # -- fixtures -----------------------------------------------------------------
    @pytest.fixture(scope="session")
    def student(self) -> RemoteNamespace:
        return RemoteNamespace(self._student)

    @pytest.fixture(scope="session")
    def reference(self) -> RemoteNamespace:
        return RemoteNamespace(self._reference)

    @pytest.fixture(scope="session")
    def submission(self):
        return self._submission

    @pytest.fixture(scope="session")
    def exercise(self):
        return self._exercise

    @pytest.fixture(scope="session")
    def device(self) -> str:
        return self._device

    @pytest.fixture
    def note(self, request):
        """``note("...")`` adds a remark to this test's message (shown even when it passes)."""
        def add(text: str) -> None:
            request.node.grade_note = f"{getattr(request.node, 'grade_note', '')} {text}".strip()
        return add

    @pytest.fixture
    def rng(self, request) -> torch.Generator:
        """Seeded from the run's secret seed and the test's name (order-independent)."""
        digest = hashlib.sha256(f"{self._seed}:{request.node.name}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    # -- hooks --------------------------------------------------------------------
    def pytest_configure(self, config):
        for line in ("points(n): points the test is worth",
                     "visibility(v): visible | hidden | after_due_date | after_published",
                     "hint(text): advice shown when the test fails",
                     "gpu: needs CUDA"):
            config.addinivalue_line("markers", line)

    def pytest_collection_modifyitems(self, items):
        if self._device.startswith("cuda"):
            return
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(pytest.mark.skip(reason="no GPU"))

    def pytest_runtest_setup(self, item):
        self._started[item.nodeid] = time.monotonic()
        if self._rejection is not None and not item.get_closest_marker("gpu"):
            raise self._rejection

    def pytest_runtest_teardown(self, item):
        """Objects a test made in the workers do not outlive the test."""
        for worker in (self._student, self._reference):
            if worker is not None:
                try:
                    worker.reset()
                except Exception:
                    worker.stop()  # a fresh worker starts for the next test

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.outcomes.append(self._outcome(item, report, call))

    def _outcome(self, item, report, call) -> TestOutcome:
        marker = item.get_closest_marker("points")
        max_score = float(marker.args[0]) if marker else 1.0
        vis = item.get_closest_marker("visibility")
        doc = (item.function.__doc__ or "").strip().splitlines()
        duration = time.monotonic() - self._started.get(item.nodeid, time.monotonic())
        outcome = TestOutcome(name=item.name, title=doc[0] if doc else item.name,
                              max_score=max_score, score=0.0, status="passed",
                              visibility=vis.args[0] if vis else "visible", duration=duration)
        if report.skipped:
            outcome.status, outcome.max_score = "skipped", 0.0
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            outcome.message = str(reason).removeprefix("Skipped: ")
            return outcome
        if report.passed:
            outcome.score = max_score
            extra = getattr(item, "grade_note", "")
            outcome.message = extra
            return outcome
        outcome.status, outcome.message, outcome.internal = classify(call.excinfo)
        hint = item.get_closest_marker("hint")
        if hint and outcome.status in ("failed", "error"):
            outcome.message += f"\nHint: {hint.args[0]}"
        return outcome


def classify(excinfo) -> tuple[str, str, str]:
    """(status, student-facing message, instructor-only details) for a failed test."""
    exc = excinfo.value
    if isinstance(exc, SubmissionRejected):
        return exc.status, exc.message, ""
    if isinstance(exc, StudentRaised):
        if exc.status == "not_implemented":
            return "not_implemented", f"not implemented ({exc.message or 'NotImplementedError'})", ""
        text = f"your code raised {exc.exc_type}: {exc.message}"
        if exc.status == "memory":
            text = f"ran out of memory (the memory limit): {exc.exc_type}: {exc.message}"
        if exc.traceback:
            text += f"\n{exc.traceback}"
        return exc.status, text, ""
    if isinstance(exc, WorkerFailed):
        return exc.status, exc.message, ""
    if isinstance(exc, ReferenceFailed):
        return "grader_error", "internal grader error (not your fault); please report it", str(exc)
    if isinstance(exc, AssertionError):
        # checks.Failure and plain asserts: keep the message, drop pytest's introspection.
        message = str(exc).split("\nassert ")[0].strip() or "check failed"
        return "failed", message, ""
    details = "".join(traceback.format_exception(exc))[-4000:]
    return "grader_error", "internal grader error (not your fault); please report it", details
