"""Rendering results for people: the per-test table of `grade submit`."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .results import STATUSES, GradingResult

STYLE = {"passed": "green", "skipped": "dim", "not_implemented": "yellow", "grader_error": "magenta"}


def result_table(result: GradingResult) -> Table:
    table = Table(title=f"{result.exercise} — {result.submission}", title_justify="left",
                  show_lines=True, expand=True)
    table.add_column("test", ratio=2, overflow="fold")
    table.add_column("points", justify="right", no_wrap=True, min_width=5)
    table.add_column("status", no_wrap=True, min_width=8)
    table.add_column("message", ratio=3, overflow="fold")
    for t in result.tests:
        pts = "—" if t.status == "skipped" else f"{t.score:g}/{t.max_score:g}"
        label = STATUSES.get(t.status, t.status)
        table.add_row(t.title or t.name, pts, Text(label, style=STYLE.get(t.status, "red")),
                      t.message)
    return table


def print_result(result: GradingResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(result_table(result))
    console.print(f"[bold]score {result.score:g}/{result.max_score:g}[/bold]  "
                  f"({result.execution_time:.1f} s, sandbox: {result.sandbox}, device: {result.device}, "
                  f"seed {result.seed})")
    for t in result.tests:
        if t.internal:
            console.print(f"[magenta]grader error in {t.name} (instructor details):[/magenta]\n{t.internal}")
