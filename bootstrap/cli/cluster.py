"""Commands that make and remove clusters: cluster-bin, provision, destroy, clusters."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from bootstrap import binaries, clusters
from bootstrap import provision as provisioning
from bootstrap.cli import deprecated
from bootstrap.cli import options as opt
from bootstrap.cli.output import Output, emit_json, exits_cleanly, progress_printer, stderr, stdout


def register(app: typer.Typer) -> None:
    app.command("cluster-bin")(cluster_bin)
    app.command()(provision)
    app.command(cls=deprecated.renamed(deprecated.CLUSTER))(destroy)
    app.command("clusters")(list_clusters)


@exits_cleanly
def cluster_bin() -> None:
    """Build the local provider's control plane and helm from Go modules (what is missing).

    Example: gitops-restore cluster-bin
    """
    started = time.monotonic()
    directory = binaries.ensure_binaries(log=progress_printer())
    stdout.print(f"{directory} ({time.monotonic() - started:.0f}s)")


@exits_cleanly
def provision(
    name: Annotated[str, typer.Option(
        "--name", help="Name of the cluster; several can run side by side. Other commands "
                       "take it as --cluster.")],
    provider: opt.Provider = "local", nodes: opt.Nodes = 1,
    kubeconfig: opt.ExistingKubeconfig = None, context: opt.ExistingContext = None,
    output: opt.OutputOpt = Output.text,
) -> None:
    """Create a cluster, or register an existing one, and print its kubeconfig path.

    Example: gitops-restore provision --provider local --name demo --nodes 3
    """
    started = time.monotonic()
    result = provisioning.provision(provider, name, nodes=nodes, kubeconfig=kubeconfig,
                                    context=context, progress=progress_printer(f"{name}: "))
    elapsed = time.monotonic() - started
    if output is Output.json:
        emit_json({**result.record.to_json(), "already_running": result.already_running,
                   "seconds": round(elapsed, 2)})
        return
    if result.already_running:
        stderr.print(f"cluster {name} is already running; nothing changed")
    else:
        stderr.print(f"cluster {name} ready ({provider}, {elapsed:.1f}s)")
    stdout.print(result.record.kubeconfig)


@exits_cleanly
def destroy(
    cluster: Annotated[str, typer.Option("--cluster", help="Name given to provision.")],
    output: opt.OutputOpt = Output.text,
) -> None:
    """Remove a cluster: stop its processes and delete its files (existing: forget it only).

    Example: gitops-restore destroy --cluster demo
    """
    record = provisioning.destroy(cluster, progress=progress_printer(f"{cluster}: "))
    if output is Output.json:
        emit_json({"destroyed": record.to_json()})
    else:
        stderr.print(f"cluster {cluster} ({record.provider}) removed")


@exits_cleanly
def list_clusters(output: opt.OutputOpt = Output.text) -> None:
    """List the clusters provisioned on this machine.

    Example: gitops-restore clusters -o json
    """
    records = clusters.list_all()
    if output is Output.json:
        emit_json([r.to_json() for r in records])
        return
    for r in records:
        stdout.print(f"{r.name}\t{r.provider}\t{r.kubeconfig}")
