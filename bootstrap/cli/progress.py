"""Show the engine's event stream to a person: a progress bar per phase on stderr."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bootstrap.cli.output import stderr
from sync_agent import events


class PhaseProgress:
    """A context manager whose `emit` is the engine's event sink."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        # Per-object events only move a bar; with no terminal to draw it on, skip them (at
        # 10,000 objects they cost a visible share of the CPU).
        self._bars = enabled and stderr.is_terminal
        self._progress = Progress(TextColumn("{task.description:<22}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), console=stderr,
                                  transient=False, disable=not self._bars)
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> PhaseProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def emit(self, event: events.Event) -> None:
        if not self.enabled:
            return
        match event:
            case events.PhaseStarted(phase=phase, total=total):
                self._tasks[phase] = self._progress.add_task(phase, total=total or None)
            case events.ObjectDone(phase=phase):
                task = self._tasks.get(phase)
                if task is not None and self._bars:
                    self._progress.advance(task)
            case events.PhaseFinished(phase=phase, seconds=seconds):
                task = self._tasks.get(phase)
                if task is not None:
                    total = self._progress.tasks[task].total
                    self._progress.update(task, completed=total or 1, total=total or 1)
                if not stderr.is_terminal:
                    stderr.print(f"[dim]{phase}: {seconds:.2f}s[/dim]")
            case events.Message(text=text):
                self._progress.console.print(text)
