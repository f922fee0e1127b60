"""Reading a submission file: bytes -> validated UTF-8 Python source.

Nothing here executes the submission.  Files that cannot be graded at all
(missing, too large, not UTF-8, binary, a broken notebook) raise
``UnusableSubmission``; a file that is Python-shaped text but does not parse
is graded, and every test fails with the syntax error
(``Submission.syntax_error``).  A Jupyter notebook (.ipynb) is graded as the
Python module of its code cells (``runner/notebook.py``); its ``sha256`` is
that of the notebook file itself.
"""
from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MAX_SOURCE_BYTES = 1 << 20


class UnusableSubmission(Exception):
    """The file cannot be graded at all (the CLI exits with status 2)."""


@dataclass(frozen=True)
class Submission:
    path: Path
    data: bytes
    source: str
    sha256: str
    tree: ast.Module | None
    syntax_error: str | None


def parse(source: str, where_line: Callable[[int], str] = "line {}".format
          ) -> tuple[ast.Module | None, str | None]:
    try:
        return ast.parse(source), None
    except SyntaxError as e:
        where = where_line(e.lineno) if e.lineno else "unknown line"
        return None, f"{e.msg} ({where})"
    except (ValueError, RecursionError, MemoryError) as e:
        return None, f"cannot be parsed: {type(e).__name__}"


def from_bytes(data: bytes, path: Path) -> Submission:
    if len(data) > MAX_SOURCE_BYTES:
        raise UnusableSubmission(f"{path.name} is {len(data)} bytes; the limit is {MAX_SOURCE_BYTES}")
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnusableSubmission(
            f"{path.name} is not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8") from None
    if "\x00" in source:
        raise UnusableSubmission(f"{path.name} contains NUL bytes; it is not a Python source file")
    source = source.removeprefix("\ufeff")
    tree, error = parse(source)
    return Submission(path=path, data=source.encode("utf-8"), source=source,
                      sha256=hashlib.sha256(data).hexdigest(), tree=tree, syntax_error=error)


def from_notebook_bytes(data: bytes, path: Path) -> Submission:
    """A notebook: graded as its code cells; syntax errors name the cell."""
    from .notebook import extract

    extracted = extract(data, path.name)
    tree, error = parse(extracted.source, extracted.where)
    return Submission(path=path, data=extracted.source.encode("utf-8"), source=extracted.source,
                      sha256=hashlib.sha256(data).hexdigest(), tree=tree, syntax_error=error)


def from_file_bytes(data: bytes, path: Path) -> Submission:
    """The bytes of a .py or .ipynb file (by its suffix)."""
    if path.suffix == ".ipynb":
        return from_notebook_bytes(data, path)
    return from_bytes(data, path)


def read(path: Path | str) -> Submission:
    path = Path(path)
    if not path.exists():
        raise UnusableSubmission(f"{path}: no such file")
    if not path.is_file():
        raise UnusableSubmission(f"{path}: not a regular file")
    if path.suffix == ".ipynb":
        from .notebook import MAX_NOTEBOOK_BYTES, check_size
        check_size(path.name, path.stat().st_size)   # before reading it
        with open(path, "rb") as f:
            return from_notebook_bytes(f.read(MAX_NOTEBOOK_BYTES + 1), path)
    if path.suffix != ".py":
        raise UnusableSubmission(f"{path.name}: expected a .py or .ipynb file")
    with open(path, "rb") as f:
        data = f.read(MAX_SOURCE_BYTES + 1)
    return from_bytes(data, path)
