"""Jupyter notebook submissions: the Python module hidden in a .ipynb file.

``extract`` reads a notebook with nbformat (nothing is executed) and returns the
source of its code cells, in order, as one Python module:

* markdown and raw cells are dropped; every taken cell is preceded by one
  comment line ``# [cell N grade_id]`` (N counts every cell from 1), so an
  error can be traced back to its cell;
* nbgrader metadata is honoured: autograder test cells (grade and not
  solution) and task cells are not taken; solution cells, locked setup cells
  and plain code cells are;
* IPython syntax that is not Python (line magics, shell lines, assignments
  from them, help lines, ``get_ipython()`` lines, cell magics) is
  neutralised line by line so that line numbers stay the same.  A line is
  only considered where a new statement can start (a small lexical scanner
  tracks strings, brackets and backslash continuations), so text inside a
  multi-line string is never touched;
* what Jupyter gives a notebook implicitly is put on line 1, before the first
  cell's header comment: the ``from __future__`` imports of every cell (in a
  module they must come first; their lines become ``pass``) and, when the code
  calls ``display(...)``, a stand-in that prints.

Anything that is not a readable notebook raises ``UnusableSubmission``.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass

from .submission import MAX_SOURCE_BYTES, UnusableSubmission

MAX_NOTEBOOK_BYTES = 16 << 20   # outputs (images) make notebooks big; they are ignored, but read

# Cell magics whose body is Python run once (timing/capturing does not change the result).
KEPT_CELL_MAGICS = {"time", "timeit", "capture"}
DROPPED = "# [grade] dropped: "
MOVED = "# [grade] moved to line 1: "

_NAMES = r"[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*"
_ASSIGN_ESCAPED = re.compile(rf"{_NAMES}\s*=\s*[!%]")                # files = !ls, t = %timeit f()
_GET_IPYTHON = re.compile(rf"(?:{_NAMES}\s*=\s*)?get_ipython\s*\(")   # nbconvert's magic form
# A notebook may import from __future__ in any cell (IPython compiles cell by cell); in one
# module it must come first, so these lines move to line 1.
_FUTURE = re.compile(r"from\s+__future__\s+import\s+(\w+(?:\s*,\s*\w+)*)\s*(?:#.*)?$")
_CALLS_DISPLAY = re.compile(r"(?<![\w.])display\s*\(")
# IPython's display() is a builtin in a notebook; printing is the nearest plain-Python stand-in.
DISPLAY = "display = lambda *objects, **options: print(*objects)"


@dataclass(frozen=True)
class Cell:
    first_line: int      # line of the cell's header comment in the extracted source (1-based)
    number: int          # position in the notebook, counting every cell from 1
    grade_id: str


@dataclass(frozen=True)
class Extracted:
    source: str
    cells: tuple[Cell, ...]

    def where(self, lineno: int) -> str:
        """'line 12: cell 3, line 2' for a line of the extracted source."""
        cell = next((c for c in reversed(self.cells) if c.first_line <= lineno), None)
        if cell is None:
            return f"line {lineno}"
        name = f"cell {cell.number}" + (f" ({cell.grade_id})" if cell.grade_id else "")
        return f"line {lineno}: {name}, line {lineno - cell.first_line} of the cell"


def invalid(name: str, why: str) -> UnusableSubmission:
    return UnusableSubmission(f"{name} is not a valid notebook: {why}")


def check_size(name: str, size: int) -> None:
    if size > MAX_NOTEBOOK_BYTES:
        raise UnusableSubmission(
            f"{name} is {size} bytes ({size / (1 << 20):.1f} MiB); the limit for a notebook is "
            f"{MAX_NOTEBOOK_BYTES >> 20} MiB (clear the cell outputs and save it again)")


# ---- reading ----------------------------------------------------------------------

def load(data: bytes, name: str):
    """Bytes -> a validated nbformat v4 NotebookNode."""
    import nbformat

    check_size(name, len(data))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid(name, f"not UTF-8 (invalid byte 0x{data[e.start]:02x} at offset {e.start})") \
            from None
    try:
        raw = json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as e:
        raise invalid(name, f"not JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise invalid(name, "not JSON that can be read (nested too deeply)") from None
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise invalid(name, "the JSON has no \"nbformat\" field (it is not a Jupyter notebook)")
    major, minor = raw.get("nbformat"), raw.get("nbformat_minor", 0)
    if type(major) is not int or major not in nbformat.versions:
        readable = ", ".join(str(v) for v in sorted(nbformat.versions))
        raise invalid(name, f"nbformat version {repr(major)[:20]} cannot be read "
                            f"(readable: {readable})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # e.g. missing cell ids: repaired, not our concern
            if major == nbformat.current_nbformat:
                nbformat.validate(raw)        # first: reading trusts the structure it checks
            nb = nbformat.versions[major].to_notebook_json(raw, minor=minor)
            nb = nbformat.convert(nb, 4)
            nbformat.validate(nb)
    except nbformat.ValidationError as e:
        raise invalid(name, f"nbformat validation failed: {first_line(e)}") from None
    except Exception as e:  # nbformat raises many types on malformed input; none may escape
        raise invalid(name, f"nbformat cannot read it ({type(e).__name__}: {first_line(e)})") \
            from None
    return nb


def first_line(e: BaseException) -> str:
    text = str(getattr(e, "message", None) or e).strip()
    return (text.splitlines() or ["?"])[0][:200]


# ---- which cells --------------------------------------------------------------------

def nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def taken(cell) -> bool:
    """Code cells, except nbgrader's autograder tests (instructor asserts) and task cells."""
    if cell.get("cell_type") != "code":
        return False
    meta = nbgrader(cell)
    if meta.get("task"):
        return False
    return not (meta.get("grade") and not meta.get("solution"))


def grade_id(cell) -> str:
    # Sanitised: it goes into a comment line, which must stay one line.
    return re.sub(r"[^\w.-]", "_", str(nbgrader(cell).get("grade_id", "")))[:60]


# ---- IPython syntax -------------------------------------------------------------------

@dataclass
class Lexer:
    """Where a line starts, lexically: inside a string, inside brackets, after a backslash."""
    quote: str | None = None
    depth: int = 0
    continued: bool = False

    @property
    def at_statement_start(self) -> bool:
        return self.quote is None and self.depth == 0 and not self.continued

    def feed(self, line: str) -> str:
        """Advance over one physical line; returns its code characters (no strings, comments)."""
        code = []
        i, n = 0, len(line)
        self.continued = False
        while i < n:
            c = line[i]
            if self.quote is not None:
                if c == "\\":
                    if i == n - 1 and len(self.quote) == 1:
                        return "".join(code)      # escaped newline: the string goes on
                    i += 2                        # raw strings too: \" never ends a string
                elif line.startswith(self.quote, i):
                    i += len(self.quote)
                    self.quote = None
                else:
                    i += 1
                continue
            if c == "#":
                break
            if c in "\"'":
                self.quote = line[i:i + 3] if line[i:i + 3] in ('"""', "'''") else c
                i += len(self.quote)
                code.append(" ")
                continue
            if c == "\\" and i == n - 1:
                self.continued = True
            elif c in "([{":
                self.depth += 1
            elif c in ")]}":
                self.depth = max(self.depth - 1, 0)
            code.append(c)
            i += 1
        if self.quote is not None and len(self.quote) == 1:
            self.quote = None   # an unterminated '...' ends with its line (a syntax error anyway)
        return "".join(code)


def escaped_kind(stripped: str) -> str | None:
    """IPython lines that are not Python at all: magics, shell, help prefix."""
    if stripped[:1] in ("%", "!", "?") or _ASSIGN_ESCAPED.match(stripped):
        return "escaped"
    return None


def replaced(line: str, statement_start: bool) -> str:
    """The same-indentation stand-in of a dropped line (``pass`` keeps a block valid)."""
    stripped = line.strip()
    indent = line[:len(line) - len(line.lstrip())]
    form = "pass  " + DROPPED if statement_start else DROPPED
    return f"{indent}{form}{stripped[:40]}"


def neutralise(lines: list[str], futures: list[str]) -> list[str]:
    """Replace the IPython-only statements of one cell's lines, one output line per input line.
    Top-level ``from __future__`` imports are replaced too; their features go to `futures`."""
    out = []
    lexer = Lexer()
    dropping = None     # None | "escaped" | "python": continuation lines of a dropped statement
    for line in lines:
        start = lexer.at_statement_start
        if not start and dropping is not None:
            out.append(replaced(line, False))
            if dropping == "escaped":
                lexer.continued = line.endswith("\\")
            else:
                lexer.feed(line)
            continue
        dropping = None
        stripped = line.strip()
        future = _FUTURE.match(line) if start else None
        if future:
            futures.extend(f.strip() for f in future.group(1).split(","))
            out.append("pass  " + MOVED + stripped[:40])
            lexer.continued = False
            continue
        if start and stripped and escaped_kind(stripped):
            # Not Python: not lexed (its quotes and brackets mean nothing); only a trailing
            # backslash continues it, as in IPython.
            out.append(replaced(line, True))
            lexer.continued = line.endswith("\\")
            dropping = "escaped"
            continue
        code = lexer.feed(line).strip()
        if start and (_GET_IPYTHON.match(stripped) or code.endswith("?")):
            out.append(replaced(line, True))   # get_ipython().x(...), obj? / obj??
            dropping = "python"
            continue
        out.append(line)
    return out


def cell_lines(source: str, futures: list[str]) -> list[str]:
    """One cell's source -> its lines with IPython syntax neutralised (same number of lines);
    the features of its ``from __future__`` imports are added to `futures`."""
    # Python's tokenizer reads \r\n and \r as newlines too; make that explicit.
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    first = next((i for i, l in enumerate(lines) if l.strip()), None)
    if first is None:
        return lines
    # IPython removes the first line's indentation from every line of a cell.
    indent = lines[first][:len(lines[first]) - len(lines[first].lstrip(" \t"))]
    if indent:
        lines = [l[len(indent):] if l.startswith(indent) else l for l in lines]
    head = lines[first]
    if head.startswith("%%"):
        magic = head[2:].split(maxsplit=1)[0] if head[2:].strip() else ""
        if magic in KEPT_CELL_MAGICS:
            rest = neutralise(lines[first + 1:], futures)
            return lines[:first] + [replaced(head, False)] + rest
        return [replaced(l, False) if l.strip() else l for l in lines]   # %%bash, %%writefile ...
    return neutralise(lines, futures)


# ---- the module -----------------------------------------------------------------------

def extract(data: bytes, name: str) -> Extracted:
    """A notebook's bytes -> the Python module of its code cells (never executes anything)."""
    nb = load(data, name)
    out: list[str] = []
    cells = []
    futures: list[str] = []
    for number, cell in enumerate(nb.cells, start=1):
        if not taken(cell):
            continue
        source = cell.get("source", "")
        if not isinstance(source, str):   # validated, so a string; be safe anyway
            source = "".join(source)
        if "\x00" in source:
            raise UnusableSubmission(f"{name}: cell {number} contains a NUL character")
        cells.append(Cell(first_line=len(out) + 1, number=number, grade_id=grade_id(cell)))
        out.append(f"# [cell {number}{' ' + cells[-1].grade_id if cells[-1].grade_id else ''}]")
        out.extend(cell_lines(source, futures))
    # Line 1 is a cell header comment: what a notebook has implicitly goes there, so that no
    # line number moves.
    prelude = []
    if futures:
        prelude.append("from __future__ import " + ", ".join(dict.fromkeys(futures)))
    if any(_CALLS_DISPLAY.search(line) for line in out):
        prelude.append(DISPLAY)
    if prelude and out:
        out[0] = "; ".join(prelude) + "  " + out[0]
    source = "\n".join(out) + "\n"
    try:
        size = len(source.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise UnusableSubmission(f"{name}: a code cell contains a character that is not valid "
                                 f"text ({e.object[e.start]!a})") from None
    if size > MAX_SOURCE_BYTES:
        raise UnusableSubmission(f"the code cells of {name} hold {size} bytes of code; "
                                 f"the limit is {MAX_SOURCE_BYTES}")
    return Extracted(source=source, cells=tuple(cells))
