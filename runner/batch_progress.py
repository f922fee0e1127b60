"""What `grade batch` shows while it runs: a progress bar with ETA, then a summary table."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

COUNTED = ("graded", "unusable", "missing", "timed out", "error")   # BatchReport.summary's counts


class BatchProgress:
    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(TextColumn("[bold]grading"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[last]}"), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=console,
                                 transient=False)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start(self, plan) -> None:
        self.console.print(f"{len(plan.students)} students x {len(plan.exercises)} exercises "
                           f"({', '.join(plan.exercises) or 'none'}): {len(plan.jobs)} to grade, "
                           f"{plan.kept} already graded, {len(plan.ready)} without a file to grade")
        self.task = self.progress.add_task("grading", total=len(plan.jobs) + len(plan.ready), last="")

    def advance(self, record: dict) -> None:
        extra = record["extra_data"]
        last = f"{extra['student']}/{extra['exercise']}: {record['score']:g}/{record['max_score']:g}"
        if extra["status"] != "graded":
            last = f"{extra['student']}/{extra['exercise']}: {extra['status']}"
        self.progress.update(self.task, advance=1, last=last)

    def print_summary(self, report, results: Path) -> None:
        summary = report.summary(results)
        table = Table(title=f"batch: {len(report.records)} written in {report.seconds:.0f} s")
        for col in COUNTED:
            table.add_column(col, justify="right")
        counts = summary["counts"]
        table.add_row(*(str(counts.get(c, 0)) for c in COUNTED))
        self.console.print(table)
        means = Table(title="mean score of graded submissions")
        means.add_column("exercise")
        means.add_column("mean", justify="right")
        for name, pct in summary["mean_percent"].items():
            means.add_row(name, f"{pct:.1f} %")
        self.console.print(means)
        if report.discovery.unknown:
            self.console.print(f"[yellow]not an exercise, not graded:[/] "
                               f"{', '.join(report.discovery.unknown[:20])}"
                               + (" ..." if len(report.discovery.unknown) > 20 else ""))
        for line in report.discovery.ignored[:20]:
            self.console.print(f"[yellow]ignored:[/] {line}")
        if counts.get("error"):
            self.console.print("[red]some gradings failed on the platform's side (status error); "
                               "run the same command again to retry them[/]")
        for name, path in report.aggregates.items():
            self.console.print(f"{name}: {path}")
