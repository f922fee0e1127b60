"""Building the grading image (`grade image build`) with the Docker SDK.

The build context is assembled in a temporary folder: Dockerfile.gpu, the
entry script, the project (engine, graders, references, assignments) and a
wheelhouse.  The wheelhouse is made on the host with `pip download` (the
image reaches no package index), or given with ``--wheels``.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from .exercises import ROOT

PROJECT_PARTS = ("runner", "graders", "reference", "assignments", "cli.py", "pyproject.toml")
DEFAULT_BASE = "pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime"


HOST_ONLY = ("docker",)   # the judge in the container never talks to Docker


def requirements() -> list[str]:
    """What the image needs: the project's dependencies (pyproject.toml) but host-only ones."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not d.startswith(HOST_ONLY)]


def download_wheels(dest: Path) -> Path:
    """`pip download` every dependency (torch included) into ``dest`` for this Python."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(dest), *requirements()],
                   check=True)
    return dest


def build_context(dest: Path, wheels: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    project = dest / "project"
    project.mkdir(parents=True)
    for part in PROJECT_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, project / part, ignore=ignore)
        else:
            shutil.copy2(src, project / part)
    shutil.copy2(ROOT / "Dockerfile.gpu", dest / "Dockerfile.gpu")
    (dest / "docker").mkdir()
    shutil.copy2(ROOT / "docker" / "entrypoint.sh", dest / "docker" / "entrypoint.sh")
    (dest / "requirements.txt").write_text("\n".join(requirements()) + "\n")
    wheel_dir = dest / "wheels"
    wheel_dir.mkdir()
    for whl in wheels.glob("*"):
        try:
            (wheel_dir / whl.name).hardlink_to(whl)
        except OSError:
            shutil.copy2(whl, wheel_dir / whl.name)
    return dest


def build(tag: str, base: str, wheels: Path | None, log=print):
    """Build the image; returns the docker Image.  Raises docker.errors.BuildError on failure."""
    from .docker_backend import client
    dc = client()
    with tempfile.TemporaryDirectory(prefix="grade-image-") as tmp:
        tmp = Path(tmp)
        if wheels is None:
            log("downloading wheels (pip download)...")
            wheels = download_wheels(tmp / "wheelhouse")
        context = build_context(tmp / "context", wheels)
        log(f"building {tag} FROM {base} ...")
        image, stream = dc.images.build(path=str(context), dockerfile="Dockerfile.gpu", tag=tag,
                                        buildargs={"BASE": base}, rm=True, forcerm=True, pull=False)
        for chunk in stream:
            text = chunk.get("stream", "").rstrip()
            if text:
                log(text)
        return image
