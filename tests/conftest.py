"""Shared fixtures for the project's own tests."""
import os
import secrets
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


def docker_ready() -> str | None:
    """None when the docker backend can run here, else why not."""
    try:
        from runner.docker_backend import IMAGE, client
        dc = client()
        dc.images.get(IMAGE)
        return None
    except Exception as e:
        return f"docker backend unavailable: {e}"


def require_docker():
    """Skip without Docker, unless GRADE_REQUIRE_DOCKER=1 (CI), where that is a failure."""
    why = docker_ready()
    if why is not None:
        if os.environ.get("GRADE_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def warm_server():
    """The fork server of the "warm" backend: student workers forked with torch imported."""
    from runner.grade import fork_server
    server = fork_server("required")
    yield server
    server.close()


@pytest.fixture
def grade_file(reference_workers, request):
    """grade_file(path, exercise=..., tests=[...], seed=..., backend=..., **exercise_overrides)

    backend: "local" (a fresh sandboxed process per worker), "warm" (student workers forked
    by a fork server, as `grade batch` does) or "docker" (a container per submission).
    """
    def run(path, exercise="distance_matrix", tests=None, seed=None, sandbox="required",
            backend="local", **overrides):
        if backend == "docker":
            from runner.docker_backend import grade_in_container
            return grade_in_container(read(path), exercises.load(exercise),
                                      seed=seed if seed is not None else secrets.randbits(48),
                                      tests=tests, overrides=overrides)
        server = request.getfixturevalue("warm_server") if backend == "warm" else None
        options = Options(seed=seed, sandbox=sandbox, tests=tests, overrides=overrides,
                          reference_workers=reference_workers, fork_server=server)
        return grade(read(path), exercises.load(exercise), options)
    return run


def pytest_configure(config):
    for marker in ("points(n)", "visibility(v)", "hint(text)", "gpu"):
        config.addinivalue_line("markers", marker)
