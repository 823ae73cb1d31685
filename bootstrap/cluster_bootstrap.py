"""From nothing to a cluster that converges on Git, in one call: the `bootstrap` workflow.

Phases, each timed so the summary shows the recovery time:

  provision      the provider's playbook (a running cluster is left as it is)
  deploy-key     an existing key in the Secret is reused; else the given key pair, else a new
                 ed25519 key whose public half is shown for the user to add, with the host key
                 pinned (a known_hosts file, or a scanned key with the given fingerprint or
                 one `confirm` accepted); then Git access is checked with it
  sops-age-key   with age keys only: stored for the agent (`sops_key`)
  agent-install  Namespace, CRD, RBAC, Deployment and the Sync object
  restore        the engine, run here with the Sync's name so the user sees progress and the
                 agent later finds everything owned by the same inventory; it applies what the
                 Sync targets (its pinned revision if a rollback pinned it, else the branch)
                 and waits until the objects are healthy
  agent-start    the agent starts after the first restore, so the two never apply at once
                 on a fresh cluster (a local process on the local provider, else the
                 Deployment at 1 replica)
  agent-ready    the agent reports Ready for the same commit

Everything that can be refused is checked before the first phase: the host key is confirmed
then, not after minutes of provisioning. A re-run on a healthy cluster changes nothing and
says so. Called by `cli/bootstrap.py`, which parses the options into a `BootstrapRequest`,
shows the events and presents the `Bootstrap` result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bootstrap import agent, clusters, sops_key
from bootstrap import deploy_key as dk
from bootstrap import provision as provisioning
from bootstrap.errors import OperationFailed
from sync_agent import engine, events, sops, source
from sync_agent.agent import syncobject
from sync_agent.apply import ApplyError
from sync_agent.render_options import RenderOptions


@dataclass(frozen=True)
class BootstrapRequest:
    cluster: str  # made by the provider, or found running
    install: agent.InstallRequest  # the Sync and its agent
    provider: str = "local"
    nodes: int = 1
    kubeconfig: str | None = None  # provider "existing": the cluster's kubeconfig and context
    context: str | None = None
    private_key_file: Path | None = None  # the deploy key pair to use (else one is made)
    known_hosts: Path | None = None  # pin the Git server's host key from this file, or ...
    accept_host_key: str | None = None  # ... scan it and accept it if it has this SHA256
    age_keys: sops.AgeKeys | None = None  # stored for the agent to decrypt SOPS files
    rotate_age_key: bool = False  # replace another age key stored before
    timeout: float = 600.0  # for the deploy key to be accepted, health, and the agent
    lock_timeout: float = 120.0  # while another writer holds the sync's lock


@dataclass(frozen=True)
class Step:
    """What a phase did: whether it changed anything, and one sentence saying what."""

    changed: bool
    note: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    changed: bool
    note: str
    warnings: tuple[str, ...] = ()  # e.g. objects healthy only with a caveat


@dataclass(frozen=True)
class Bootstrap:
    """What a bootstrap did, phase by phase."""

    sync: str
    cluster: clusters.ClusterRecord
    phases: tuple[Phase, ...]
    report: engine.Report | None  # None when the Sync is suspended
    where: agent.Placement | None  # where the agent runs

    @property
    def changed(self) -> bool:
        return any(p.changed for p in self.phases)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.phases)


@dataclass(frozen=True)
class BootstrapPhaseStarted:
    name: str


@dataclass(frozen=True)
class BootstrapPhaseFinished:
    phase: Phase


@dataclass(frozen=True)
class DeployKeyToAdd:
    """A new deploy key: its public half must be added to the repository, read-only. The
    phase then waits (up to the timeout) until the Git server accepts it; a sink that shows it
    to a person may wait here until they say they added it."""

    public_key: str


BootstrapEvent = BootstrapPhaseStarted | BootstrapPhaseFinished | DeployKeyToAdd
Sink = Callable[[events.Event | BootstrapEvent], None]


def bootstrap(request: BootstrapRequest, confirm: dk.Confirm | None = None,
              emit: Sink = events.ignore) -> Bootstrap:
    """Check the request, then run the phases. `confirm(host, fingerprint, key type)` accepts
    a scanned host key when none was given (None: nobody to ask, so that is refused)."""
    request = replace(request, accept_host_key=check(request, confirm))
    return _Run(request, confirm, emit).run()


def check(request: BootstrapRequest, confirm: dk.Confirm | None) -> str | None:
    """Refuse bad input before anything is made. Returns the host key fingerprint to pin
    (the one given, or the one confirmed now), so no later phase asks again."""
    provisioning.check_request(request.provider, request.cluster, request.nodes,
                               request.kubeconfig)
    repo, key_name = request.install.repo, request.install.deploy_key
    if not key_name:
        return request.accept_host_key
    dk.parse_ssh_url(repo)
    if request.private_key_file is not None:
        dk.load_key_file(key_name, request.private_key_file)  # unreadable or no key: exit 2
    if request.known_hosts or request.accept_host_key:
        dk.pin_host_key(repo, request.known_hosts, request.accept_host_key)  # wrong: exit 2
        return request.accept_host_key
    if provisioning.is_recorded(request.cluster):
        return None  # the cluster may already hold the deploy key: it is reused, unasked
    # A new cluster needs the host key pinned: with nobody to confirm it, the error names
    # the fingerprint to pass.
    return dk.host_fingerprints(dk.pin_host_key(repo, None, None, confirm))[0]


class _Run:
    def __init__(self, request: BootstrapRequest, confirm: dk.Confirm | None, emit: Sink):
        self.request, self.confirm, self.emit = request, confirm, emit
        self.phases: list[Phase] = []
        self.record: clusters.ClusterRecord | None = None
        self.key: dk.DeployKey | None = None
        self.report: engine.Report | None = None
        self.where: agent.Placement | None = None

    def run(self) -> Bootstrap:
        self._phase("provision", self._provision)
        assert self.record is not None
        with agent.target(None, None, self.record.name) as t:
            self._phase("deploy-key", lambda: self._deploy_key(t))
            if self.request.age_keys is not None:
                self._phase("sops-age-key", lambda: self._age_key(t, self.request.age_keys))
            self._phase("agent-install", lambda: self._install(t))
            self._phase("restore", lambda: self._restore(t))
            self._phase("agent-start", lambda: self._start(t))
            self._phase("agent-ready", lambda: self._agent_ready(t))
        return Bootstrap(self.request.install.sync, self.record, tuple(self.phases),
                         self.report, self.where)

    def _phase(self, name: str, action: Callable[[], Step]) -> None:
        self.emit(BootstrapPhaseStarted(name))
        started = time.monotonic()
        step = action()
        phase = Phase(name, time.monotonic() - started, step.changed, step.note, step.warnings)
        self.phases.append(phase)
        self.emit(BootstrapPhaseFinished(phase))

    def _log(self, prefix: str) -> Callable[[str], None]:
        return lambda line: self.emit(events.Message(f"{prefix}{line}"))

    def _provision(self) -> Step:
        r = self.request
        result = provisioning.provision(r.provider, r.cluster, nodes=r.nodes,
                                        kubeconfig=r.kubeconfig, context=r.context,
                                        progress=self._log(f"{r.cluster}: "))
        self.record = result.record
        if result.already_running:
            return Step(False, "already running")
        return Step(True, f"{r.provider} cluster created")

    def _deploy_key(self, t: agent.Target) -> Step:
        """The key in the Secret is reused unless a key pair is given; else one is stored."""
        r, name = self.request, self.request.install.deploy_key
        if not name:
            return Step(False, f"not needed for {source.redact(r.install.repo)}")
        existing = None if agent.deploykey_missing(t.kube, name) else \
            dk.load_deploy_key(t.kube, name)
        if existing is not None and r.private_key_file is None:
            key, changed = existing, False
        else:
            result = dk.create_deploy_key(
                t.kube, dk.DeployKeyRequest(repo=r.install.repo, name=name,
                                            known_hosts_file=r.known_hosts,
                                            accept_host_key=r.accept_host_key,
                                            private_key_file=r.private_key_file),
                self.confirm, self._log("deploy-key: "))
            key, changed = result.key, existing is None or result.replaced
            if changed and r.private_key_file is None:
                self.emit(DeployKeyToAdd(key.public_key))
        dk.wait_until_accepted(r.install.repo, key, timeout=r.timeout,
                               log=self._log("deploy-key: "))
        self.key = key
        return Step(changed, f"{key.fingerprint} in Secret {agent.NAMESPACE}/"
                             f"{dk.secret_name(name)}")

    def _age_key(self, t: agent.Target, keys: sops.AgeKeys) -> Step:
        changed, note = sops_key.store(t.kube, self.request.install.sync, keys,
                                       self.request.rotate_age_key)
        return Step(changed, note)

    def _install(self, t: agent.Target) -> Step:
        results = agent.install(t, self.request.install, start=False)
        changed = [label for label, c in results if c]
        if changed:
            return Step(True, f"{len(changed)} of {len(results)} objects configured")
        return Step(False, f"{len(results)} objects unchanged")

    def _restore(self, t: agent.Target) -> Step:
        """What the Sync targets, as the agent would apply it, waiting for health."""
        request = self.request.install
        obj = agent.read_sync(t.kube, request.sync)
        if obj is None:
            raise OperationFailed(f"Sync {agent.NAMESPACE}/{request.sync}: missing after "
                                  "install")
        if obj.spec.suspend:
            return Step(False, "skipped: the Sync is suspended (gitops-restore agent resume)")
        report = self._run_engine(t, obj)
        if report.unhealthy:
            raise OperationFailed("not healthy within the timeout:\n" + "\n".join(
                f"  {h.ref}: {h.reason}" for h in report.unhealthy))
        self.report = report
        counts = ", ".join(f"{n} {a}" for a, n in report.changes.count().items() if n)
        pinned = f" (pinned: {obj.spec.revision})" if obj.spec.revision else ""
        signed = f"; {report.signatures[0]}" if report.signatures else ""
        return Step(report.changes.changed,
                    f"{obj.spec.target}{pinned} -> {report.revision.sha[:12]}: "
                    f"{counts or 'empty'}{signed}", tuple(str(h) for h in report.warnings))

    def _run_engine(self, t: agent.Target, obj: syncobject.SyncObject) -> engine.Report:
        r, request = self.request, self.request.install
        options = engine.SyncOptions(sync_name=request.sync, namespace=request.default_namespace,
                                     prune=obj.spec.prune, wait=True, timeout=r.timeout,
                                     lock_timeout=r.lock_timeout)

        def restore(auth: source.GitAuth | None) -> engine.Report:
            spec = engine.SourceSpec(repo=request.repo, ref=obj.spec.target, path=request.path,
                                     ignore=request.ignore, auth=auth, verify=request.verify,
                                     render=RenderOptions(sops_keys=r.age_keys))
            return engine.restore(t.kube, spec, options, self.emit)

        try:
            if self.key is None:
                return restore(None)
            with self.key.git_auth() as auth:
                return restore(auth)
        except ApplyError as e:
            raise OperationFailed("apply failed; objects applied before the failure stay "
                                  "applied and owned (re-run bootstrap to converge):\n"
                                  + str(e)) from None

    def _start(self, t: agent.Target) -> Step:
        self.where, started = agent.start_agent(t, self.request.install)
        return Step(started, self.where.detail)

    def _agent_ready(self, t: agent.Target) -> Step:
        """Polls the Sync until the agent reports Ready for the commit the restore applied."""
        sync, wait = self.request.install.sync, self.request.timeout
        deadline = time.monotonic() + wait
        want = self.report.revision.sha if self.report else None
        message = "no status yet"
        while time.monotonic() < deadline:
            obj = agent.read_sync(t.kube, sync)
            if obj is not None and obj.spec.suspend:
                return Step(False, "not waited for: the Sync is suspended")
            if obj is not None:
                ready = obj.condition(syncobject.READY)
                message = ready.get("message") or message
                current = obj.status.get("observedGeneration") == obj.generation
                applied = obj.status.get("lastAppliedRevision", "")
                if current and ready.get("status") == "True" and want in (None, applied):
                    return Step(False, f"Ready at {applied[:12]}")
            time.sleep(0.5)
        where = agent.placement(t, sync)
        raise OperationFailed(f"Sync {agent.NAMESPACE}/{sync}: the agent did not report Ready"
                              f"{' for ' + want if want else ''} within {wait:.0f}s: {message} "
                              f"(agent: {where.detail})")
