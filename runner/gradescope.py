"""A Gradescope autograder ("Zip file upload"): building the zip, and what it runs.

``write_gradescope(OUT)`` writes ``OUT/autograder.zip``:

    setup.sh          runs once when Gradescope builds its Ubuntu image (root, internet):
                      python3 + venv + bubblewrap, torch (CPU wheel), the project from
                      /autograder/source, the grade-student / grade-reference users, and
                      ``chmod -R go-rwx /autograder/source``   (docker/gradescope/setup.sh)
    run_autograder    runs as root for each submission: ``python -m runner.gradescope``
                      (this module's ``main``), with a last-resort results.json if even
                      that fails                                 (docker/gradescope/run_autograder)
    gradescope.json   {"exercises": [...]}: what this assignment expects
    pyproject.toml, cli.py, runner/, graders/, reference/, assignments/   the project (no tests/)

Per submission, ``main`` grades every expected exercise whose ``<ex>.py`` (or, failing
that, ``<ex>.ipynb``) is somewhere under /autograder/submission, each with
``grade submit FILE --exercise EX --results TMP`` in a subprocess, and merges the
results into ONE /autograder/results/results.json (test names prefixed with the
exercise).  An expected exercise without a file gets a failed 0-point test naming the file it
expected; a file ``grade`` refuses gets one with its reason; a crash gets one saying it
is not the student's fault (details on stdout, which Gradescope shows instructors
only).  results.json is always written.

Isolation.  The references and graders are in /autograder/source, so student code must
not be able to read it.  bubblewrap does that (the source is not in the sandbox), but
Gradescope's containers may not allow user or mount namespaces, and there
``--sandbox auto`` would fall back to an unisolated subprocess.  So we probe bubblewrap
the way the sandbox uses it and, if it does not work, use the ``setuid`` mode of the
grading image (Dockerfile.gpu) instead: the judge is root, each worker runs as
grade-student / grade-reference (made by setup.sh), and the source is readable by root
only.  ``GRADESCOPE_ROOT`` (default /autograder) moves the whole layout, for tests.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

from . import exercises
from .exercises import ROOT
from .results import write_json_atomic

TEMPLATES = ROOT / "docker" / "gradescope"
CONFIG = "gradescope.json"
SKIP = {"__pycache__", ".pytest_cache"}


# ---- building the zip --------------------------------------------------------------

def _source_files(names: list[str]) -> list[Path]:
    """Project files the grader needs, for these exercises only (paths relative to ROOT)."""
    files = [Path("pyproject.toml"), Path("cli.py")]
    files += sorted(p.relative_to(ROOT) for p in (ROOT / "runner").rglob("*")
                    if p.is_file() and not SKIP & set(p.parts) and p.suffix != ".pyc")
    files += sorted(p.relative_to(ROOT) for p in (ROOT / "graders").iterdir()
                    if p.is_file() and not p.name.startswith("test_") and p.suffix != ".pyc")
    for name in names:
        ex = exercises.load(name)
        files += [ex.grader.relative_to(ROOT), ex.reference.relative_to(ROOT)]
        files += sorted(p.relative_to(ROOT) for p in ex.stub.parent.iterdir() if p.is_file())
    return files


def _add(z: zipfile.ZipFile, arcname: str, data: bytes, mode: int) -> None:
    info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = (0o100000 | mode) << 16   # regular file + permission bits
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


def write_gradescope(out: Path, names: list[str] | None = None) -> Path:
    """Write ``out/autograder.zip`` for the exercises ``names`` (default: all); returns its path."""
    names = list(names) if names else exercises.names()
    for name in names:
        exercises.load(name)   # UnknownExercise for a typo, before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "autograder.zip"
    tmp = out / ".autograder.zip.tmp"
    with zipfile.ZipFile(tmp, "w") as z:
        for script in ("setup.sh", "run_autograder"):
            _add(z, script, (TEMPLATES / script).read_bytes(), 0o755)
        _add(z, CONFIG, json.dumps({"exercises": names}, indent=2).encode(), 0o644)
        for rel in _source_files(names):
            _add(z, rel.as_posix(), (ROOT / rel).read_bytes(), 0o644)
    os.replace(tmp, path)
    return path


# ---- running on Gradescope -----------------------------------------------------------

def bwrap_works() -> bool:
    """Can bubblewrap build its sandbox here, the way runner/sandbox.py starts it?"""
    if not shutil.which("bwrap"):
        return False
    argv = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--ro-bind", "/", "/", "true"]
    if os.geteuid() == 0:   # as root the sandbox first needs a private mount namespace + a uid drop
        argv = ["unshare", "--mount", "--propagation", "private", "setpriv", "--reuid=65534",
                "--regid=65534", "--clear-groups", "--no-new-privs"] + argv
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_submission(folder: Path, name: str) -> Path | None:
    """``<name>.py`` anywhere under ``folder`` (the shallowest), else ``<name>.ipynb``.

    Only regular files really inside ``folder``: the judge reads the file as root, so a
    symlink could hand it the reference solution as the student's own.
    """
    inside = folder.resolve()
    for suffix in (".py", ".ipynb"):
        found = [p for p in folder.rglob(name + suffix) if p.is_file() and not p.is_symlink()
                 and p.resolve().is_relative_to(inside)]
        if found:
            return min(found, key=lambda p: (len(p.parts), str(p)))
    return None


def failed(name: str, test: str, message: str) -> dict:
    """The result of an exercise that could not be graded: one failed 0-point test."""
    return {"score": 0.0, "max_score": 0.0, "output": f"{name}: {test}, 0 points",
            "tests": [{"name": test, "score": 0.0, "max_score": 0.0, "status": "failed",
                       "output": message, "visibility": "visible"}]}


def grade_file(path: Path, name: str, sandbox: str, source: Path) -> dict:
    """``grade submit`` one file in a subprocess; its Gradescope dict, or a failed one."""
    limit = 3 * exercises.load(name).time_limit + 60   # a backstop: grade has its own limits
    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        out = Path(tmp) / "results.json"
        argv = [sys.executable, "-m", "cli", "submit", str(path), "--exercise", name,
                "--results", str(out), "--sandbox", sandbox]
        try:
            proc = subprocess.run(argv, cwd=source, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            print(f"{name}: grading took more than {limit:g} s")
            return failed(name, "grading failed", "Grading did not finish in time. This is not "
                          "your fault: please tell your instructor.")
        print(f"$ grade submit {path.name} --exercise {name}  (exit {proc.returncode})")
        print(proc.stdout + proc.stderr)   # stdout is for instructors only
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        if proc.returncode == 2 and last.startswith("grade: error: "):
            # Unusable input (not UTF-8, too big, ...): grade's one-line reason is for the student.
            return failed(name, "unusable file", last.removeprefix("grade: error: "))
        if proc.returncode != 0 or not out.is_file():
            return failed(name, "grading failed", "The autograder failed on this exercise. This "
                          "is not your fault: please tell your instructor.")
        return json.loads(out.read_text())


def merge(parts: dict[str, dict]) -> dict:
    """One results.json from one Gradescope dict per exercise; test names get the exercise."""
    tests = [{**t, "name": f"{name}: {t['name']}"} for name, part in parts.items()
             for t in part.get("tests", [])]
    return {
        "score": sum(p.get("score", 0) for p in parts.values()),
        "max_score": sum(p.get("max_score", 0) for p in parts.values()),
        "output": "\n".join(p.get("output", name) for name, p in parts.items()),
        "visibility": "visible", "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {name: p.get("extra_data", {}) for name, p in parts.items()},
    }


def run(root: Path) -> dict:
    source, submissions = root / "source", root / "submission"
    names = json.loads((source / CONFIG).read_text())["exercises"]
    sandbox = "required" if bwrap_works() else "setuid"
    print(f"sandbox: {sandbox}; expected exercises: {', '.join(names)}")
    parts = {}
    for name in names:
        path = find_submission(submissions, name)
        if path is None:
            parts[name] = failed(name, "missing file", f"No file named {name}.py or {name}.ipynb "
                                 "was submitted. Name the file exactly so.")
        else:
            parts[name] = grade_file(path, name, sandbox, source)
    return merge(parts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else os.environ.get("GRADESCOPE_ROOT", "/autograder"))
    start = time.monotonic()
    try:
        results = run(root)
    except Exception:
        traceback.print_exc(file=sys.stdout)
        results = {"score": 0.0, "output": "The autograder failed. This is not your fault: "
                   "please tell your instructor.", "stdout_visibility": "hidden", "tests": []}
    results["execution_time"] = round(time.monotonic() - start, 3)
    write_json_atomic(root / "results" / "results.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
