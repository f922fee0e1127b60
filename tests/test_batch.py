"""`grade batch`: a whole class, resumable, parallel, and hostile students change nothing else.

One small mixed class (.py and .ipynb, a stub, a wrong solution, two hostile
submissions, a file that is not UTF-8, a stray file, a rostered student with
nothing) is graded once without interruption; the other runs (Dask, killed
and resumed) must give the same CSVs.
"""
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from runner import batch
from runner.batch import Settings, discover, run_batch
from runner.exercises import ASSIGNMENTS, ROOT, SOLUTIONS

from .conftest import HOSTILE

FAST = Settings(sandbox="required", overrides=(("call_timeout", 4.0), ("time_limit", 20.0)))
SEED = 7


def notebook_of(source: str, nbgrader: bool = False) -> str:
    """A student's notebook: the code split into cells, markdown and a magic in between."""
    chunks = source.split("\n\n\n")
    cells = [new_markdown_cell("# My solution"), new_code_cell("%matplotlib inline\nimport torch")]
    for chunk in chunks:
        cell = new_code_cell(chunk)
        if nbgrader:
            cell.metadata["nbgrader"] = {"solution": True, "grade": False, "locked": False,
                                         "grade_id": f"cell{len(cells)}", "schema_version": 3}
        cells.append(cell)
    if nbgrader:   # the instructor's test cell: must not run as part of the student's module
        test = new_code_cell("raise SystemExit('an autograder cell ran')")
        test.metadata["nbgrader"] = {"solution": False, "grade": True, "locked": True, "points": 1,
                                     "grade_id": "tests", "schema_version": 3}
        cells.append(test)
    return nbformat.writes(new_notebook(cells=cells))


def make_class(root: Path) -> tuple[Path, Path]:
    subs = root / "submissions"
    files = {
        "s01/custom_sigmoid.py": (SOLUTIONS / "custom_sigmoid" / "correct_tanh.py").read_bytes(),
        "s01/distance_matrix.ipynb": notebook_of(
            (SOLUTIONS / "distance_matrix" / "correct_gram_centred.py").read_text()).encode(),
        "s02/custom_sigmoid.ipynb": notebook_of(
            (SOLUTIONS / "custom_sigmoid" / "wrong_sigma_squared.py").read_text()).encode(),
        "s02/distance_matrix.py": (HOSTILE / "infinite_loop.py").read_bytes(),
        "s03/custom_sigmoid.py": (ASSIGNMENTS / "custom_sigmoid" / "custom_sigmoid.py").read_bytes(),
        "s03/distance_matrix.py": (HOSTILE / "os_exit_at_import.py").read_bytes(),
        "s04/distance_matrix.py": "# Écrit par s04\n".encode("latin-1") + b"def f(): pass\n",
        "s04/hw3.py": b"print('not an exercise')\n",
    }
    for rel, data in files.items():
        (subs / rel).parent.mkdir(parents=True, exist_ok=True)
        (subs / rel).write_bytes(data)
    roster = root / "roster.csv"
    roster.write_text("student_id,first_name,last_name,email\n" +
                      "".join(f"s0{i},F{i},L{i},s0{i}@example.org\n" for i in range(1, 6)))
    return subs, roster


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    subs, roster = make_class(root)
    out = root / "uninterrupted"
    report = run_batch(subs, out, settings=FAST, roster_path=roster, seed=SEED)
    return subs, roster, out, report


def record(results: Path, student: str, exercise: str) -> dict:
    return json.loads((results / student / f"{exercise}.json").read_text())


def statuses(rec: dict) -> set[str]:
    return {t["status"] for t in rec["extra_data"]["tests"]}


def csv_rows_without_durations(results: Path) -> list[dict]:
    """tests.csv less what is measured afresh each run: durations, and times in speed messages."""
    rows = list(csv.DictReader(io.StringIO((results / "tests.csv").read_text())))
    for row in rows:
        row.pop("duration")
        row["message"] = re.sub(r"\d+(\.\d+)?", "#", row["message"])
    return rows


def same_aggregates(a: Path, b: Path) -> None:
    assert (a / "gradebook.csv").read_bytes() == (b / "gradebook.csv").read_bytes()
    assert csv_rows_without_durations(a) == csv_rows_without_durations(b)


def test_every_student_gets_the_right_kind_of_result(klass):
    subs, roster, out, report = klass
    full = record(out, "s01", "custom_sigmoid")
    assert full["score"] == full["max_score"] > 0
    nb = record(out, "s01", "distance_matrix")           # a notebook, magics and all
    assert nb["score"] == nb["max_score"] > 0
    assert nb["extra_data"]["submission"] == "s01/distance_matrix.ipynb"
    wrong = record(out, "s02", "custom_sigmoid")
    assert 0 < wrong["score"] < wrong["max_score"] and "failed" in statuses(wrong)
    loop = record(out, "s02", "distance_matrix")
    assert loop["score"] == 0 and statuses(loop) == {"timeout"}
    assert loop["extra_data"]["wall_time"] < 20 + 15   # its own limit, not more
    stub = record(out, "s03", "custom_sigmoid")
    assert stub["score"] == 0 and statuses(stub) == {"not_implemented"}
    crash = record(out, "s03", "distance_matrix")
    assert crash["score"] == 0 and statuses(crash) == {"crashed"}
    latin = record(out, "s04", "distance_matrix")
    assert latin["extra_data"]["status"] == "unusable" and "UTF-8" in latin["extra_data"]["message"]
    for student, exercise in [("s04", "custom_sigmoid"), ("s05", "custom_sigmoid"),
                              ("s05", "distance_matrix")]:
        missing = record(out, student, exercise)
        assert missing["extra_data"]["status"] == "missing" and missing["score"] == 0
        # The same maximum as a graded submission of that exercise: 0 out of the real total.
        assert missing["max_score"] == record(out, "s01", exercise)["max_score"]
    every = {(r["extra_data"]["student"], r["extra_data"]["exercise"]) for r in report.records}
    assert every == {(f"s0{i}", e) for i in range(1, 6) for e in ("custom_sigmoid", "distance_matrix")}
    meta = json.loads((out / "batch.json").read_text())
    assert meta["unknown_files"] == ["s04/hw3.py"]
    assert meta["seed"] == SEED
    # Each grading's seed comes from the batch seed and the file: the same file, the same
    # inputs (and score), whoever handed it in; another file, other inputs.
    by_file = {}
    for r in report.records:
        extra = r["extra_data"]
        if extra["status"] == "graded":
            by_file.setdefault((extra["exercise"], extra["sha256"]), set()).add(extra["seed"])
    assert all(len(seeds) == 1 for seeds in by_file.values())
    assert len({next(iter(seeds)) for seeds in by_file.values()}) == len(by_file) > 3


def test_results_are_gradescope_files_with_provenance(klass):
    _, _, out, _ = klass
    rec = record(out, "s02", "custom_sigmoid")
    extra = rec["extra_data"]
    for key in ("sha256", "grader_version", "seed", "backend", "sandbox", "wall_time", "graded_at"):
        assert extra[key] not in (None, ""), key
    assert extra["sha256"] == __import__("hashlib").sha256(
        (klass[0] / "s02" / "custom_sigmoid.ipynb").read_bytes()).hexdigest()
    assert rec["score"] == sum(t["score"] for t in rec["tests"])
    assert {t["status"] for t in rec["tests"]} <= {"passed", "failed"}
    assert all(t["duration"] >= 0 for t in extra["tests"])


def test_gradebook_has_one_row_per_rostered_student(klass):
    _, _, out, _ = klass
    rows = list(csv.DictReader(io.StringIO((out / "gradebook.csv").read_text())))
    assert [r["student_id"] for r in rows] == ["s01", "s02", "s03", "s04", "s05"]
    by_id = {r["student_id"]: r for r in rows}
    total = record(out, "s01", "custom_sigmoid")["max_score"] + record(out, "s01", "distance_matrix")["max_score"]
    assert float(by_id["s01"]["raw_score"]) == float(by_id["s01"]["max_score"]) == total
    assert by_id["s05"]["custom_sigmoid_status"] == "missing" and float(by_id["s05"]["raw_score"]) == 0
    assert by_id["s03"]["email"] == "s03@example.org"
    html = (out / "report.html").read_text()
    assert "<svg" in html and "http://" not in html and "https://" not in html


def test_a_dask_cluster_gives_the_same_results(klass, tmp_path):
    subs, roster, out, _ = klass
    run_batch(subs, tmp_path / "dask", settings=FAST, roster_path=roster, seed=SEED, jobs=2)
    same_aggregates(out, tmp_path / "dask")


def test_cpu_shares_cover_the_machine_without_overlap():
    from runner.cpu_shares import cpu_slices
    assert cpu_slices(3, set(range(8))) == [(0, 1, 2), (3, 4, 5), (6, 7)]
    assert cpu_slices(2, {4, 9}) == [(4,), (9,)]
    assert cpu_slices(3, {0, 1}) == [(0,), (1,), (0,)]      # more processes than CPUs: shared
    assert cpu_slices(1, {0, 1, 2}) == [(0, 1, 2)]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_each_local_grading_process_gets_its_own_cpus():
    # A submission's busy threads then slow only its own grading process (test_warm checks a
    # worker cannot widen the set it inherits).
    cluster, client = batch.start_local_cluster(2)
    try:
        shares = list(client.run(lambda: sorted(os.sched_getaffinity(0))).values())
    finally:
        client.close()
        cluster.close()
    assert sorted(cpu for share in shares for cpu in share) == sorted(os.sched_getaffinity(0))
    assert all(shares) and not set(shares[0]) & set(shares[1])


KILLABLE = """
import sys
from runner.batch import Settings, run_batch
settings = Settings(sandbox="required", overrides=(("call_timeout", 4.0), ("time_limit", 20.0)))
run_batch(sys.argv[1], sys.argv[2], settings=settings, roster_path=sys.argv[3], seed=7)
"""


def test_killed_and_resumed_gives_the_same_csvs(klass, tmp_path):
    subs, roster, out, _ = klass
    results = tmp_path / "resumed"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(subs), str(results), str(roster)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    graded = []
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        graded = [p for p in results.glob("*/*.json")
                  if json.loads(p.read_text())["extra_data"]["status"] == "graded"]
        if len(graded) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(graded) >= 2, "the batch graded nothing before it was killed"
    assert not (results / "gradebook.csv").exists()        # killed before the end
    kept = {p: p.read_bytes() for p in graded}
    report = run_batch(subs, results, settings=FAST, roster_path=roster, seed=SEED)
    assert report.plan.kept >= 2                            # graded results were not redone
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert not list(results.glob("*/.*"))                   # no half-written file left
    assert not list(Path(tempfile.gettempdir()).glob(f"grade-*-{proc.pid}-*"))  # its scratch swept
    same_aggregates(out, results)


def test_rerun_grades_only_what_changed(klass, tmp_path):
    subs, roster, out, _ = klass
    results = tmp_path / "results"
    shutil.copytree(out, results)
    new_subs = tmp_path / "subs"
    shutil.copytree(subs, new_subs)
    versions = {e: json.loads((out / "s01" / f"{e}.json").read_text())["extra_data"]["grader_version"]
                for e in ("custom_sigmoid", "distance_matrix")}

    def planned(**kw):
        p = batch.plan(discover(new_subs), results, roster=[f"s0{i}" for i in range(1, 6)],
                       seed=SEED, versions=versions, max_scores=lambda name: 1.0, **kw)
        return sorted((j.student, j.exercise) for j in p.jobs)

    assert planned() == []                                    # all graded: nothing to do
    (new_subs / "s03" / "custom_sigmoid.py").write_text(
        (SOLUTIONS / "custom_sigmoid" / "correct_tanh.py").read_text())
    assert planned() == [("s03", "custom_sigmoid")]          # a new file: graded again
    stale = results / "s01" / "custom_sigmoid.json"
    data = json.loads(stale.read_text())
    data["extra_data"]["grader_version"] = "0ld"
    stale.write_text(json.dumps(data))
    assert planned() == [("s01", "custom_sigmoid"), ("s03", "custom_sigmoid")]  # graders changed
    assert len(planned(regrade=True)) == 7                   # every file (not missing/stray ones)


def test_identical_files_get_identical_seeds_and_a_batch_keeps_its_seed(tmp_path):
    subs = tmp_path / "subs"
    wrong = (SOLUTIONS / "custom_sigmoid" / "wrong_sigma_squared.py").read_text()
    for student, text in [("ann", wrong), ("bo", wrong), ("cy", wrong + "\n# mine\n")]:
        (subs / student).mkdir(parents=True)
        (subs / student / "custom_sigmoid.py").write_text(text)
    results = tmp_path / "results"
    results.mkdir()
    first = batch.batch_seed(results, None)                  # no --seed, no earlier run: fresh
    assert first != batch.batch_seed(tmp_path / "other", None)
    (results / "batch.json").write_text(json.dumps({"seed": first}))
    assert batch.batch_seed(results, None) == first           # a resumed run keeps it
    assert batch.batch_seed(results, 5) == 5                  # --seed wins
    jobs = batch.plan(discover(subs), results, seed=first, versions={"custom_sigmoid": "v"},
                      max_scores=lambda name: 1.0).jobs
    seeds = {j.student: j.seed for j in jobs}
    assert seeds["ann"] == seeds["bo"] != seeds["cy"]


def test_nbgrader_exchange_layout(tmp_path):
    root = tmp_path / "exchange"
    for student, solution in [("alice", "correct_tanh.py"), ("bob", "wrong_sigma_squared.py")]:
        folder = root / "submitted" / student / "custom_sigmoid"
        folder.mkdir(parents=True)
        source = (SOLUTIONS / "custom_sigmoid" / solution).read_text()
        (folder / "custom_sigmoid.ipynb").write_text(notebook_of(source, nbgrader=True))
        (folder / "timestamp.txt").write_text("2026-11-20 10:00:00")
    found = discover(root)
    assert found.layout == "nbgrader"
    assert sorted(found.found) == [("alice", "custom_sigmoid"), ("bob", "custom_sigmoid")]
    report = run_batch(root, tmp_path / "out", settings=FAST, seed=SEED)
    alice = record(tmp_path / "out", "alice", "custom_sigmoid")
    bob = record(tmp_path / "out", "bob", "custom_sigmoid")
    assert alice["score"] == alice["max_score"] > 0         # the grade cell did not run
    assert bob["score"] < bob["max_score"]
    assert report.discovery.unknown == []   # nbgrader's own timestamp.txt is not a stray file


def test_discovery_reports_what_it_does_not_grade(tmp_path):
    subs = tmp_path / "subs"
    (subs / "amy" / ".ipynb_checkpoints").mkdir(parents=True)
    (subs / "amy" / ".ipynb_checkpoints" / "custom_sigmoid-checkpoint.ipynb").write_text("{}")
    (subs / "amy" / "custom_sigmoid.py").write_text("x = 1\n")
    (subs / "amy" / "custom_sigmoid.ipynb").write_text("{}")
    (subs / "amy" / "distance_matrix.txt").write_text("x")
    (subs / "ben").mkdir()
    (subs / "ben" / "distance_matrix.py").symlink_to("/etc/passwd")
    (subs / "README.md").write_text("collected on Monday")
    found = discover(subs)
    assert sorted(found.found) == [("amy", "custom_sigmoid")]
    assert found.found[("amy", "custom_sigmoid")].relpath == "amy/custom_sigmoid.py"
    assert sorted(found.unknown) == ["README.md", "amy/distance_matrix.txt"]
    assert any("amy/custom_sigmoid.ipynb" in line for line in found.ignored)
    assert any("ben/distance_matrix.py" in line and "symbolic link" in line for line in found.ignored)


def test_cli_batch_and_report(tmp_path):
    subs = tmp_path / "subs"
    (subs / "zed").mkdir(parents=True)
    shutil.copy(ASSIGNMENTS / "custom_sigmoid" / "custom_sigmoid.py", subs / "zed")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "cli", "batch", str(subs), "--out", str(out),
                          "--sandbox", "required"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "graded" in run.stderr and "custom_sigmoid" in run.stderr
    assert record(out, "zed", "custom_sigmoid")["extra_data"]["status"] == "graded"
    (out / "gradebook.csv").unlink()
    (out / "amy").mkdir()
    (out / "amy" / "custom_sigmoid.json").write_text("{broken")
    run = subprocess.run([sys.executable, "-m", "cli", "report", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and (out / "gradebook.csv").exists()
    # A broken result file is reported once, in one line, and counted as an error result.
    assert run.stderr.count("amy/custom_sigmoid.json: not valid JSON") == 1, run.stderr
    assert "Warning" not in run.stderr and "amy" in (out / "gradebook.csv").read_text()
    bad_roster = tmp_path / "roster.csv"
    bad_roster.write_text("name\nzed\n")
    run = subprocess.run([sys.executable, "-m", "cli", "batch", str(subs), "--out", str(out),
                          "--roster", str(bad_roster)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("grade: error:")


@pytest.mark.parametrize("gpus,choice,jobs,cluster,backend,expected", [
    (0, "auto", 4, None, "local", (None, 4)),            # no GPU: nothing changes
    (0, "auto", 4, None, "docker", ("none", 4)),
    (2, "none", 4, None, "docker", ("none", 4)),         # GPUs present but not wanted
    (2, "auto", 4, None, "docker", ("per-worker", 2)),   # never two gradings on one GPU
    (2, "all", 1, None, "docker", ("0", 1)),
    (4, "auto", 2, None, "local", ("per-worker", 2)),
    (2, "1", 4, None, "docker", ("1", 1)),               # one pinned GPU: one at a time
    (0, "all", 3, "tcp://h:8786", "docker", ("per-task", 3)),    # the cluster's GPU resources decide
    (0, "auto", 3, "tcp://h:8786", "local", (None, 3)),          # only on request on a cluster
])
def test_gpu_layout(monkeypatch, gpus, choice, jobs, cluster, backend, expected):
    monkeypatch.setattr(batch, "host_gpu_count", lambda: gpus)
    assert batch.gpu_layout(choice, jobs, cluster, backend) == expected
