"""Throughput of `grade batch` on a generated class, beside a shell loop of `grade submit`.

    python3 benchmarks/batch_throughput.py [--students 20] [--jobs 1,2] [--fresh-sample 12]
                                           [--seed 0] [--exercises a,b,...] [--hostile NAME,...|none]
                                           [--keep DIR] [--json PATH] [--only-fresh]

1. Generates a class with benchmarks/make_class.py (in --keep DIR/class, reused when it is
   already there, else a temporary folder).
2. For each N in --jobs: `grade batch SUBMISSIONS --out RESULTS --roster roster.csv --jobs N` into
   a fresh RESULTS folder, timed.  From RESULTS/<student>/<exercise>.json:
     graded           results with extra_data.status "graded" (the grader ran)
     per minute       graded / wall * 60
     s/submission     wall / graded
     compute floor    sum of extra_data.tests[].duration: time spent inside graders' tests
     overhead/sub     (wall * N - floor) / graded: the worker-slot time not spent in tests
                      (process and worker start, imports, reading, writing, idle slots), per
                      graded submission
3. Baseline: --fresh-sample submissions the grader runs on (stratified over exercises) graded
   one by one, each by a fresh `grade submit FILE --exercise EX --results OUT.json` process, as
   an instructor's shell loop would (test durations: from its results, else the jobs=1 batch's
   for the same files).  speedup = fresh s/submission / batch s/submission (the sample and the whole class are
   different mixes: compare the overheads, and the "same files" ratio, which sets the fresh
   times of the sampled files against the jobs=1 batch's own wall_time for the same files).

Figures from one run on one machine are what to compare with each other; absolute seconds
depend on the machine (its cores are printed) and on the mix.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAKE_CLASS = runpy.run_path(str(HERE / "make_class.py"))


def grade_command() -> list[str]:
    exe = shutil.which("grade")
    return [exe] if exe else [sys.executable, str(ROOT / "cli.py")]


def load_results(results: Path) -> dict[tuple[str, str], dict]:
    """RESULTS/<student>/<exercise>.json by (student, exercise); dot-files are temporaries."""
    found = {}
    for path in sorted(results.glob("*/*.json")):
        if path.name.startswith(".") or path.parent.name.startswith("."):
            continue
        found[(path.parent.name, path.stem)] = json.loads(path.read_text(encoding="utf-8"))
    return found


def test_seconds(result: dict) -> float | None:
    """Time inside the grader's tests; None when the result does not carry test durations."""
    tests = result.get("extra_data", {}).get("tests")
    if tests is None:
        return None
    return sum(float(t.get("duration") or 0.0) for t in tests)


def status_of(result: dict) -> str:
    return result.get("extra_data", {}).get("status", "?")


def tail(path: Path, n: int = 15) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-n:])


def run_batch(cls: Path, manifest: dict, jobs: int, results: Path, grade: list[str]) -> dict:
    """One timed `grade batch` run into a fresh results folder, and the figures from its files."""
    if results.exists():
        shutil.rmtree(results)
    log = results.with_suffix(".log")
    command = grade + ["batch", str(cls / manifest["submissions_root"]), "--out", str(results),
                       "--roster", str(cls / manifest["roster"]), "--jobs", str(jobs)]
    print(f"  $ {' '.join(command[-8:])}   (log: {log})", flush=True)
    started = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    wall = time.perf_counter() - started
    if rc != 0:
        print(f"  grade batch exited with status {rc}; last lines of its log:\n{tail(log)}")
    found = load_results(results)
    statuses = {}
    for r in found.values():
        statuses[status_of(r)] = statuses.get(status_of(r), 0) + 1
    graded = statuses.get("graded", 0)
    floors = [test_seconds(r) for r in found.values()]
    floor = sum(f for f in floors if f is not None)
    mismatches = compare_with_manifest(found, manifest)
    return {
        "jobs": jobs, "rc": rc, "wall_s": wall, "results": len(found), "statuses": statuses,
        "graded": graded, "per_minute": graded / wall * 60 if graded else 0.0,
        "s_per_submission": wall / graded if graded else None,
        "floor_s": floor, "results_without_durations": sum(f is None for f in floors),
        "overhead_per_submission_s": (wall * jobs - floor) / graded if graded else None,
        "expected_results": len(manifest["entries"]), "status_mismatches": mismatches,
        "wall_time_by_key": {f"{s}/{x}": r.get("extra_data", {}).get("wall_time")
                             for (s, x), r in found.items()},
        "floor_by_key": {f"{s}/{x}": test_seconds(r) for (s, x), r in found.items()},
        "stray_reported": stray_reported(results, manifest),
    }


def stray_reported(results: Path, manifest: dict) -> bool | None:
    """Whether RESULTS/batch.json lists the class's stray file in unknown_files (None: no batch.json)."""
    path = results / "batch.json"
    if not path.exists():
        return None
    unknown = set(json.loads(path.read_text(encoding="utf-8")).get("unknown_files", []))
    return all(s["submission"] in unknown for s in manifest["stray"])


def compare_with_manifest(found: dict, manifest: dict) -> list[str]:
    """Results whose extra_data.status is not what the manifest expects (or that are absent)."""
    out = []
    for e in manifest["entries"]:
        r = found.get((e["student"], e["exercise"]))
        got = status_of(r) if r is not None else "no result"
        if got != e["expect"]:
            out.append(f"{e['student']}/{e['exercise']} ({e['kind']} {e['variant']} {e['format']}): "
                       f"expected {e['expect']}, got {got}")
    return out


def fresh_sample(manifest: dict, k: int, seed: int) -> list[dict]:
    """k entries the grader runs on (expect "graded"), split evenly over the exercises, random within each."""
    rng = random.Random(seed)
    shares = MAKE_CLASS["quotas"](k, {x: 1.0 for x in manifest["exercises"]})
    chosen = []
    for exercise in manifest["exercises"]:
        pool = [e for e in manifest["entries"] if e["exercise"] == exercise and e["expect"] == "graded"]
        chosen += rng.sample(pool, min(shares[exercise], len(pool)))
    return chosen


def run_fresh(cls: Path, entries: list[dict], folder: Path, grade: list[str]) -> dict:
    """Each entry graded by its own `grade submit` process, one after the other."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    runs = []
    for e in entries:
        out = folder / f"{e['student']}-{e['exercise']}.json"
        command = grade + ["submit", str(cls / e["path"]), "--exercise", e["exercise"], "--results", str(out)]
        started = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        result = json.loads(out.read_text(encoding="utf-8")) if done.returncode == 0 and out.exists() else None
        runs.append({"key": f"{e['student']}/{e['exercise']}", "kind": e["kind"], "variant": e["variant"],
                     "format": e["format"], "rc": done.returncode, "wall_s": wall,
                     "floor_s": test_seconds(result) if result else None,
                     "score": f"{result['score']:g}/{result['max_score']:g}" if result else "",
                     "error": done.stderr.strip().splitlines()[-1] if done.returncode and done.stderr.strip() else ""})
        print(f"  {runs[-1]['key']:28} {e['kind']:8} {e['format']:5} {wall:6.1f}s  "
              f"{runs[-1]['score'] or 'exit ' + str(done.returncode)}", flush=True)
    ok = [r for r in runs if r["rc"] == 0]
    wall = sum(r["wall_s"] for r in ok)
    floors = [r["floor_s"] for r in ok]
    floor = sum(floors) if ok and None not in floors else None
    return {"runs": runs, "graded": len(ok), "wall_s": wall,
            "s_per_submission": wall / len(ok) if ok else None,
            "floor_s": floor,
            "overhead_per_submission_s": (wall - floor) / len(ok) if ok and floor is not None else None,
            "rejected": [r for r in runs if r["rc"] != 0]}


def borrow_floor(fresh: dict, batch1: dict | None) -> None:
    """Without durations in `grade submit`'s results, take the tests' durations for the same
    files from the jobs=1 batch (same tests, same machine, one at a time)."""
    ok = [r for r in fresh["runs"] if r["rc"] == 0]
    if fresh["floor_s"] is not None or not batch1 or not ok:
        return
    floors = [batch1["floor_by_key"].get(r["key"]) for r in ok]
    if None in floors:
        return
    fresh["floor_s"] = sum(floors)
    fresh["floor_source"] = "the jobs=1 batch's test durations for the same files"
    fresh["overhead_per_submission_s"] = (fresh["wall_s"] - fresh["floor_s"]) / len(ok)


def same_files_ratio(fresh: dict, batch1: dict | None) -> dict | None:
    """Fresh wall time of the sampled files / the jobs=1 batch's own wall_time for them."""
    if not batch1:
        return None
    pairs = [(r["wall_s"], batch1["wall_time_by_key"].get(r["key"])) for r in fresh["runs"] if r["rc"] == 0]
    pairs = [(f, b) for f, b in pairs if b]
    if not pairs:
        return None
    f, b = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    return {"files": len(pairs), "fresh_s": f, "batch_s": b, "ratio": f / b}


def machine() -> dict:
    return {"host": platform.node(), "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version()}


def get_class(cls: Path, args) -> dict:
    """The class in `cls`: generated, or reused when --keep points at one made with the same settings."""
    wanted = {"seed": args.seed, "exercises": args.exercises, "layout": "plain", "hostile": list(args.hostile)}
    if (cls / "manifest.json").exists():
        manifest = json.loads((cls / "manifest.json").read_text(encoding="utf-8"))
        if {k: manifest[k] for k in wanted} != wanted or len(manifest["students"]) != args.students:
            sys.exit(f"{cls} holds a class made with other settings; remove it or choose another --keep")
        print(f"reusing the class in {cls}")
        return manifest
    return MAKE_CLASS["make_class"](cls, students=args.students, seed=args.seed,
                                    exercises=args.exercises, hostile=args.hostile)


def fmt(value, spec=".2f", none="n/a") -> str:
    return none if value is None else format(value, spec)


def print_report(figures: dict) -> None:
    m, c = figures["machine"], figures["class"]
    print(f"\nmachine: {m['host']}, {m['cores']} cores ({m['usable_cores']} usable), {m['cpu']}, "
          f"Python {m['python']}")
    print(f"class: {c['summary']}")
    rows = [("", "wall s", "graded", "graded/min", "s/sub", "test s", "overhead/sub", "speedup")]
    for b in figures["batch"]:
        rows.append((f"grade batch --jobs {b['jobs']}", fmt(b["wall_s"], ".1f"), str(b["graded"]),
                     fmt(b["per_minute"], ".1f"), fmt(b["s_per_submission"]), fmt(b["floor_s"], ".1f"),
                     fmt(b["overhead_per_submission_s"]), fmt(b.get("speedup"), ".2f") + "x"))
    f = figures.get("fresh")
    if f:
        rows.append(("fresh `grade submit` each", fmt(f["wall_s"], ".1f"), str(f["graded"]),
                     fmt(60 * f["graded"] / f["wall_s"] if f["wall_s"] else None, ".1f"),
                     fmt(f["s_per_submission"]), fmt(f["floor_s"], ".1f"),
                     fmt(f["overhead_per_submission_s"]), "1.00x"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))))
    print("\n  graded: results with status 'graded' (the grader ran); s/sub = wall / graded;\n"
          "  test s (compute floor) = sum of the tests' durations; overhead/sub = (wall x jobs - test s) /\n"
          "  graded, i.e. the worker-slot time per submission not spent inside graders' tests;\n"
          "  speedup = fresh s/sub / batch s/sub (fresh: a sample, batch: the whole class: mixes differ).")
    same = figures.get("same_files")
    if same:
        print(f"  same {same['files']} files: fresh {same['fresh_s']:.1f}s vs jobs=1 batch's per-result "
              f"wall_time {same['batch_s']:.1f}s -> {same['ratio']:.2f}x")
    for b in figures["batch"]:
        if b["results"] != b["expected_results"] or b["status_mismatches"]:
            print(f"  jobs={b['jobs']}: {b['results']} result files for {b['expected_results']} roster "
                  f"student x exercise; {len(b['status_mismatches'])} status(es) differ from the manifest:")
            for line in b["status_mismatches"][:10]:
                print(f"    {line}")
        if b["stray_reported"] is False:
            print(f"  jobs={b['jobs']}: batch.json's unknown_files does not list the stray file "
                  f"{', '.join(s['submission'] for s in figures['class']['stray'])}")
        if b["results_without_durations"]:
            print(f"  jobs={b['jobs']}: {b['results_without_durations']} results lack extra_data.tests")
    if f and f["rejected"]:
        print(f"  fresh: {len(f['rejected'])} file(s) refused by `grade submit`, left out: "
              + "; ".join(f"{r['key']}: {r['error']}" for r in f["rejected"]))
    if f and f["floor_s"] is None and f["graded"]:
        print("  fresh: `grade submit --results` wrote no extra_data.tests durations: no floor/overhead")
    if f and f.get("floor_source"):
        print(f"  fresh test s: {f['floor_source']} (`grade submit --results` writes no durations)")
    print("  Ratios from one run on one machine are what to compare; absolute times vary with both.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=20)
    ap.add_argument("--jobs", default="1,2", help="comma-separated --jobs values for grade batch")
    ap.add_argument("--fresh-sample", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exercises", default=",".join(MAKE_CLASS["HEADLINE"]))
    ap.add_argument("--hostile", default=",".join(MAKE_CLASS["HOSTILE"]),
                    help="distance_matrix attacks in the class, or 'none'")
    ap.add_argument("--keep", type=Path, help="work here (class, results, logs) and keep it")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--only-fresh", action="store_true", help="skip grade batch: only the fresh baseline")
    args = ap.parse_args(argv)
    args.exercises = [x for x in args.exercises.split(",") if x]
    args.hostile = () if args.hostile == "none" else tuple(h for h in args.hostile.split(",") if h)
    jobs = [int(j) for j in args.jobs.split(",") if j]

    work = args.keep or Path(tempfile.mkdtemp(prefix="batch-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    cls = work / "class"
    manifest = get_class(cls, args)
    grade = grade_command()
    figures = {"machine": machine(), "class": {"summary": MAKE_CLASS["summary"](manifest).replace("\n", ";"),
                                               "counts": manifest["counts"], "folder": str(cls),
                                               "stray": manifest["stray"]},
               "batch": []}
    print(MAKE_CLASS["summary"](manifest))
    if not args.only_fresh:
        for n in jobs:
            print(f"grade batch, --jobs {n}:", flush=True)
            figures["batch"].append(run_batch(cls, manifest, n, work / f"results-j{n}", grade))
    if args.fresh_sample:
        sample = fresh_sample(manifest, args.fresh_sample, args.seed)
        print(f"fresh `grade submit` per file, {len(sample)} files:", flush=True)
        figures["fresh"] = run_fresh(cls, sample, work / "fresh", grade)
        fresh_s = figures["fresh"]["s_per_submission"]
        for b in figures["batch"]:
            b["speedup"] = fresh_s / b["s_per_submission"] if fresh_s and b["s_per_submission"] else None
        batch1 = next((b for b in figures["batch"] if b["jobs"] == 1), None)
        borrow_floor(figures["fresh"], batch1)
        figures["same_files"] = same_files_ratio(figures["fresh"], batch1)
    print_report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
