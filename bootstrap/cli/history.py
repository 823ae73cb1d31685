"""history and status: what Git declared over time, and what the cluster last applied."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bootstrap.cli import deprecated, option_groups
from bootstrap.cli import options as opt
from bootstrap.cli.output import Output, emit_json, exits_cleanly, stdout
from sync_agent import history as history_mod
from sync_agent import inventory, signatures, source


def register(app: typer.Typer) -> None:
    app.command()(history)
    app.command(cls=deprecated.renamed(deprecated.SYNC))(status)


@exits_cleanly
@option_groups.grouped(render=opt.render_options)
def history(repo: opt.Repo, path: opt.PathOpt = "", ref: opt.Ref = None,
            ignore: opt.Ignore = None,
            limit: Annotated[int, typer.Option(help="Show at most this many commits.")] = 20,
            ssh_key: opt.SshKey = None, known_hosts: opt.KnownHosts = None,
            ca_file: opt.CaFile = None, output: opt.OutputOpt = Output.text,
            allowed_signers: opt.AllowedSigners = None, trusted_keys: opt.TrustedKeys = None,
            *, render: opt.RenderOptions) -> None:
    """Commits that changed the declared state under --path, with the objects each changed
    and who signed each (checked against --allowed-signers / --trusted-keys when given).

    Example: gitops-restore history --repo ./fleet --path apps --limit 10
    """
    keys = signatures.Keys.from_files(allowed_signers, trusted_keys)
    repository = source.open_repository(repo, opt.git_auth(ssh_key, known_hosts, ca_file))
    entries = history_mod.history(
        repository, repo, path, ref=ref, limit=limit, ignore=tuple(ignore or ()),
        options=render)
    signer = signatures.signers(str(repository.git_dir), [e.sha for e in entries], keys)
    if output is Output.json:
        emit_json([{**vars(e), "signer": signer[e.sha]} for e in entries])
        return
    for e in entries:
        stdout.print(f"[bold]{e.sha[:12]}[/bold] {e.date} {e.author}  {e.message}  "
                     f"[dim]signer:[/dim] {signer[e.sha]}")
        for label, refs in (("+", e.added), ("~", e.changed), ("-", e.removed)):
            for ref_text in refs:
                stdout.print(f"    {label} {ref_text}")
        if e.error:
            stdout.print(f"    [yellow]does not render cleanly:[/yellow] {e.error}",
                         markup=True)


@exits_cleanly
def status(name: opt.SyncName = None, kubeconfig: opt.Kubeconfig = None,
           context: opt.Context = None, cluster: opt.ClusterName = None,
           output: opt.OutputOpt = Output.text) -> None:
    """What each sync last applied to the cluster, read from its in-cluster inventory.

    Example: gitops-restore status --cluster demo
    """
    with opt.connect(kubeconfig, context, cluster) as kube:
        names = [name] if name else inventory.names(kube)
        records = [r for r in (inventory.load(kube, n) for n in names) if r is not None]
    rows = [{"sync": r.name, "repo": r.repo, "path": r.path, "ref": r.ref, "sha": r.revision,
             "applied_at": r.applied_at, "objects": len(r.entries), "complete": r.complete}
            for r in records]
    if output is Output.json:
        emit_json(rows)
        return
    if not rows:
        stdout.print("no sync has applied anything to this cluster yet")
        return
    table = Table("sync", "revision", "ref", "applied at", "objects", "repo / path", box=None)
    for row in rows:
        sha = row["sha"][:12] + ("" if row["complete"] else " (unfinished)")
        table.add_row(row["sync"], sha, row["ref"], row["applied_at"], str(row["objects"]),
                      f"{row['repo']} {row['path']}")
    stdout.print(table)
