"""Errors a user can cause, carrying a sentence that says what went wrong and what to do.

Both are of the engine's kinds (sync_agent/errors.py), which decide the exit code.
"""

from sync_agent.errors import Failed, Refused


class UserError(Refused):
    """Bad input or an unmet precondition, found before anything was changed."""


class OperationFailed(Failed):
    """A command ran but did not reach its goal (cluster not ready, restore failed)."""
