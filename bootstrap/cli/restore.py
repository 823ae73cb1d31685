"""restore, plan, rollback and verify: declare options, call the engine (rollback: its
service, `rollback_handoff`), present the report."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from bootstrap import rollback_handoff, sync_lookup, sync_names
from bootstrap.cli import deprecated, option_groups, report_view
from bootstrap.cli import options as opt
from bootstrap.cli.output import Output, emit_json, exits_cleanly, stdout
from bootstrap.cli.progress import PhaseProgress
from bootstrap.errors import OperationFailed, UserError
from sync_agent import engine, signatures, source
from sync_agent.apply import ApplyError
from sync_agent.changes import Action
from sync_agent.conventions import parse_duration
from sync_agent.engine import SourceSpec, SyncOptions
from sync_agent.kube import DEFAULT_WORKERS, Unreachable

EXIT_DIFFERENCES = 3


def register(app: typer.Typer) -> None:
    for command in (restore, plan, rollback, verify):
        app.command(cls=deprecated.renamed(deprecated.SYNC))(command)


Prune = Annotated[bool, typer.Option("--prune", help="Delete owned objects the revision lacks.")]
Wait = Annotated[bool, typer.Option("--wait", help="Wait until every object is healthy.")]
Timeout = Annotated[str, typer.Option("--timeout", help="How long --wait waits, e.g. 10m.")]
RollbackPath = Annotated[str | None, typer.Option(
    "--path", help="Directory in the repo to apply (default: the path the sync's inventory "
                   "records, where that directory was at --to).")]
TakeOver = Annotated[bool, typer.Option(
    "--take-over", help="Apply under --sync although its inventory records another repo or "
                        "path (the sync moves; what it owned and no longer declares is pruned).")]
Strict = Annotated[bool, typer.Option(
    "--strict", help="Count what restore keeps or creates by its own rules (listed as kept) "
                     "as differences too.")]


def _run(spec: SourceSpec, options: SyncOptions, connection: tuple[str | None, ...],
         verify_only: bool = False) -> engine.Report:
    """Restore (or plan, or verify) `spec` on the cluster `connection` names, with progress."""
    with opt.connect(*connection) as kube:
        options = sync_lookup.continued(kube, options, spec.repo, spec.path)
        with _engine_errors(writes=not (verify_only or options.plan_only)), \
                PhaseProgress() as progress:
            if verify_only:
                return engine.verify(kube, spec, options, progress.emit)
            return engine.restore(kube, spec, options, progress.emit)


@contextmanager
def _engine_errors(writes: bool) -> Iterator[None]:
    """A failed apply or a vanished API server, said with what is left behind and what to do."""
    try:
        yield
    except ApplyError as e:
        raise OperationFailed("apply failed; objects applied before the failure stay applied "
                              "and owned (re-run to converge):\n" + str(e)) from None
    except Unreachable as e:
        kept = (" Objects applied before it went away stay applied and owned by the "
                "inventory:") if writes else ""
        raise OperationFailed(f"{e}: the run stopped.{kept} re-run once the API server "
                              "answers again") from None


@exits_cleanly
@option_groups.grouped(render=opt.render_options, verify=opt.signature_policy)
def restore(repo: opt.Repo, ref: opt.Ref = None, at: opt.At = None, path: opt.PathOpt = "",
            ignore: opt.Ignore = None, prune: Prune = False, prune_data: opt.PruneData = False,
            allow_mass_prune: opt.MassPrune = False, wait: Wait = False, timeout: Timeout = "10m",
            force: opt.Force = False, create_namespaces: opt.CreateNamespaces = False,
            name: opt.SyncName = None, take_over: TakeOver = False,
            namespace: opt.Namespace = "default",
            ssh_key: opt.SshKey = None, known_hosts: opt.KnownHosts = None,
            ca_file: opt.CaFile = None,
            helm: opt.HelmMode = "auto", offline: opt.Offline = False,
            kubeconfig: opt.Kubeconfig = None,
            context: opt.Context = None, cluster: opt.ClusterName = None,
            workers: opt.Workers = DEFAULT_WORKERS, lock_timeout: opt.LockTimeout = "2m",
            output: opt.OutputOpt = Output.text, *, render: opt.RenderOptions,
            verify: signatures.Policy | None) -> None:
    """Make the cluster match the repo at a revision: validate, apply in stages, prune, wait.

    Example: gitops-restore restore --repo git@github.com:org/fleet.git --path clusters/prod
    --ref v1.4.0 --prune --wait --kubeconfig ~/.kube/prod
    """
    options = SyncOptions(
        sync_name=sync_names.sync_name(name, repo, path), namespace=namespace, prune=prune,
        prune_data=prune_data, allow_mass_prune=allow_mass_prune,
        create_namespaces=create_namespaces, force=force, wait=wait,
        timeout=parse_duration(timeout, "--timeout"), workers=workers, take_over=take_over,
        lock_timeout=parse_duration(lock_timeout, "--lock-timeout"))
    spec = opt.source_spec(repo, ref, at, path, ignore, ssh_key, known_hosts, ca_file, render,
                           verify, helm, offline)
    report = _run(spec, options, (kubeconfig, context, cluster))
    _present(report, output, "restore")
    if report.errors or report.unhealthy:
        raise typer.Exit(code=1)


@exits_cleanly
@option_groups.grouped(render=opt.render_options, verify=opt.signature_policy)
def rollback(repo: opt.Repo, to: Annotated[str, typer.Option(
                 "--to", help="The revision to return to (commit, tag, HEAD~N).")],
             path: RollbackPath = None, ignore: opt.Ignore = None,
             prune_data: opt.PruneData = False, allow_mass_prune: opt.MassPrune = False,
             wait: Wait = False, timeout: Timeout = "10m", force: opt.Force = False,
             create_namespaces: opt.CreateNamespaces = False, name: opt.SyncName = None,
             take_over: TakeOver = False, namespace: opt.Namespace = "default",
             ssh_key: opt.SshKey = None,
             known_hosts: opt.KnownHosts = None, ca_file: opt.CaFile = None,
             helm: opt.HelmMode = "auto", offline: opt.Offline = False,
             kubeconfig: opt.Kubeconfig = None, context: opt.Context = None,
             cluster: opt.ClusterName = None, workers: opt.Workers = DEFAULT_WORKERS,
             lock_timeout: opt.LockTimeout = "2m", output: opt.OutputOpt = Output.text,
             revert: Annotated[bool, typer.Option(
                 "--revert", help="Push a commit reverting --path to --to on the branch "
                                  "(instead of pinning the agent).")] = False,
             push_key: Annotated[Path | None, typer.Option(
                 "--push-key", help="For --revert: a key with write access to the repo.")
             ] = None,
             branch: Annotated[str, typer.Option(
                 "--branch", help="For --revert without a Sync: the branch to revert on.")
             ] = "main", *, render: opt.RenderOptions,
             verify: signatures.Policy | None) -> None:
    """Return the cluster exactly to an earlier revision (restore with prune).

    It rolls back the sync that applied --repo here (--sync when several did), at the path its
    inventory records, followed to where that directory was at --to if it moved since.
    If the sync agent serves this sync name, it is first pinned to that commit so it does not
    roll forward again (`gitops-restore agent resume` unpins). With --revert a commit that
    returns --path to that revision is pushed instead, and the agent keeps following the
    branch.

    Example: gitops-restore rollback --repo ./fleet --to HEAD~1 --wait
    """
    if name:
        sync_names.check_sync_name(name)
    options = SyncOptions(
        sync_name=name or "", namespace=namespace, prune=True, prune_data=prune_data,
        allow_mass_prune=allow_mass_prune, create_namespaces=create_namespaces, force=force,
        wait=wait, timeout=parse_duration(timeout, "--timeout"), workers=workers,
        lock_timeout=parse_duration(lock_timeout, "--lock-timeout"), take_over=take_over)
    spec = opt.source_spec(repo, to, None, "", ignore, ssh_key, known_hosts, ca_file, render,
                           verify, helm, offline)
    push_auth = _push_auth(spec, revert, push_key, known_hosts, ca_file)
    request = rollback_handoff.RollbackRequest(spec, options, path, revert, branch, push_auth)
    with opt.connect(kubeconfig, context, cluster) as kube, _engine_errors(writes=True), \
            PhaseProgress() as progress:
        done = rollback_handoff.rollback(kube, request, progress.emit)
    _present_rollback(done, output, to)
    if done.report.errors or done.report.unhealthy:
        raise typer.Exit(code=1)


def _push_auth(spec: SourceSpec, revert: bool, push_key: Path | None, known_hosts: Path | None,
               ca_file: Path | None) -> source.GitAuth | None:
    """What --revert pushes with: --push-key, or over HTTPS and to local paths what reads."""
    if revert and push_key is None and source.is_remote(spec.repo) \
            and not spec.repo.startswith(("file://", "http://", "https://")):
        raise UserError("--revert pushes a commit: give --push-key FILE, a key with write "
                        "access to the repository (the agent's deploy key is read-only; over "
                        "HTTPS the token pushes)")
    return opt.git_auth(push_key, known_hosts, ca_file) if push_key else spec.auth


def _present_rollback(done: rollback_handoff.Rollback, output: Output, to: str) -> None:
    found = done.sync
    moved = {"moved_from": found.recorded_path} if found.moved else {}
    if output is Output.json:
        emit_json({"command": "rollback", **done.report.to_json(), **moved,
                   "agent": done.handoff.to_json()})
        return
    _present(done.report, output, "rollback")
    if found.moved:
        stdout.print(f"path: the sync's directory '{found.recorded_path}' was at "
                     f"'{found.path or '.'}' in {to}", markup=False)
    stdout.print(f"agent: {done.handoff.note}", markup=False)


@exits_cleanly
@option_groups.grouped(render=opt.render_options, verify=opt.signature_policy)
def plan(repo: opt.Repo, ref: opt.Ref = None, at: opt.At = None, path: opt.PathOpt = "",
         ignore: opt.Ignore = None, prune: Prune = False, prune_data: opt.PruneData = False,
         allow_mass_prune: opt.MassPrune = False, force: opt.Force = False,
         create_namespaces: opt.CreateNamespaces = False, name: opt.SyncName = None,
         take_over: TakeOver = False,
         namespace: opt.Namespace = "default", ssh_key: opt.SshKey = None,
         known_hosts: opt.KnownHosts = None, ca_file: opt.CaFile = None,
         helm: opt.HelmMode = "auto", offline: opt.Offline = False,
         kubeconfig: opt.Kubeconfig = None, context: opt.Context = None,
         cluster: opt.ClusterName = None, workers: opt.Workers = DEFAULT_WORKERS,
         output: opt.OutputOpt = Output.text, *, render: opt.RenderOptions,
         verify: signatures.Policy | None) -> None:
    """Show what restore would do, per object, using server-side dry-run. Exit 3 if anything.

    Example: gitops-restore plan --repo ./fleet --path apps --ref main --prune
    """
    options = SyncOptions(
        sync_name=sync_names.sync_name(name, repo, path), namespace=namespace, prune=prune,
        prune_data=prune_data, allow_mass_prune=allow_mass_prune,
        create_namespaces=create_namespaces, force=force, workers=workers, plan_only=True,
        take_over=take_over)
    spec = opt.source_spec(repo, ref, at, path, ignore, ssh_key, known_hosts, ca_file, render,
                           verify, helm, offline)
    report = _run(spec, options, (kubeconfig, context, cluster))
    _present(report, output, "plan")
    if report.changes.changed:
        raise typer.Exit(code=EXIT_DIFFERENCES)


@exits_cleanly
@option_groups.grouped(render=opt.render_options)
def verify(repo: opt.Repo, ref: opt.Ref = None, at: opt.At = None, path: opt.PathOpt = "",
           ignore: opt.Ignore = None, prune_data: opt.PruneData = False,
           create_namespaces: opt.CreateNamespaces = False, strict: Strict = False,
           wait: Wait = False, timeout: Timeout = "2m",
           name: opt.SyncName = None, namespace: opt.Namespace = "default",
           ssh_key: opt.SshKey = None, known_hosts: opt.KnownHosts = None,
           ca_file: opt.CaFile = None,
           helm: opt.HelmMode = "auto", offline: opt.Offline = False,
           kubeconfig: opt.Kubeconfig = None,
           context: opt.Context = None, cluster: opt.ClusterName = None,
           workers: opt.Workers = DEFAULT_WORKERS, output: opt.OutputOpt = Output.text, *,
           render: opt.RenderOptions) -> None:
    """Check that the live cluster matches a revision: drifted, missing and extra objects.

    What restore keeps or creates by its own rules is listed as kept, with the reason, and is
    not a difference (--strict counts it): a namespace made by --create-namespaces, a PVC, PV
    or Namespace the revision dropped (unless --prune-data), a namespace the revision's
    objects are in. Give verify the options given to restore or rollback that decide what the
    revision means (--path, --ignore, -n, --sync, --create-namespaces, --prune-data).

    Exit 0 when it matches, 3 when anything differs (1 with --wait if unhealthy).
    Example: gitops-restore verify --repo ./fleet --path apps --ref v1.4.0 --create-namespaces
    """
    options = SyncOptions(sync_name=sync_names.sync_name(name, repo, path), namespace=namespace,
                          prune_data=prune_data, create_namespaces=create_namespaces,
                          wait=wait, timeout=parse_duration(timeout, "--timeout"), workers=workers)
    spec = opt.source_spec(repo, ref, at, path, ignore, ssh_key, known_hosts, ca_file, render,
                           helm=helm, offline=offline)
    report = _run(spec, options, (kubeconfig, context, cluster), verify_only=True)
    _present(report, output, "verify")
    if report.changes.changed or (strict and report.changes.of(Action.KEEP)):
        raise typer.Exit(code=EXIT_DIFFERENCES)
    if report.unhealthy:
        raise typer.Exit(code=1)


def _present(report: engine.Report, output: Output, verb: str) -> None:
    if output is Output.json:
        emit_json({"command": verb, **report.to_json()})
    else:
        report_view.show(report, verb)
