"""Grading a whole class: the batch pipeline, one stage per step.

    discover -> plan (skip what is graded) -> grade in parallel -> write each result -> aggregate

* ``discover`` finds ``SUBMISSIONS/<student>/<exercise>.py|.ipynb`` or nbgrader's
  exchange layout ``SUBMISSIONS/submitted/<student>/<assignment>/*.ipynb``;
  files that are no known exercise are reported, never silently dropped.
* ``plan`` pairs every student (roster and submitters) with every exercise
  in the batch: a missing file is a "missing" result; a result already on
  disk for the same file hash and grader version is kept (``--regrade``
  forces).
* ``grade_job`` grades one submission; it runs in this process (``--jobs 1``)
  or in Dask workers (``--jobs N``: a LocalCluster; ``--cluster ADDR``: an
  existing scheduler).  Each process keeps warm state across jobs: one
  reference worker per exercise and a fork server for student workers.
* Each result is written atomically as soon as it arrives, by this process
  only, as ``RESULTS/<student>/<exercise>.json``; the CSVs and the HTML report
  are rebuilt from those files at the end (and by ``grade report``).
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from . import exercises
from .results import GradingResult, write_json_atomic

SUBMISSION_SUFFIXES = (".py", ".ipynb")
MAX_FILE_BYTES = 32 << 20      # larger files are not read at all ("unusable")


# ---- discovery ------------------------------------------------------------------

@dataclass(frozen=True)
class Found:
    student: str
    exercise: str
    path: Path
    relpath: str


@dataclass
class Discovery:
    found: dict[tuple[str, str], Found] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)     # files that are no known exercise
    ignored: list[str] = field(default_factory=list)     # duplicates, symlinks (with why)
    layout: str = "plain"

    @property
    def students(self) -> set[str]:
        return {s for s, _ in self.found}


def _visible(entries: Iterable[Path]) -> list[Path]:
    """Skip dot-files and folders (.ipynb_checkpoints, .DS_Store, editor files)."""
    return sorted(p for p in entries if not p.name.startswith(".") and p.name != "__pycache__")


def discover(root: Path) -> Discovery:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    known = set(exercises.names())
    out = Discovery()
    nbgrader = root / "submitted"
    if nbgrader.is_dir():
        out.layout = "nbgrader"
        for student in _visible(nbgrader.iterdir()):
            if not student.is_dir():
                out.unknown.append(str(student.relative_to(root)))
                continue
            for assignment in _visible(student.iterdir()):
                files = _visible(assignment.iterdir()) if assignment.is_dir() else [assignment]
                for f in files:
                    if f.name == "timestamp.txt":
                        continue   # written by `nbgrader collect` next to every submission
                    # The notebook's stem names the exercise; else the assignment folder does.
                    name = f.stem if f.stem in known else assignment.name
                    _add(out, root, student.name, name if name in known else None, f)
        return out
    for student in _visible(root.iterdir()):
        if not student.is_dir():
            out.unknown.append(student.name)
            continue
        for f in _visible(student.iterdir()):
            _add(out, root, student.name, f.stem if f.stem in known else None, f)
    return out


def _add(out: Discovery, root: Path, student: str, exercise: str | None, path: Path) -> None:
    rel = str(path.relative_to(root))
    if exercise is None or path.suffix not in SUBMISSION_SUFFIXES or path.is_dir():
        out.unknown.append(rel)
        return
    if path.is_symlink():
        out.ignored.append(f"{rel}: a symbolic link (not graded)")
        return
    key = (student, exercise)
    if key in out.found:
        # Two files for one exercise (e.g. .py and .ipynb): the .py wins, the other is reported.
        keep, drop = sorted([out.found[key], Found(student, exercise, path, rel)],
                            key=lambda f: f.path.suffix != ".py")
        out.found[key] = keep
        out.ignored.append(f"{drop.relpath}: {keep.relpath} is graded instead")
        return
    out.found[key] = Found(student, exercise, path, rel)


# ---- planning -------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One student x exercise to grade: everything a (possibly remote) worker needs."""

    student: str
    exercise: str
    relpath: str
    data: bytes
    sha256: str
    seed: int


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    ready: list[dict] = field(default_factory=list)     # records written without grading
    kept: int = 0                                        # already graded, same file and graders
    students: list[str] = field(default_factory=list)
    exercises: list[str] = field(default_factory=list)


def result_path(results: Path, student: str, exercise: str) -> Path:
    return Path(results) / student / f"{exercise}.json"


def job_seed(base: int, exercise: str, sha256: str) -> int:
    """The seed of one grading: from the batch's seed and the file's content, so that two
    students who hand in the same file get the same inputs and the same score (randomised
    tests catch some wrong solutions on some inputs only), and a resumed batch grades a file
    exactly as an uninterrupted one would."""
    digest = hashlib.sha256(f"{base}:{exercise}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:6], "little")


def batch_seed(results: Path, seed: int | None) -> int:
    """--seed, else the seed of an earlier run into the same results (batch.json), else a fresh
    secret one.  It is recorded in batch.json, which only instructors see."""
    if seed is not None:
        return seed
    try:
        earlier = json.loads((Path(results) / "batch.json").read_text()).get("seed")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if isinstance(earlier, int) and not isinstance(earlier, bool):
        return earlier
    return secrets.randbits(48)


def valid_student_id(student: str) -> bool:
    return bool(student) and "/" not in student and "\x00" not in student \
        and not student.startswith(".") and len(student) <= 200


def plan(discovery: Discovery, results: Path, *, roster: list[str] | None = None,
         only: list[str] | None = None, regrade: bool = False, seed: int,
         versions: dict[str, str], max_scores: Callable[[str], float]) -> Plan:
    names = sorted(set(only) if only else {e for _, e in discovery.found})
    students = sorted(set(roster or []) | discovery.students)
    out = Plan(students=students, exercises=names)
    for student in students:
        for name in names:
            found = discovery.found.get((student, name))
            if found is None:
                out.ready.append(empty_record(student, name, "missing",
                                              "no submission", max_scores(name), versions[name]))
                continue
            try:
                with open(found.path, "rb") as f:
                    data = f.read(MAX_FILE_BYTES + 1)
            except OSError as e:
                out.ready.append(empty_record(student, name, "unusable", f"cannot read: {e.strerror}",
                                              max_scores(name), versions[name], found.relpath))
                continue
            sha = hashlib.sha256(data).hexdigest()
            if not regrade and already_graded(results, student, name, sha, versions[name]):
                out.kept += 1
                continue
            out.jobs.append(Job(student, name, found.relpath, data, sha,
                                job_seed(seed, name, sha)))
    return out


def already_graded(results: Path, student: str, exercise: str, sha256: str, version: str) -> bool:
    """A final result for exactly this file and these graders exists ("error" is never final)."""
    try:
        extra = json.loads(result_path(results, student, exercise).read_text())["extra_data"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (extra.get("sha256") == sha256 and extra.get("grader_version") == version
            and extra.get("status") in ("graded", "unusable"))


# ---- records (what RESULTS/<student>/<exercise>.json holds) -------------------------

def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def graded_record(result: GradingResult, job: Job, backend: str, wall: float) -> dict:
    record = result.to_gradescope()
    record["extra_data"].update(
        student=job.student, submission=job.relpath, backend=backend, status="graded", message="",
        graded_at=now(), wall_time=round(wall, 3), host=socket.gethostname(),
        tests=[{"name": t.name, "title": t.title, "status": t.status, "score": t.score,
                "max_score": t.max_score, "duration": round(t.duration, 3), "message": t.message,
                "visibility": t.visibility} for t in result.tests])
    return record


def empty_record(student: str, exercise: str, status: str, message: str, max_score: float,
                 version: str, relpath: str = "", sha256: str = "", seed: int | None = None,
                 backend: str = "") -> dict:
    """A result without a grading: missing, unusable file, or a platform error."""
    return {
        "score": 0.0, "max_score": max_score, "execution_time": 0.0,
        "output": f"{exercise}: {status}: {message}", "visibility": "visible",
        "stdout_visibility": "hidden", "tests": [],
        "extra_data": {"exercise": exercise, "student": student, "submission": relpath,
                       "sha256": sha256, "seed": seed, "sandbox": "", "device": "",
                       "backend": backend, "grader_version": version, "status": status,
                       "message": message, "graded_at": now(), "wall_time": 0.0,
                       "host": socket.gethostname(), "flags": [], "statuses": {}, "tests": []},
    }


# ---- grading one job (in this process or in a Dask worker) -------------------------

@dataclass(frozen=True)
class Settings:
    """How jobs are graded; the same for every job of a batch (sent along with each)."""

    backend: str = "local"       # local | docker
    sandbox: str = "auto"
    device: str = "auto"
    image: str | None = None
    gpu: str | None = None       # docker: GPU index to pin, "all", or None
    overrides: tuple = ()        # Exercise field overrides (tests use short limits)


class WarmState:
    """What one grading process keeps between jobs: reference workers, a fork server."""

    def __init__(self, settings: Settings):
        from .grade import Options, fork_server
        self.options = Options(sandbox=settings.sandbox, device=settings.device)
        self.options.fork_server = (fork_server(settings.sandbox, settings.device)
                                    if settings.backend == "local" else None)

    def close(self) -> None:
        from .grade import close_reference_workers
        close_reference_workers(self.options)
        if self.options.fork_server is not None:
            self.options.fork_server.close()


_WARM: dict[Settings, WarmState] = {}


def warm_state(settings: Settings) -> WarmState:
    if settings not in _WARM:
        _WARM[settings] = WarmState(settings)
    return _WARM[settings]


@atexit.register
def close_warm_states() -> None:
    for state in _WARM.values():
        state.close()
    _WARM.clear()


def grade_job(job: Job, settings: Settings) -> dict:
    """Grade one submission; returns its record.  Never raises for anything the student did."""
    from .submission import UnusableSubmission, from_file_bytes
    started = time.monotonic()
    exercise = exercises.load(job.exercise)
    try:
        submission = from_file_bytes(job.data, Path(job.relpath))
    except UnusableSubmission as e:
        return ungraded_record(job, settings, "unusable", str(e))
    overrides = dict(settings.overrides)
    if settings.backend == "docker":
        from .docker_backend import IMAGE, grade_in_container
        result = grade_in_container(submission, exercise, seed=job.seed,
                                    image=settings.image or IMAGE, device=settings.device,
                                    gpu=settings.gpu if settings.gpu not in (None, "none") else None,
                                    overrides=overrides or None)
    else:
        from .grade import grade
        options = dataclasses.replace(warm_state(settings).options, seed=job.seed,
                                      overrides=overrides)
        result = grade(submission, exercise, options)
    result.submission = job.relpath
    return graded_record(result, job, settings.backend, time.monotonic() - started)


def pick_device(settings: Settings) -> str:
    from .grade import pick_device as pick
    if settings.backend == "docker":
        return "cuda" if settings.gpu not in (None, "none") else "cpu"
    return pick(settings.device)


def grade_job_remote(job: Job, settings: Settings) -> dict:
    """Dask task: like grade_job, but the worker's GPU pin comes from its name (one per GPU)."""
    if settings.gpu == "per-worker":   # GPU-only: LocalCluster worker i drives GPU i, alone
        from distributed import get_worker
        index = str(get_worker().name)
        settings = (dataclasses.replace(settings, gpu=index) if settings.backend == "docker"
                    else dataclasses.replace(settings, gpu=None, device=f"cuda:{index}"))
    return grade_job(job, settings)


def host_gpu_count() -> int:
    return len([p for p in Path("/dev").glob("nvidia[0-9]*")])


def gpu_layout(choice: str, jobs: int, cluster: str | None, backend: str) -> tuple[str | None, int]:
    """--gpu and --jobs -> (Settings.gpu, jobs): never two gradings on one GPU at a time.

    Without GPUs (or --gpu none) nothing changes.  With G GPUs, --jobs N runs min(N, G)
    processes, process i pinned to GPU i.  On a cluster, only with ``--gpu all``, every task
    asks for one "GPU" resource (start each Dask worker with ``--resources GPU=1``, one per GPU).
    """
    if cluster is not None:
        # Only on request: a task asking for a GPU resource no worker offers would wait forever.
        if choice == "all":
            return "per-task", jobs   # GPU-only
        return ("none" if backend == "docker" and choice == "none" else None), jobs
    count = host_gpu_count()
    if choice == "none" or count == 0:
        return ("none" if backend == "docker" else None), jobs
    # GPU-only below: never runs in CI
    if choice not in ("auto", "all"):
        return choice, 1                 # one pinned GPU: one grading at a time
    if jobs <= 1:
        return ("0" if backend == "docker" else None), 1
    return "per-worker", min(jobs, count)


# ---- running a batch --------------------------------------------------------------

def write_record(results: Path, record: dict) -> Path:
    extra = record["extra_data"]
    path = result_path(results, extra["student"], extra["exercise"])
    write_json_atomic(path, record)
    return path


def clean_temporaries(results: Path) -> int:
    """Half-written files of a run that was killed (write_json_atomic's temporaries)."""
    removed = 0
    for tmp in Path(results).glob("*/.*.json.*"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def ungraded_record(job: Job, settings: Settings, status: str, message: str) -> dict:
    """A job that got no grading: its file is unusable, or the platform failed ("error")."""
    from .grade import grader_version
    from .verify import max_points
    exercise = exercises.load(job.exercise)
    return empty_record(job.student, job.exercise, status, message,
                        max_points(exercise, pick_device(settings)), grader_version(exercise),
                        job.relpath, job.sha256, job.seed, settings.backend)


def run_local(jobs: list[Job], settings: Settings, on_record: Callable[[dict], None]) -> None:
    """--jobs 1: grade here, one after the other, with warm workers."""
    for job in jobs:
        try:
            record = grade_job(job, settings)
        except Exception as e:   # the platform failed, not the student: regraded next run
            record = ungraded_record(job, settings, "error", f"{type(e).__name__}: {e}")
        on_record(record)


def start_local_cluster(n_workers: int):
    """A LocalCluster of single-threaded grading processes, each on its own CPUs."""
    from distributed import Client, LocalCluster

    from .cpu_shares import PinCpus, cpu_slices
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    try:
        client.register_plugin(PinCpus(cpu_slices(n_workers)))
    except BaseException:
        client.close()
        cluster.close()
        raise
    return cluster, client


def run_dask(jobs: list[Job], settings: Settings, on_record: Callable[[dict], None], *,
             n_workers: int | None = None, address: str | None = None,
             versions: dict[str, str] | None = None) -> None:
    """--jobs N (a LocalCluster of N single-threaded processes) or --cluster ADDRESS."""
    from distributed import Client, as_completed
    cluster = None
    if address is None:
        cluster, client = start_local_cluster(n_workers)
    else:
        client = Client(address, timeout="30s")
    try:
        if address is not None:
            check_remote_versions(client, versions or {})
        resources = {"GPU": 1} if settings.gpu == "per-task" else None   # GPU-only
        futures = {client.submit(grade_job_remote, job, settings, pure=False,
                                 key=f"grade-{job.student}-{job.exercise}-{secrets.token_hex(4)}",
                                 resources=resources): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                record = future.result()
            except Exception as e:   # the worker process died (KilledWorker) or the platform failed
                record = ungraded_record(job, settings, "error", f"{type(e).__name__}: {e}")
            on_record(record)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def grader_versions() -> dict[str, str]:
    """Exercise -> grader version in this installation (the batch's and each Dask worker's)."""
    from .grade import grader_version
    return {e.name: grader_version(e) for e in exercises.all_exercises()}


def check_remote_versions(client, versions: dict[str, str]) -> None:
    """Every worker must grade with the same graders as this checkout."""
    theirs = client.run(grader_versions)
    for worker, found in theirs.items():
        stale = sorted(n for n, v in versions.items() if found.get(n) != v)
        if stale:
            raise RuntimeError(f"Dask worker {worker} has other graders for {', '.join(stale)} "
                               "than this checkout: install the same version of the project there")


# ---- the whole batch ----------------------------------------------------------------

@dataclass
class BatchReport:
    plan: Plan
    discovery: Discovery
    records: list[dict]            # this run's results (graded now or written without grading)
    aggregates: dict[str, Path]
    seconds: float

    def summary(self, results: Path) -> dict:
        """Counts and mean scores over every student x exercise of this batch (on disk)."""
        rows = {"graded": 0, "unusable": 0, "missing": 0, "error": 0, "timed out": 0}
        means: dict[str, list[float]] = {}
        for student in self.plan.students:
            for name in self.plan.exercises:
                try:
                    record = json.loads(result_path(results, student, name).read_text())
                except (OSError, ValueError):
                    continue
                extra = record.get("extra_data", {})
                rows[extra.get("status", "error")] = rows.get(extra.get("status", "error"), 0) + 1
                if "timeout" in extra.get("statuses", {}).values():
                    rows["timed out"] += 1
                if extra.get("status") == "graded":
                    means.setdefault(name, []).append(record["score"] / max(record["max_score"], 1e-9))
        return {"counts": rows, "mean_percent": {n: round(100 * sum(v) / len(v), 1)
                                                 for n, v in sorted(means.items())}}


def run_batch(submissions: Path, results: Path, *, settings: Settings = Settings(),
              roster_path: Path | None = None, only: list[str] | None = None,
              regrade: bool = False, seed: int | None = None, jobs: int = 1,
              cluster: str | None = None,
              on_plan: Callable[[Plan], None] = lambda plan: None,
              on_record: Callable[[dict], None] = lambda record: None) -> BatchReport:
    from .gradebook import read_roster
    from .html_report import write_reports
    from .verify import max_points

    started = time.monotonic()
    results = Path(results)
    discovery = discover(submissions)
    roster = list(read_roster(roster_path)["student_id"]) if roster_path else None
    bad = sorted(s for s in (roster or []) + sorted(discovery.students) if not valid_student_id(s))
    if bad:
        raise ValueError(f"student ids that cannot name a results folder: {bad[:5]}")
    for name in only or []:
        exercises.load(name)   # unknown names fail here, before any work
    versions = grader_versions()
    device = pick_device(settings)
    seed = batch_seed(results, seed)
    the_plan = plan(discovery, results, roster=roster, only=only, regrade=regrade, seed=seed,
                    versions=versions,
                    max_scores=lambda name: max_points(exercises.load(name), device))
    results.mkdir(parents=True, exist_ok=True)
    clean_temporaries(results)
    from .sandbox import sweep_stale_scratch
    sweep_stale_scratch()          # worker folders of a batch that was killed
    write_json_atomic(results / "batch.json", {
        "submissions": str(Path(submissions).resolve()), "layout": discovery.layout,
        "exercises": the_plan.exercises, "students": the_plan.students,
        "unknown_files": discovery.unknown, "ignored_files": discovery.ignored,
        "not_on_roster": sorted(discovery.students - set(roster)) if roster is not None else [],
        "started": now(), "backend": settings.backend, "seed": seed})
    on_plan(the_plan)
    records: list[dict] = []

    def accept(record: dict) -> None:
        write_record(results, record)     # durable the moment it exists
        records.append(record)
        on_record(record)

    for record in the_plan.ready:
        accept(record)
    if the_plan.jobs:
        if jobs <= 1 and cluster is None:
            run_local(the_plan.jobs, settings, accept)
        else:
            run_dask(the_plan.jobs, settings, accept, n_workers=jobs, address=cluster,
                     versions=versions)
    aggregates = write_reports(results, roster_path)
    return BatchReport(the_plan, discovery, records, aggregates, time.monotonic() - started)
