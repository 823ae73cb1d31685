"""How commands talk to people and machines: progress and messages on stderr, results on stdout.

Every command takes `--output text|json`; JSON goes to stdout alone so it can be piped.
Errors the user can cause are printed as one sentence without a traceback, with the exit code
of their class (1 failure, 2 bad input).
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

from bootstrap.errors import UserError
from sync_agent.errors import SyncError, ValidationError

NOTHING_CHANGED = " (nothing was changed)"

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
        except (UserError, SyncError) as e:
            problems = getattr(e, "problems", None) or []
            if len(problems) > 1:
                stderr.print(f"[bold red]error:[/bold red] {len(problems)} problems"
                             f"{NOTHING_CHANGED if isinstance(e, ValidationError) else ''}:")
                for problem in problems:
                    stderr.print(f"  - {problem}", markup=False)
            else:
                stderr.print("[bold red]error:[/bold red] ", end="")
                stderr.print(str(e), markup=False)
            raise typer.Exit(code=e.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("interrupted")
            raise typer.Exit(code=130) from None

    return wrapper
