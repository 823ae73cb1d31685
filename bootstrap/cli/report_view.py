"""A run's report as a person reads it: the SHA, a table of changes, phases with timings."""

from __future__ import annotations

from rich.table import Table

from bootstrap.cli.output import stdout
from sync_agent.changes import Action
from sync_agent.engine import Report

# How each action reads after a run, and in a plan or verify.
_DONE = {Action.CREATE: "created", Action.UPDATE: "configured", Action.RECREATE: "recreated",
         Action.UNCHANGED: "unchanged", Action.DELETE: "deleted", Action.KEEP: "kept"}
_VERIFY = {Action.CREATE: "missing", Action.UPDATE: "drifted", Action.RECREATE: "drifted",
           Action.UNCHANGED: "in sync", Action.DELETE: "extra", Action.KEEP: "kept"}


def show(report: Report, verb: str) -> None:
    words = _VERIFY if verb == "verify" else ({a: a.value for a in Action} if verb == "plan"
                                              else _DONE)
    rev = report.revision
    stdout.print(f"[bold]{verb}[/bold] {report.sync_name}: {rev.repo} {rev.ref} -> "
                 f"[bold]{rev.sha}[/bold] ({rev.committed_at}, {rev.message})")
    if report.path:
        stdout.print(f"path: {report.path}")
    for signed in report.signatures:
        stdout.print(f"signed: {signed}", markup=False)
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("object")
    table.add_column("result")
    table.add_column("detail")
    for change in report.changes.changes:
        if change.action is not Action.UNCHANGED:
            table.add_row(str(change.ref), words[change.action], change.detail)
    if table.row_count:
        stdout.print(table)
    counts = ", ".join(f"{n} {words[Action(a)]}" for a, n in report.changes.count().items() if n)
    stdout.print(f"objects: {counts or 'none'}")
    for note in report.skipped:
        stdout.print(f"skipped: {note}")
    for note in report.helm:
        stdout.print(f"helm: {note}", markup=False)
    for health in report.unhealthy:
        stdout.print(f"[red]not ready[/red] {health.ref}: {health.reason}")
    for health in report.warnings:
        stdout.print(f"[yellow]warning[/yellow] {health.ref}: {health.reason}")
    for error in report.errors:
        stdout.print(f"[red]error[/red] {error}")
    for flag, why in report.needs.items():
        stdout.print(f"needed {flag}: {why}", markup=False)
    phases = "  ".join(f"{name} {seconds:.2f}s" for name, seconds in report.phases)
    stdout.print(f"phases: {phases}  [bold]total {report.seconds:.2f}s[/bold]")
