"""drill and demo: declare options, prepare and run the drill, show progress, write the reports.

Exit codes: 0 every phase passed; 1 a phase failed (the reports say which object and why);
2 bad input, found before anything was provisioned.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bootstrap import drill, drill_reports, sync_names
from bootstrap.cli import deprecated, option_groups
from bootstrap.cli import options as opt
from bootstrap.cli.output import Output, emit_json, exits_cleanly, stderr, stdout
from bootstrap.cli.progress import PhaseProgress
from sync_agent import events, signatures
from sync_agent.conventions import parse_duration
from sync_agent.engine import SourceSpec, SyncOptions
from sync_agent.kube import DEFAULT_WORKERS


def register(app: typer.Typer) -> None:
    app.command("drill", cls=deprecated.renamed(deprecated.DRILL))(drill_command)
    app.command()(demo)


From = Annotated[str | None, typer.Option(
    "--from", help="The revision to restore, and to roll forward to (default HEAD).")]
To = Annotated[str | None, typer.Option(
    "--to", help="The revision to roll back to (default: the previous commit that changed "
                 "the objects under --path).")]
ToPath = Annotated[str | None, typer.Option(
    "--to-path", help="The directory at --to, if it moved since (default --path).")]
NewCluster = Annotated[str | None, typer.Option(
    "--cluster", help="Name of the cluster to provision, not one that exists (default "
                      "drill-<random>).")]
Keep = Annotated[bool, typer.Option(
    "--keep", help="Leave the cluster up afterwards and print its kubeconfig.")]
Timeout = Annotated[str, typer.Option(
    "--timeout", help="How long each restore and verify waits for health, e.g. 90s, 5m.")]
Junit = Annotated[Path | None, typer.Option(
    "--junit", help="Write a JUnit XML report: a testcase per phase, a failure per object.")]
ReportFile = Annotated[Path | None, typer.Option(
    "--report", help="Write the JSON report (schemas/drill-report.schema.json).")]
Summary = Annotated[Path | None, typer.Option(
    "--summary", help="Write a Markdown summary, e.g. to $GITHUB_STEP_SUMMARY.")]


@exits_cleanly
@option_groups.grouped(render=opt.render_options, verify=opt.signature_policy)
def drill_command(
        repo: opt.Repo, from_ref: From = None, to_ref: To = None, path: opt.PathOpt = "",
        to_path: ToPath = None, ignore: opt.Ignore = None, provider: opt.Provider = "local",
        cluster: NewCluster = None, nodes: opt.Nodes = 1,
        kubeconfig: opt.ExistingKubeconfig = None, context: opt.ExistingContext = None,
        keep: Keep = False, timeout: Timeout = "5m", prune_data: opt.PruneData = False,
        force: opt.Force = False, allow_mass_prune: opt.MassPrune = False,
        create_namespaces: opt.CreateNamespaces = False, sync: opt.SyncName = None,
        namespace: opt.Namespace = "default",
        ssh_key: opt.SshKey = None, known_hosts: opt.KnownHosts = None,
        ca_file: opt.CaFile = None, helm: opt.HelmMode = "auto", offline: opt.Offline = False,
        workers: opt.Workers = DEFAULT_WORKERS, junit: Junit = None,
        report: ReportFile = None, summary: Summary = None,
        lock_timeout: opt.LockTimeout = "2m",
        output: opt.OutputOpt = Output.text, *, render: opt.RenderOptions,
        verify: signatures.Policy | None) -> None:
    """Rehearse a recovery in a throwaway cluster: restore, roll back, roll forward, verify.

    Provisions a cluster, restores --from, rolls back to --to, rolls forward to --from,
    verifying each against Git (every object with its declared fields, nothing extra,
    workloads healthy), then tears the cluster down (--provider existing: left up). Every
    phase is timed; the restores' times are the recovery time. The restores take rollback's
    safety flags (--force, --allow-mass-prune, --prune-data; without --prune-data, data kinds
    the revision dropped are kept and verify lists them as kept) and the report records which
    ones each needed: the real rollback needs the same. Exit 1 if a phase fails, 2 on bad
    input (before anything is provisioned).

    Example: gitops-restore drill --repo ./fleet --path apps --junit drill.xml
    --report drill.json --summary drill.md
    """
    spec = drill.DrillSpec(
        source=opt.source_spec(repo, from_ref, None, path, ignore, ssh_key, known_hosts, ca_file,
                               render, verify, helm, offline),
        to_ref=to_ref, to_path=to_path,
        cluster=drill.ClusterRequest(provider, cluster or "", nodes, kubeconfig, context, keep),
        sync=SyncOptions(sync_name=sync_names.sync_name(sync, repo, path), namespace=namespace,
                         create_namespaces=create_namespaces, prune_data=prune_data,
                         force=force, allow_mass_prune=allow_mass_prune,
                         timeout=parse_duration(timeout, "--timeout"), workers=workers,
                         lock_timeout=parse_duration(lock_timeout, "--lock-timeout")))
    _drill(spec, junit, report, summary, output)


@exits_cleanly
def demo(keep: Keep = False,
         workdir: Annotated[Path | None, typer.Option(
             "--workdir", help="Where to build the example repository and write the reports "
                               "(default: a new temporary directory).")] = None,
         timeout: Timeout = "2m", output: opt.OutputOpt = Output.text) -> None:
    """Drill the bundled example repository on a local cluster: gitops-restore at a glance.

    Builds the example GitOps repository (examples/demo-repo: three commits of a small shop)
    and drills it: provision, restore, roll back, roll forward, verify each, tear down; then
    shows the timings and where the reports are.

    Example: gitops-restore demo --keep
    """
    seconds = parse_duration(timeout, "--timeout")
    directory = workdir or Path(tempfile.mkdtemp(prefix="gitops-restore-demo-"))
    repo = drill.build_demo_repo(directory / "shop")
    stderr.print(f"example repository: {repo} (see `git -C {repo} log --stat`)")
    if not keep:
        stderr.print("the cluster is removed at the end; to look around in it, add --keep")
    spec = drill.DrillSpec(
        source=SourceSpec(repo=str(repo), path=drill.DEMO_PATH), to_ref=None, to_path=None,
        cluster=drill.ClusterRequest("local", keep=keep),
        sync=SyncOptions(sync_name="shop", timeout=seconds))
    _drill(spec, directory / "drill-junit.xml", directory / "drill-report.json",
           directory / "drill-summary.md", output)


def _drill(spec: drill.DrillSpec, junit: Path | None, report: Path | None,
           summary: Path | None, output: Output) -> None:
    plan = drill.prepare(spec)  # bad input raises here: nothing is provisioned
    _show_plan(plan)
    result = drill.run(plan, _ProgressSink())
    data = drill_reports.to_json(result)
    written = []
    for path, text in ((junit, lambda: drill_reports.junit_xml(result)),
                       (report, lambda: drill_reports.json_text(data)),
                       (summary, lambda: drill_reports.markdown(result))):
        if path is not None:
            drill_reports.write(path, text())
            written.append(str(path))
    if output is Output.json:
        emit_json(data)
    else:
        _show(result)
    if written:
        stderr.print(f"reports: {', '.join(written)}")
    if not result.passed:
        raise typer.Exit(code=1)


def _show_plan(plan: drill.DrillPlan) -> None:
    for label, target in (("from", plan.from_target), ("to", plan.to_target)):
        rev = target.revision
        stderr.print(f"{label:<4} {escape(rev.ref)} -> [bold]{rev.sha[:12]}[/bold] "
                     f"{escape(target.path or '.')} ({target.objects} objects; "
                     f"{rev.committed_at[:10]} {escape(rev.message)})")
        for signed in plan.signed.get(label, ()):
            stderr.print(f"     signed: {signed}", markup=False)


class _ProgressSink:
    """The drill's events on stderr: a line per phase, the engine's progress bars inside (on a
    terminal; elsewhere, as in CI logs, the engine's steps follow the phase's line)."""

    def __init__(self) -> None:
        self._progress: PhaseProgress | None = None

    def __call__(self, event: events.Event | drill.DrillEvent) -> None:
        match event:
            case drill.DrillPhaseStarted(name=name, detail=detail):
                stderr.print(f"[bold]▶ {name}[/bold] {escape(detail)}")
                if name in drill.PHASES[1:-1] and stderr.is_terminal:
                    self._progress = PhaseProgress().__enter__()
            case drill.DrillPhaseFinished(result=result):
                self._close()
                colour = {"passed": "green", "failed": "red"}.get(result.status, "yellow")
                detail = drill_reports.phase_detail(result)
                stderr.print(f"  [{colour}]{result.status}[/{colour}] {result.name} "
                             f"{result.seconds:.2f}s  {escape(detail)}")
                if result.steps and not stderr.is_terminal:
                    steps = " · ".join(f"{step} {s:.2f}s" for step, s in result.steps)
                    stderr.print(f"    [dim]{steps}[/dim]")
                for need in result.needs:
                    stderr.print(f"    needed {need}", markup=False)
                for failure in result.failures:
                    stderr.print(f"    {failure}", markup=False)
            case events.Message(text=text) if self._progress is None:
                stderr.print(f"  [dim]{escape(text)}[/dim]")
            case _ if self._progress is not None:
                self._progress.emit(event)

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None


def _show(result: drill.DrillResult) -> None:
    plan, cluster = result.plan, result.cluster
    verdict = "[green]passed[/green]" if result.passed else "[red]FAILED[/red]"
    stdout.print(f"[bold]drill[/bold] {plan.spec.sync.sync_name}: {verdict}")
    for label, target in (("from", plan.from_target), ("to", plan.to_target)):
        rev = target.revision
        stdout.print(f"  {label:<4} {rev.sha}  {target.path or '.'}  ({rev.ref}; "
                     f"{rev.message})", markup=False)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("phase", "result", "time", "detail"):
        table.add_column(column, justify="right" if column == "time" else "left")
    for phase in result.phases:
        table.add_row(phase.name, phase.status, f"{phase.seconds:.2f}s",
                      drill_reports.phase_detail(phase))
    stdout.print(table)
    for phase in result.phases:
        if phase.recovery and phase.changes:
            stdout.print(f"  {phase.name}: {_changes(phase.changes)}", markup=False)
    for phase in result.phases:
        for need in phase.needs:
            stdout.print(f"  {phase.name} needed {need}", markup=False)
    for phase_name, failure in result.failures:
        stdout.print(f"[red]failed[/red] {phase_name}: ", end="")
        stdout.print(str(failure), markup=False)
    stdout.print(f"recovery time [bold]{result.recovery_seconds:.2f}s[/bold] (restore-from, "
                 f"rollback-to, roll-forward); drill overhead {result.overhead_seconds:.2f}s; "
                 f"total {result.total_seconds:.2f}s")
    if cluster.kept and cluster.provider != "existing":
        stdout.print(f"cluster {cluster.name} kept; kubeconfig: {cluster.kubeconfig}\n"
                     f"remove it with: gitops-restore destroy --cluster {cluster.name}",
                     markup=False)


def _changes(changes: tuple[tuple[str, str], ...], shown: int = 6) -> str:
    grouped: dict[str, list[str]] = {}
    for obj, outcome in changes:
        grouped.setdefault(outcome, []).append(obj)
    parts = []
    for outcome, objects in grouped.items():
        more = f" and {len(objects) - shown} more" if len(objects) > shown else ""
        parts.append(f"{outcome} {', '.join(objects[:shown])}{more}")
    return "; ".join(parts)
