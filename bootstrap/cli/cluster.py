"""Commands that make and remove clusters: cluster-bin, provision, destroy, clusters."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from bootstrap import binaries, clusters
from bootstrap import provision as provisioning
from bootstrap.cli.output import Output, emit_json, exits_cleanly, progress_printer, stderr, stdout

OutputOption = Annotated[Output, typer.Option("--output", "-o", help="text or json")]


def register(app: typer.Typer) -> None:
    app.command("cluster-bin")(cluster_bin)
    app.command()(provision)
    app.command()(destroy)
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
    name: Annotated[str, typer.Option(help="Cluster name; several can run side by side.")],
    provider: Annotated[str, typer.Option(help="local, kind or existing.")] = "local",
    nodes: Annotated[int, typer.Option(help="Simulated (local) or worker (kind) nodes.")] = 1,
    kubeconfig: Annotated[str | None, typer.Option(
        help="For --provider existing: the kubeconfig of the cluster.")] = None,
    context: Annotated[str | None, typer.Option(
        help="For --provider existing: the kubeconfig context.")] = None,
    output: OutputOption = Output.text,
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
    name: Annotated[str, typer.Option(help="Name given to provision.")],
    output: OutputOption = Output.text,
) -> None:
    """Remove a cluster: stop its processes and delete its files (existing: forget it only).

    Example: gitops-restore destroy --name demo
    """
    record = provisioning.destroy(name, progress=progress_printer(f"{name}: "))
    if output is Output.json:
        emit_json({"destroyed": record.to_json()})
    else:
        stderr.print(f"cluster {name} ({record.provider}) removed")


@exits_cleanly
def list_clusters(output: OutputOption = Output.text) -> None:
    """List the clusters provisioned on this machine.

    Example: gitops-restore clusters -o json
    """
    records = clusters.list_all()
    if output is Output.json:
        emit_json([r.to_json() for r in records])
        return
    for r in records:
        stdout.print(f"{r.name}\t{r.provider}\t{r.kubeconfig}")
