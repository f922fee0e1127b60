"""The student bundle (`runner.release`) and the Gradescope autograder (`runner.gradescope`)."""
import ast
import json
import os
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbgrader.nbgraderformat import MetadataValidator
from nbgrader.preprocessors import ClearSolutions

from runner import exercises
from runner.exercises import GRADERS, REFERENCE, ROOT, SOLUTIONS
from runner.gradescope import find_submission, grade_file, write_gradescope
from runner.release import BEGIN, END, split_docstring, strip_markers, write_release
from runner.submission import read

NAMES = exercises.names()
CHEAP = ["distance_matrix", "custom_sigmoid"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    return out, write_release(out)


def cells(nb, kind):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get(kind)]


def test_bundle_has_exactly_the_expected_files(bundle):
    out, written = bundle
    expected = {Path("README.md")} | {Path(n) / f for n in NAMES
                                      for f in (f"{n}.py", f"{n}.ipynb", "public_tests.py")}
    on_disk = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    assert on_disk == expected
    assert sorted(p.relative_to(out) for p in written) == sorted(expected)
    for n in NAMES:
        assert (out / n / f"{n}.py").read_bytes() == exercises.load(n).stub.read_bytes()
    readme = (out / "README.md").read_text()
    assert "grade submit" in readme and ".ipynb" in readme and all(n in readme for n in NAMES)


def test_no_reference_or_hidden_test_text_in_the_bundle(bundle):
    out, _ = bundle
    stubs = "\n".join(exercises.load(n).stub.read_text() for n in NAMES)
    hidden = [*REFERENCE.glob("*.py"), *GRADERS.glob("test_*.py"), GRADERS / "checks.py"]
    secret = {line.strip() for path in hidden for line in path.read_text().splitlines()
              if len(line.strip()) > 25 and line.strip() not in stubs}
    assert len(secret) > 500   # the collection itself works
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            if path.suffix == ".ipynb":   # compare the cells' text, not its JSON escaping
                text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
            leaked = [line for line in secret if line in text]
            assert not leaked, f"{path.relative_to(out)} contains hidden text: {leaked[:3]}"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_an_nbgrader_source_notebook_of_the_stub(bundle, name):
    out, _ = bundle
    nb = nbformat.read(out / name / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    MetadataValidator().validate_nb(nb)
    exercise = exercises.load(name)
    doc, code = split_docstring(exercise.stub.read_text())
    assert exercise.title in nb.cells[0].source and doc in nb.cells[0].source

    solution, = cells(nb, "solution")
    assert solution.cell_type == "code"
    assert solution.metadata["nbgrader"] == {"grade": False, "grade_id": f"{name}_solution",
                                             "locked": False, "schema_version": 3,
                                             "solution": True, "task": False}
    assert strip_markers(solution.source).rstrip("\n") == code.rstrip("\n")
    tree = ast.parse(code)
    raising = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
               and "NotImplementedError" in ast.unparse(f.body[-1])]
    assert raising and solution.source.count(BEGIN) == solution.source.count(END) == len(raising)
    # nbgrader's own solution clearing leaves valid Python (the markers sit at body indentation).
    cleared, _ = ClearSolutions().preprocess(nbformat.from_dict(nb), {})
    compile(cells(cleared, "solution")[0].source, name, "exec")

    test, = cells(nb, "grade")
    assert test.metadata["nbgrader"]["locked"] and test.metadata["nbgrader"]["points"] == 0
    assert test.metadata["nbgrader"]["grade_id"] == f"{name}_public"
    for public in [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]:
        assert any(f"`{public}" in c.source for c in nb.cells if c.cell_type == "markdown")
    assert "do not rename" in nb.cells[-1].source.lower()


@pytest.mark.parametrize("name", NAMES)
def test_notebook_checks_pass_with_the_reference_and_fail_with_the_stub(bundle, name):
    out, _ = bundle
    nb = nbformat.read(out / name / f"{name}.ipynb", as_version=4)
    test = cells(nb, "grade")[0].source

    def run_notebook(solution_code, as_main=True):
        namespace = {"__name__": "__main__" if as_main else name}
        exec(compile(solution_code, "solution", "exec"), namespace)
        exec(compile(test, "test", "exec"), namespace)

    run_notebook(exercises.load(name).reference.read_text())
    with pytest.raises(NotImplementedError):
        run_notebook(cells(nb, "solution")[0].source)
    run_notebook(cells(nb, "solution")[0].source, as_main=False)   # imported: the checks stay quiet


def run_public_tests(tmp_path: Path, candidates: dict[str, Path]) -> dict[str, list[bool]]:
    """Every exercise's public tests against its candidate, in one pytest run: name -> passed?"""
    for name, candidate in candidates.items():
        shutil.copyfile(candidate, tmp_path / f"{name}.py")
        shutil.copyfile(exercises.load(name).stub.parent / "public_tests.py",
                        tmp_path / f"public_tests_{name}.py")
    report = tmp_path / "report.xml"
    # One intra-op thread: tiny tensors, and the machine may be busy with other tests.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}", *[f"public_tests_{n}.py" for n in candidates]],
                   cwd=tmp_path, env=env, capture_output=True, timeout=300)
    outcomes = {name: [] for name in candidates}
    for case in ET.parse(report).iter("testcase"):
        name = case.get("classname").removeprefix("public_tests_")
        outcomes[name].append(case.find("failure") is None and case.find("error") is None
                              and case.find("skipped") is None)
    return outcomes


@pytest.mark.parametrize("kind", ["reference", "correct", "stub"])
def test_public_tests_pass_on_solutions_and_fail_on_the_stub(tmp_path, kind):
    def candidate(name):
        ex = exercises.load(name)
        if kind == "correct":
            return sorted((SOLUTIONS / name).glob("correct_*.py"))[0]
        return ex.reference if kind == "reference" else ex.stub

    outcomes = run_public_tests(tmp_path, {name: candidate(name) for name in NAMES})
    for name, passed in outcomes.items():
        assert len(passed) >= 5, f"{name}: only {len(passed)} public tests ran"
        if kind == "stub":
            assert not any(passed), f"{name}: a public test passes with the stub"
        else:
            assert all(passed), f"{name}: {passed.count(False)} public tests fail with the {kind}"


# ---- Gradescope ------------------------------------------------------------------------

def unpack(zip_path: Path, root: Path) -> Path:
    """Unzip like Gradescope does, into root/source, keeping the permission bits."""
    source = root / "source"
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            z.extract(info, source)
            os.chmod(source / info.filename, (info.external_attr >> 16) & 0o777)
    (root / "submission").mkdir()
    return source


def run_autograder(root: Path, script: Path) -> dict:
    env = {**os.environ, "GRADESCOPE_ROOT": str(root), "GRADE_PYTHON": sys.executable}
    subprocess.run([str(script)], env=env, capture_output=True, timeout=300)
    return json.loads((root / "results" / "results.json").read_text())


def assert_gradescope_schema(results: dict) -> None:
    assert isinstance(results["score"], (int, float))
    for t in results["tests"]:
        assert set(t) >= {"name", "score", "max_score", "status", "output", "visibility"}
        assert t["status"] in ("passed", "failed") and t["visibility"] == "visible"
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))


def test_zip_holds_the_scripts_and_the_source_but_no_tests(tmp_path):
    path = write_gradescope(tmp_path, CHEAP)
    with zipfile.ZipFile(path) as z:
        infos = {i.filename: i for i in z.infolist()}
        config = json.loads(z.read("gradescope.json"))
        setup = z.read("setup.sh").decode()
    names = set(infos)
    for script in ("setup.sh", "run_autograder"):
        assert (infos[script].external_attr >> 16) & stat.S_IXUSR, f"{script} is not executable"
    assert config == {"exercises": CHEAP}
    for rel in ("pyproject.toml", "cli.py", "runner/grade.py", "runner/sandbox.py",
                "graders/checks.py", "graders/__init__.py"):
        assert rel in names
    for name in CHEAP:
        ex = exercises.load(name)
        for p in (ex.grader, ex.reference, ex.stub, ex.stub.parent / "manifest.toml"):
            assert p.relative_to(ROOT).as_posix() in names
    assert "reference/unet.py" not in names and "graders/test_unet.py" not in names
    assert not [n for n in names if n.startswith(("tests/", ".git")) or "/.git/" in n
                or "__pycache__" in n]
    assert "torch==2.13.0" in setup and "bubblewrap" in setup and "useradd" in setup
    assert 'SOURCE=/autograder/source' in setup and 'chmod -R go-rwx "$SOURCE"' in setup


def test_run_autograder_grades_present_files_and_reports_missing_ones(tmp_path):
    root = tmp_path / "autograder"
    source = unpack(write_gradescope(tmp_path, CHEAP), root)
    correct = SOLUTIONS / "distance_matrix" / "correct_vector_norm.py"
    (root / "submission" / "nested").mkdir()
    shutil.copyfile(correct, root / "submission" / "nested" / "distance_matrix.py")

    results = run_autograder(root, source / "run_autograder")
    assert_gradescope_schema(results)
    dm = [t for t in results["tests"] if t["name"].startswith("distance_matrix: ")]
    assert len(dm) >= 10 and all(t["status"] == "passed" for t in dm)
    assert sum(t["score"] for t in dm) == sum(t["max_score"] for t in dm) > 0
    missing, = [t for t in results["tests"] if t["name"].startswith("custom_sigmoid: ")]
    assert missing["score"] == 0 and missing["status"] == "failed"
    assert "custom_sigmoid.py" in missing["output"] and missing["max_score"] == 0
    assert results["score"] == results["max_score"] == sum(t["max_score"] for t in dm)
    assert "custom_sigmoid: missing file" in results["output"]


def test_run_autograder_always_writes_results(tmp_path):
    root = tmp_path / "autograder"
    source = unpack(write_gradescope(tmp_path, CHEAP), root)
    (source / "gradescope.json").write_text("{not json")          # python fails: caught in main
    results = run_autograder(root, source / "run_autograder")
    assert results["score"] == 0 and results["tests"] == [] and "not your fault" in results["output"]
    # Gradescope runs its own copy, /autograder/run_autograder: without the source python cannot
    # even start, and the script's last resort writes the results.
    shutil.copy2(source / "run_autograder", root / "run_autograder")
    shutil.rmtree(source)
    results = run_autograder(root, root / "run_autograder")
    assert results["score"] == 0 and results["tests"] == [] and "not your fault" in results["output"]


@pytest.mark.parametrize("name", NAMES)
def test_released_notebook_reads_as_the_stub_module(bundle, name):
    # What `grade submit NAME.ipynb` grades: the code cells without the test cell.
    submission = read(bundle[0] / name / f"{name}.ipynb")
    assert submission.syntax_error is None
    namespace = {"__name__": name}
    exec(compile(submission.source, name, "exec"), namespace)
    stub = {}
    exec(compile(exercises.load(name).stub.read_text(), name, "exec"), stub)
    public = {k for k, v in stub.items() if not k.startswith("_") and callable(v)}
    assert public <= set(namespace)
    assert "public checks passed" not in submission.source


def test_unusable_file_is_a_failed_test_with_the_reason(tmp_path):
    bad = tmp_path / "distance_matrix.ipynb"
    bad.write_text("{not a notebook")
    part = grade_file(bad, "distance_matrix", "required", ROOT)
    test, = part["tests"]
    assert part["score"] == 0 and test["status"] == "failed" and test["name"] == "unusable file"
    assert "distance_matrix.ipynb" in test["output"] and "notebook" in test["output"]
    assert "Traceback" not in test["output"]


def test_find_submission_prefers_py_and_the_shallowest(tmp_path):
    assert find_submission(tmp_path, "unet") is None
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "unet.py").write_text("")
    (tmp_path / "unet.ipynb").write_text("{}")
    assert find_submission(tmp_path, "unet") == tmp_path / "a" / "b" / "unet.py"
    (tmp_path / "a" / "unet.py").write_text("")
    assert find_submission(tmp_path, "unet") == tmp_path / "a" / "unet.py"
    # A symlink could make the judge (root) read the reference as the student's file.
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "custom_sigmoid.py").symlink_to(REFERENCE / "custom_sigmoid.py")
    (tmp_path / "c").symlink_to(REFERENCE, target_is_directory=True)
    assert find_submission(tmp_path, "custom_sigmoid") is None
