"""Notebook (.ipynb) submissions: extraction of the code cells, IPython syntax, nbgrader
metadata, broken notebooks, and grading a notebook end to end (also from the command line)."""
import ast
import copy
import glob
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import sysconfig
import time
import tokenize
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from runner import notebook
from runner.exercises import ROOT
from runner.submission import MAX_SOURCE_BYTES, UnusableSubmission, from_file_bytes, read

SOLUTIONS = Path(__file__).resolve().parent / "solutions"
CHEAP = ["test_matches_sigmoid", "test_backward_matches"]   # custom_sigmoid, fast


def save(tmp_path, nb, name="homework.ipynb") -> Path:
    path = tmp_path / name
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def top_level_chunks(source: str) -> list[str]:
    """A module split into cells at its top-level statements (decorators included)."""
    lines = source.splitlines()
    tree = ast.parse(source)
    starts = [min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])]) - 1
              for n in tree.body]
    return ["\n".join(lines[a:b]) for a, b in zip(starts, starts[1:] + [len(lines)])]


# Python code that uses IPython syntax in every form the extractor must neutralise; the
# asserts run when the module is imported, so grading proves the code left is intact.
IPYTHON_CELL = """\
%matplotlib inline
!pip install torch
def helper(n):
    %time m = n
    !echo {n}
    return n + 1
files = !ls -la
t = %timeit -o helper(1)
helper?
??helper
helper??
get_ipython().run_line_magic("matplotlib", "inline")
shell = get_ipython().getoutput(
    "ls")
value = 7 % 3 if 1 != 2 else 0   # which? (a question in a comment)
label = f"{value!r}% done?"
assert helper(1) == 2 and value == 1 and label == "1% done?", (value, label)"""

TIMED_CELL = "%%time\ntimed = 40\ntimed += 2\n%timeit timed"
CHECK_CELL = "assert timed == 42 and MySigmoid.__name__ == 'MySigmoid'"
DROPPED_CELLS = [
    "%%bash\nexit 1\ndef broken(:",                # would not even parse as Python
    "%%writefile helper.py\nraise SystemExit(3)",  # valid Python that would end the import
    "%%script python3\nraise SystemExit(4)",
    "%%html\n<b>raise SystemExit(5)</b>",
    "%%javascript\nthrow 1;",
    "%%sh\nrm -rf /tmp/x",
]


def magic_notebook() -> nbformat.NotebookNode:
    """tests/solutions/custom_sigmoid/correct_masked_branches.py cut into cells, markdown in
    between, magics and shell lines around it."""
    src = (SOLUTIONS / "custom_sigmoid" / "correct_masked_branches.py").read_text()
    cells = [new_markdown_cell("# My sigmoid\n%matplotlib inline would be a magic in code")]
    for i, chunk in enumerate(top_level_chunks(src)):
        cells.append(new_code_cell(("%load_ext autoreload\n" if i == 1 else "") + chunk))
        cells.append(new_markdown_cell(f"Part {i}: `!ls` and `x?` are text here"))
    cells += [new_code_cell(IPYTHON_CELL), new_raw_cell("raise SystemExit(6)"),
              new_code_cell(TIMED_CELL)]
    cells += [new_code_cell(c) for c in DROPPED_CELLS]
    cells.append(new_code_cell(CHECK_CELL))
    return new_notebook(cells=cells)


def assert_lines_aligned(source: str, nb) -> None:
    """Every line of every code cell is at its own place: kept as is, or replaced by a
    stand-in that names it."""
    lines = source.split("\n")
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        header = next(i for i, line in enumerate(lines)
                      if re.fullmatch(rf"(.*  )?# \[cell {number}( .*)?\]", line))
        for j, original in enumerate(cell.source.removesuffix("\n").split("\n")):
            got = lines[header + 1 + j]
            assert got == original or any(got.endswith(stand_in + original.strip()[:40])
                                          for stand_in in (notebook.DROPPED, notebook.MOVED)), \
                (number, j, original, got)


def test_code_cells_are_extracted_in_order_with_ipython_syntax_neutralised(tmp_path):
    nb = magic_notebook()
    path = save(tmp_path, nb)
    sub = read(path)
    assert sub.syntax_error is None and sub.tree is not None
    assert sub.path == path and sub.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sub.data == sub.source.encode("utf-8")
    # the whole solution, in order, and nothing of markdown or raw cells
    solution = (SOLUTIONS / "custom_sigmoid" / "correct_masked_branches.py").read_text()
    kept = iter(sub.source.split("\n"))
    assert all(line in kept for line in solution.split("\n") if line.strip())
    assert "My sigmoid" not in sub.source and "SystemExit(6)" not in sub.source
    assert_lines_aligned(sub.source, nb)
    # no IPython syntax left in code; dropped cell-magic bodies are comments, not code
    code = [s for s in map(str.strip, sub.source.split("\n")) if s and not s.startswith("#")]
    assert not [l for l in code if l[0] in "%!?" or re.match(r"\w+ = [!%]", l) or
                l.startswith("get_ipython") or (l.endswith("?") and "#" not in l)]
    raises = [n for n in ast.walk(sub.tree) if isinstance(n, ast.Raise)]
    assert not raises, "a dropped cell magic's body was taken"
    defined = {n.name for n in sub.tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert defined == {"MySigmoid", "my_sigmoid", "helper"}
    # bytes of the notebook, as batch hands them over, give the same submission
    again = from_file_bytes(path.read_bytes(), Path("alice/homework.ipynb"))
    assert (again.source, again.sha256) == (sub.source, sub.sha256)


def test_magics_inside_strings_and_python_operators_are_untouched():
    cell = ('doc = """\n%matplotlib inline\n!ls\n    x?\nget_ipython()\n%%bash\n"""\n'
            "more = '''a\n!b'''\n"
            "cont = 'one\\\n!two'\n"
            "r = r\"\\\"\\\n!not the end\"\n"
            "values = [1\n % 2, 3\n != 4]  # lines 2 and 3 continue a statement\n"
            "print(values)  # really?\n"
            "%matplotlib inline\n")
    nb = new_notebook(cells=[new_code_cell(cell)])
    source = notebook.extract(nbformat.writes(nb).encode(), "n.ipynb").source
    lines = source.split("\n")
    assert lines[1:-2] == cell.split("\n")[:-2], "only the real magic (last line) may change"
    assert lines[-2] == "pass  # [grade] dropped: %matplotlib inline"
    ns = {}
    exec(compile(source, "n.ipynb", "exec"), ns)   # our own test code
    assert ns["doc"] == "\n%matplotlib inline\n!ls\n    x?\nget_ipython()\n%%bash\n"
    assert ns["more"] == "a\n!b" and ns["cont"] == "one!two"
    assert ns["r"] == '\\"\\\n!not the end' and ns["values"] == [1, True]


def test_the_scanner_finds_statement_starts_where_tokenize_does():
    """Lines are only ever replaced at a statement start: the scanner agrees with Python's own
    tokenizer on real code (strings, brackets, continuations, comments)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    files = [Path(p) for p in glob.glob(str(ROOT / "runner" / "*.py"))
             + glob.glob(str(ROOT / "tests" / "**" / "*.py"), recursive=True)
             + [f"{stdlib}/{m}.py"
                for m in ("tokenize", "inspect", "textwrap", "argparse", "doctest")]]
    for path in files:
        src = path.read_text(encoding="utf-8")
        expected, depth = {1}, 0
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
            elif tok.type == tokenize.NEWLINE or (tok.type == tokenize.NL and depth == 0):
                expected.add(tok.end[0] + 1)
        lexer, found = notebook.Lexer(), set()
        for number, line in enumerate(src.split("\n"), start=1):
            if lexer.at_statement_start:
                found.add(number)
            lexer.feed(line)
        assert found == {n for n in expected if n <= src.count("\n") + 1}, path


def test_indented_cell_and_cell_magic_after_blank_lines():
    nb = new_notebook(cells=[new_code_cell("    x = 1\n    !ls\n    if x:\n        y = 2"),
                             new_code_cell("\n\n%%capture out\nz = 3\n%who"),
                             new_code_cell("  \n%%bash\necho 1")])
    source = notebook.extract(nbformat.writes(nb).encode(), "n.ipynb").source
    tree = ast.parse(source)   # IPython dedents a cell by its first line's indentation
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets}
    assert assigned == {"x", "y", "z"}
    assert len(source.split("\n")) == 1 + 4 + 1 + 5 + 1 + 3 + 1


def test_future_imports_of_any_cell_and_display_work_as_in_jupyter(tmp_path, grade_file):
    # In Jupyter each cell compiles alone, so `from __future__` may sit in a later cell, and
    # display() needs no import.  One module needs the import first and display defined.
    solution = (SOLUTIONS / "custom_sigmoid" / "correct_setup_context.py").read_text()
    nb = new_notebook(cells=[
        new_code_cell("import torch\nx = torch.zeros(3)\ndisplay(x)"),
        new_code_cell("from __future__ import annotations  # for the hints\n"
                      "def helper(t: Tensor) -> Tensor:\n    return t\n"
                      "text = '''\nfrom __future__ import braces\n'''"),
        new_code_cell("from __future__ import division, annotations\n" + solution),
        new_code_cell("display(my_sigmoid(x), 'done')\nprint(obj.display(1) if False else 0)")])
    source = notebook.extract(nbformat.writes(nb).encode(), "n.ipynb").source
    assert_lines_aligned(source, nb)
    assert source.startswith("from __future__ import annotations, division; display = ")
    assert "\nfrom __future__ import braces\n" in source     # inside a string: untouched
    namespace = {}
    exec(compile(source, "n.py", "exec"), namespace)      # the extracted module runs as it is
    assert namespace["helper"].__annotations__ == {"t": "Tensor", "return": "Tensor"}
    result = grade_file(save(tmp_path, nb, "custom_sigmoid.ipynb"), exercise="custom_sigmoid",
                        tests=CHEAP)
    assert result.score == result.max_score > 0, [(t.name, t.message) for t in result.tests]


def test_no_prelude_when_a_notebook_needs_none():
    nb = new_notebook(cells=[new_code_cell("import torch\nshow = lambda v: v\nshow(1)")])
    source = notebook.extract(nbformat.writes(nb).encode(), "n.ipynb").source
    assert source.split("\n")[0] == "# [cell 1]"


# ---- nbgrader -------------------------------------------------------------------------------

def nbgrader_cell(source, **meta):
    meta = {"schema_version": 3, "solution": False, "grade": False, "locked": False} | meta
    cell = new_markdown_cell(source) if meta.pop("markdown", False) else new_code_cell(source)
    cell.metadata["nbgrader"] = meta
    return cell


def nbgrader_notebook(solution: str) -> nbformat.NotebookNode:
    return new_notebook(cells=[
        nbgrader_cell("Implement `my_sigmoid`.", markdown=True, task=True, grade_id="intro"),
        nbgrader_cell("import torch", locked=True, grade_id="setup"),
        nbgrader_cell(solution, solution=True, grade_id="sigmoid-solution"),
        nbgrader_cell("raise SystemExit('instructor tests')\nassert my_sigmoid(0) == 42",
                      grade=True, locked=True, points=5, grade_id="test sigmoid"),
        nbgrader_cell("ANSWER = 'kept'", solution=True, grade=True, points=1, grade_id="answer"),
        nbgrader_cell("assert False, 'task cell'", task=True, grade_id="task"),
        new_code_cell("print(my_sigmoid(torch.zeros(2)))"),   # a plain cell the student added
    ])


def test_nbgrader_test_cells_are_left_out_and_the_solution_is_graded(tmp_path, grade_file):
    solution = (SOLUTIONS / "custom_sigmoid" / "correct_setup_context.py").read_text()
    path = save(tmp_path, nbgrader_notebook(solution), "custom_sigmoid.ipynb")
    sub = read(path)
    assert "instructor tests" not in sub.source and "task cell" not in sub.source
    headers = re.findall(r"^# \[cell .*\]$", sub.source, flags=re.M)
    assert headers == ["# [cell 2 setup]", "# [cell 3 sigmoid-solution]", "# [cell 5 answer]",
                       "# [cell 7]"]
    assert solution.rstrip("\n") in sub.source and "ANSWER = 'kept'" in sub.source
    result = grade_file(path, exercise="custom_sigmoid", tests=CHEAP)
    assert [t.name for t in result.tests] == CHEAP
    assert result.score == result.max_score > 0, [(t.name, t.message) for t in result.tests]
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# ---- errors ---------------------------------------------------------------------------------

def test_a_syntax_error_names_its_cell_and_line():
    nb = new_notebook(cells=[new_markdown_cell("intro"),
                             new_code_cell("%matplotlib inline\nimport torch\n\n"),
                             new_code_cell("x = 1\n!ls\ndef f(:\n    pass")])
    data = nbformat.writes(nb).encode()
    sub = from_file_bytes(data, Path("hw.ipynb"))
    assert sub.tree is None
    assert "cell 3, line 3 of the cell" in sub.syntax_error, sub.syntax_error
    lineno = int(re.search(r"\(line (\d+)", sub.syntax_error).group(1))
    assert sub.source.split("\n")[lineno - 1] == "def f(:"


def big_output_notebook(output_bytes: int) -> bytes:
    cell = new_code_cell("x = 1", outputs=[new_output("stream", name="stdout",
                                                      text="y" * output_bytes)])
    return nbformat.writes(new_notebook(cells=[cell])).encode()


def test_outputs_are_ignored_but_the_file_size_cap_applies(tmp_path):
    ok = tmp_path / "ok.ipynb"
    ok.write_bytes(big_output_notebook(2 << 20))
    assert read(ok).source == "# [cell 1]\nx = 1\n"
    big = tmp_path / "big.ipynb"
    big.write_bytes(big_output_notebook(notebook.MAX_NOTEBOOK_BYTES))
    for attempt in (lambda: read(big), lambda: from_file_bytes(big.read_bytes(), big)):
        with pytest.raises(UnusableSubmission) as e:
            attempt()
        message = str(e.value)
        assert f"big.ipynb is {big.stat().st_size} bytes (16.0 MiB)" in message
        assert "the limit for a notebook is 16 MiB" in message


BIG_CELL, HEADER_1 = "x = 1\n" * (MAX_SOURCE_BYTES // 6 + 1), "# [cell 1]\n"


def notebook_json(**changes) -> bytes:
    d = json.loads(nbformat.writes(new_notebook(cells=[new_code_cell("x = 1")])))
    d.update(changes)
    return json.dumps(d).encode()


@pytest.mark.parametrize("data,expected", [
    (b'{"cells": [', "is not a valid notebook: not JSON (Expecting value at line 1, column 12)"),
    (b'{"nbformat": 4, "cells": "\xff"}', "is not a valid notebook: not UTF-8 (invalid byte 0xff"),
    (b"[1, 2, 3]", "is not a valid notebook: the JSON has no \"nbformat\" field"),
    (b'{"cells": []}', "is not a valid notebook: the JSON has no \"nbformat\" field"),
    (b"[" * 100_000 + b"]" * 100_000, "is not a valid notebook: not JSON that can be read"),
    (notebook_json(nbformat=5), "is not a valid notebook: nbformat version 5 cannot be read"),
    (notebook_json(nbformat="4"), "is not a valid notebook: nbformat version '4' cannot be read"),
    (notebook_json(cells=[{"cell_type": "code", "source": "x"}]),
     "is not a valid notebook: nbformat validation failed"),
    (notebook_json(cells={"a": 1}), "is not a valid notebook: nbformat"),
    (notebook_json(cells=[new_code_cell("x = '\x00'")]), "hw.ipynb: cell 1 contains a NUL"),
    (notebook_json(cells=[new_code_cell("x = '\ud800'")]),
     "hw.ipynb: a code cell contains a character that is not valid text ('\\ud800')"),
    (notebook_json(cells=[new_code_cell(BIG_CELL)]),
     f"the code cells of hw.ipynb hold {len(HEADER_1 + BIG_CELL)} bytes of code; "
     f"the limit is {MAX_SOURCE_BYTES}"),
], ids=["json", "utf8", "list", "no-version", "nested", "v5", "version-str", "no-metadata",
        "cells-dict", "nul", "surrogate", "too-much-code"])
def test_unusable_notebooks_are_refused_in_one_line(tmp_path, data, expected):
    path = tmp_path / "hw.ipynb"
    path.write_bytes(data)
    with pytest.raises(UnusableSubmission) as e:
        read(path)
    message = str(e.value)
    assert expected in message and "\n" not in message and len(message) < 400, message


def test_old_nbformat_3_notebooks_are_converted(tmp_path):
    from nbformat import v3
    nb = v3.new_notebook(worksheets=[v3.new_worksheet(cells=[
        v3.new_code_cell(input="%pylab inline\nx = 1"), v3.new_text_cell("markdown", "hi")])])
    path = tmp_path / "old.ipynb"
    path.write_text(v3.writes_json(nb))
    assert read(path).source == "# [cell 1]\npass  # [grade] dropped: %pylab inline\nx = 1\n"


def test_mangled_notebooks_never_raise_anything_but_unusable():
    """Random values put anywhere in a notebook's JSON: a submission or UnusableSubmission."""
    solution = (SOLUTIONS / "custom_sigmoid" / "correct_tanh.py").read_text()
    base = json.loads(nbformat.writes(nbgrader_notebook(solution)))
    junk = [None, True, 0, -1, 7, 2.5, "", "%%bash", "x?", [], {}, ["a", 1], [["x"]],
            {"nbgrader": {"grade": 1}}, {"cell_type": "code"}, "\ud800", "\x00"]
    rng = random.Random(1234)
    outcomes = {"ok": 0, "unusable": 0}
    for _ in range(400):
        doc = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            node, key = doc, None
            while True:   # walk down to a random place
                keys = list(node) if isinstance(node, dict) else list(range(len(node)))
                if not keys:
                    break
                key = rng.choice(keys)
                if not isinstance(node[key], (dict, list)) or rng.random() < 0.3:
                    break
                node, key = node[key], None
            if key is not None:
                if rng.random() < 0.2 and isinstance(node, dict):
                    del node[key]
                else:
                    node[key] = copy.deepcopy(rng.choice(junk))
        data = json.dumps(doc).encode()
        try:
            from_file_bytes(data, Path("m.ipynb"))
            outcomes["ok"] += 1
        except UnusableSubmission as e:
            assert "m.ipynb" in str(e) and "\n" not in str(e)
            outcomes["unusable"] += 1
    assert outcomes["ok"] > 20 and outcomes["unusable"] > 20, outcomes


# ---- grading --------------------------------------------------------------------------------

def test_top_level_infinite_loop_times_out_within_the_limits(tmp_path, grade_file):
    solution = (SOLUTIONS / "custom_sigmoid" / "correct_tanh.py").read_text()
    nb = new_notebook(cells=[new_code_cell(solution), new_markdown_cell("train"),
                             new_code_cell("%matplotlib inline\nwhile True:\n    pass")])
    path = save(tmp_path, nb, "loop.ipynb")
    started = time.monotonic()
    result = grade_file(path, exercise="custom_sigmoid", tests=CHEAP, call_timeout=2.0,
                        time_limit=10.0)
    seconds = time.monotonic() - started
    assert {t.status for t in result.tests} == {"timeout"}, \
        [(t.name, t.message) for t in result.tests]
    assert result.score == 0 and seconds < 2 * (2.0 + 5) + 5, seconds
    assert 'if __name__ == "__main__":' in result.tests[0].message


def test_top_level_training_gets_the_exercises_import_timeout(tmp_path, grade_file):
    # A notebook that "trains" for 3 s in its last cell: over a 2 s call limit, within an
    # exercise's import_timeout of 10 s (manifest [limits]), and counted against time_limit.
    solution = (SOLUTIONS / "custom_sigmoid" / "correct_tanh.py").read_text()
    nb = new_notebook(cells=[new_code_cell(solution),
                             new_code_cell("import time\nfor epoch in range(30):\n    time.sleep(0.1)")])
    path = save(tmp_path, nb, "custom_sigmoid.ipynb")
    result = grade_file(path, exercise="custom_sigmoid", tests=CHEAP, call_timeout=2.0,
                        import_timeout=10.0, time_limit=30.0)
    assert result.score == result.max_score > 0, [(t.name, t.message) for t in result.tests]
    result = grade_file(path, exercise="custom_sigmoid", tests=CHEAP, call_timeout=2.0,
                        time_limit=30.0)
    assert {t.status for t in result.tests} == {"timeout"}


def grade_cli(*args):
    return subprocess.run([sys.executable, "-m", "cli", "submit", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_command_line_grades_a_notebook_and_refuses_a_broken_one(tmp_path):
    path = save(tmp_path, magic_notebook(), "my homework.ipynb")
    out = tmp_path / "results.json"
    tests = [a for t in CHEAP for a in ("--test", t)]
    r = grade_cli("--exercise", "custom_sigmoid", "--results", out, *tests, path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert data["score"] == data["max_score"] > 0, data["tests"]
    assert data["extra_data"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    broken = tmp_path / "broken.ipynb"
    broken.write_bytes(path.read_bytes()[:-10])
    r = grade_cli("--exercise", "custom_sigmoid", broken)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("grade: error: broken.ipynb is not a valid notebook: not JSON")
    assert r.stderr.count("\n") == 1
