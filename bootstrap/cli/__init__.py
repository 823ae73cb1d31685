"""The `gitops-restore` command: options in, one engine call, results out.

Exit codes: 0 success; 1 the operation failed (cluster not ready, restore failed);
2 bad input or unmet precondition (nothing was changed); 3 `plan`/`verify` found differences.
"""

from __future__ import annotations

import typer

from bootstrap.cli import agent, bootstrap, cluster, deploy_key, drill, history, restore

app = typer.Typer(
    name="gitops-restore",
    help="Rebuild, roll back and drill Kubernetes clusters from Git.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # kubeconfigs and keys pass through locals
    add_completion=False,
)
cluster.register(app)
restore.register(app)
history.register(app)
deploy_key.register(app)
drill.register(app)
agent.register(app)
bootstrap.register(app)


if __name__ == "__main__":
    app()
