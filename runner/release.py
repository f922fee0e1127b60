"""`grade release`: the bundle students get.

    OUT/README.md                   how to work and how to submit
    OUT/<ex>/<ex>.py                the stub (its docstrings are the contract)
    OUT/<ex>/<ex>.ipynb             the same stub as a notebook (nbgrader-compatible source notebook)
    OUT/<ex>/public_tests.py        a few public checks: ``python -m pytest public_tests.py``

Only files under ``assignments/`` go out: never ``reference/`` or ``graders/``.

The notebook: a title cell (manifest title + the stub's module docstring), one markdown
cell per public function/class with its docstring, ONE code cell holding the stub code
(module docstring removed, the rest verbatim) with every body that raises
NotImplementedError between nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION``
comments, a locked test cell with a few public checks, and a cell on how it is graded.
The code cell alone is the importable submission.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import nbformat
from nbformat import v4

from . import exercises

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"

# Checks the notebook's test cell runs.  They sit in the same notebook as the submission,
# so they must not name anything an exercise bans (nn.BatchNorm2d, torch.sigmoid, ...),
# and run only when executed as a notebook, never when the code is imported for grading.
NOTEBOOK_CHECKS = {
    "distance_matrix": '''\
x = torch.randn(5, 3, dtype=torch.float64)
y = torch.randn(4, 3, dtype=torch.float64)
d = pairwise_distances(x, y)
assert d.shape == (5, 4) and d.dtype == torch.float64
torch.testing.assert_close(d, torch.cdist(x, y))
assert torch.equal(pairwise_distances(x).diagonal(), torch.zeros(5, dtype=torch.float64))
assert nearest_neighbors(torch.tensor([[0.0], [1.0], [-1.0], [5.0], [5.0]])).tolist() == [1, 0, 0, 4, 3]''',
    "custom_sigmoid": '''\
x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
s = my_sigmoid(x)
assert s.shape == x.shape and s.dtype == x.dtype
torch.testing.assert_close(s.detach(), 1 / (1 + torch.exp(-x.detach())))
assert torch.isfinite(my_sigmoid(torch.tensor([-1e4, 0.0, 1e4]))).all()
assert torch.autograd.gradcheck(MySigmoid.apply, (x,))''',
    "batchnorm2d": '''\
x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
bn = MyBatchNorm2d(3).double()
mean = x.mean(dim=(0, 2, 3), keepdim=True)
var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
torch.testing.assert_close(bn(x), (x - mean) / torch.sqrt(var + 1e-5))
torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * x.var(dim=(0, 2, 3)))
assert bn.num_batches_tracked.item() == 1''',
    "unet": '''\
model = UNet(base_channels=4, depth=2)
out = model(torch.randn(2, 1, 16, 16))
assert out.shape == (2, 1, 16, 16) and out.dtype == torch.float32
(out ** 2).mean().backward()
assert not [name for name, p in model.named_parameters() if p.grad is None], "unused parameters"''',
    "causal_lm": '''\
model = CausalLM(vocab_size=11, d_model=16, n_heads=2, n_layers=1, max_len=8).eval()
idx = torch.randint(0, 11, (2, 6))
logits = model(idx)
assert logits.shape == (2, 6, 11) and logits.dtype == torch.float32
later = idx.clone()
later[:, 3:] = (later[:, 3:] + 1) % 11
torch.testing.assert_close(model(later)[:, :3], logits[:, :3])   # positions 0..2 ignore the future
out = generate(model, idx, max_new_tokens=4, temperature=0)
assert out.shape == (2, 10) and torch.equal(out[:, :6], idx)''',
    "amp_training": '''\
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
xs = torch.randn(30, 16, 4)
batches = list(zip(xs, xs.sum(dim=2, keepdim=True)))
losses = train_amp(model, torch.nn.functional.mse_loss, batches,
                   torch.optim.SGD(model.parameters(), lr=0.05), device_type="cpu", dtype=torch.bfloat16)
assert len(losses) == 30 and {type(v) for v in losses} == {float}
assert sum(losses[-5:]) < sum(losses[:5])''',
}

GRADING_NOTE = """\
## How this is graded

Your code is graded by hidden tests that check everything the docstrings above say (the
test cell above and `public_tests.py` are only a few of those checks).  Keep the names and
signatures of the functions and classes as they are: do not rename them.  Submit this
notebook as `{ex}.ipynb` (or the code as `{ex}.py`).  Its code cells, all but the test
cell, are graded as one Python file: delete slow or noisy experiments before submitting.
"""

README = """\
# Exercises

One folder per exercise:

    <exercise>/<exercise>.py        the code to complete (the docstrings say exactly what is graded)
    <exercise>/<exercise>.ipynb     the same, as a notebook, if you prefer Jupyter
    <exercise>/public_tests.py      a few public tests

Exercises: {names}.

## Working

Fill in the functions and classes marked `NotImplementedError`, in the `.py` file or in the
notebook's code cell (between `### BEGIN SOLUTION` and `### END SOLUTION`).  Keep their
names and signatures.  Check your work with the public tests, next to the `.py` file:

    cd distance_matrix
    python -m pytest public_tests.py

(Working in the notebook?  Run its test cell, or save the code cell as `<exercise>.py`
to run the public tests.)  They need Python >= 3.11, PyTorch and pytest.  Passing them
does not mean full marks: the hidden tests check everything the docstrings say.

## Submitting

Submit the file under its exercise's name, `<exercise>.py` or `<exercise>.ipynb`:

* upload it to the course's Gradescope assignment, or
* if your course gives you the `grade` tool: `grade submit distance_matrix.py`
  (prints a per-test report).

Do not rename the file, the functions or the classes.
"""


def split_docstring(source: str) -> tuple[str, str]:
    """(module docstring, the code after it verbatim, leading blank lines dropped)."""
    tree = ast.parse(source)
    doc = ast.get_docstring(tree, clean=True) or ""
    if not doc:
        return "", source
    lines = source.splitlines(keepends=True)
    rest = "".join(lines[tree.body[0].end_lineno:])
    return doc, rest.lstrip("\n")


def _raises_not_implemented(fn: ast.FunctionDef) -> bool:
    for stmt in fn.body:
        if isinstance(stmt, ast.Raise) and stmt.exc is not None:
            exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


def mark_solutions(code: str) -> str:
    """Wrap the body (after the docstring) of every function that raises NotImplementedError."""
    lines = code.splitlines(keepends=True)
    regions = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _raises_not_implemented(node):
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            regions.append((body[0].lineno, node.end_lineno, body[0].col_offset))
    for first, last, col in sorted(regions, reverse=True):   # bottom up: line numbers stay valid
        indent = " " * col
        lines[last:last] = [f"{indent}{END}\n"]
        lines[first - 1:first - 1] = [f"{indent}{BEGIN}\n"]
    return "".join(lines)


def strip_markers(code: str) -> str:
    """The code of a solution cell without the nbgrader marker lines."""
    return "".join(line for line in code.splitlines(keepends=True)
                   if line.strip() not in (BEGIN, END))


def _fenced(text: str) -> str:
    return f"```text\n{text}\n```"


def api_cells(code: str) -> list[str]:
    """Markdown, one per public top-level function/class: its signature and docstring(s)."""
    cells = []
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            text = f"## `{node.name}({ast.unparse(node.args)})`"
            if doc := ast.get_docstring(node):
                text += "\n\n" + _fenced(doc)
            cells.append(text)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            text = f"## class `{node.name}`"
            if doc := ast.get_docstring(node):
                text += "\n\n" + _fenced(doc)
            for item in node.body:
                if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                public = not item.name.startswith("_") or item.name == "__init__"
                if public and (doc := ast.get_docstring(item)):
                    args = ast.unparse(item.args)
                    text += f"\n\n### `{node.name}.{item.name}({args})`\n\n" + _fenced(doc)
            cells.append(text)
    return cells


def _nbgrader(grade_id: str, *, solution: bool, grade: bool, locked: bool) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = 0
    return {"nbgrader": meta}


def notebook(name: str) -> nbformat.NotebookNode:
    exercise = exercises.load(name)
    doc, code = split_docstring(exercise.stub.read_text())
    intro = f"# {exercise.title}\n\n"
    if exercise.notes:
        intro += f"*{exercise.notes}*\n\n"
    cells = [v4.new_markdown_cell(intro + doc)]
    cells += [v4.new_markdown_cell(text) for text in api_cells(code)]
    cells.append(v4.new_code_cell(mark_solutions(code).rstrip("\n"), metadata=_nbgrader(
        f"{name}_solution", solution=True, grade=False, locked=False)))
    checks = NOTEBOOK_CHECKS.get(name, "")
    test = ("# Public checks (read-only).  They run in the notebook only, not when your code is graded.\n"
            "import torch\n\nif __name__ == \"__main__\":\n"
            + "".join(f"    {line}\n" if line else "\n" for line in checks.splitlines())
            + "    print(\"public checks passed\")")
    cells.append(v4.new_code_cell(test, metadata=_nbgrader(
        f"{name}_public", solution=False, grade=True, locked=True)))
    cells.append(v4.new_markdown_cell(GRADING_NOTE.format(ex=name)))
    for i, cell in enumerate(cells):   # stable ids: the same stub gives the same notebook
        cell.id = f"{name}-{i}"
    nb = v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    nbformat.validate(nb)
    return nb


def write_release(out: Path, names: list[str] | None = None) -> list[Path]:
    """Write the student bundle into ``out``; returns the files written."""
    out = Path(out)
    names = list(names) if names else exercises.names()
    written = []
    for name in names:
        exercise = exercises.load(name)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        public = exercise.stub.parent / "public_tests.py"
        for src, dest in ((exercise.stub, folder / f"{name}.py"), (public, folder / "public_tests.py")):
            shutil.copyfile(src, dest)
            written.append(dest)
        nb_path = folder / f"{name}.ipynb"
        nbformat.write(notebook(name), nb_path)
        written.append(nb_path)
    readme = out / "README.md"
    readme.write_text(README.format(names=", ".join(f"`{n}`" for n in names)))
    written.append(readme)
    return written
