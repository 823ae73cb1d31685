"""How commands talk to people and machines: progress and messages on stderr, results on stdout.

Every command takes `--output text|json`; JSON goes to stdout alone so it can be piped.
Errors the user can cause are printed as one sentence without a traceback, with the exit code
of their kind (EXIT_CODES).
"""

from __future__ import annotations

import enum
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from sync_agent import errors
from sync_agent.errors import SyncError, ValidationError

NOTHING_CHANGED = " (nothing was changed)"
# The one table of exit codes for errors (README "Exit codes"; 3, differences found, is a
# result). Refused input changed nothing; the rest may be run again as they are.
EXIT_CODES: dict[type[SyncError] | None, int] = {
    errors.Refused: 2, errors.Unavailable: 2,
    errors.Conflict: 1, errors.Transient: 1, errors.Failed: 1,
    None: 1,  # not of a kind: a bug, reported as a failure
}

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


class Output(enum.StrEnum):
    text = "text"
    json = "json"


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def progress_printer(prefix: str = "") -> Callable[[str], None]:
    def show(line: str) -> None:
        stderr.print(f"[dim]{prefix}{line}[/dim]")
    return show


def exits_cleanly(function: Callable) -> Callable:
    """Turn the project's own errors into a message on stderr and an exit code."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except SyncError as e:
            problems = getattr(e, "problems", None) or []
            if len(problems) > 1:
                stderr.print(f"[bold red]error:[/bold red] {len(problems)} problems"
                             f"{NOTHING_CHANGED if isinstance(e, ValidationError) else ''}:")
                for problem in problems:
                    stderr.print(f"  - {problem}", markup=False)
            else:
                stderr.print("[bold red]error:[/bold red] ", end="")
                stderr.print(str(e), markup=False)
            raise typer.Exit(code=EXIT_CODES[errors.kind(e)]) from None
        except KeyboardInterrupt:
            stderr.print("interrupted")
            raise typer.Exit(code=130) from None

    return wrapper
