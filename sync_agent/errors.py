"""The engine's errors. Every message starts with the object or file it concerns."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync_agent.objects import RenderResult


class SyncError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 1


class SourceError(SyncError):
    """The repository, ref, time or path cannot be read (bad input: exit 2)."""

    exit_code = 2


class ConfigError(SyncError):
    """An option or setting that cannot be used, such as a duration that is not one (exit 2)."""

    exit_code = 2


class RenderError(SyncError):
    """Files at the revision cannot be turned into objects (bad input: exit 2).

    Carries every problem found, not just the first, so the user fixes them in one pass.
    """

    exit_code = 2

    def __init__(self, problems: list[str], partial: RenderResult | None = None):
        self.problems = problems
        # What could be rendered despite the problems (history uses it); None if unknown.
        self.partial = partial
        super().__init__("\n".join(problems))


class ValidationError(RenderError):
    """The rendered revision would not apply cleanly; nothing was changed.

    `needs` names the safety flags (--force, --allow-mass-prune, ...) the revision needs, with
    why: a drill records them, so the real procedure is known to need them too.
    """

    def __init__(self, problems: list[str], needs: dict[str, str] | None = None):
        super().__init__(problems)
        self.needs = dict(needs or {})
