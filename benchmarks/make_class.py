"""Generate a synthetic class to batch-grade: submissions, roster and a manifest of what is where.

    python3 benchmarks/make_class.py OUT [--students 20] [--seed 0] [--exercises a,b,...]
                                         [--layout plain|nbgrader] [--notebooks 0.25]
                                         [--absent 2] [--skip 0.08] [--hostile NAME,...|none]
    python3 benchmarks/make_class.py OUT --check     # re-read OUT and compare it with its manifest

Layouts (what `grade batch` is given is manifest["submissions_root"], relative to OUT):

    plain:    OUT/submissions/<student>/<exercise>.py|.ipynb
    nbgrader: OUT/submitted/<student>/<exercise>/<exercise>.ipynb (+ timestamp.txt, as
              `nbgrader collect` leaves it); every submission is a notebook

Per exercise the submitting students get, by largest remainder, about 45% correct solutions
(tests/solutions/<ex>/correct_*.py), 30% known-wrong ones (wrong_*.py), 15% the untouched stub
and 10% broken files (a typo that is a syntax error, a file saved as cp1252 instead of UTF-8, a
notebook cut off halfway).  Up to a quarter of distance_matrix's are first made hostile, from
tests/hostile/ (a timeout, the memory limit, an output flood, a crash), each once before any
repeats.  A fraction of the plain-layout files
become notebooks (nbformat v4: a markdown cell, `%matplotlib inline`, one code cell per
top-level def/class).  Some students skip some exercises, `absent` rostered students submit
nothing, and one stray file is not an exercise.

Everything follows from the seed.  OUT/manifest.json lists every roster student x exercise with
kind (correct/wrong/stub/hostile/broken/missing), variant, source file, format, the file's
path and sha256, and what batch should make of it (expect: graded/unusable/missing).

Importable without a package: ``runpy.run_path("benchmarks/make_class.py")["make_class"]``.
"""
from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import random
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = ("distance_matrix", "custom_sigmoid", "batchnorm2d", "unet", "causal_lm", "amp_training")

# Hostile distance_matrix submissions, one per way the platform must stop a submission.
HOSTILE = {"infinite_loop": "timeout", "memory_hog": "memory",
           "print_flood": "output_limit", "exit_mid_test": "crashed"}
HOSTILE_EXERCISE = "distance_matrix"   # tests/hostile/ attacks only this exercise's API

MIX = {"correct": 0.45, "wrong": 0.30, "stub": 0.15, "broken": 0.10}
HOSTILE_SHARE = 0.25   # of distance_matrix, so that each attack shows up in a class of 20

BROKEN_VARIANTS = {"py": ("syntax_error", "not_utf8"), "ipynb": ("syntax_error", "truncated")}
# What `grade batch` should make of each kind/variant (result_schema.md's extra_data.status).
UNUSABLE_VARIANTS = {"not_utf8", "truncated"}

CP1252_HEADER = "# Auteur : Éloïse Hervé – TP 3\n".encode("cp1252")   # a Windows editor's save
MAGIC = "%matplotlib inline"
STRAY = {"plain": "{student}/notes.py", "nbgrader": "submitted/{student}/hw3/hw3.ipynb"}

FIRST = ["Ada", "Bruno", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gustav", "Hana", "Ivo", "José",
         "Kofi", "Léa", "Mateo", "Nia", "Oskar", "Priya", "Quentin", "Rosa", "Søren", "Tomás",
         "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoë"]
LAST = ["Abara", "Berg", "Castillo", "Dubois", "Eriksen", "Fischer", "García", "Haddad", "Ivanova",
        "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "O'Brien", "Petrov", "Quispe",
        "Rossi", "Schmidt", "Tanaka", "Ueda", "Vargas", "Wójcik", "Xu", "Yilmaz", "Zhang"]


def student_ids(n: int) -> list[str]:
    width = max(3, len(str(n)))
    return [f"s{i:0{width}d}" for i in range(1, n + 1)]


def roster_rows(ids: list[str], rng: random.Random) -> list[dict]:
    pairs = [(f, l) for f in FIRST for l in LAST]
    chosen = rng.sample(pairs, len(ids)) if len(ids) <= len(pairs) else [rng.choice(pairs) for _ in ids]
    rows = []
    for sid, (first, last) in zip(ids, chosen):
        local = re.sub(r"[^a-z]", "", first.lower()) + "." + re.sub(r"[^a-z]", "", last.lower())
        rows.append({"student_id": sid, "first_name": first, "last_name": last,
                     "email": f"{local}.{sid}@example.edu"})
    return rows


def quotas(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Split n into the mix's shares by largest remainder (the counts sum to n)."""
    exact = {k: n * w / sum(mix.values()) for k, w in mix.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[:n - sum(counts.values())]:
        counts[k] += 1
    return counts


def sources(exercise: str, kind: str) -> list[Path]:
    if kind == "stub":
        return [ROOT / "assignments" / exercise / f"{exercise}.py"]
    if kind == "hostile":
        return [ROOT / "tests" / "hostile" / f"{name}.py" for name in HOSTILE]
    pattern = "wrong_*.py" if kind == "wrong" else "correct_*.py"   # broken: a correct one, damaged
    found = sorted((ROOT / "tests" / "solutions" / exercise).glob(pattern))
    if not found:
        raise FileNotFoundError(f"no tests/solutions/{exercise}/{pattern}")
    return found


def with_typo(source: str) -> str:
    """`def` -> `df` on the first top-level def: the kind of slip that is a SyntaxError."""
    fixed, count = re.subn(r"(?m)^def ", "df ", source, count=1)
    if not count:
        fixed = source + "\ndef broken(:\n    pass\n"
    return fixed


def code_chunks(source: str) -> list[str]:
    """Split at top-level def/class (decorators included); unparsable source stays one chunk."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [source.strip("\n")]
    starts = sorted({min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
                     for node in tree.body
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))})
    lines = source.splitlines()
    bounds = [0] + [s for s in starts if s > 0] + [len(lines)]
    chunks = ["\n".join(lines[a:b]).strip("\n") for a, b in zip(bounds, bounds[1:])]
    return [c for c in chunks if c.strip()]


def to_notebook(source: str, exercise: str, student: dict) -> str:
    """The text of a Jupyter notebook holding `source` the way a student would have written it."""
    chunks = code_chunks(source)
    chunks[0] = f"{MAGIC}\n{chunks[0]}"
    name = f"{student['first_name']} {student['last_name']}"
    cells = [new_markdown_cell(f"## {exercise}\n\nSubmitted by {name} ({student['student_id']}).")]
    cells += [new_code_cell(c) for c in chunks]
    for i, cell in enumerate(cells):   # fixed ids: nbformat's are random, the class must not be
        cell["id"] = f"{student['student_id']}-{exercise}-{i}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"}})
    return nbformat.writes(nb)


def render(source: str, variant: str, fmt: str, exercise: str, student: dict) -> bytes:
    """The bytes of one submission file."""
    if variant == "syntax_error":
        source = with_typo(source)
    if fmt == "py":
        data = source.encode("utf-8")
        return CP1252_HEADER + data if variant == "not_utf8" else data
    data = to_notebook(source, exercise, student).encode("utf-8")
    return data[:len(data) // 2] if variant == "truncated" else data


def submission_path(layout: str, student: str, exercise: str, fmt: str) -> str:
    """Relative to the submissions root (the form extra_data.submission takes)."""
    if layout == "nbgrader":
        return f"submitted/{student}/{exercise}/{exercise}.ipynb"
    return f"{student}/{exercise}.{fmt}"


def expectation(kind: str, variant: str) -> str:
    if kind == "missing":
        return "missing"
    return "unusable" if variant in UNUSABLE_VARIANTS else "graded"


def plan(ids: list[str], exercises: list[str], rng: random.Random, absent: int, skip: float,
         hostile: tuple[str, ...]) -> tuple[list[dict], list[str]]:
    """Who hands in what: one entry per student x exercise (kind, variant, source)."""
    absent_ids = sorted(rng.sample(ids, min(absent, len(ids))))
    present = [s for s in ids if s not in absent_ids]
    entries = []
    for exercise in exercises:
        submitters = [s for s in present if rng.random() >= skip]
        rng.shuffle(submitters)
        n_hostile = min(len(hostile), round(HOSTILE_SHARE * len(submitters))) \
            if exercise == HOSTILE_EXERCISE else 0
        kinds = ["hostile"] * n_hostile + [k for k, n in quotas(len(submitters) - n_hostile, MIX).items()
                                           for _ in range(n)]
        hostile_cycle = rng.sample(list(hostile), len(hostile))   # every attack before any repeats
        hostile_count = broken_count = 0
        for student, kind in zip(submitters, kinds):
            entry = {"student": student, "exercise": exercise, "kind": kind, "variant": ""}
            if kind == "hostile":
                name = hostile_cycle[hostile_count % len(hostile_cycle)]
                hostile_count += 1
                entry["variant"] = HOSTILE[name]
                entry["source"] = ROOT / "tests" / "hostile" / f"{name}.py"
            else:
                entry["source"] = rng.choice(sources(exercise, kind))
                if kind == "broken":
                    entry["broken_index"] = broken_count   # variant chosen once the format is known
                    broken_count += 1
            entries.append(entry)
        for student in ids:
            if student not in submitters:
                entries.append({"student": student, "exercise": exercise, "kind": "missing",
                                "variant": "", "source": None})
    return entries, absent_ids


def make_class(out, students: int = 20, seed: int = 0, exercises=HEADLINE, layout: str = "plain",
               notebooks: float = 0.25, absent: int = 2, skip: float = 0.08,
               hostile=tuple(HOSTILE)) -> dict:
    """Write the class into `out` (created; must not hold a class already) and return the manifest."""
    if layout not in STRAY:
        raise ValueError(f"layout must be plain or nbgrader, not {layout!r}")
    unknown = set(hostile) - set(HOSTILE)
    if unknown:
        raise ValueError(f"unknown hostile submissions {sorted(unknown)}; choose from {sorted(HOSTILE)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "manifest.json").exists():
        raise FileExistsError(f"{out} already holds a class")
    rng = random.Random(seed)
    ids = student_ids(students)
    roster = roster_rows(ids, rng)
    by_id = {r["student_id"]: r for r in roster}
    entries, absent_ids = plan(ids, list(exercises), rng, absent, skip, tuple(hostile))

    submitted = [e for e in entries if e["kind"] != "missing"]
    as_notebook = set(range(len(submitted))) if layout == "nbgrader" else \
        set(rng.sample(range(len(submitted)), round(notebooks * len(submitted))))
    root = out / ("submissions" if layout == "plain" else "")
    (out / ("submissions" if layout == "plain" else "submitted")).mkdir(exist_ok=True)   # even if empty
    for i, entry in enumerate(submitted):
        fmt = "ipynb" if i in as_notebook else "py"
        if entry["kind"] == "broken":
            variants = BROKEN_VARIANTS[fmt]
            entry["variant"] = variants[entry.pop("broken_index") % len(variants)]
        source = entry["source"].read_text(encoding="utf-8")
        data = render(source, entry["variant"], fmt, entry["exercise"], by_id[entry["student"]])
        relative = submission_path(layout, entry["student"], entry["exercise"], fmt)
        write(root / relative, data)
        if layout == "nbgrader":
            write(root / relative.rsplit("/", 1)[0] / "timestamp.txt", b"2026-11-20 17:03:12.000000 UTC\n")
        entry.update(format=fmt, submission=relative, sha256=hashlib.sha256(data).hexdigest(),
                     path=(root / relative).relative_to(out).as_posix())

    strays = []
    if submitted:   # in the folder of a student who handed something in
        student = rng.choice(sorted({e["student"] for e in submitted}))
        stray = STRAY[layout].format(student=student)
        write(root / stray, b"# scratch work, not for grading\nprint('hello')\n" if stray.endswith(".py") else
              nbformat.writes(new_notebook(cells=[new_code_cell("print('hw3')")])).encode("utf-8"))
        strays.append({"student": student, "submission": stray, "path": (root / stray).relative_to(out).as_posix()})

    manifest = {
        "seed": seed, "layout": layout, "exercises": list(exercises), "notebooks": notebooks,
        "skip": skip, "hostile": list(hostile),
        "submissions_root": root.relative_to(out).as_posix() or ".", "roster": "roster.csv",
        "students": ids, "absent": absent_ids,
        "entries": [finish(e, root, out) for e in sorted(entries, key=lambda e: (e["student"], e["exercise"]))],
        "stray": strays,
    }
    manifest["counts"] = count(manifest["entries"])
    write_roster(out / "roster.csv", roster)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    return manifest


def finish(entry: dict, root: Path, out: Path) -> dict:
    """The manifest's form of an entry: paths relative to the repository / OUT, no Path objects."""
    source = entry["source"]
    return {"student": entry["student"], "exercise": entry["exercise"], "kind": entry["kind"],
            "variant": entry["variant"],
            "source": source.relative_to(ROOT).as_posix() if source else "",
            "format": entry.get("format", ""), "path": entry.get("path", ""),
            "submission": entry.get("submission", ""), "sha256": entry.get("sha256", ""),
            "expect": expectation(entry["kind"], entry["variant"])}


def count(entries: list[dict]) -> dict:
    counts = {}
    for key in ("kind", "format", "expect"):
        for e in entries:
            if e[key]:
                counts.setdefault(key, {}).setdefault(e[key], 0)
                counts[key][e[key]] += 1
    return counts


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_roster(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["student_id", "first_name", "last_name", "email"])
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------- checking a generated class

def code_of_notebook(data: bytes) -> str:
    nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    nbformat.validate(nb)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def nonblank(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and ln.strip() != MAGIC]


def check_entry(entry: dict, out: Path) -> str | None:
    """Why the file of one entry is not what the manifest says (None: it is)."""
    if entry["kind"] == "missing":
        return None
    data = (out / entry["path"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return "sha256 differs from the manifest"
    source = (ROOT / entry["source"]).read_text(encoding="utf-8")
    variant = entry["variant"]
    if variant == "syntax_error":
        source = with_typo(source)
    if variant == "not_utf8":
        try:
            data.decode("utf-8")
            return "decodes as UTF-8"
        except UnicodeDecodeError:
            pass
        data = data.removeprefix(CP1252_HEADER)
    if variant == "truncated":
        try:
            json.loads(data)
            return "truncated notebook still parses"
        except ValueError:
            return None
    code = code_of_notebook(data) if entry["format"] == "ipynb" else data.decode("utf-8")
    if nonblank(code) != nonblank(source):
        return f"code differs from {entry['source']}"
    try:
        ast.parse(code.replace(MAGIC, ""))
        parses = True
    except SyntaxError:
        parses = False
    if parses == (variant == "syntax_error"):
        return "parses" if parses else "does not parse"
    return None


def check_class(out) -> list[str]:
    """Problems found comparing the class folder with its manifest (empty: all is as described)."""
    out = Path(out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    problems = []
    with open(out / manifest["roster"], newline="", encoding="utf-8") as f:
        roster = [row["student_id"] for row in csv.DictReader(f)]
    if roster != manifest["students"]:
        problems.append("roster.csv does not list exactly the manifest's students")
    keys = [(e["student"], e["exercise"]) for e in manifest["entries"]]
    if sorted(keys) != sorted((s, x) for s in roster for x in manifest["exercises"]) or len(set(keys)) != len(keys):
        problems.append("entries are not exactly one per roster student x exercise")
    for student in manifest["absent"]:
        if any(e["student"] == student and e["kind"] != "missing" for e in manifest["entries"]):
            problems.append(f"absent student {student} has a submission")
    for e in manifest["entries"]:
        why = check_entry(e, out)
        if why:
            problems.append(f"{e['student']}/{e['exercise']} ({e['kind']} {e['variant']}): {why}")
    expected = {e["path"] for e in manifest["entries"] if e["path"]} | {s["path"] for s in manifest["stray"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*")
               if p.is_file() and p.name not in ("manifest.json", manifest["roster"], "timestamp.txt")}
    if on_disk != expected:
        problems.append(f"files not in the manifest: {sorted(on_disk - expected)}; "
                        f"listed but absent: {sorted(expected - on_disk)}")
    return problems


def summary(manifest: dict) -> str:
    c = manifest["counts"]
    parts = [f"{len(manifest['students'])} students ({len(manifest['absent'])} absent)",
             f"{len(manifest['exercises'])} exercises", f"layout {manifest['layout']}"]
    lines = [", ".join(parts)]
    for key in ("kind", "format", "expect"):
        lines.append(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.get(key, {}).items())))
    lines.append(f"  stray: {', '.join(s['path'] for s in manifest['stray'])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--students", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exercises", default=",".join(HEADLINE))
    ap.add_argument("--layout", choices=["plain", "nbgrader"], default="plain")
    ap.add_argument("--notebooks", type=float, default=0.25, help="plain layout: share of .ipynb files")
    ap.add_argument("--absent", type=int, default=2, help="rostered students with no submission")
    ap.add_argument("--skip", type=float, default=0.08, help="chance a student skips an exercise")
    ap.add_argument("--hostile", default=",".join(HOSTILE),
                    help=f"distance_matrix attacks to include, or 'none' ({', '.join(HOSTILE)})")
    ap.add_argument("--check", action="store_true", help="only compare OUT with its manifest")
    args = ap.parse_args(argv)
    if not args.check:
        hostile = () if args.hostile == "none" else tuple(h for h in args.hostile.split(",") if h)
        try:
            manifest = make_class(args.out, students=args.students, seed=args.seed,
                                  exercises=[x for x in args.exercises.split(",") if x], layout=args.layout,
                                  notebooks=args.notebooks, absent=args.absent, skip=args.skip,
                                  hostile=hostile)
        except (ValueError, FileExistsError, FileNotFoundError) as e:
            print(f"make_class: {e}", file=sys.stderr)
            return 2
        print(summary(manifest))
    problems = check_class(args.out)
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    print(f"check: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
