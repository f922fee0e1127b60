"""Hostile submissions end with the right score, a clear status, no leak, and no trace.

Each file in tests/hostile/ is a distance_matrix submission that attacks the
platform.  For each we check: the score (0 for what it breaks), the status and
message of the attacked tests, that no reference or grader text appears in any
output, that nothing changed outside the sandbox, that no process of it
survives, and that the next grading is unaffected.
"""
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from runner.exercises import GRADERS, REFERENCE, ROOT
from runner.sandbox import ALLOCATED_UIDS, process_tree
from runner.results import write_json_atomic

from .conftest import HOSTILE, require_docker


@pytest.fixture(params=["local", "warm", "docker"])
def backend(request):
    """Every attack runs against every backend: bwrap workers, forked warm workers (batch), and
    a container per submission."""
    if request.param == "docker":
        require_docker()
    return request.param

TWO_TESTS = ["test_matches_float64_truth", "test_nearest_neighbors"]
FAST = dict(call_timeout=4.0, time_limit=30.0)


def secret_lines(submission: Path) -> list[str]:
    """Distinctive lines of the hidden files (not in the stub or the submission itself)."""
    public = set()
    for path in [ROOT / "assignments" / "distance_matrix" / "distance_matrix.py", submission]:
        public |= {ln.strip() for ln in path.read_text().splitlines()}
    lines = []
    for path in [REFERENCE / "distance_matrix.py", GRADERS / "test_distance_matrix.py", GRADERS / "checks.py"]:
        lines += [ln.strip() for ln in path.read_text().splitlines()
                  if len(ln.strip()) > 25 and ln.strip() not in public]
    return lines


def all_output(result) -> str:
    return json.dumps(result.to_dict(), default=str) + json.dumps(result.to_gradescope())


def assert_no_leak(result):
    text = all_output(result)
    leaked = [ln for ln in secret_lines(Path(result.submission)) if ln in text]
    assert not leaked, f"hidden text leaked: {leaked[:3]}"


def processes_of(uids: set[int]) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid in uids:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


@pytest.fixture(autouse=True)
def no_survivors(reference_workers, backend, request):
    """No process of a worker this test started (no container) may outlive the grading."""
    if backend == "docker":
        yield
        from runner.docker_backend import LABEL, client
        assert client().containers.list(all=True, filters={"label": LABEL}) == []
        return
    if os.geteuid() != 0:
        pytest.skip("workers get their own uids only when the judge runs as root")
    first = len(ALLOCATED_UIDS)
    yield
    shared = {w.process.uid for w in reference_workers.values() if w.process is not None}
    if backend == "warm":
        # The fork server lives on (its uid too); what must be gone is every child it forked.
        server = request.getfixturevalue("warm_server").server
        if server is not None:
            shared.add(server.uid)
            assert server.alive(), "a submission took the fork server down"
            deadline = time.time() + 5
            while len(process_tree(server.host_pid)) > 1 and time.time() < deadline:
                time.sleep(0.1)
            assert process_tree(server.host_pid) == [server.host_pid], "a forked worker survived"
    uids = set(ALLOCATED_UIDS[first:]) - shared
    deadline = time.time() + 5
    while processes_of(uids) and time.time() < deadline:
        time.sleep(0.1)
    assert processes_of(uids) == [], "a sandboxed process outlived its grading"


def statuses(result, tests=TWO_TESTS):
    return {result.test(t).status for t in tests}


def grade_hostile(grade_file, name, backend, tests=TWO_TESTS, **overrides):
    started = time.monotonic()
    result = grade_file(HOSTILE / name, tests=tests, backend=backend, **(FAST | overrides))
    assert_no_leak(result)
    assert result.score == 0, [(t.name, t.status, t.message) for t in result.tests]
    return result, time.monotonic() - started


@pytest.fixture
def next_grading_is_clean(grade_file, backend):
    yield
    result = grade_file(REFERENCE / "distance_matrix.py", tests=TWO_TESTS, backend=backend)
    assert result.score == result.max_score, [(t.name, t.message) for t in result.tests]


def test_reading_hidden_files_finds_nothing(grade_file, backend, next_grading_is_clean):
    result, _ = grade_hostile(grade_file, "read_hidden_files.py", backend)
    assert statuses(result) == {"error"}
    assert "LEAK" in result.test("test_matches_float64_truth").message


def test_fake_results_files_change_nothing(grade_file, backend, tmp_path, next_grading_is_clean):
    before = set(os.listdir(ROOT))
    results_path = tmp_path / "results.json"
    result, _ = grade_hostile(grade_file, "fake_results.py", backend)
    write_json_atomic(results_path, result.to_gradescope())
    assert json.loads(results_path.read_text())["score"] == 0
    assert set(os.listdir(ROOT)) == before
    assert not Path("/tmp/results.json").exists()
    assert not Path("/autograder/results/results.json").exists()
    assert statuses(result) == {"failed"}


def test_monkeypatching_its_own_process_fools_no_one(grade_file, backend, next_grading_is_clean):
    result, _ = grade_hostile(grade_file, "patch_the_judge.py", backend, tests=TWO_TESTS + ["test_speed"])
    assert statuses(result) == {"failed"}
    assert "differs" in result.test("test_speed").message or "not close" in result.test("test_speed").message


@pytest.mark.parametrize("name,status,text", [
    ("exit_at_import.py", "error", "SystemExit"),
    ("os_exit_at_import.py", "crashed", "exited with status 0"),
])
def test_exit_at_import(grade_file, backend, next_grading_is_clean, name, status, text):
    result, _ = grade_hostile(grade_file, name, backend)
    assert statuses(result) == {status}
    assert text in result.test("test_matches_float64_truth").message


def test_exit_mid_test_fails_only_that_test(grade_file, backend, next_grading_is_clean):
    result = grade_file(HOSTILE / "exit_mid_test.py", tests=TWO_TESTS, backend=backend, **FAST)
    assert result.test("test_matches_float64_truth").status == "crashed"
    assert result.test("test_nearest_neighbors").status == "passed"   # a fresh worker took over


@pytest.mark.parametrize("name", ["infinite_loop.py", "ignore_sigterm.py", "import_loop.py"])
def test_loops_time_out(grade_file, backend, next_grading_is_clean, name):
    result, seconds = grade_hostile(grade_file, name, backend)
    assert statuses(result) == {"timeout"}
    assert "time limit" in result.test("test_matches_float64_truth").message
    assert seconds < 2 * (FAST["call_timeout"] + 5) + 10


def test_fork_bomb_is_contained(grade_file, backend, next_grading_is_clean):
    result, _ = grade_hostile(grade_file, "fork_bomb.py", backend)
    message = result.test("test_matches_float64_truth").message
    assert "stopped after 0 forks" in message          # seccomp refuses new processes
    assert "thread bomb after" in message               # RLIMIT_NPROC bounds threads


def test_memory_hog_hits_the_memory_limit(grade_file, backend, next_grading_is_clean):
    result, _ = grade_hostile(grade_file, "memory_hog.py", backend, call_timeout=20.0)  # touching 4 GiB takes a while
    assert statuses(result) == {"memory"}


def test_filling_the_disk_stays_in_the_sandbox(grade_file, backend, next_grading_is_clean):
    free_before = os.statvfs("/tmp").f_bavail
    result, _ = grade_hostile(grade_file, "fill_disk.py", backend)
    assert statuses(result) == {"error"}
    message = result.test("test_matches_float64_truth").message
    assert "No space left" in message or "File too large" in message
    assert not list(Path("/tmp").glob("fill-*"))
    free_after = os.statvfs("/tmp").f_bavail
    assert abs(free_after - free_before) * os.statvfs("/tmp").f_frsize < (256 << 20)


def test_network_is_unreachable(grade_file, backend, next_grading_is_clean):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 47831))
    server.listen()
    server.settimeout(0.2)
    connections = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept())
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        result, _ = grade_hostile(grade_file, "network.py", backend)
    finally:
        stop.set()
        t.join()
        server.close()
    assert connections == []
    assert "connected" not in result.test("test_matches_float64_truth").message.replace("connect", "")


def test_printing_gigabytes_hits_the_output_limit(grade_file, backend, next_grading_is_clean):
    result, seconds = grade_hostile(grade_file, "print_flood.py", backend)
    assert statuses(result) == {"output_limit"}
    assert len(result.output) <= 16000


def test_background_work_dies_with_the_worker(grade_file, backend, next_grading_is_clean):
    result, _ = grade_hostile(grade_file, "background_work.py", backend)
    message = result.test("test_matches_float64_truth").message
    assert "spawn: [Errno 1]" in message and "fork: [Errno 1]" in message


@pytest.mark.parametrize("name,status,text", [
    ("tensor_subclass.py", "error", "tensor subclass"),
    ("returns_nan.py", "failed", "NaN"),
    ("huge_tensor.py", "error", "limit"),
    ("non_tensor.py", "failed", "should be a torch.Tensor, got a list"),
    ("forged_reply.py", "protocol", "over the"),
])
def test_bad_return_values(grade_file, backend, next_grading_is_clean, name, status, text):
    result, _ = grade_hostile(grade_file, name, backend)
    assert result.test("test_matches_float64_truth").status == status
    assert text in result.test("test_matches_float64_truth").message
