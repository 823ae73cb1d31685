"""Errors a user can cause, carrying a sentence that says what went wrong and what to do."""


class UserError(Exception):
    """Bad input or an unmet precondition; the CLI prints the message and exits 2."""

    exit_code = 2


class OperationFailed(UserError):
    """A command ran but did not reach its goal (cluster not ready, restore failed); exit 1."""

    exit_code = 1
