"""`grade`: the command line.

    grade submit FILE... [--exercise NAME] [--results PATH]   grade submissions
    grade list                                                the exercises
    grade verify [--exercise NAME]...                         prove the graders right
    grade batch SUBMISSIONS --out RESULTS [...]               a whole class (docs/batch.md)
    grade report RESULTS                                      CSVs + HTML report from results
    grade release OUT / grade gradescope OUT                  student bundle / Gradescope zip
"""
from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console

from runner import exercises
from runner.grade import Options, close_reference_workers, grade
from runner.report import print_result
from runner.results import write_json_atomic
from runner.sandbox import NOT_ISOLATED_WARNING, SandboxUnavailable, resolve_mode
from runner.submission import UnusableSubmission, read


def die(message: str) -> None:
    """Unusable input: one line on stderr, exit status 2."""
    click.echo(f"grade: error: {message}", err=True)
    sys.exit(2)


def exercise_for(path: Path, name: str | None) -> exercises.Exercise:
    try:
        return exercises.load(name or path.stem)
    except exercises.UnknownExercise as e:
        hint = "" if name else " (taken from the file name; pass --exercise NAME)"
        die(f"{path.name}: {e}{hint}")


def check_sandbox(mode: str) -> str:
    try:
        resolved = resolve_mode(mode)
    except SandboxUnavailable as e:
        die(str(e))
    if resolved == "none":
        click.echo(NOT_ISOLATED_WARNING, err=True)
    return resolved


sandbox_option = click.option("--sandbox", type=click.Choice(["auto", "required", "none", "setuid"]),
                              default="auto", show_default=True,
                              help="auto: bubblewrap if installed, else an unisolated subprocess "
                                   "(with a warning); required: fail without bubblewrap; setuid: "
                                   "inside a container, workers run as the grade-student / "
                                   "grade-reference users (root judge; Dockerfile.gpu, Gradescope).")
device_option = click.option("--device", default="auto", show_default=True,
                             help="auto, cpu, cuda or cuda:N")


@click.group()
def main() -> None:
    """Autograder for the PyTorch exercises of the course notes."""
    # SIGTERM unwinds like Ctrl-C, so workers and containers are always cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


backend_option = click.option("--backend", type=click.Choice(["local", "docker"]), default="local",
                              show_default=True,
                              help="local: sandboxed workers on this machine; docker: a fresh "
                                   "container per submission (see `grade image build`).")
gpu_option = click.option("--gpu", default="auto", show_default=True,
                          help="docker backend: 'auto' (all GPUs if the host has any, else none), "
                               "'none', 'all', or one GPU index to pin (one container per GPU).")
image_option = click.option("--image", default="grade:latest", show_default=True,
                            help="docker backend: the image.")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--exercise", "exercise_name", help="Exercise name (default: from the file name).")
@click.option("--results", "results_path", type=click.Path(path_type=Path),
              help="Also write Gradescope results.json (a directory when grading several files).")
@click.option("--seed", type=int, help="Input seed (default: a fresh secret one; recorded in results).")
@click.option("--test", "tests", multiple=True, help="Run only this test (repeatable).")
@sandbox_option
@device_option
@backend_option
@gpu_option
@image_option
def submit(files, exercise_name, results_path, seed, tests, sandbox, device, backend, gpu, image):
    """Grade FILES and print a per-test report (exit 0 whenever grading finished)."""
    targets = []
    for path in files:  # validate everything before grading anything
        exercise = exercise_for(path, exercise_name)
        try:
            targets.append((read(path), exercise))
        except UnusableSubmission as e:
            die(str(e))
    if backend == "local":
        check_sandbox(sandbox)
    else:
        docker_client = docker_or_die(image)
    options = Options(seed=seed, sandbox=sandbox, device=device, tests=list(tests) or None)
    console = Console()
    try:
        for submission, exercise in targets:
            if backend == "docker":
                from runner.docker_backend import grade_in_container
                result = grade_in_container(
                    submission, exercise, seed=seed if seed is not None else secrets.randbits(48),
                    image=image, device=device, gpu=host_gpus(gpu), tests=options.tests,
                    docker_client=docker_client)
            else:
                result = grade(submission, exercise, options)
            print_result(result, console)
            if results_path is not None:
                out = results_path
                if len(targets) > 1:
                    out = results_path / f"{submission.path.stem}.results.json"
                write_json_atomic(out, result.to_gradescope())
    finally:
        close_reference_workers(options)


def host_gpus(choice: str) -> str | None:
    """--gpu: what the container gets (None: no GPU)."""
    if choice == "auto":
        return "all" if Path("/dev/nvidia0").exists() else None   # GPU-only branch
    return None if choice == "none" else choice


def docker_or_die(image: str):
    from runner.docker_backend import DockerUnavailable, client
    try:
        dc = client()
    except DockerUnavailable as e:
        die(str(e))
    import docker
    try:
        dc.images.get(image)
    except docker.errors.ImageNotFound:
        die(f"no image {image!r}: build it with `grade image build`")
    return dc


@contextlib.contextmanager
def gradebook_warnings_as_lines():
    """What the tables found wrong in the results, one line each (not Python's warning format)."""
    from runner.gradebook import GradebookWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GradebookWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, GradebookWarning):
                    click.echo(f"warning: {w.message}", err=True)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@main.command()
@click.argument("submissions", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", "results", type=click.Path(path_type=Path), required=True,
              help="Results folder: <student>/<exercise>.json, tests.csv, gradebook.csv, report.html.")
@click.option("--roster", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="CSV with a student_id column: rostered students without a file get 0 (missing).")
@click.option("--exercise", "only", multiple=True,
              help="Grade only this exercise (repeatable; default: every exercise found).")
@click.option("--jobs", type=click.IntRange(1, 512), default=1, show_default=True,
              help="Gradings at a time on this machine (N > 1: a Dask LocalCluster of N processes, "
                   "each on its own share of the CPUs).")
@click.option("--cluster", metavar="ADDRESS",
              help="Send the gradings to a running Dask scheduler (tcp://host:8786) instead.")
@click.option("--regrade", is_flag=True, help="Grade again what is already graded.")
@click.option("--seed", type=int, help="Base seed: each file's seed is derived from it and the file's "
              "content, so identical files get identical inputs (default: the seed of an earlier "
              "run into OUT, else a fresh secret one; recorded in batch.json).")
@sandbox_option
@device_option
@backend_option
@gpu_option
@image_option
def batch(submissions, results, roster, only, jobs, cluster, regrade, seed, sandbox, device,
          backend, gpu, image):
    """Grade a whole class, resumably (see docs/batch.md).

    SUBMISSIONS holds <student>/<exercise>.py|.ipynb, or nbgrader's
    submitted/<student>/<assignment>/*.ipynb.  What is already graded (same file, same
    graders) is kept; results are written one by one as they finish."""
    from runner import batch as b
    from runner.batch_progress import BatchProgress

    if cluster and jobs > 1:
        die("--jobs and --cluster exclude each other (the cluster decides how many run)")
    if backend == "local":
        check_sandbox(sandbox)
    else:
        docker_or_die(image)
    if roster is not None:
        from runner.gradebook import read_roster
        try:
            read_roster(roster)   # a bad roster stops us before anything is graded
        except ValueError as e:
            die(str(e))
    gpu_setting, jobs = b.gpu_layout(gpu, jobs, cluster, backend)
    settings = b.Settings(backend=backend, sandbox=sandbox, device=device, image=image, gpu=gpu_setting)
    console = Console(stderr=True)
    progress = BatchProgress(console)
    try:
        with gradebook_warnings_as_lines(), progress:
            report = b.run_batch(submissions, results, settings=settings, roster_path=roster,
                                 only=list(only) or None, regrade=regrade, seed=seed, jobs=jobs,
                                 cluster=cluster, on_plan=progress.start, on_record=progress.advance)
    except (ValueError, FileNotFoundError, exercises.UnknownExercise) as e:
        die(str(e))
    progress.print_summary(report, results)


@main.command()
@click.argument("results", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--roster", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def report(results, roster):
    """Rebuild tests.csv, gradebook.csv and report.html from RESULTS/<student>/<exercise>.json."""
    from runner.html_report import write_reports
    try:
        with gradebook_warnings_as_lines():
            written = write_reports(results, roster)
    except ValueError as e:
        die(str(e))
    for path in written.values():
        click.echo(str(path))


@main.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--exercise", "names", multiple=True, help="Only this exercise (repeatable).")
def release(out, names):
    """Write what students get: per exercise the stub, a notebook (nbgrader-ready), public tests."""
    from runner.release import write_release
    try:
        written = write_release(out, list(names) or None)
    except exercises.UnknownExercise as e:
        die(str(e))
    click.echo(f"{len(written)} files in {out}")


@main.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--exercise", "names", multiple=True, help="Only this exercise (repeatable).")
def gradescope(out, names):
    """Build OUT/autograder.zip: setup.sh + run_autograder for a Gradescope assignment."""
    from runner.gradescope import write_gradescope
    try:
        click.echo(str(write_gradescope(out, list(names) or None)))
    except exercises.UnknownExercise as e:
        die(str(e))


@main.group()
def image():
    """The grading image for the docker backend."""


@image.command(name="build")
@click.option("--tag", default="grade:latest", show_default=True)
@click.option("--base", default=None, help="Base image (default: the CUDA + PyTorch runtime "
              "image named in Dockerfile.gpu; any local image with python3 works).")
@click.option("--wheels", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="A wheelhouse to install from (default: `pip download` one now).")
def image_build(tag, base, wheels):
    """Build the grading image from Dockerfile.gpu (no registry access needed for a local base)."""
    from runner import image as img
    from runner.docker_backend import DockerUnavailable
    try:
        img.build(tag, base or img.DEFAULT_BASE, wheels, log=click.echo)
    except DockerUnavailable as e:
        die(str(e))
    except Exception as e:  # docker.errors.BuildError and friends
        for chunk in list(getattr(e, "build_log", []))[-15:]:
            click.echo(str(chunk.get("stream", chunk.get("error", ""))).rstrip(), err=True)
        die(f"image build failed: {e}")
    click.echo(f"built {tag}")


@main.command(name="list")
def list_exercises():
    """The exercises, their points and limits."""
    from rich.table import Table

    from runner.verify import collect_points

    table = Table(title="exercises")
    for col in ("exercise", "title", "tests", "points", "time limit", "memory", "speed budget"):
        table.add_column(col)
    for ex in exercises.all_exercises():
        tests = collect_points(ex)
        table.add_row(ex.name, ex.title, str(len(tests)), f"{sum(tests.values()):g}",
                      f"{ex.time_limit:g} s", f"{ex.limits.memory_mb} MiB",
                      f"{ex.speed_budget:g}x" if ex.speed_budget else "—")
    Console().print(table)


@main.command()
@click.option("--exercise", "names", multiple=True, help="Only this exercise (repeatable).")
@click.option("--quick", is_flag=True, help="Mutants run only the tests they target (the default "
              "runs every test for every solution).")
@sandbox_option
@backend_option
def verify(names, quick, sandbox, backend):
    """Reference = full marks, stub = 0 (not implemented), every mutant loses its points."""
    from runner.verify import verify_all

    if backend == "local":
        check_sandbox(sandbox)
    else:
        docker_or_die("grade:latest")
    for name in names:
        try:
            exercises.load(name)
        except exercises.UnknownExercise as e:
            die(str(e))
    ok = verify_all(list(names) or exercises.names(), sandbox=sandbox, quick=quick, console=Console(),
                    backend=backend)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
