"""The `gitops-restore` command: options in, one engine call, results out.

Exit codes: 0 success; 1 the operation failed (cluster not ready, restore failed);
2 bad input or unmet precondition (nothing was changed); 3 `plan`/`verify` found differences.
"""

from __future__ import annotations

import typer

from bootstrap import (
    agent_commands,
    bootstrap_commands,
    cluster_commands,
    deploy_key_commands,
    drill_commands,
    history_commands,
    restore_commands,
)

app = typer.Typer(
    name="gitops-restore",
    help="Rebuild, roll back and drill Kubernetes clusters from Git.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # kubeconfigs and keys pass through locals
    add_completion=False,
)
cluster_commands.register(app)
restore_commands.register(app)
history_commands.register(app)
deploy_key_commands.register(app)
drill_commands.register(app)
agent_commands.register(app)
bootstrap_commands.register(app)


if __name__ == "__main__":
    app()
