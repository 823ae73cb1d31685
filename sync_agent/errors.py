"""The engine's errors. Every message starts with the object or file it concerns.

Every error gitops-restore raises on purpose (bootstrap's too) is a SyncError of one of four
kinds, which say what a caller should do about it:

  Refused      bad input, found before anything was changed: the same input is refused again
  Unavailable  (a Refused) what the input points at is missing or refuses us -- the Git
               server, a ref, a Secret, the sync's lock: it can come about by itself
  Conflict     another writer changed what this run works on; nothing of theirs overwritten
  Transient    no answer in time (the API server, the Git server): the same run may succeed
  Failed       the run went ahead and did not reach its goal

The CLI turns the kinds into exit codes in one place (`bootstrap/cli/output.py`), the agent
into retry or stall (`sync_agent/agent/attempts.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync_agent.objects import RenderResult


class SyncError(Exception):
    """Base of every error gitops-restore raises on purpose; raise one of the kinds below."""


class Refused(SyncError):
    """Bad input (the revision, the options, a Sync's spec, a stored record that cannot be
    read), found before anything was changed: run again only with other input. The agent
    reports the sync Stalled until its commit or spec changes."""


class Unavailable(Refused):
    """What the input points at is missing or refuses us: the Git server (a ref, the host key,
    the credentials), a Secret, the sync's lock held by another writer. Nothing was changed;
    unlike other refusals it can come about without new input, so the agent retries."""


class Conflict(SyncError):
    """Another writer changed what this run works on (the inventory, the lock) meanwhile;
    nothing of theirs was overwritten. Run again once it has finished."""


class Transient(SyncError):
    """No answer in time (the API server, the Git server): the same run may succeed later."""


class Failed(SyncError):
    """The run went ahead and did not reach its goal (a write the API server refused, a
    cluster that did not become ready); what was done is reported."""


# Most specific first. A family of errors has a kind (ApiError and InventoryError: Failed); a
# member that is also of a more specific kind (Unreachable: Transient, InventoryConflict:
# Conflict) is of that one, so `except ApiError` still catches it. Only Failed families have
# such members: `isinstance(e, Refused)` is exactly "refused", `isinstance(e, Failed)` is not
# exactly "failed".
KINDS: tuple[type[SyncError], ...] = (Transient, Conflict, Unavailable, Refused, Failed)


def kind(error: BaseException) -> type[SyncError] | None:
    """Which of the KINDS `error` is; None for an error not raised on purpose (a bug)."""
    return next((k for k in KINDS if isinstance(error, k)), None)


class SourceError(Unavailable):
    """The repository, ref, time or path cannot be read."""


class ConfigError(Refused):
    """An option or setting that cannot be used, such as a duration that is not one."""


class RenderError(Refused):
    """Files at the revision cannot be turned into objects.

    Carries every problem found, not just the first, so the user fixes them in one pass.
    """

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
