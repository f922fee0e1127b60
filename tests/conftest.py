"""Shared fixtures for the project's own tests."""
from pathlib import Path

import pytest

from runner import exercises
from runner.grade import Options, close_reference_workers, grade
from runner.submission import read

TESTS = Path(__file__).resolve().parent
HOSTILE = TESTS / "hostile"


@pytest.fixture(scope="session")
def reference_workers():
    """Reference workers shared by every grading in the test session (they are stateless)."""
    options = Options()
    yield options.reference_workers
    close_reference_workers(options)


@pytest.fixture
def grade_file(reference_workers):
    """grade_file(path, exercise=..., tests=[...], seed=..., **exercise_overrides) -> GradingResult"""
    def run(path, exercise="distance_matrix", tests=None, seed=None, sandbox="required", **overrides):
        options = Options(seed=seed, sandbox=sandbox, tests=tests, overrides=overrides,
                          reference_workers=reference_workers)
        return grade(read(path), exercises.load(exercise), options)
    return run


def pytest_configure(config):
    for marker in ("points(n)", "visibility(v)", "hint(text)", "gpu"):
        config.addinivalue_line("markers", marker)
