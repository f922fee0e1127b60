"""Static checks on a submission's source (``ast`` only; nothing is executed).

These run in the judge before any student code runs.  They are the first of
two lines for banned APIs (the second is the ATen trace of real calls, which
judges behaviour and cannot be fooled by renaming); on their own they judge
things only the source can show, such as "no Python loops in function F".
"""
from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass

LOOP_NODES = {
    ast.For: "a for loop", ast.AsyncFor: "an async for loop", ast.While: "a while loop",
    ast.ListComp: "a list comprehension", ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension", ast.GeneratorExp: "a generator expression",
}
LOOPING_CALLS = {"map", "filter", "reduce", "functools.reduce", "itertools"}
DYNAMIC_CALLS = {"eval", "exec", "compile", "__import__", "globals", "vars", "locals",
                 "breakpoint"}
DYNAMIC_FUNCTIONS = {"operator.attrgetter", "operator.methodcaller", "inspect.getattr_static",
                     "inspect.getmembers", "inspect.getmembers_static"}
DYNAMIC_ATTRIBUTES = {"__dict__", "__getattribute__", "__builtins__", "_C", "__class__",
                      "__subclasses__", "__globals__", "__code__"}


@dataclass(frozen=True)
class Finding:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


class _Aliases(ast.NodeVisitor):
    """Local name -> the dotted name it stands for (imports and plain aliasing)."""

    def __init__(self):
        self.names: dict[str, str] = {}

    def visit_Import(self, node: ast.Import):
        for a in node.names:
            if a.asname:
                self.names[a.asname] = a.name
            else:
                root = a.name.split(".")[0]
                self.names[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom):
        if node.module and not node.level:
            for a in node.names:
                self.names[a.asname or a.name] = f"{node.module}.{a.name}"

    def visit_Assign(self, node: ast.Assign):
        parts = _dotted(node.value)
        if parts and parts[0] in self.names:
            full = ".".join([self.names[parts[0]]] + parts[1:])
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.names[t.id] = full
        self.generic_visit(node)


def resolve(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = _dotted(node)
    if not parts or parts[0] not in aliases:
        return None
    return ".".join([aliases[parts[0]]] + parts[1:])


def banned_uses(tree: ast.Module, names=(), attributes=()) -> list[Finding]:
    """Uses of banned dotted names (fnmatch patterns) or banned attribute names."""
    aliases = _Aliases()
    aliases.visit(tree)
    found: list[Finding] = []
    # Attributes the file itself assigns (self.sigmoid = ..., ctx.sigmoid = ...) are its own.
    own = {(n.value.id, n.attr) for n in ast.walk(tree)
           if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
           and isinstance(n.value, ast.Name)}

    def matches(full: str) -> bool:
        return any(fnmatch.fnmatchcase(full, pat) for pat in names)

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if matches(full) or a.name in attributes:
                    found.append(Finding(node.lineno, f"imports {full}, which this exercise bans"))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if matches(a.name):
                    found.append(Finding(node.lineno, f"imports {a.name}, which this exercise bans"))
        elif isinstance(node, (ast.Attribute, ast.Name)) and isinstance(node.ctx, ast.Load):
            full = resolve(node, aliases.names)
            if full and matches(full):
                found.append(Finding(node.lineno, f"uses {full}, which this exercise bans"))
            elif (isinstance(node, ast.Attribute) and node.attr in attributes
                  and not (isinstance(node.value, ast.Name)
                           and (node.value.id == "self" or (node.value.id, node.attr) in own))):
                found.append(Finding(node.lineno, f"uses .{node.attr}, which this exercise bans"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in attributes):
            found.append(Finding(node.lineno, f"uses .{node.args[1].value} through getattr, "
                                 "which this exercise bans"))
    return _dedupe(found)


def dynamic_access(tree: ast.Module) -> list[Finding]:
    """Code that could reach an API without naming it (eval, computed getattr, ...)."""
    aliases = _Aliases()
    aliases.visit(tree)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    found: list[Finding] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and resolve(node.func, aliases.names) in DYNAMIC_FUNCTIONS:
            found.append(Finding(node.lineno, f"calls {resolve(node.func, aliases.names)}(), "
                                 "which can hide a banned API"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            fn = node.func.id
            if fn in DYNAMIC_CALLS:
                found.append(Finding(node.lineno, f"calls {fn}(), which can hide a banned API"))
            elif fn in ("getattr", "setattr", "delattr") and len(node.args) >= 2 and not (
                    isinstance(node.args[1], ast.Constant)):
                found.append(Finding(node.lineno, f"calls {fn}() with a computed attribute name, "
                                     "which can hide a banned API"))
        elif (isinstance(node, ast.Name) and node.id in ("getattr", "__import__")
              and isinstance(node.ctx, ast.Load) and id(node) not in called):
            found.append(Finding(node.lineno, f"passes {node.id} around as a value, "
                                 "which can hide a banned API"))
        elif isinstance(node, ast.Attribute) and node.attr in DYNAMIC_ATTRIBUTES:
            found.append(Finding(node.lineno, f"uses .{node.attr}, which can hide a banned API"))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for m in mods:
                if m.split(".")[0] in ("importlib", "ctypes", "builtins"):
                    found.append(Finding(node.lineno, f"imports {m}, which can hide a banned API"))
        elif (isinstance(node, ast.Attribute) and node.attr == "modules"
              and isinstance(node.value, ast.Name) and node.value.id == "sys"):
            found.append(Finding(node.lineno, "uses sys.modules, which can hide a banned API"))
    return _dedupe(found)


def _definitions(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level functions and classes, and methods as Class.method."""
    defs: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[node.name] = node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        defs[f"{node.name}.{item.name}"] = item
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    defs[t.id] = node.value
    return defs


def loops_in(tree: ast.Module, function: str) -> list[Finding]:
    """Python-level loops in ``function`` and in the helpers of this file it calls."""
    defs = _definitions(tree)
    if function not in defs:
        return []
    aliases = _Aliases()
    aliases.visit(tree)
    found: list[Finding] = []
    seen: set[str] = set()
    todo = [function]
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        where = "" if name == function else f" (in {name}, which {function} calls)"
        for node in ast.walk(defs[name]):
            for kind, label in LOOP_NODES.items():
                if isinstance(node, kind):
                    found.append(Finding(node.lineno, f"{label}{where}"))
            if isinstance(node, ast.Call):
                full = resolve(node.func, aliases.names) or (
                    node.func.id if isinstance(node.func, ast.Name) else None)
                if full and (full in LOOPING_CALLS or full.split(".")[0] == "itertools"):
                    found.append(Finding(node.lineno, f"a call to {full}(){where}"))
                if isinstance(node.func, ast.Name):
                    todo.append(node.func.id)
                elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                    todo.append(f"{node.func.value.id}.{node.func.attr}")
    return _dedupe(found)


def _dedupe(found: list[Finding]) -> list[Finding]:
    return sorted(set(found), key=lambda f: (f.line, f.message))
