"""`gitops-restore bootstrap`: from nothing to a cluster that converges on Git, in one command.

Phases, each timed so the summary shows the recovery time:

  provision      the provider's playbook (a running cluster is left as it is)
  deploy-key     an existing key in the Secret is reused; else --private-key-file, else a new
                 ed25519 key whose public half is printed for the user to add (confirmed
                 interactively unless --yes), with the host key pinned (--known-hosts or
                 --accept-host-key); then Git access is checked with it
  agent-install  Namespace, CRD, RBAC, Deployment and the Sync object
  restore        the engine, run here with the Sync's name so the user sees progress and the
                 agent later finds everything owned by the same inventory; it applies what the
                 Sync targets (its pinned revision if a rollback pinned it, else the branch)
                 and waits until the objects are healthy
  agent-start    the agent starts after the first restore, so the two never apply at once
                 on a fresh cluster (a local process on the local provider, else the
                 Deployment at 1 replica)
  agent-ready    the agent reports Ready for the same commit

A re-run on a healthy cluster changes nothing and says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from bootstrap import agent, clusters, sops_key, sync_names
from bootstrap import deploy_key as dk
from bootstrap import provision as provisioning
from bootstrap.cli import agent as agent_cli
from bootstrap.cli import deprecated
from bootstrap.cli import options as opt
from bootstrap.cli.output import Output, emit_json, exits_cleanly, progress_printer, stderr, stdout
from bootstrap.cli.progress import PhaseProgress
from bootstrap.errors import OperationFailed, UserError
from sync_agent import engine, sops, source
from sync_agent.agent import decryption, syncobject
from sync_agent.apply import ApplyError
from sync_agent.render_options import RenderOptions


def register(app: typer.Typer) -> None:
    app.command("bootstrap", cls=deprecated.renamed(deprecated.BOOTSTRAP))(bootstrap)


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    changed: bool
    note: str


@dataclass
class Run:
    phases: list[Phase] = field(default_factory=list)
    report: engine.Report | None = None
    where: agent.Placement | None = None
    cluster: clusters.ClusterRecord | None = None

    def timed(self, name: str, step) -> object:
        """Run `step()` -> (value, changed, note) and record it as a phase."""
        started = time.monotonic()
        value, changed, note = step()
        self.phases.append(Phase(name, time.monotonic() - started, changed, note))
        stderr.print(f"{name}: {'done' if changed else 'unchanged'} "
                     f"({time.monotonic() - started:.1f}s): {note}", markup=False)
        return value

    @property
    def changed(self) -> bool:
        return any(p.changed for p in self.phases)


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
    request = agent.InstallRequest(
        sync=sync_name, repo=repo, branch=branch, path=path,
        interval=agent_cli.check_interval(interval), ignore=tuple(ignore or ()),
        default_namespace=namespace, deploy_key=agent_cli.default_key_name(None, repo),
        image=image, verify=opt.signature_policy(verify_signatures, allowed_signers,
                                                 trusted_keys),
        decryption_secret=decryption.secret_name(sync_name) if sops_age_key else "")
    age_keys = opt.age_keys(sops_age_key)  # a bad key file: change nothing
    wait = opt.parse_duration(timeout)
    accept_host_key = _check_inputs(provider, name, nodes, kubeconfig, request,
                                    private_key_file, known_hosts, accept_host_key, yes)
    waits = (wait, opt.parse_duration(lock_timeout, "--lock-timeout"))
    run = Run()
    provisioned = run.timed("provision", lambda: _provision(provider, name, nodes,
                                                            kubeconfig, context))
    run.cluster = provisioned.record
    t = agent.target(None, None, provisioned.record.name)
    key = run.timed("deploy-key", lambda: _deploy_key(
        t, request, private_key_file, known_hosts, accept_host_key, yes, wait))
    if age_keys is not None:
        run.timed("sops-age-key", lambda: (None, *sops_key.store(t.kube, sync_name, age_keys,
                                                                 rotate)))
    run.timed("agent-install", lambda: _install(t, request))
    run.report = run.timed("restore", lambda: _restore(t, request, key, waits, output,
                                                       age_keys))
    run.where = run.timed("agent-start", lambda: _start(t, request))
    run.timed("agent-ready", lambda: _agent_ready(t, sync_name, run.report, wait))
    _summary(run, name, sync_name, output)


def _check_inputs(provider: str, name: str, nodes: int, kubeconfig: str | None,
                  request: agent.InstallRequest, private_key_file: Path | None,
                  known_hosts: Path | None, accept_host_key: str | None, yes: bool
                  ) -> str | None:
    """Refuse bad input before anything is made. Returns the host key fingerprint to pin
    (the one given, or the one the user confirmed now), so no later phase asks again."""
    provisioning.check_request(provider, name, nodes, kubeconfig)
    if not request.deploy_key:
        return accept_host_key
    dk.parse_ssh_url(request.repo)
    if private_key_file is not None:
        dk.load_key_file(request.deploy_key, private_key_file)  # unreadable or no key: exit 2
    if known_hosts or accept_host_key:
        dk.pin_host_key(request.repo, known_hosts, accept_host_key)  # a wrong one: exit 2
        return accept_host_key
    if provisioning.is_recorded(name):
        return None  # the cluster may already hold the deploy key: it is reused, unasked
    # A new cluster needs the host key pinned: with --yes nobody can confirm it, so the
    # error names the fingerprint to pass; else the user confirms it now, not after minutes.
    pinned = dk.pin_host_key(request.repo, None, None, None if yes else _confirm_host_key)
    return dk.host_fingerprints(pinned)[0]


def _provision(provider: str, name: str, nodes: int, kubeconfig: str | None,
               context: str | None):
    result = provisioning.provision(provider, name, nodes=nodes, kubeconfig=kubeconfig,
                                    context=context, progress=progress_printer(f"{name}: "))
    note = "already running" if result.already_running else f"{provider} cluster created"
    return result, not result.already_running, note


def _deploy_key(t: agent.Target, request: agent.InstallRequest, private_key_file: Path | None,
                known_hosts: Path | None, accept_host_key: str | None, yes: bool,
                wait: float):
    if not request.deploy_key:
        return None, False, f"not needed for {source.redact(request.repo)}"
    secret = dk.secret_name(request.deploy_key)
    existing = None if agent.deploykey_missing(t.kube, request.deploy_key) else \
        dk.load_deploy_key(t.kube, request.deploy_key)
    if existing is not None and private_key_file is None:
        key, changed = existing, False
    else:
        result = dk.create_deploy_key(
            t.kube, dk.DeployKeyRequest(repo=request.repo, name=request.deploy_key,
                                        known_hosts_file=known_hosts,
                                        accept_host_key=accept_host_key,
                                        private_key_file=private_key_file),
            None if yes else _confirm_host_key, progress_printer("deploy-key: "))
        key, changed = result.key, existing is None or result.replaced
        if changed and private_key_file is None:
            stderr.print("Add this public key to the repository as a READ-ONLY deploy key:")
            stderr.print(f"  {key.public_key}", markup=False, highlight=False)
            if not yes:
                typer.confirm("Added it?", default=True, abort=True, err=True)
    dk.wait_until_accepted(request.repo, key, timeout=wait,
                           log=progress_printer("deploy-key: "))
    return key, changed, f"{key.fingerprint} in Secret {agent.NAMESPACE}/{secret}"


def _confirm_host_key(host: str, fingerprint: str, kind: str) -> bool:
    stderr.print(f"{host} presents host key {fingerprint} ({kind}).", markup=False)
    return typer.confirm("Is this the server's real key (checked with its operator)?",
                         default=False, err=True)


def _install(t: agent.Target, request: agent.InstallRequest):
    results = agent.install(t, request, start=False)
    changed = [label for label, c in results if c]
    note = (f"{len(changed)} of {len(results)} objects configured" if changed
            else f"{len(results)} objects unchanged")
    return results, bool(changed), note


def _restore(t: agent.Target, request: agent.InstallRequest, key: dk.DeployKey | None,
             waits: tuple[float, float], output: Output, age_keys: sops.AgeKeys | None = None):
    obj = agent.read_sync(t.kube, request.sync)
    if obj is None:
        raise OperationFailed(f"Sync {agent.NAMESPACE}/{request.sync}: missing after install")
    if obj.spec.suspend:
        return None, False, "skipped: the Sync is suspended (gitops-restore agent resume)"
    options = engine.SyncOptions(sync_name=request.sync, namespace=request.default_namespace,
                                 prune=obj.spec.prune, wait=True, timeout=waits[0],
                                 lock_timeout=waits[1])

    def restore(auth) -> engine.Report:
        spec = engine.SourceSpec(repo=request.repo, ref=obj.spec.target, path=request.path,
                                 ignore=request.ignore, auth=auth, verify=request.verify,
                                 render=RenderOptions(sops_keys=age_keys))
        with PhaseProgress(enabled=output is Output.text) as progress:
            return engine.restore(t.kube, spec, options, progress.emit)

    try:
        if key is None:
            report = restore(None)
        else:
            with key.git_auth() as auth:
                report = restore(auth)
    except ApplyError as e:
        raise OperationFailed("apply failed; objects applied before the failure stay applied "
                              "and owned (re-run bootstrap to converge):\n" + str(e)) from None
    if report.unhealthy:
        raise OperationFailed("not healthy within the timeout:\n" + "\n".join(
            f"  {h.ref}: {h.reason}" for h in report.unhealthy))
    for health in report.warnings:
        stderr.print(f"warning: {health}", markup=False)
    counts = ", ".join(f"{n} {a}" for a, n in report.changes.count().items() if n)
    pinned = f" (pinned: {obj.spec.revision})" if obj.spec.revision else ""
    signed = f"; {report.signatures[0]}" if report.signatures else ""
    return report, report.changes.changed, (f"{obj.spec.target}{pinned} -> "
                                            f"{report.revision.sha[:12]}: {counts or 'empty'}"
                                            f"{signed}")


def _start(t: agent.Target, request: agent.InstallRequest):
    where, started = agent.start_agent(t, request)
    return where, started, where.detail


def _agent_ready(t: agent.Target, sync: str, report: engine.Report | None, wait: float):
    deadline = time.monotonic() + wait
    want = report.revision.sha if report else None
    message = "no status yet"
    while time.monotonic() < deadline:
        obj = agent.read_sync(t.kube, sync)
        if obj is not None and obj.spec.suspend:
            return None, False, "not waited for: the Sync is suspended"
        if obj is not None:
            ready = obj.condition(syncobject.READY)
            message = ready.get("message") or message
            current = obj.status.get("observedGeneration") == obj.generation
            if current and ready.get("status") == "True" and (
                    want is None or obj.status.get("lastAppliedRevision") == want):
                return None, False, f"Ready at {obj.status.get('lastAppliedRevision', '')[:12]}"
        time.sleep(0.5)
    where = agent.placement(t, sync)
    raise OperationFailed(f"Sync {agent.NAMESPACE}/{sync}: the agent did not report Ready"
                          f"{' for ' + want if want else ''} within {wait:.0f}s: {message} "
                          f"(agent: {where.detail})")


def _summary(run: Run, cluster: str, sync: str, output: Output) -> None:
    report, total = run.report, sum(p.seconds for p in run.phases)
    if output is Output.json:
        record = run.cluster.to_json() if run.cluster else {}
        emit_json({"cluster": cluster, "kubeconfig": record.get("kubeconfig"),
                   "context": record.get("context"), "provider": record.get("provider"),
                   "sync": sync, "changed": run.changed,
                   "sha": report.revision.sha if report else None,
                   "counts": report.changes.count() if report else None,
                   "phases": [{"phase": p.name, "seconds": round(p.seconds, 3),
                               "changed": p.changed, "note": p.note} for p in run.phases],
                   "restore_phases": [{"phase": n, "seconds": round(s, 3)}
                                      for n, s in (report.phases if report else [])],
                   "seconds": round(total, 3),
                   "agent": run.where.to_json() if run.where else None})
        return
    for p in run.phases:
        stdout.print(f"  {p.name:<14} {p.seconds:7.2f}s  {p.note}", markup=False)
    stdout.print(f"[bold]recovery time {total:.2f}s[/bold]")
    if run.cluster:
        stdout.print(f"kubeconfig: {run.cluster.kubeconfig}", markup=False)
    if not run.changed:
        stdout.print(f"cluster {cluster} already matches Git and its agent is running: "
                     "nothing changed")
    else:
        sha = report.revision.sha if report else "(not restored)"
        stdout.print(f"cluster {cluster} bootstrapped at {sha}; sync {sync} is kept "
                     "converged by the agent")
