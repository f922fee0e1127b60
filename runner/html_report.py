"""The offline HTML report of a batch (RESULTS/report.html), for the instructor.

One self-contained file: inline CSS, SVG charts drawn here, no JavaScript and no external URL
(a Content-Security-Policy meta tag also forbids loading anything, should escaping ever fail).
Per exercise: a score histogram, mean / median / max, counts by batch status and of
submissions that timed out, tests sorted by failure rate, and the most common failure messages
(numbers masked, so the same mistake with different values is counted once).  Then one table of
students x exercises.

Everything derived from results (messages, student ids, names, file names) is student- or
user-controlled and goes through `esc` (html.escape).
"""
from __future__ import annotations

import html
import json
import math
import re
import statistics
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd

from .gradebook import (BATCH_STATUSES, GradebookWarning, exercise_maxima, gradebook_table, load_results,
                        read_roster, write_tables, write_text_atomic)
from .results import STATUSES

TOP_MESSAGES = 10
EXAMPLE_CHARS = 400

# A number not glued to a word ("float64", "conv2" stay), hex addresses included.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?)(?![\w])")

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { font-size: 1.1em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .2em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.msg { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .9em; max-width: 45em;
         overflow-wrap: anywhere; }
code { font-size: .9em; color: #555; }
.missing { color: #888; } .unusable { background: #fff3d6; } .error { background: #f8d7da; }
.problems li { color: #a30; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .bar { fill: #4a7ebb; } svg .axis { stroke: #333; } .ratebar .bg { fill: #eee; } .ratebar .fg { fill: #c0392b; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(x: float) -> str:
    """2 decimals at most, no trailing zeros: 20, 7.5, 76.92."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def mask_numbers(message: str) -> str:
    """'max abs error 0.013 at (3, 4)' -> 'max abs error # at (#, #)'."""
    return NUMBER.sub("#", message)


def histogram(scores: list[float], max_score: float) -> list[tuple[float, float, int]]:
    """(low, high, count) bins over [0, max_score]: width max(1, ceil(max/10)) points, so the
    edges are whole numbers; each bin holds low <= score < high, the last one also its high
    end (full marks).  Scores outside [0, max] go to the nearest end bin."""
    if max_score <= 0:
        return [(0.0, 0.0, len(scores))]
    width = max(1, math.ceil(max_score / 10))
    count = math.ceil(max_score / width)
    counts = [0] * count
    for s in scores:
        counts[min(count - 1, max(0, math.floor(s / width + 1e-9)))] += 1
    return [(i * width, min((i + 1) * width, max_score), c) for i, c in enumerate(counts)]


# --- SVG --------------------------------------------------------------------------------------

def histogram_svg(exercise: str, bins: list[tuple[float, float, int]]) -> str:
    """Bars of height proportional to the counts, with axes, tick labels and axis titles."""
    width, height, left, right, top, bottom = 520, 240, 48, 12, 14, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    tallest = max((c for _, _, c in bins), default=0) or 1
    step = plot_w / len(bins)
    y0 = top + plot_h
    parts = [f'<svg class="histogram" data-exercise="{esc(exercise)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="score histogram of {esc(exercise)}">',
             f'<line class="axis" x1="{left}" y1="{y0}" x2="{left + plot_w}" y2="{y0}"/>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{y0}"/>']
    for i, (low, high, count) in enumerate(bins):
        h = plot_h * count / tallest
        x = left + i * step
        label = f"{fmt(low)}–{fmt(high)}"
        parts.append(f'<rect class="bar" x="{x + 1:.2f}" y="{y0 - h:.2f}" width="{step - 2:.2f}" height="{h:.2f}">'
                     f'<title>{esc(label)} points: {count} student{"" if count == 1 else "s"}</title></rect>')
        if count:
            parts.append(f'<text x="{x + step / 2:.2f}" y="{y0 - h - 3:.2f}" text-anchor="middle">{count}</text>')
        parts.append(f'<text x="{x + step / 2:.2f}" y="{y0 + 14}" text-anchor="middle">{esc(label)}</text>')
    for tick in sorted({0, tallest // 2, tallest}):
        y = y0 - plot_h * tick / tallest
        parts.append(f'<line class="axis" x1="{left - 4}" y1="{y:.2f}" x2="{left}" y2="{y:.2f}"/>'
                     f'<text x="{left - 7}" y="{y + 4:.2f}" text-anchor="end">{tick}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.2f}" y="{height - 6}" text-anchor="middle">score (points)</text>')
    parts.append(f'<text transform="translate(13 {top + plot_h / 2:.2f}) rotate(-90)" '
                 f'text-anchor="middle">students</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def rate_bar(rate: float) -> str:
    return (f'<svg class="ratebar" width="100" height="10"><rect class="bg" width="100" height="10"/>'
            f'<rect class="fg" width="{100 * rate:.1f}" height="10"/></svg>')


# --- per exercise -----------------------------------------------------------------------------

def _extra(result: dict) -> dict:
    return result["extra_data"]


def _tests(result: dict) -> list[dict]:
    return _extra(result).get("tests", []) if _extra(result)["status"] == "graded" else []


def failure_rates(results: list[dict]) -> list[dict]:
    """Per test, over graded submissions where it was not skipped: attempted, failed (anything but
    passed), rate, and statuses.  Sorted by rate (highest first), then the grader's order."""
    stats: dict[str, dict] = {}
    for r in results:
        for t in _tests(r):
            if t["status"] == "skipped":
                continue
            s = stats.setdefault(t["name"], {"test": t["name"], "title": t.get("title") or t["name"],
                                             "max_points": float(t["max_score"]), "attempted": 0,
                                             "failed": 0, "statuses": Counter(), "order": len(stats)})
            s["attempted"] += 1
            if t["status"] != "passed":
                s["failed"] += 1
                s["statuses"][t["status"]] += 1
    for s in stats.values():
        s["rate"] = s["failed"] / s["attempted"]
    return sorted(stats.values(), key=lambda s: (-s["rate"], s["order"]))


def common_failures(results: list[dict]) -> list[dict]:
    """Failure messages grouped by (test, status, message with numbers masked), most common
    first.  Non-graded results count too, under their batch status (why files were unusable).
    The example is the message of the first student in id order."""
    groups: dict[tuple, dict] = {}
    for r in sorted(results, key=lambda r: str(_extra(r)["student"])):
        extra = _extra(r)
        if extra["status"] == "graded":
            items = [(t["name"], t.get("title") or t["name"], t["status"], str(t.get("message", "")))
                     for t in _tests(r) if t["status"] not in ("passed", "skipped")]
        else:
            items = [("", "", extra["status"], str(extra.get("message", "")))]
        for name, title, status, message in items:
            key = (name, status, mask_numbers(message))
            group = groups.setdefault(key, {"test": name, "title": title, "status": status,
                                            "example": message, "count": 0})
            group["count"] += 1
    return sorted(groups.values(), key=lambda g: (-g["count"], g["test"], g["status"], g["example"]))


def _status_label(status: str) -> str:
    return STATUSES.get(status, status)


def exercise_section(index: int, exercise: str, results: list[dict], max_score: float) -> str:
    graded = [r for r in results if _extra(r)["status"] == "graded"]
    scores = [float(r["score"]) for r in graded]
    by_status = Counter(_extra(r)["status"] for r in results)
    timed_out = sum(any(t["status"] == "timeout" for t in _tests(r)) for r in graded)
    out = [f'<section id="ex-{index}"><h2>{esc(exercise)}</h2>',
           f"<p>{len(results)} result{'s' if len(results) != 1 else ''}, maximum {fmt(max_score)} points.</p>",
           "<table><tr>" + "".join(f"<th>{s}</th>" for s in BATCH_STATUSES) + "<th>timed out</th></tr><tr>"
           + "".join(f'<td class="num">{by_status.get(s, 0)}</td>' for s in BATCH_STATUSES)
           + f'<td class="num">{timed_out}</td></tr></table>']
    if scores:
        out.append(f"<table><tr><th>over {len(scores)} graded</th><th>mean</th><th>median</th><th>max</th></tr>"
                   f'<tr><td>points</td><td class="num">{fmt(statistics.mean(scores))}</td>'
                   f'<td class="num">{fmt(statistics.median(scores))}</td><td class="num">{fmt(max(scores))}</td>'
                   f"</tr></table>")
        out.append(histogram_svg(exercise, histogram(scores, max_score)))
    else:
        out.append("<p>No graded submissions.</p>")

    rates = failure_rates(results)
    if rates:
        out.append("<h3>Tests by failure rate</h3><table><tr><th>test</th><th>points</th><th>failed</th>"
                   "<th>rate</th><th></th><th>how</th></tr>")
        for s in rates:
            how = ", ".join(f"{esc(_status_label(k))} {v}" for k, v in sorted(s["statuses"].items(),
                                                                             key=lambda kv: (-kv[1], kv[0])))
            out.append(f'<tr><td>{esc(s["title"])}<br><code>{esc(s["test"])}</code></td>'
                       f'<td class="num">{fmt(s["max_points"])}</td>'
                       f'<td class="num">{s["failed"]}/{s["attempted"]}</td>'
                       f'<td class="num">{100 * s["rate"]:.0f}%</td><td>{rate_bar(s["rate"])}</td>'
                       f"<td>{how}</td></tr>")
        out.append("</table>")

    failures = common_failures(results)
    if failures:
        out.append("<h3>Most common failure messages</h3><p>Numbers are masked when grouping; "
                   "one example is shown.</p><table><tr><th>count</th><th>test</th><th>status</th>"
                   "<th>example</th></tr>")
        for g in failures[:TOP_MESSAGES]:
            example = g["example"] if len(g["example"]) <= EXAMPLE_CHARS else g["example"][:EXAMPLE_CHARS] + "…"
            out.append(f'<tr><td class="num">{g["count"]}</td><td>{esc(g["title"]) or "—"}</td>'
                       f'<td>{esc(_status_label(g["status"]))}</td><td class="msg">{esc(example)}</td></tr>')
        out.append("</table>")
        if len(failures) > TOP_MESSAGES:
            out.append(f"<p>{len(failures) - TOP_MESSAGES} less common message(s) not shown "
                       f"(all of them are in tests.csv).</p>")
    out.append("</section>")
    return "\n".join(out)


# --- whole report -----------------------------------------------------------------------------

def students_table(gradebook: pd.DataFrame, exercises: list[str]) -> str:
    out = ["<h2>Students</h2><table><tr><th>student</th><th>name</th>"
           + "".join(f"<th>{esc(e)}</th>" for e in exercises)
           + "<th>raw</th><th>max</th><th>%</th></tr>"]
    for row in gradebook.to_dict("records"):
        name = " ".join(p for p in (row["first_name"], row["last_name"]) if p)
        cells = []
        for e in exercises:
            status = row[f"{e}_status"]
            text = fmt(row[e]) if status == "graded" else status
            cells.append(f'<td class="num {esc(status)}">{esc(text)}</td>')
        out.append(f'<tr><td>{esc(row["student_id"])}</td><td>{esc(name)}</td>{"".join(cells)}'
                   f'<td class="num">{fmt(row["raw_score"])}</td><td class="num">{fmt(row["max_score"])}</td>'
                   f'<td class="num">{fmt(row["score_percent"])}</td></tr>')
    out.append("</table>")
    return "\n".join(out)


def _summary(results: list[dict]) -> str:
    """Which grader versions and devices produced the graded results (mixtures explain odd maxima)."""
    graded = [_extra(r) for r in results if _extra(r)["status"] == "graded"]
    parts = []
    for key, label in (("grader_version", "grader version"), ("device", "device")):
        counts = Counter(str(e.get(key, "")) or "?" for e in graded)
        if counts:
            parts.append(f"{label}: " + ", ".join(f"<code>{esc(k)}</code> ({v})" for k, v in sorted(counts.items())))
    return "<p>" + "; ".join(parts) + "</p>" if parts else ""


def render_report(results: list[dict], gradebook: pd.DataFrame, maxima: dict[str, float],
                  problems: list[str] = (), unknown_files: list[str] = ()) -> str:
    exercises = list(maxima)
    students = len(gradebook)
    head = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>Grading report</title><style>{CSS}</style></head><body>")
    body = [f"<h1>Grading report</h1><p>{students} student{'s' if students != 1 else ''}, "
            f"{len(exercises)} exercise{'s' if len(exercises) != 1 else ''}, {len(results)} result files.</p>",
            _summary(results)]
    if problems:
        body.append('<h2>Problems</h2><ul class="problems">' + "".join(f"<li>{esc(p)}</li>" for p in problems) + "</ul>")
    if unknown_files:
        body.append("<h2>Submitted files matching no exercise</h2><ul>"
                    + "".join(f"<li><code>{esc(f)}</code></li>" for f in unknown_files) + "</ul>")
    if exercises:
        body.append("<p>" + " · ".join(f'<a href="#ex-{i}">{esc(e)}</a>' for i, e in enumerate(exercises, 1)) + "</p>")
    for i, exercise in enumerate(exercises, 1):
        mine = [r for r in results if str(_extra(r)["exercise"]) == exercise]
        body.append(exercise_section(i, exercise, mine, maxima[exercise]))
    body.append(students_table(gradebook, exercises))
    return head + "\n".join(body) + "\n</body></html>\n"


def _unknown_files(results_dir: Path) -> tuple[list[str], list[str]]:
    """batch.json's unknown_files (it may be absent), and a problem if it cannot be read."""
    path = results_dir / "batch.json"
    if not path.exists():
        return [], []
    try:
        files = json.loads(path.read_text(encoding="utf-8")).get("unknown_files", [])
        return [str(f) for f in files], []
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError) as e:
        return [], [f"batch.json: cannot be read ({e})"]


def write_html_report(results_dir: Path | str, out: Path | str | None = None, *,
                      roster_path: Path | str | None = None) -> Path:
    """Write the report (default RESULTS/report.html) atomically and return its path.

    GradebookWarnings raised while reading the results are listed in the report and raised
    again for the caller.
    """
    return _write(results_dir, roster_path, out=out, tables=False)["report"]


def write_reports(results_dir: Path | str, roster_path: Path | str | None = None) -> dict[str, Path]:
    """Rebuild tests.csv, gradebook.csv and report.html from the per-result files, reading them
    once; each GradebookWarning is listed in the report and raised once for the caller."""
    return _write(results_dir, roster_path, out=None, tables=True)


def _write(results_dir: Path | str, roster_path: Path | str | None, *, out: Path | str | None,
           tables: bool) -> dict[str, Path]:
    results_dir = Path(results_dir)
    out = Path(out) if out is not None else results_dir / "report.html"
    roster = read_roster(roster_path) if roster_path is not None else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GradebookWarning)
        results = load_results(results_dir)
        paths = write_tables(results_dir, results, roster) if tables else {}
        maxima = exercise_maxima(results)
        gradebook = gradebook_table(results, roster)
    seen = list(dict.fromkeys((w.category, str(w.message)) for w in caught))
    unknown, batch_problems = _unknown_files(results_dir)
    problems = [m for c, m in seen if issubclass(c, GradebookWarning)] + batch_problems
    write_text_atomic(out, render_report(results, gradebook, maxima, problems, unknown))
    for category, message in seen:
        warnings.warn(message, category, stacklevel=3)
    return paths | {"report": out}
