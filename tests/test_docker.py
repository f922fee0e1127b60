"""The docker backend: one fresh, locked-down container per submission.

These tests need a Docker daemon and the grading image (`grade image build`);
they skip without them, except under GRADE_REQUIRE_DOCKER=1 (CI), where a
missing daemon or image fails them.
"""
import json
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import cli
from runner import docker_backend, exercises
from runner.docker_backend import LABEL, ContainerPolicy, container_kwargs, grade_in_container
from runner.exercises import REFERENCE
from runner.grade import Options, grade
from runner.submission import read

from .conftest import HOSTILE, require_docker

pytestmark = pytest.mark.usefixtures("docker_required")


@pytest.fixture(scope="module")
def docker_required():
    require_docker()


@pytest.fixture
def dc():
    return docker_backend.client()


def leftover_containers(dc):
    return dc.containers.list(all=True, filters={"label": LABEL})


def outcomes(result):
    return {t.name: (t.status, t.score) for t in result.tests}


def first_mutant(exercise):
    from runner.verify import cases
    return next(c for c in cases(exercise) if c.kind == "mutant")


@pytest.mark.parametrize("name", exercises.names())
def test_same_scores_as_the_local_backend(name, reference_workers, dc):
    """Reference, stub and a mutant get the same per-test verdicts in a container as locally."""
    exercise = exercises.load(name)
    mutant = first_mutant(exercise)
    for path, tests in [(exercise.reference, None), (exercise.stub, None),
                        (mutant.path, mutant.expect_fail)]:
        seed = 1234
        local = grade(read(path), exercise, Options(seed=seed, sandbox="required", tests=tests,
                                                   reference_workers=reference_workers))
        boxed = grade_in_container(read(path), exercise, seed=seed, tests=tests, docker_client=dc)
        assert boxed.sandbox == "docker" and boxed.seed == seed
        assert outcomes(boxed) == outcomes(local), path.name
        assert boxed.score == local.score
    assert leftover_containers(dc) == []


def test_the_container_is_locked_down(dc, tmp_path):
    policy = ContainerPolicy.for_exercise(exercises.load("distance_matrix"))
    c = dc.containers.create(docker_backend.IMAGE, ["--help"], **container_kwargs(policy, str(tmp_path), None))
    try:
        host = c.attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == ["KILL", "SETGID", "SETUID"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["PidsLimit"] == policy.pids
        assert host["Memory"] == host["MemorySwap"] == policy.memory_mb << 20
        assert host["NanoCpus"] == int(policy.cpus * 1e9)
        assert {u["Name"] for u in host["Ulimits"]} == {"fsize", "core"}
        assert host["Binds"] == [f"{tmp_path}:/input:ro"]
        assert "/tmp" in host["Tmpfs"]
    finally:
        c.remove(force=True)


def test_identities_and_permissions_inside_the_image(dc):
    out = dc.containers.run(
        docker_backend.IMAGE, entrypoint=["sh", "-c"], remove=True, network_mode="none",
        command=["id grade-judge; id grade-student; id grade-reference; stat -c '%U %a' /opt/grade "
                 "/opt/grade/reference/distance_matrix.py"]).decode()
    judge, student, ref, opt, ref_file = out.strip().splitlines()
    assert "grade-student" in judge and "grade-reference" in judge
    assert "grade-judge" not in student and "grade-reference" not in student
    assert opt == "grade-judge 700" and ref_file == "grade-judge 600"


def test_wall_limit_kills_a_container_that_will_not_finish(dc):
    started = time.monotonic()
    result = grade_in_container(read(HOSTILE / "infinite_loop.py"), exercises.load("distance_matrix"),
                                seed=1, tests=["test_zero_diagonal"], docker_client=dc,
                                overrides={"call_timeout": 600.0, "time_limit": 600.0}, wall_seconds=8)
    assert time.monotonic() - started < 40
    assert result.score == 0 and {t.status for t in result.tests} == {"timeout"}
    assert "ran past 8 s" in result.tests[0].message
    assert leftover_containers(dc) == []

def test_a_dead_container_keeps_the_cpu_maximum():
    # A container that dies on a CPU host must not count GPU-only tests in the maximum:
    # the same submission graded normally there would have them skipped.
    from runner.verify import max_points
    exercise = exercises.load("amp_training")
    submission = read(REFERENCE / "amp_training.py")
    on_cpu = docker_backend.failed_result(submission, exercise, 1, "crashed", "died", time.monotonic())
    assert on_cpu.max_score == max_points(exercise, "cpu") < max_points(exercise, "cuda")
    assert any(t.status == "skipped" for t in on_cpu.tests) and on_cpu.score == 0
    on_gpu = docker_backend.failed_result(submission, exercise, 1, "crashed", "died", time.monotonic(),
                                          on_gpu=True)
    assert on_gpu.max_score == max_points(exercise, "cuda")



def test_ctrl_c_still_removes_the_container(dc, monkeypatch):
    import docker.models.containers as containers

    def interrupted(self, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(containers.Container, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        grade_in_container(read(REFERENCE / "distance_matrix.py"), exercises.load("distance_matrix"),
                           seed=1, docker_client=dc)
    assert leftover_containers(dc) == []


def test_containers_of_a_killed_grader_are_swept(dc):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    c = dc.containers.create(docker_backend.IMAGE, ["--help"], labels={
        LABEL: "1", f"{LABEL}.host": socket.gethostname(), f"{LABEL}.pid": str(dead.pid)})
    assert docker_backend.sweep_stale(dc) >= 1
    assert c.id not in {x.id for x in leftover_containers(dc)}


def test_cli_docker_backend(tmp_path):
    out = tmp_path / "results.json"
    r = CliRunner().invoke(cli.main, ["submit", "--backend", "docker", "--results", str(out),
                                      "--test", "test_zero_diagonal", str(REFERENCE / "distance_matrix.py")])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["score"] == data["max_score"] == 2 and data["extra_data"]["sandbox"] == "docker"


def test_cli_reports_a_missing_image():
    r = CliRunner().invoke(cli.main, ["submit", "--backend", "docker", "--image", "no-such-image:0",
                                      str(REFERENCE / "distance_matrix.py")])
    assert r.exit_code == 2 and "grade image build" in r.output


# ---- attacks on the container itself -----------------------------------------------------------

def test_container_escape_attempts(dc):
    """The Docker socket is absent, everything outside /tmp is read-only, the judge unreadable."""
    result = grade_in_container(read(HOSTILE / "container_escape.py"), exercises.load("distance_matrix"),
                                seed=3, tests=["test_matches_float64_truth"], docker_client=dc)
    message = result.test("test_matches_float64_truth").message
    assert result.score == 0 and "docker.sock" in message
    for claim in ("docker.sock: connected", "wrote /opt", "wrote /usr", "wrote /input", "wrote /",
                  "read /opt/grade", "GRADE_SEED"):
        assert claim not in message, message
    assert leftover_containers(dc) == []


def test_thread_bomb_meets_the_pids_limit(dc):
    result = grade_in_container(read(HOSTILE / "fork_bomb.py"), exercises.load("distance_matrix"),
                                seed=4, tests=["test_matches_float64_truth"], docker_client=dc,
                                overrides={"call_timeout": 20.0})
    message = result.test("test_matches_float64_truth").message
    assert "stopped after 0 forks" in message and "thread bomb after" in message
    assert leftover_containers(dc) == []


def test_batch_in_containers_matches_the_local_batch(tmp_path, dc):
    """`grade batch --backend docker --jobs 2`: a container per submission, the same gradebook."""
    from runner.batch import Settings, run_batch
    from runner.exercises import ASSIGNMENTS, SOLUTIONS
    subs = tmp_path / "subs"
    for student, source in [("ann", SOLUTIONS / "custom_sigmoid" / "correct_tanh.py"),
                            ("bo", SOLUTIONS / "custom_sigmoid" / "wrong_sigma_squared.py"),
                            ("cy", ASSIGNMENTS / "custom_sigmoid" / "custom_sigmoid.py")]:
        (subs / student).mkdir(parents=True)
        (subs / student / "custom_sigmoid.py").write_bytes(source.read_bytes())
    run_batch(subs, tmp_path / "local", settings=Settings(sandbox="required"), seed=3)
    run_batch(subs, tmp_path / "docker", settings=Settings(backend="docker", gpu="none"), seed=3,
              jobs=2)
    assert (tmp_path / "docker" / "gradebook.csv").read_text() == \
        (tmp_path / "local" / "gradebook.csv").read_text()
    ann = json.loads((tmp_path / "docker" / "ann" / "custom_sigmoid.json").read_text())
    assert ann["extra_data"]["backend"] == "docker" and ann["extra_data"]["sandbox"] == "docker"
    assert leftover_containers(dc) == []
