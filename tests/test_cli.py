"""`grade` as users meet it: exit codes, messages, the results.json schema."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from runner import sandbox
from runner.exercises import ASSIGNMENTS, REFERENCE, ROOT

REF = REFERENCE / "distance_matrix.py"
STUB = ASSIGNMENTS / "distance_matrix" / "distance_matrix.py"
FEW = ["--test", "test_shapes_and_dtypes", "--test", "test_zero_diagonal"]


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def test_missing_file_is_a_one_line_error():
    r = run("submit", "nowhere/distance_matrix.py")
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "no such file" in r.output


def test_unknown_exercise(tmp_path):
    f = tmp_path / "homework.py"
    f.write_text("x = 1\n")
    r = run("submit", f)
    assert r.exit_code == 2 and "unknown exercise 'homework'" in r.output and "--exercise" in r.output
    r = run("submit", "--exercise", "nope", REF)
    assert r.exit_code == 2 and "unknown exercise 'nope'" in r.output


@pytest.mark.parametrize("content,text", [
    (b"def f():\n    return '\xff\xfe'\n", "not UTF-8"),
    (b"x = 1\x00\n", "NUL"),
])
def test_unusable_files(tmp_path, content, text):
    f = tmp_path / "distance_matrix.py"
    f.write_bytes(content)
    r = run("submit", f)
    assert r.exit_code == 2 and text in r.output


def test_syntax_error_is_graded_zero_with_the_reason(tmp_path):
    f = tmp_path / "distance_matrix.py"
    f.write_text("def pairwise_distances(x, y=None)\n    return x\n")
    r = run("submit", "--results", tmp_path / "r.json", f)
    assert r.exit_code == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["score"] == 0 and data["max_score"] > 0
    assert all("does not parse" in t["output"] and "line 1" in t["output"] for t in data["tests"])


def test_reference_full_marks_and_gradescope_schema(tmp_path):
    out = tmp_path / "results.json"
    r = run("submit", "--exercise", "distance_matrix", "--results", out, *FEW, REF)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["score"] == data["max_score"] == 4
    assert isinstance(data["execution_time"], float)
    for t in data["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}
        assert t["status"] in ("passed", "failed") and t["visibility"] in ("visible", "hidden")
    extra = data["extra_data"]
    assert extra["sandbox"] == "bwrap" and isinstance(extra["seed"], int) and len(extra["sha256"]) == 64
    assert set(extra["durations"]) == set(extra["statuses"])
    assert all(d > 0 for d in extra["durations"].values())   # each test took some time


def test_stub_scores_zero_and_exit_status_is_still_zero(tmp_path):
    out = tmp_path / "results.json"
    r = run("submit", "--results", out, *FEW, STUB)
    assert r.exit_code == 0
    data = json.loads(out.read_text())
    assert data["score"] == 0
    assert all(t["output"].startswith("[not implemented]") for t in data["tests"])


def test_several_files_write_one_results_file_each(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "distance_matrix.py").write_bytes(REF.read_bytes())
    (b / "student_b.py").write_bytes(STUB.read_bytes())
    r = run("submit", "--exercise", "distance_matrix", "--results", tmp_path / "out", *FEW,
            a / "distance_matrix.py", b / "student_b.py")
    assert r.exit_code == 0
    assert json.loads((tmp_path / "out" / "distance_matrix.results.json").read_text())["score"] == 4
    assert json.loads((tmp_path / "out" / "student_b.results.json").read_text())["score"] == 0


def test_sandbox_required_without_bubblewrap(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    r = run("submit", "--sandbox", "required", REF)
    assert r.exit_code == 2 and "bubblewrap" in r.output


def test_without_bubblewrap_it_warns_once_and_still_grades(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    out = tmp_path / "r.json"
    r = run("submit", "--exercise", "distance_matrix", "--results", out, *FEW, REF)
    assert r.exit_code == 0
    assert r.output.count("NOT isolated") == 1
    data = json.loads(out.read_text())
    assert data["score"] == 4 and data["extra_data"]["sandbox"] == "none"


def test_list_shows_every_exercise_with_points():
    r = CliRunner().invoke(cli.main, ["list"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for name in ["distance_matrix"]:
        assert name in r.output
    assert "26" in r.output   # distance_matrix's points


def test_console_script_is_installed():
    r = subprocess.run([sys.executable, "-m", "cli", "submit", "missing.py"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("grade: error:")
