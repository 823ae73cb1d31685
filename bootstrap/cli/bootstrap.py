"""`gitops-restore bootstrap`: declare its options, run the workflow of
`bootstrap.cluster_bootstrap` (which says what each phase does), show its phases as they
finish, present the summary.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bootstrap import agent, cluster_bootstrap, sync_names
from bootstrap.cli import agent as agent_cli
from bootstrap.cli import deprecated
from bootstrap.cli import options as opt
from bootstrap.cli.output import Output, emit_json, exits_cleanly, progress_printer, stderr, stdout
from bootstrap.cli.progress import PhaseProgress
from bootstrap.errors import UserError
from sync_agent import events
from sync_agent.agent import decryption
from sync_agent.conventions import parse_duration


def register(app: typer.Typer) -> None:
    app.command("bootstrap", cls=deprecated.renamed(deprecated.BOOTSTRAP))(bootstrap)


@exits_cleanly
def bootstrap(
    name: Annotated[str, typer.Option(
        "--cluster", help="The cluster: provisioned under this name unless it runs already.")],
    repo: opt.Repo, provider: opt.Provider = "local",
    branch: agent_cli.Branch = "main", path: opt.PathOpt = "",
    ignore: opt.Ignore = None, interval: agent_cli.Interval = "1m",
    private_key_file: opt.PrivateKeyFile = None, known_hosts: opt.KnownHosts = None,
    accept_host_key: opt.AcceptHostKey = None,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not stop to ask (the deploy key must then be accepted by "
                            "the server within --timeout).")] = False,
    nodes: opt.Nodes = 1, kubeconfig: opt.ExistingKubeconfig = None,
    context: opt.ExistingContext = None, sync: opt.SyncName = None,
    namespace: opt.Namespace = "default",
    image: agent_cli.Image = agent.DEFAULT_IMAGE,
    timeout: Annotated[str, typer.Option(help="How long to wait for health and the "
                                         "deploy key.")] = "10m",
    lock_timeout: opt.LockTimeout = "2m",
    sops_age_key: agent_cli.SopsAgeKey = None,
    rotate: agent_cli.RotateAgeKey = False,
    output: opt.OutputOpt = Output.text, verify_signatures: opt.VerifySignatures = None,
    allowed_signers: opt.AllowedSigners = None, trusted_keys: opt.TrustedKeys = None,
) -> None:
    """Provision a cluster, give it a deploy key, install the agent, restore from Git, wait.

    Example: gitops-restore bootstrap --provider local --cluster demo
    --repo ssh://git@git.example:2222/fleet.git --path clusters/demo
    --accept-host-key SHA256:abc… --interval 1m
    """
    if known_hosts and accept_host_key:
        raise UserError("give either --known-hosts or --accept-host-key, not both")
    sync_name = sync_names.sync_name(sync, repo, path)
    install = agent.InstallRequest(
        sync=sync_name, repo=repo, branch=branch, path=path,
        interval=agent_cli.check_interval(interval), ignore=tuple(ignore or ()),
        default_namespace=namespace, deploy_key=agent_cli.default_key_name(None, repo),
        image=image, verify=opt.signature_policy(verify_signatures, allowed_signers,
                                                 trusted_keys),
        decryption_secret=decryption.secret_name(sync_name) if sops_age_key else "")
    request = cluster_bootstrap.BootstrapRequest(
        cluster=name, install=install, provider=provider, nodes=nodes, kubeconfig=kubeconfig,
        context=context, private_key_file=private_key_file, known_hosts=known_hosts,
        accept_host_key=accept_host_key, age_keys=opt.age_keys(sops_age_key),
        rotate_age_key=rotate, timeout=parse_duration(timeout, "--timeout"),
        lock_timeout=parse_duration(lock_timeout, "--lock-timeout"))
    with _Progress(bars=output is Output.text, ask=not yes) as show:
        done = cluster_bootstrap.bootstrap(request, None if yes else _confirm_host_key, show)
    _summary(done, output)


def _confirm_host_key(host: str, fingerprint: str, kind: str) -> bool:
    stderr.print(f"{host} presents host key {fingerprint} ({kind}).", markup=False)
    return typer.confirm("Is this the server's real key (checked with its operator)?",
                         default=False, err=True)


class _Progress:
    """Bootstrap's events on stderr: a line per phase, the restore's progress bars, and the
    new deploy key to add (asking whether it was added, unless --yes)."""

    def __init__(self, bars: bool, ask: bool):
        self.bars, self.ask = bars, ask
        self._progress: PhaseProgress | None = None
        self._log = progress_printer()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def __call__(self, event: events.Event | cluster_bootstrap.BootstrapEvent) -> None:
        match event:
            case cluster_bootstrap.BootstrapPhaseStarted(name="restore"):
                self._progress = PhaseProgress(enabled=self.bars).__enter__()
            case cluster_bootstrap.BootstrapPhaseFinished(phase=phase):
                self._close()
                for warning in phase.warnings:
                    stderr.print(f"warning: {warning}", markup=False)
                stderr.print(f"{phase.name}: {'done' if phase.changed else 'unchanged'} "
                             f"({phase.seconds:.1f}s): {phase.note}", markup=False)
            case cluster_bootstrap.DeployKeyToAdd(public_key=public_key):
                stderr.print("Add this public key to the repository as a READ-ONLY deploy key:")
                stderr.print(f"  {public_key}", markup=False, highlight=False)
                if self.ask:
                    typer.confirm("Added it?", default=True, abort=True, err=True)
            case _ if self._progress is not None:
                self._progress.emit(event)
            case events.Message(text=text):
                self._log(text)

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
            self._progress = None


def _summary(done: cluster_bootstrap.Bootstrap, output: Output) -> None:
    report, cluster = done.report, done.cluster
    if output is Output.json:
        record = cluster.to_json()
        emit_json({"cluster": cluster.name, "kubeconfig": record.get("kubeconfig"),
                   "context": record.get("context"), "provider": record.get("provider"),
                   "sync": done.sync, "changed": done.changed,
                   "sha": report.revision.sha if report else None,
                   "counts": report.changes.count() if report else None,
                   "phases": [{"phase": p.name, "seconds": round(p.seconds, 3),
                               "changed": p.changed, "note": p.note} for p in done.phases],
                   "restore_phases": [{"phase": n, "seconds": round(s, 3)}
                                      for n, s in (report.phases if report else [])],
                   "seconds": round(done.seconds, 3),
                   "agent": done.where.to_json() if done.where else None})
        return
    for p in done.phases:
        stdout.print(f"  {p.name:<14} {p.seconds:7.2f}s  {p.note}", markup=False)
    stdout.print(f"[bold]recovery time {done.seconds:.2f}s[/bold]")
    stdout.print(f"kubeconfig: {cluster.kubeconfig}", markup=False)
    if not done.changed:
        stdout.print(f"cluster {cluster.name} already matches Git and its agent is running: "
                     "nothing changed")
    else:
        sha = report.revision.sha if report else "(not restored)"
        stdout.print(f"cluster {cluster.name} bootstrapped at {sha}; sync {done.sync} is kept "
                     "converged by the agent")
