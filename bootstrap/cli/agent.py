"""`gitops-restore agent …`: install the sync agent, see where and how it runs, steer it.

Each command declares options and calls one function of `bootstrap.agent`; suspend, resume,
pin and unpin are merge patches of the Sync spec, which the running agent notices within a
second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bootstrap import agent, sops_key, sync_lookup, sync_names
from bootstrap.cli import deprecated
from bootstrap.cli import options as opt
from bootstrap.cli.output import Output, emit_json, exits_cleanly, stderr, stdout
from bootstrap.errors import UserError
from sync_agent import source
from sync_agent.agent import config as agent_config
from sync_agent.agent import decryption, syncobject
from sync_agent.conventions import NAMESPACE, parse_duration

agent_app = typer.Typer(name="agent", help="Install, inspect and steer the in-cluster sync "
                        "agent.", no_args_is_help=True)
_SYNC_RENAMED = deprecated.renamed(deprecated.SYNC)

Branch = Annotated[str, typer.Option("--branch", help="Branch the agent follows.")]
Interval = Annotated[str, typer.Option("--interval", help="How often to fetch and re-apply, "
                                       "e.g. 30s, 1m.")]
Image = Annotated[str, typer.Option("--image", help="Agent image for the in-cluster "
                                    "Deployment.")]
SopsAgeKey = Annotated[Path | None, typer.Option(
    "--sops-age-key", help="Age key file that decrypts the repository's SOPS-encrypted files; "
                           "stored in Secret gitops-restore-system/<sync>-sops-age, which the "
                           "Sync's spec.decryption names, so the agent decrypts.")]
RotateAgeKey = Annotated[bool, typer.Option(
    "--rotate", help="Replace the age key already stored for this sync.")]
NoPrune = Annotated[bool, typer.Option("--no-prune", help="Never delete owned objects that "
                                       "Git no longer declares.")]


def register(app: typer.Typer) -> None:
    app.add_typer(agent_app)


def needs_key(repo: str) -> bool:
    """SSH remotes read with a deploy key; local paths, file:// and https:// need none here."""
    return source.is_remote(repo) and not repo.startswith(("file://", "http://", "https://"))


def default_key_name(name: str | None, repo: str) -> str:
    """The deploy key a Sync reads with: as `deploy-key create` names it by default (one key
    per repository); "" for repositories that need none."""
    return sync_names.key_name(name, repo) if needs_key(repo) else ""


def check_interval(text: str) -> str:
    try:
        parse_duration(text, "--interval", positive=True)
    except agent_config.ConfigError as e:
        raise UserError(str(e)) from None
    return text.strip()


@agent_app.command("install", cls=_SYNC_RENAMED)
@exits_cleanly
def install(repo: opt.Repo, branch: Branch = "main", path: opt.PathOpt = "",
            interval: Interval = "1m", ignore: opt.Ignore = None,
            image: Image = agent.DEFAULT_IMAGE, name: opt.SyncName = None,
            namespace: opt.Namespace = "default", deploy_key: opt.DeployKeyName = None,
            no_prune: NoPrune = False, ca_file: opt.CaFile = None,
            kubeconfig: opt.Kubeconfig = None,
            context: opt.Context = None, cluster: opt.ClusterName = None,
            output: opt.OutputOpt = Output.text, verify_signatures: opt.VerifySignatures = None,
            allowed_signers: opt.AllowedSigners = None,
            trusted_keys: opt.TrustedKeys = None, sops_age_key: SopsAgeKey = None,
            rotate: RotateAgeKey = False) -> None:
    """Install the agent and its Sync object, and start it (idempotent).

    Applies Namespace gitops-restore-system, the Sync CRD, ServiceAccount and RBAC, the
    Deployment agent-<sync> and the Sync. HTTPS credentials in --repo (https://USER:TOKEN@…)
    and --ca-file go to the Secret <sync>-git-credentials, never into the Sync. On the local
    provider the Deployment is kept at 0 replicas and the agent runs as a local process
    instead (pods there run nothing).

    Example: gitops-restore agent install --cluster demo --repo ssh://git@git.example/fleet.git
    --branch main --path clusters/demo --interval 1m
    """
    if ca_file and not ca_file.is_file():
        raise UserError(f"--ca-file {ca_file}: no such file (nothing was changed)")
    verify = opt.signature_policy(verify_signatures, allowed_signers, trusted_keys)
    age_keys = opt.age_keys(sops_age_key)  # a bad key file: change nothing
    with agent.target(kubeconfig, context, cluster) as t:
        sync = sync_lookup.continued_name(t.kube, sync_names.sync_name(name, repo, path), repo,
                                          path)
        request = agent.InstallRequest(
            sync=sync, repo=repo, branch=branch, path=path, interval=check_interval(interval),
            prune=not no_prune, ignore=tuple(ignore or ()), default_namespace=namespace,
            deploy_key=default_key_name(deploy_key, repo), image=image, ca_file=ca_file,
            verify=verify,
            decryption_secret=decryption.secret_name(sync) if sops_age_key else "")
        if age_keys is not None:
            sops_key.store(t.kube, sync, age_keys, rotate)
        results = agent.install(t, request)
        where, started = agent.start_agent(t, request)
        missing_key = request.deploy_key and agent.deploykey_missing(t.kube, request.deploy_key)
    if output is Output.json:
        emit_json({"sync": sync, "objects": [{"object": o, "changed": c} for o, c in results],
                   "agent": where.to_json(), "started": started,
                   "deploy_key_missing": bool(missing_key)})
        return
    for label, changed in results:
        stdout.print(f"{label}: {'configured' if changed else 'unchanged'}")
    if t.local:
        stdout.print(f"note: {agent.LOCAL_NOTE}")
    stdout.print(f"agent: {where.detail}{' (started)' if started else ''}")
    if missing_key:
        stderr.print(f"[yellow]warning:[/yellow] Secret {NAMESPACE}/{request.deploy_key}"
                     "-deploy-key does not exist yet; create it with `gitops-restore "
                     f"deploy-key create --deploy-key {request.deploy_key} --repo …` (the agent "
                     "reports DeployKeyError until then)")


@agent_app.command("status", cls=_SYNC_RENAMED)
@exits_cleanly
def status(name: opt.SyncName = None, kubeconfig: opt.Kubeconfig = None,
           context: opt.Context = None, cluster: opt.ClusterName = None,
           output: opt.OutputOpt = Output.text) -> None:
    """Show the Sync's status (revision, conditions, last error) and where the agent runs.

    Example: gitops-restore agent status --cluster demo -o json
    """
    with agent.target(kubeconfig, context, cluster) as t:
        sync = agent.choose_sync(t.kube, name)
        obj = agent.read_sync(t.kube, sync)
        if obj is None:
            raise UserError(f"Sync {NAMESPACE}/{sync}: not found; see `gitops-restore agent "
                            "install --help`")
        where = agent.placement(t, sync)
        holder = agent.lease_holder(t, sync)
    ready = obj.condition(syncobject.READY)
    if output is Output.json:
        emit_json({"sync": sync, "spec": _spec_json(obj.spec), "status": obj.status,
                   "ready": ready.get("status", "Unknown"), "agent": where.to_json(),
                   "leader": holder})
        return
    spec, st = obj.spec, obj.status
    stdout.print(f"[bold]sync {sync}[/bold]: {source.redact(spec.repo)} branch {spec.branch}"
                 f"{' path ' + spec.path if spec.path else ''}, every {_interval(obj)}")
    stdout.print(f"follows: {'pinned to ' + spec.revision if spec.revision else spec.branch}"
                 f"{'  [yellow]SUSPENDED[/yellow]' if spec.suspend else ''}")
    stdout.print(f"ready: {ready.get('status', 'Unknown')} ({ready.get('reason', 'no status')})"
                 f"  {ready.get('message', '')}", markup=False)
    if st.get("lastAppliedRevision"):
        counts = ", ".join(f"{n} {a}" for a, n in (st.get("counts") or {}).items() if n)
        stdout.print(f"applied: {st['lastAppliedRevision']} at {st.get('lastAppliedTime')}"
                     f" ({counts or 'no objects'})")
    if st.get("lastError"):
        stdout.print(f"last error: {st['lastError']}", markup=False)
    stdout.print(f"agent: {where.detail if where.running else 'NOT RUNNING: ' + where.detail}")
    if holder:
        stdout.print(f"leader: {holder}")


def _interval(obj: syncobject.SyncObject) -> str:
    return f"{obj.spec.interval:g}s"


def _spec_json(spec: syncobject.SyncSpec) -> dict:
    return {"repo": source.redact(spec.repo), "branch": spec.branch, "path": spec.path,
            "interval_seconds": spec.interval, "prune": spec.prune, "suspend": spec.suspend,
            "revision": spec.revision or None, "ignore": list(spec.ignore),
            "default_namespace": spec.default_namespace, "secret": spec.secret_name or None}


def _steer(t: agent.Target, sync: str, output: Output, verb: str, **changes) -> None:
    obj = agent.set_spec(t.kube, sync, **changes)
    if output is Output.json:
        emit_json({"sync": sync, "action": verb, "spec": _spec_json(obj.spec)})
        return
    follows = f"pinned to {obj.spec.revision}" if obj.spec.revision else \
        f"following {obj.spec.branch}"
    stdout.print(f"sync {sync}: {verb}; {follows}"
                 f"{', suspended' if obj.spec.suspend else ''}")


def _steering(command: str, summary: str, verb: str, **changes: Any) -> None:
    """Declare `agent COMMAND`: a merge patch of the Sync's spec with `changes`, then show it."""

    @exits_cleanly
    def steer(name: opt.SyncName = None, kubeconfig: opt.Kubeconfig = None,
              context: opt.Context = None, cluster: opt.ClusterName = None,
              output: opt.OutputOpt = Output.text) -> None:
        with agent.target(kubeconfig, context, cluster) as t:
            _steer(t, agent.choose_sync(t.kube, name), output, verb, **changes)

    steer.__doc__ = f"{summary}\n\nExample: gitops-restore agent {command} --cluster demo"
    agent_app.command(command, cls=_SYNC_RENAMED)(steer)


_steering("suspend", "Stop applying (the agent keeps running, reads the spec and waits).",
          "suspended", suspend=True)
_steering("resume", "Apply again and follow the branch: clears suspend and any pin (e.g. from "
          "rollback).", "resumed", suspend=False, revision=None)


@agent_app.command("pin", cls=_SYNC_RENAMED)
@exits_cleanly
def pin(revision: Annotated[str, typer.Argument(help="Commit, tag or HEAD~N of the branch.")],
        name: opt.SyncName = None, kubeconfig: opt.Kubeconfig = None,
        context: opt.Context = None, cluster: opt.ClusterName = None,
        output: opt.OutputOpt = Output.text) -> None:
    """Apply this revision (resolved to its commit SHA) instead of the branch head.

    Example: gitops-restore agent pin v1.4.0 --cluster demo
    """
    with agent.target(kubeconfig, context, cluster) as t:
        sync = agent.choose_sync(t.kube, name)
        obj = agent.read_sync(t.kube, sync)
        if obj is None:
            raise UserError(f"Sync {NAMESPACE}/{sync}: not found")
        sha = agent.resolve(t.kube, obj, revision)
        _steer(t, sync, output, f"pinned ({revision})", revision=sha)


_steering("unpin", "Follow the branch head again.", "unpinned", revision=None)
