"""Tables of a batch: per-result JSON files -> tests.csv (long) and gradebook.csv (wide).

The inputs are the files `grade batch` writes, RESULTS/<student>/<exercise>.json (the
Gradescope results.json schema with our fields under ``extra_data``; see
notes/result_schema.md).  The CSVs are rebuilt from them on every run, never the only copy.

Decisions (so the lead and instructors know what to expect):

* Problems are reported through Python warnings of category `GradebookWarning`, never a
  traceback: a result file that is not valid JSON or lacks the schema's fields, results of one
  exercise that disagree on max_score, a student with results who is not on the roster.  A
  caller that wants them as a list wraps the call in
  ``warnings.catch_warnings(record=True)`` + ``warnings.simplefilter("always", GradebookWarning)``.
* A broken result file still counts: it becomes an "error" result for its student and exercise
  (score 0, message naming the file), so the student is never silently dropped, and like any
  "error" it is the platform's fault, to be regraded.
* Student and exercise are taken from the file's path (the batch layout); extra_data
  student/exercise that disagree with it give a warning.
* Rows are sorted by student_id (plain string order, so "007" < "1" < "alice"), then exercise
  (sorted), then test in the grader's order.  Same inputs -> byte-identical CSVs, except the
  ``duration`` column of tests.csv.
* Skipped tests (GPU tests without a GPU) stay in tests.csv with status "skipped", 0 points and
  max_points 0, because results.json leaves them out of the maximum: the max_points of a
  result's rows always add up to its max_score.
* The maximum of an exercise is the largest max_score among its results (error results only if
  there is nothing else); disagreeing results give a warning.  Every student's max_score is the
  sum of the exercise maxima, whatever they were graded on.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd

BATCH_STATUSES = ("graded", "missing", "unusable", "error")
ROSTER_ID_COLUMNS = ("student_id", "id", "username", "student", "login")
ROSTER_COLUMNS = ("student_id", "first_name", "last_name", "email")
LONG_COLUMNS = ("student_id", "exercise", "test", "title", "points", "max_points", "status",
                "duration", "message", "visibility", "batch_status", "sha256", "grader_version")
FLOAT_FORMAT = "%.10g"    # 0.1 + 0.2 is written 0.3; 20.0 is written 20
SPREADSHEET_FORMULA = ("=", "+", "-", "@", "\t", "\r")


class GradebookWarning(UserWarning):
    """Something in the results an instructor should look at; the tables are still written."""


def _warn(message: str) -> None:
    warnings.warn(message, GradebookWarning, stacklevel=3)


# --- roster -----------------------------------------------------------------------------------

def read_roster(path: Path | str) -> pd.DataFrame:
    """The roster CSV as columns student_id, first_name, last_name, email, in file order.

    The id column may be called student_id, id, username, student or login (case and
    surrounding spaces ignored; the first of those names present wins).  Ids are kept as text
    ("007" stays "007").  Rows that are entirely empty are dropped.  Raises ValueError for a
    file that is not UTF-8 CSV, has no id column, or has empty or duplicated ids.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                          skip_blank_lines=True)
    except UnicodeDecodeError as e:
        raise ValueError(f"roster {path}: not UTF-8 text ({e.reason})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"roster {path}: not a CSV file ({str(e).strip()})") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    id_column = next((c for c in ROSTER_ID_COLUMNS if c in raw.columns), None)
    if id_column is None:
        raise ValueError(f"roster {path}: no student id column (one of {', '.join(ROSTER_ID_COLUMNS)}); "
                         f"columns found: {', '.join(raw.columns) or 'none'}")
    raw = raw.apply(lambda column: column.str.strip())
    raw = raw[(raw != "").any(axis=1)]
    empty = [str(i + 1) for i, sid in zip(raw.index, raw[id_column]) if sid == ""]
    if empty:
        raise ValueError(f"roster {path}: empty student id on data row(s) {', '.join(empty)}")
    roster = pd.DataFrame({
        "student_id": raw[id_column],
        **{c: raw[c] if c in raw.columns else "" for c in ROSTER_COLUMNS[1:]},
    }).reset_index(drop=True)
    duplicated = sorted(set(roster["student_id"][roster["student_id"].duplicated()]))
    if duplicated:
        raise ValueError(f"roster {path}: duplicated student id(s): {', '.join(duplicated)}")
    return roster.astype(str)


# --- loading results --------------------------------------------------------------------------

def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _schema_problem(data) -> str | None:
    """Why `data` is not a usable per-result dict, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key in ("score", "max_score"):
        if not _number(data.get(key)):
            return f"{key} missing or not a number"
    extra = data.get("extra_data")
    if not isinstance(extra, dict):
        return "extra_data missing"
    if extra.get("status") not in BATCH_STATUSES:
        return f"extra_data.status missing or not one of {', '.join(BATCH_STATUSES)}"
    tests = extra.get("tests", [])
    if not isinstance(tests, list):
        return "extra_data.tests is not a list"
    for i, t in enumerate(tests):
        if not (isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("status"), str)
                and _number(t.get("score")) and _number(t.get("max_score"))):
            return f"extra_data.tests[{i}] lacks name, status, score or max_score"
    return None


def _broken_result(student: str, exercise: str, why: str) -> dict:
    """Stand-in for an unreadable file: an "error" result, maximum unknown (None) until the
    exercise's maximum fills it in."""
    return {"score": 0.0, "max_score": None, "tests": [],
            "extra_data": {"exercise": exercise, "student": student, "status": "error",
                           "message": f"unreadable result file: {why}", "tests": [],
                           "sha256": "", "grader_version": ""}}


def load_results(results_dir: Path | str) -> list[dict]:
    """Every RESULTS/<student>/<exercise>.json, sorted by (student, exercise).

    Names starting with "." (temporaries of atomic writes) and anything that is not a
    ``*.json`` file one level down are ignored.  A file that is not valid JSON or lacks the
    schema's fields gives a GradebookWarning naming it and comes back as an "error" result
    (see `_broken_result`).  extra_data.student / extra_data.exercise are set from the path.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"results directory {results_dir} does not exist")
    results = []
    for student_dir in sorted(results_dir.iterdir()):
        if student_dir.name.startswith(".") or not student_dir.is_dir():
            continue
        for path in sorted(student_dir.iterdir()):
            if path.name.startswith(".") or path.suffix != ".json" or not path.is_file():
                continue
            student, exercise = student_dir.name, path.stem
            relative = f"{student}/{path.name}"
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                why = _schema_problem(data)
            except UnicodeDecodeError:
                why = "not UTF-8 text"
            except json.JSONDecodeError as e:
                why = f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
            except OSError as e:
                why = f"cannot be read ({e.strerror})"
            if why is not None:
                _warn(f"{relative}: {why}; counted as an error result")
                results.append(_broken_result(student, exercise, f"{relative}: {why}"))
                continue
            extra = data["extra_data"]
            for key, value in (("student", student), ("exercise", exercise)):
                if extra.get(key, value) != value:
                    _warn(f"{relative}: extra_data.{key} is {extra[key]!r}; the path says {value!r}")
                extra[key] = value
            results.append(data)
    return results


# --- tables -----------------------------------------------------------------------------------

def _key(result: dict) -> tuple[str, str]:
    extra = result["extra_data"]
    return str(extra["student"]), str(extra["exercise"])


def _sorted(results: list[dict]) -> list[dict]:
    keys = [_key(r) for r in results]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"more than one result for {', '.join('/'.join(k) for k in dup)}")
    return sorted(results, key=_key)


def _maxima(results: list[dict]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each exercise's maximum, and the exercises whose results disagree (with their values)."""
    values: dict[str, dict[str, set]] = {}
    for r in results:
        group = values.setdefault(_key(r)[1], {"other": set(), "error": set()})
        if r.get("max_score") is not None:
            group["error" if r["extra_data"]["status"] == "error" else "other"].add(float(r["max_score"]))
    maxima, disagreements = {}, {}
    for exercise in sorted(values):
        found = values[exercise]["other"] or values[exercise]["error"]   # error results may not know it
        maxima[exercise] = max(found, default=0.0)
        if len(found) > 1:
            disagreements[exercise] = sorted(found)
    return maxima, disagreements


def exercise_maxima(results: list[dict]) -> dict[str, float]:
    """The maximum of each exercise, taken from its results: the largest, with a warning when
    they disagree (e.g. a GPU-graded run mixed with a CPU one)."""
    maxima, disagreements = _maxima(results)
    for exercise, found in disagreements.items():
        _warn(f"{exercise}: results disagree on max_score ({', '.join(f'{v:g}' for v in found)}), "
              f"using {maxima[exercise]:g} (graded on different devices or grader versions?)")
    return maxima


def long_table(results: list[dict]) -> pd.DataFrame:
    """One row per student x exercise x test (columns LONG_COLUMNS).

    A result that is not "graded" (or has no tests) gives one row: test "", 0 points,
    max_points = its max_score, status = its batch status, message = its message.
    """
    maxima, _ = _maxima(results)    # only for unreadable files; gradebook_table warns about disagreements
    rows = []
    for r in _sorted(results):
        extra = r["extra_data"]
        student, exercise = _key(r)
        common = {"student_id": student, "exercise": exercise, "batch_status": extra["status"],
                  "sha256": str(extra.get("sha256", "")), "grader_version": str(extra.get("grader_version", ""))}
        tests = extra.get("tests", [])
        if extra["status"] != "graded" or not tests:
            max_points = maxima[exercise] if r.get("max_score") is None else float(r["max_score"])
            rows.append(common | {"test": "", "title": "", "points": 0.0, "max_points": max_points,
                                  "status": extra["status"], "duration": 0.0,
                                  "message": str(extra.get("message", "")), "visibility": ""})
            continue
        for t in tests:
            skipped = t["status"] == "skipped"
            rows.append(common | {
                "test": t["name"], "title": str(t.get("title", "")),
                "points": 0.0 if skipped else float(t["score"]),
                "max_points": 0.0 if skipped else float(t["max_score"]),
                "status": t["status"], "duration": float(t.get("duration", 0.0) or 0.0),
                "message": str(t.get("message", "")), "visibility": str(t.get("visibility", "visible"))})
    table = pd.DataFrame(rows, columns=list(LONG_COLUMNS))
    return table.astype({"points": float, "max_points": float, "duration": float})


def gradebook_table(results: list[dict], roster: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per student, sorted by student_id: every roster student and every student with
    results.  Columns: student_id, first_name, last_name, email (roster, else ""), one score
    column per exercise, raw_score, max_score, score_percent (2 decimals), <exercise>_status.

    A student with no result for an exercise that others have is "missing" with 0.
    """
    maxima = exercise_maxima(results)
    exercises = list(maxima)
    fixed = set(ROSTER_COLUMNS) | {"raw_score", "max_score", "score_percent"}
    clashing = [e for e in exercises if e in fixed or e.endswith("_status")]
    if clashing:
        raise ValueError(f"exercise name(s) clash with gradebook columns: {', '.join(clashing)}")
    by_key = {_key(r): r for r in _sorted(results)}
    people = {}
    if roster is not None:
        for row in roster.itertuples(index=False):
            people[str(row.student_id)] = {c: str(getattr(row, c)) for c in ROSTER_COLUMNS}
        strays = sorted({s for s, _ in by_key} - set(people))
        if strays:
            _warn(f"results for student(s) not on the roster: {', '.join(strays)}")
    for student, _ in by_key:
        people.setdefault(student, {"student_id": student, "first_name": "", "last_name": "", "email": ""})
    total_max = sum(maxima.values())
    rows = []
    for student in sorted(people):
        scores, statuses = {}, {}
        for exercise in exercises:
            r = by_key.get((student, exercise))
            status = "missing" if r is None else r["extra_data"]["status"]
            scores[exercise] = float(r["score"]) if status == "graded" else 0.0
            statuses[f"{exercise}_status"] = status
        raw = sum(scores.values())
        percent = round(100.0 * raw / total_max, 2) if total_max > 0 else 0.0
        rows.append(people[student] | scores | {"raw_score": raw, "max_score": total_max,
                                                "score_percent": percent} | statuses)
    columns = [*ROSTER_COLUMNS, *exercises, "raw_score", "max_score", "score_percent",
               *(f"{e}_status" for e in exercises)]
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({c: float for c in [*exercises, "raw_score", "max_score", "score_percent"]})


# --- files ------------------------------------------------------------------------------------

def write_text_atomic(path: Path, text: str) -> None:
    """Write-then-rename in the same directory, so a reader never sees half a file.  The
    temporary's name starts with "." so load_results and the batch ignore it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)    # mkstemp makes 0600; these are for people to open
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_csv_text(table: pd.DataFrame) -> str:
    """CSV text with a fixed float format and "\\n" line ends (byte-identical for equal tables)."""
    return table.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def _defuse_formulas(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Messages contain student-controlled text; a leading ' keeps a spreadsheet from
    running one that starts like a formula (=HYPERLINK(...))."""
    table = table.copy()
    for c in columns:
        table[c] = [f"'{v}" if v.startswith(SPREADSHEET_FORMULA) else v for v in table[c]]
    return table


def write_tables(results_dir: Path, results: list[dict], roster: pd.DataFrame | None) -> dict[str, Path]:
    """Write RESULTS/tests.csv and RESULTS/gradebook.csv from loaded results."""
    paths = {"tests": results_dir / "tests.csv", "gradebook": results_dir / "gradebook.csv"}
    write_text_atomic(paths["tests"], to_csv_text(_defuse_formulas(long_table(results), ["message"])))
    write_text_atomic(paths["gradebook"], to_csv_text(gradebook_table(results, roster)))
    return paths


def write_csvs(results_dir: Path | str, roster_path: Path | str | None = None) -> dict[str, Path]:
    """Rebuild RESULTS/tests.csv and RESULTS/gradebook.csv; returns {"tests": ..., "gradebook": ...}."""
    results_dir = Path(results_dir)
    roster = read_roster(roster_path) if roster_path is not None else None
    return write_tables(results_dir, load_results(results_dir), roster)
