"""Gradebook CSVs and the HTML report, built from synthetic per-result files (no grading)."""
import hashlib
import math
import warnings
from html.parser import HTMLParser

import pandas as pd
import pytest

from runner.gradebook import (GradebookWarning, gradebook_table, load_results, long_table, read_roster,
                              write_csvs)
from runner.html_report import common_failures, failure_rates, write_html_report
from runner.results import write_json_atomic

DM, CS = "distance_matrix", "custom_sigmoid"

# (student, exercise) -> (batch status, tests as (name, status, score, max_score, message), message)
# Every expectation below is computed from this, not written out by hand.
SPEC = {
    ("007", DM): ("graded", [("test_shapes", "passed", 2.0, 2.0, ""),
                             ("test_accuracy", "failed", 0.0, 4.0, "max abs error 0.013 at (3, 4)"),
                             ("test_fractions", "passed", 0.1, 0.1, ""),
                             ("test_more_fractions", "passed", 0.2, 0.2, "")], ""),
    ("007", CS): ("graded", [("test_dtypes", "passed", 5.0, 5.0, ""),
                             ("test_backward", "passed", 3.0, 3.0, ""),
                             ("test_gpu_speed", "skipped", 0.0, 2.0, "no GPU")], ""),
    ("alice", DM): ("graded", [("test_shapes", "passed", 2.0, 2.0, ""),
                               ("test_accuracy", "failed", 0.0, 4.0, "max abs error 0.2 at (1, 1)"),
                               ("test_fractions", "timeout", 0.0, 0.1, "took longer than 10 s"),
                               ("test_more_fractions", "passed", 0.2, 0.2, "")], ""),
    ("alice", CS): ("unusable", [], "not UTF-8 text"),
    ("bob", DM): ("missing", [], "no submission"),
    ("bob", CS): ("graded", [("test_dtypes", "failed", 0.0, 5.0, "float16: 12 ulps off"),
                             ("test_backward", "passed", 3.0, 3.0, ""),
                             ("test_gpu_speed", "skipped", 0.0, 2.0, "no GPU")], ""),
}
ROSTER = [("bob", "Bob", "Lee", "bob@example.edu"), ("carol", "Carol", "Ann", "carol@example.edu"),
          ("007", "Zoe", "Ng", "zoe@example.edu"), ("alice", "Alice", "Liddell", "")]   # not in id order


def counted(tests):
    return [t for t in tests if t[1] != "skipped"]


def exercise_max(exercise):
    """The maximum the graded results of this exercise carry."""
    return max(sum(t[3] for t in counted(tests)) for (s, e), (st, tests, _) in SPEC.items()
               if e == exercise and st == "graded")


def write_result(results, student, exercise, status, tests, message="", max_score=None, duration=0.5):
    """A per-result file following notes/result_schema.md, as `grade batch` writes it."""
    own = [{"name": n, "title": n.replace("_", " "), "status": st, "score": sc, "max_score": mx,
            "duration": duration, "message": msg, "visibility": "visible"} for n, st, sc, mx, msg in tests]
    score = sum(t["score"] for t in own if t["status"] != "skipped")
    if max_score is None:
        max_score = (sum(t["max_score"] for t in own if t["status"] != "skipped") if status == "graded"
                     else exercise_max(exercise))
    data = {
        "score": score, "max_score": max_score, "execution_time": 1.0, "output": "",
        "visibility": "visible", "stdout_visibility": "hidden",
        "tests": [{"name": t["title"], "score": t["score"], "max_score": t["max_score"],
                   "status": "passed" if t["status"] == "passed" else "failed",
                   "output": t["message"], "visibility": "visible"} for t in own if t["status"] != "skipped"],
        "extra_data": {
            "exercise": exercise, "student": student,
            "submission": f"{student}/{exercise}.py" if status != "missing" else "",
            "sha256": hashlib.sha256(f"{student}/{exercise}".encode()).hexdigest() if status != "missing" else "",
            "seed": 1, "sandbox": "bwrap", "device": "cpu", "backend": "local", "grader_version": "abc123",
            "status": status, "message": message, "graded_at": "2026-11-24T10:00:00+00:00",
            "wall_time": 2.0, "host": "h", "flags": [], "statuses": {t["name"]: t["status"] for t in own},
            "tests": own},
    }
    write_json_atomic(results / student / f"{exercise}.json", data)
    return data


def write_spec(results, spec=SPEC, **kw):
    for (student, exercise), (status, tests, message) in spec.items():
        write_result(results, student, exercise, status, tests, message, **kw)


def write_roster(path, rows=ROSTER, id_header="student_id"):
    lines = [f"{id_header},first_name,last_name,email"] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def results(tmp_path):
    directory = tmp_path / "RESULTS"
    write_spec(directory)
    return directory


# --- roster -----------------------------------------------------------------------------------

def test_roster_id_aliases_leading_zeros_and_missing_columns(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(" UserName ,Last_Name\n007,Ng\n0042 , Roe \n\n", encoding="utf-8")
    roster = read_roster(path)
    assert list(roster.columns) == ["student_id", "first_name", "last_name", "email"]
    assert roster["student_id"].tolist() == ["007", "0042"]
    assert roster["last_name"].tolist() == ["Ng", "Roe"]
    assert roster["first_name"].tolist() == ["", ""] and roster["email"].tolist() == ["", ""]


@pytest.mark.parametrize("content, match", [
    (b"name,email\nx,y\n", "no student id column"),
    (b"id,email\n1,a\n2,b\n1,c\n", "duplicated student id.*1"),
    (b"login,first_name\nx,A\n,B\n", "empty student id on data row.*2"),
    (b"student_id\n\xe9l\xe8ve\n", "not UTF-8"),
    (b"", "not a CSV"),
    (b"id,first_name\n1,a\n2,b,c,d\n", "not a CSV"),
])
def test_roster_errors(tmp_path, content, match):
    path = tmp_path / "roster.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_roster(path)


# --- tables -----------------------------------------------------------------------------------

def test_long_table_rows(results):
    table = long_table(load_results(results))
    expected = []
    for (student, exercise) in sorted(SPEC):
        status, tests, message = SPEC[(student, exercise)]
        if status != "graded":
            expected.append((student, exercise, "", 0.0, exercise_max(exercise), status, message, status))
        for name, st, score, mx, msg in tests:
            skipped = st == "skipped"
            expected.append((student, exercise, name, 0.0 if skipped else score, 0.0 if skipped else mx,
                             st, msg, status))
    got = list(table[["student_id", "exercise", "test", "points", "max_points", "status", "message",
                      "batch_status"]].itertuples(index=False, name=None))
    assert got == expected
    assert table["title"].tolist() == [n.replace("_", " ") for n in table["test"]]
    assert table["grader_version"].eq("abc123").all()
    # the max_points of a result's rows add up to its max_score
    for (student, exercise), data in ((k, v) for k, v in SPEC.items() if v[0] == "graded"):
        rows = table[(table.student_id == student) & (table.exercise == exercise)]
        assert math.isclose(rows.max_points.sum(), sum(t[3] for t in counted(data[1])))


def test_gradebook_table(results, tmp_path):
    roster = read_roster(write_roster(tmp_path / "roster.csv", id_header="Login"))
    table = gradebook_table(load_results(results), roster)
    exercises = sorted({e for _, e in SPEC})
    assert list(table.columns) == ["student_id", "first_name", "last_name", "email", *exercises,
                                   "raw_score", "max_score", "score_percent",
                                   *(f"{e}_status" for e in exercises)]
    students = sorted({r[0] for r in ROSTER} | {s for s, _ in SPEC})
    assert table["student_id"].tolist() == students
    names = {r[0]: r[1:] for r in ROSTER}
    total_max = sum(exercise_max(e) for e in exercises)
    for row in table.to_dict("records"):
        sid = row["student_id"]
        assert (row["first_name"], row["last_name"], row["email"]) == names[sid]
        raw = 0.0
        for e in exercises:
            status, tests, _ = SPEC.get((sid, e), ("missing", [], ""))
            score = sum(t[2] for t in counted(tests)) if status == "graded" else 0.0
            assert row[f"{e}_status"] == status
            assert math.isclose(row[e], score, abs_tol=1e-12)
            raw += score
        assert math.isclose(row["raw_score"], raw, abs_tol=1e-12)
        assert row["max_score"] == total_max
        assert row["score_percent"] == round(100 * raw / total_max, 2)
    carol = table[table.student_id == "carol"].iloc[0]
    assert all(carol[f"{e}_status"] == "missing" for e in exercises) and carol["raw_score"] == 0


def test_gradebook_agrees_with_long_table(results):
    loaded = load_results(results)
    long, wide = long_table(loaded), gradebook_table(loaded)
    sums = long.groupby(["student_id", "exercise"])["points"].sum()
    for (student, exercise), points in sums.items():
        assert math.isclose(wide.set_index("student_id").loc[student, exercise], points, abs_tol=1e-12)


def test_csvs_deterministic_and_exact(results, tmp_path):
    roster = write_roster(tmp_path / "roster.csv")
    paths = write_csvs(results, roster)
    assert set(paths) == {"tests", "gradebook"}
    first = {k: p.read_bytes() for k, p in paths.items()}
    again = write_csvs(results, roster)
    assert {k: p.read_bytes() for k, p in again.items()} == first
    # regraded with the same scores but other durations: only tests.csv's duration column changes
    write_spec(results, duration=9.75)
    third = write_csvs(results, roster)
    assert third["gradebook"].read_bytes() == first["gradebook"]
    before = pd.read_csv(paths["tests"], dtype=str, keep_default_na=False)
    after = pd.read_csv(third["tests"], dtype=str, keep_default_na=False)
    assert after.drop(columns="duration").equals(before.drop(columns="duration"))
    assert set(after["duration"]) - {"0"} == {"9.75"}
    text = first["gradebook"].decode()
    # 0.1 + 0.2 + 2 points without float noise; ids keep their leading zeros
    assert "0000000" not in text and "9999999" not in text
    book = pd.read_csv(paths["gradebook"], dtype=str, keep_default_na=False)
    zoe = book[book.student_id == "007"].iloc[0]
    assert zoe[DM] == f"{2 + 0.1 + 0.2:.10g}" == "2.3"
    assert not list(results.glob("**/.*"))    # no temporaries left behind


def test_formula_like_messages_are_defused_in_csv(tmp_path):
    results = tmp_path / "RESULTS"
    write_result(results, "mallory", DM, "graded",
                 [("test_shapes", "failed", 0.0, 2.0, '=HYPERLINK("x","click")')])
    tests_csv = write_csvs(results)["tests"]
    messages = pd.read_csv(tests_csv, dtype=str, keep_default_na=False)["message"].tolist()
    assert messages == ["'=HYPERLINK(\"x\",\"click\")"]


def test_max_score_disagreement_uses_largest_with_warning(tmp_path):
    results = tmp_path / "RESULTS"
    cpu = [("test_a", "passed", 3.0, 3.0, ""), ("test_gpu", "skipped", 0.0, 2.0, "")]
    gpu = [("test_a", "passed", 3.0, 3.0, ""), ("test_gpu", "passed", 2.0, 2.0, "")]
    write_result(results, "cpu_student", "amp_training", "graded", cpu)
    write_result(results, "gpu_student", "amp_training", "graded", gpu)
    with pytest.warns(GradebookWarning, match="amp_training.*disagree.*using 5"):
        table = gradebook_table(load_results(results))
    assert table["max_score"].tolist() == [5.0, 5.0]
    assert table["amp_training"].tolist() == [3.0, 5.0]


def test_temporaries_ignored_and_corrupt_files_reported_by_name(results):
    (results / "alice" / ".x.json.123").write_text('{"score": 1, "max_sc')   # half-written
    (results / "alice" / ".y.json").write_text('{"score": 1, "max_sc')
    (results / ".hidden").mkdir()
    write_result(results / ".hidden", "zed", DM, "graded", [("test_shapes", "passed", 2.0, 2.0, "")])
    (results / "dave").mkdir()
    (results / "dave" / f"{DM}.json").write_text("{not json")
    (results / "erin").mkdir()
    (results / "erin" / f"{CS}.json").write_text('{"score": 1}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GradebookWarning)
        loaded = load_results(results)
    messages = [str(w.message) for w in caught]
    assert any(f"dave/{DM}.json" in m and "not valid JSON" in m for m in messages)
    assert any(f"erin/{CS}.json" in m and "max_score" in m for m in messages)
    assert len(messages) == 2
    keys = sorted((r["extra_data"]["student"], r["extra_data"]["exercise"]) for r in loaded)
    assert keys == sorted([*SPEC, ("dave", DM), ("erin", CS)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradebookWarning)
        book = gradebook_table(loaded).set_index("student_id")
        long = long_table(loaded)
    assert book.loc["dave", f"{DM}_status"] == "error" and book.loc["dave", DM] == 0
    dave = long[long.student_id == "dave"].iloc[0]
    assert dave["status"] == "error" and f"dave/{DM}.json" in dave["message"]
    assert dave["max_points"] == exercise_max(DM)


# --- HTML report ------------------------------------------------------------------------------

class Collect(HTMLParser):
    """Histogram bars per exercise, every attribute, and the text."""

    def __init__(self):
        super().__init__()
        self.bars, self.attrs, self.text, self._svg = {}, [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.attrs.extend(attrs)
        if tag == "svg" and a.get("class") == "histogram":
            self._svg = a["data-exercise"]
            self.bars[self._svg] = []
        elif tag == "rect" and a.get("class") == "bar" and self._svg is not None:
            self.bars[self._svg].append(float(a["height"]))

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = None

    def handle_data(self, data):
        self.text.append(data)


def parse(path):
    collect = Collect()
    collect.feed(path.read_text(encoding="utf-8"))
    return collect


def test_histogram_bars_proportional_to_counts(tmp_path):
    results = tmp_path / "RESULTS"
    max_points = 20.0
    scores = [0.0, 0.0, 1.0, 7.5, 7.5, 7.5, 7.9, 19.0, 20.0, 20.0, 20.0, 20.0]
    for i, s in enumerate(scores):
        write_result(results, f"s{i:02d}", DM, "graded",
                     [("test_a", "passed" if s else "failed", s, max_points, "")])
    write_result(results, "late", DM, "missing", [], "no submission", max_score=max_points)
    page = parse(write_html_report(results))
    # the documented bins: width max(1, ceil(max/10)) points, full marks in the last bin
    width = max(1, math.ceil(max_points / 10))
    nbins = math.ceil(max_points / width)
    counts = [0] * nbins
    for s in scores:
        counts[min(nbins - 1, int(s // width))] += 1
    heights = page.bars[DM]
    assert len(heights) == nbins
    unit = heights[counts.index(max(counts))] / max(counts)
    assert unit > 0
    for h, c in zip(heights, counts):
        assert h == pytest.approx(c * unit, abs=0.01)
    assert "score (points)" in page.text and "students" in page.text


def test_report_statistics_failure_rates_and_grouped_messages(results):
    loaded = load_results(results)
    dm = [r for r in loaded if r["extra_data"]["exercise"] == DM]
    graded = [SPEC[k][1] for k in SPEC if k[1] == DM and SPEC[k][0] == "graded"]
    rates = failure_rates(dm)
    for row in rates:
        outcomes = [t[1] for tests in graded for t in tests if t[0] == row["test"] and t[1] != "skipped"]
        assert row["attempted"] == len(outcomes)
        assert row["failed"] == sum(o != "passed" for o in outcomes)
    assert [r["rate"] for r in rates] == sorted((r["rate"] for r in rates), reverse=True)
    # "0.013 at (3, 4)" and "0.2 at (1, 1)" are one mistake
    accuracy = [g for g in common_failures(dm) if g["test"] == "test_accuracy"]
    assert len(accuracy) == 1 and accuracy[0]["count"] == 2
    assert accuracy[0]["example"] == SPEC[("007", DM)][1][1][4]     # first student in id order
    page = parse(write_html_report(results))
    text = " ".join(page.text)
    assert SPEC[("007", DM)][1][1][4] in text and SPEC[("alice", DM)][1][1][4] not in text
    assert "took longer than 10 s" in text


def test_report_counts_by_status_and_timeouts(results):
    html = write_html_report(results).read_text(encoding="utf-8")
    section = html[html.index(f"<h2>{DM}</h2>"):]
    section = section[:section.index("</section>")]
    cells = section[section.index("<tr>", section.index("timed out")):]
    values = [int(v) for v in cells[:cells.index("</tr>")].replace('<td class="num">', " ").replace("</td>", " ")
              .replace("<tr>", " ").split()]
    dm = {s: v for (s, e), v in SPEC.items() if e == DM}
    expected = [sum(v[0] == status for v in dm.values()) for status in ("graded", "missing", "unusable", "error")]
    expected.append(sum(v[0] == "graded" and any(t[1] == "timeout" for t in v[1]) for v in dm.values()))
    assert values == expected


def test_report_is_self_contained_and_escapes_everything(results, tmp_path):
    evil = "<script>alert(1)</script>"
    write_result(results, "<b>eve", DM, "graded", [("test_shapes", "failed", 0.0, 2.0, f"printed {evil}")],
                 max_score=exercise_max(DM))
    write_result(results, "frank", CS, "unusable", [], f"bad notebook {evil}")
    roster = write_roster(tmp_path / "roster.csv", ROSTER + [("<b>eve", "<i>Eve</i>", "O'Hara", "")])
    write_json_atomic(results / "batch.json", {"unknown_files": ["<b>eve/hw<img src=x>.py"], "exercises": []})
    out = tmp_path / "elsewhere" / "report.html"
    out.parent.mkdir()
    with pytest.warns(GradebookWarning, match="not on the roster.*frank"):
        path = write_html_report(results, out, roster_path=roster)
    assert path == out
    html = out.read_text(encoding="utf-8")
    for raw in (evil, "<b>eve", "<i>Eve</i>", "<img src=x>"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;eve" in html
    assert "&lt;i&gt;Eve&lt;/i&gt;" in html and "&lt;img src=x&gt;" in html
    lowered = html.lower()
    for external in ("http://", "https://", "<script", "<img", "<link", "<iframe", "url(", "@import", "//cdn"):
        assert external not in lowered
    page = parse(out)
    names = {n for n, _ in page.attrs}
    assert "src" not in names and not any(n.startswith("on") for n in names)
    assert all(v.startswith("#") for n, v in page.attrs if n == "href")
    assert "<b>eve" in page.bars.keys() | set(page.text)   # the id is there, as text


def test_report_lists_corrupt_files(results):
    (results / "dave").mkdir()
    (results / "dave" / f"{DM}.json").write_text("{not json")
    with pytest.warns(GradebookWarning, match=f"dave/{DM}.json"):
        path = write_html_report(results)
    page = parse(path)
    assert any(f"dave/{DM}.json" in t and "not valid JSON" in t for t in page.text)
