"""The restore drill: prove that a cluster can be rebuilt from Git, rolled back and rolled forward.

`prepare` checks the input and resolves both revisions before anything is provisioned, so bad
input (an unknown ref, a missing path, a broken manifest, a taken cluster name) exits 2 and
makes nothing. `run` then goes through the phases, each timed and judged:

    provision -> restore-from -> verify-from -> rollback-to -> verify-to
    -> roll-forward -> verify-forward -> teardown

A failed phase does not stop the drill: rolling forward out of a broken rollback is exactly
the recovery to prove, and every failure is reported. Nothing runs on a cluster that could not
be provisioned, and teardown always runs. The restores wait until the workloads are healthy,
so their time is the recovery time; provision, the verifies and teardown are the drill's own
overhead, reported apart. Called by `cli/drill.py`; `drill_reports` writes the result.

The restores run with the safety flags given, as the real rollback would (--force,
--allow-mass-prune, --prune-data): nothing is allowed behind the operator's back. Each
recovery phase records the flags its plan needed, given or not, so the report says with which
flags the real procedure works. The verifies use the options that decide what a revision means
(--create-namespaces, --prune-data), so what restore keeps by its own rules is `kept`, not
drift.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bootstrap import binaries, clusters
from bootstrap import provision as provisioning
from bootstrap.errors import UserError
from bootstrap.resources import resource
from sync_agent import engine, events, rollback_target, signatures
from sync_agent.changes import Action, ChangeSet
from sync_agent.errors import SyncError
from sync_agent.kube import Kube
from sync_agent.rollback_target import Target

PHASES = ("provision", "restore-from", "verify-from", "rollback-to", "verify-to",
          "roll-forward", "verify-forward", "teardown")
RESTORES = frozenset({"restore-from", "rollback-to", "roll-forward"})  # the recovery time

# What each action means after a restore, and in a verify (CREATE = missing, and so on).
DONE = {Action.CREATE: "created", Action.UPDATE: "configured", Action.RECREATE: "recreated",
        Action.UNCHANGED: "unchanged", Action.DELETE: "deleted", Action.KEEP: "kept"}
FOUND = {Action.CREATE: "missing", Action.UPDATE: "drifted", Action.RECREATE: "drifted",
         Action.UNCHANGED: "in sync", Action.DELETE: "extra", Action.KEEP: "kept"}
# The flags a restore may need beyond the revision, as `rollback` takes them.
SAFETY_FLAGS = ("--force", "--allow-mass-prune", "--prune-data")
_COUNT_ORDER = ("created", "configured", "recreated", "deleted", "kept", "missing", "drifted",
                "extra", "in sync", "unchanged", "unhealthy")
_OBJECT_FIRST = re.compile(r"^([A-Z][A-Za-z0-9]*(?:\.[a-z0-9.-]+)?/[^\s:,]+):\s*(.*)$", re.S)


@dataclass(frozen=True)
class ClusterRequest:
    provider: str  # local, kind or existing
    name: str = ""  # "" picks drill-<random>
    nodes: int = 1
    kubeconfig: str | None = None  # existing only
    context: str | None = None  # existing only
    keep: bool = False  # leave the cluster up afterwards


@dataclass(frozen=True)
class DrillSpec:
    source: engine.SourceSpec  # repository, the --from ref, --path, ignores, auth
    to_ref: str | None  # None: the previous commit that changed the declared state
    to_path: str | None  # the path at --to, when the directory moved; None: --path
    cluster: ClusterRequest
    sync: engine.SyncOptions  # sync name, namespace, create_namespaces, safety flags, ...

    @property
    def flags(self) -> tuple[str, ...]:
        """The safety flags given, as the command line spells them."""
        given = (self.sync.force, self.sync.allow_mass_prune, self.sync.prune_data)
        return tuple(flag for flag, on in zip(SAFETY_FLAGS, given, strict=True) if on)


@dataclass(frozen=True)
class DrillPlan:
    """Validated input: every ref resolved to a commit, the cluster name chosen."""

    spec: DrillSpec
    from_target: Target
    to_target: Target
    cluster_name: str
    prepare_seconds: float
    # "from"/"to": the verified signatures (--verify-signatures), checked before provisioning
    signed: dict[str, tuple[signatures.Signed, ...]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    object: str  # kind/namespace/name, or "" when no single object is concerned
    kind: str  # missing, drifted, extra, unhealthy or error
    reason: str

    def __str__(self) -> str:
        return f"{self.object}: {self.kind}: {self.reason}" if self.object else \
            f"{self.kind}: {self.reason}"


@dataclass(frozen=True)
class Need:
    """A safety flag a restore's plan needed: given (it passed) or not (the phase failed)."""

    flag: str
    reason: str
    given: bool

    def __str__(self) -> str:
        return f"{self.flag} ({'given' if self.given else 'NOT given'}): {self.reason}"


@dataclass(frozen=True)
class PhaseResult:
    name: str  # one of PHASES
    status: str = "passed"  # passed, failed or skipped
    seconds: float = 0.0
    revision: str = ""  # "from" or "to" for the restores and verifies
    steps: tuple[tuple[str, float], ...] = ()  # the engine's own phases and their times
    counts: tuple[tuple[str, int], ...] = ()  # objects per outcome, non-zero only
    changes: tuple[tuple[str, str], ...] = ()  # (object, outcome) other than unchanged
    failures: tuple[Failure, ...] = ()
    note: str = ""
    needs: tuple[Need, ...] = ()  # recovery phases: the safety flags the plan needed

    @property
    def recovery(self) -> bool:
        return self.name in RESTORES


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    provider: str
    kubeconfig: str
    context: str
    kept: bool  # still running after the drill (--keep, or an existing cluster)


@dataclass(frozen=True)
class DrillResult:
    plan: DrillPlan
    cluster: ClusterInfo
    phases: tuple[PhaseResult, ...]
    started_at: str  # ISO 8601, UTC

    @property
    def passed(self) -> bool:
        return all(p.status != "failed" for p in self.phases)

    @property
    def recovery_seconds(self) -> float:
        return sum(p.seconds for p in self.phases if p.recovery)

    @property
    def overhead_seconds(self) -> float:
        return sum(p.seconds for p in self.phases if not p.recovery)

    @property
    def total_seconds(self) -> float:
        return self.plan.prepare_seconds + self.recovery_seconds + self.overhead_seconds

    @property
    def failures(self) -> list[tuple[str, Failure]]:
        return [(p.name, f) for p in self.phases for f in p.failures]

    @property
    def needed(self) -> tuple[str, ...]:
        """The safety flags any recovery phase needed: the real procedure needs them too."""
        found = {n.flag for p in self.phases for n in p.needs}
        return tuple(flag for flag in SAFETY_FLAGS if flag in found)


@dataclass(frozen=True)
class DrillPhaseStarted:
    name: str
    detail: str  # what the phase works on: cluster, commit and path


@dataclass(frozen=True)
class DrillPhaseFinished:
    result: PhaseResult


DrillEvent = DrillPhaseStarted | DrillPhaseFinished
Sink = Callable[[events.Event | DrillEvent], None]


def prepare(spec: DrillSpec) -> DrillPlan:
    """Check the input and resolve both revisions; raises UserError/SyncError (exit 2)."""
    started = time.monotonic()
    request = spec.cluster
    if request.provider not in clusters.PROVIDERS:
        raise UserError(f"--provider {request.provider!r}: choose one of "
                        f"{', '.join(clusters.PROVIDERS)}")
    if request.provider == "existing":
        if not request.kubeconfig:
            raise UserError("--provider existing needs --kubeconfig PATH (and optionally "
                            "--context): the drill runs in that cluster and leaves it up")
        if not Path(request.kubeconfig).expanduser().is_file():
            raise UserError(f"--kubeconfig {request.kubeconfig}: no such file")
    if request.provider == "local" and (missing := binaries.missing_binaries()):
        raise UserError(f"the local provider needs {', '.join(missing)}: build them with "
                        "`gitops-restore cluster-bin` (or `make cluster-bin`)")
    if request.provider == "kind" and not shutil.which("kind"):
        raise UserError("--provider kind needs `kind` on PATH (and a Docker engine); install "
                        "it, or use --provider local")
    if request.nodes < 1:
        raise UserError(f"--nodes {request.nodes}: a cluster needs at least one node")
    name = clusters.check_name(request.name or f"drill-{secrets.token_hex(3)}")
    if (clusters.cluster_dir(name) / "cluster.json").exists():
        raise UserError(f"cluster {name!r} already exists and the drill destroys its cluster "
                        "at the end: pick another --cluster (or leave it out), or drill "
                        "an existing cluster with --provider existing --kubeconfig PATH")
    from_target, to_target = rollback_target.resolve_targets(spec.source, spec.to_ref,
                                                             spec.to_path)
    signed = _verify_signatures(spec, from_target, to_target)
    if signed:  # verified by the refs asked for; the restores then pin bare SHAs
        spec = dataclasses.replace(spec, source=dataclasses.replace(spec.source, verify=None))
    return DrillPlan(spec, from_target, to_target, name, time.monotonic() - started, signed)


def _verify_signatures(spec: DrillSpec, frm: Target, to: Target
                       ) -> dict[str, tuple[signatures.Signed, ...]]:
    """Both targets, each as `head` would (a drill's cluster starts empty, so a chain is the
    target alone); a refusal is bad input: exit 2 before anything is provisioned."""
    policy = spec.source.verify
    if policy is None:
        return {}
    repo, _ = engine.fetch(spec.source)
    asked = {"from": spec.source.ref, "to": spec.to_ref}
    return {label: tuple(signatures.verify(str(repo.git_dir), target.revision.sha, policy,
                                           ref=asked[label]))
            for label, target in (("from", frm), ("to", to))}


def run(plan: DrillPlan, emit: Sink = events.ignore) -> DrillResult:
    """Every phase in order; teardown always runs. Never raises for a failed phase."""
    return _Drill(plan, emit).run()


class _Drill:
    def __init__(self, plan: DrillPlan, emit: Sink):
        self.plan, self.emit = plan, emit
        self.request = plan.spec.cluster
        self.phases: list[PhaseResult] = []
        self.record: clusters.ClusterRecord | None = None
        self.kube: Kube | None = None

    def run(self) -> DrillResult:
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            provisioned = self._phase("provision", self._cluster_detail(), self._provision)
            if provisioned.status == "passed" and self.kube is not None:
                with self.kube:
                    self._steps(self.kube)
            else:
                for name in PHASES[1:-1]:
                    self.phases.append(PhaseResult(name, "skipped", note="no cluster"))
                    self.emit(DrillPhaseFinished(self.phases[-1]))
        finally:
            self._teardown()
        record = self.record
        kept = bool(record) and (self.request.keep or self.request.provider == "existing")
        cluster = ClusterInfo(self.plan.cluster_name, self.request.provider,
                              record.kubeconfig if record else "",
                              record.context if record else "", kept)
        return DrillResult(self.plan, cluster, tuple(self.phases), started_at)

    def _steps(self, kube: Kube) -> None:
        frm, to = self.plan.from_target, self.plan.to_target
        for name, target, label, verify in (
                ("restore-from", frm, "from", False), ("verify-from", frm, "from", True),
                ("rollback-to", to, "to", False), ("verify-to", to, "to", True),
                ("roll-forward", frm, "from", False), ("verify-forward", frm, "from", True)):
            detail = f"{target.revision.sha[:12]} {target.path or '.'}"
            self._phase(name, detail, lambda t=target, v=verify, lb=label: self._sync(
                kube, t, lb, v))

    def _phase(self, name: str, detail: str, action: Callable[[], PhaseResult]) -> PhaseResult:
        self.emit(DrillPhaseStarted(name, detail))
        started = time.monotonic()
        try:
            result = action()
        except (SyncError, UserError) as e:
            needs = self._needs(getattr(e, "needs", {}))
            missing = [n.flag for n in needs if not n.given]
            note = (f"the plan needs {', '.join(missing)}, which the drill was not given; the "
                    "real rollback needs it too: drill it with the same flags" if missing else "")
            result = PhaseResult(name, failures=error_failures(e), needs=needs, note=note)
        status = "failed" if result.failures else result.status
        result = dataclasses.replace(result, name=name, status=status,
                                     seconds=time.monotonic() - started)
        self.phases.append(result)
        self.emit(DrillPhaseFinished(result))
        return result

    def _needs(self, needs: dict[str, str]) -> tuple[Need, ...]:
        given = self.plan.spec.flags
        return tuple(Need(flag, needs[flag], flag in given) for flag in SAFETY_FLAGS
                     if flag in needs)

    def _cluster_detail(self) -> str:
        return f"{self.plan.cluster_name} ({self.request.provider})"

    def _provision(self) -> PhaseResult:
        self.record = provisioning.provision(
            self.request.provider, self.plan.cluster_name, nodes=self.request.nodes,
            kubeconfig=self.request.kubeconfig, context=self.request.context,
            progress=lambda line: self.emit(events.Message(line))).record
        self.kube = Kube.from_kubeconfig(self.record.kubeconfig, self.record.context or None)
        return PhaseResult("provision", note=self.request.provider)

    def _sync(self, kube: Kube, target: Target, label: str, verify: bool) -> PhaseResult:
        # Once its first restore made the inventory its own, the drill's sync moves between
        # the two targets' paths (a directory moved between them): that is no other source.
        base = dataclasses.replace(self.plan.spec.sync, take_over=any(
            p.name == "restore-from" and p.status == "passed" for p in self.phases))
        spec = target.spec(self.plan.spec.source)
        if verify:
            options = dataclasses.replace(base, wait=True, prune=False, plan_only=False)
            report = engine.verify(kube, spec, options, self.emit)
            words, failing = FOUND, (Action.CREATE, Action.UPDATE, Action.RECREATE,
                                     Action.DELETE)
        else:
            options = dataclasses.replace(base, wait=True, prune=True, plan_only=False)
            report = engine.restore(kube, spec, options, self.emit)
            words, failing = DONE, ()
        failures = [Failure(str(c.ref), words[c.action], c.detail or words[c.action])
                    for c in report.changes.of(*failing)]
        failures += [Failure(str(h.ref), "unhealthy", h.reason) for h in report.unhealthy]
        failures += [Failure(*_object_first(e)) for e in report.errors]
        return PhaseResult("", revision=label, steps=tuple(report.phases),
                           counts=_counts(report.changes, words, len(report.unhealthy)),
                           changes=tuple((str(c.ref), words[c.action])
                                         for c in report.changes.changes
                                         if c.action is not Action.UNCHANGED),
                           failures=tuple(failures), needs=self._needs(report.needs))

    def _teardown(self) -> None:
        if self.record is None:
            note = "nothing to remove: no cluster was provisioned"
            self.phases.append(PhaseResult("teardown", "skipped", note=note))
            self.emit(DrillPhaseFinished(self.phases[-1]))
        elif self.request.keep:
            note = f"kept (--keep): kubeconfig {self.record.kubeconfig}"
            self.phases.append(PhaseResult("teardown", "skipped", note=note))
            self.emit(DrillPhaseFinished(self.phases[-1]))
        else:
            self._phase("teardown", self._cluster_detail(), self._destroy)

    def _destroy(self) -> PhaseResult:
        provisioning.destroy(self.plan.cluster_name,
                             progress=lambda line: self.emit(events.Message(line)))
        if self.request.provider == "existing":
            return PhaseResult("teardown", note="existing cluster left running; record removed")
        return PhaseResult("teardown", note="destroyed")


def _counts(changes: ChangeSet, words: dict[Action, str], unhealthy: int
            ) -> tuple[tuple[str, int], ...]:
    counted: dict[str, int] = {}
    for change in changes.changes:
        counted[words[change.action]] = counted.get(words[change.action], 0) + 1
    if unhealthy:
        counted["unhealthy"] = unhealthy
    return tuple(sorted(counted.items(), key=lambda item: _COUNT_ORDER.index(item[0])))


def _object_first(message: str) -> tuple[str, str, str]:
    """(object, "error", reason) when the message starts with an object, as engine errors do."""
    match = _OBJECT_FIRST.match(message.strip())
    if match:
        return match.group(1), "error", match.group(2)
    return "", "error", message.strip()


def error_failures(error: Exception) -> tuple[Failure, ...]:
    """One Failure per problem an engine or user error carries."""
    problems = getattr(error, "problems", None) or [str(error)]
    return tuple(Failure(*_object_first(str(p))) for p in problems)


# --- the bundled example repository -----------------------------------------------------------

DEMO_SOURCE = resource("examples") / "demo-repo"
DEMO_PATH = "apps/shop"
# One commit per revision directory, oldest first: fixed author and dates, so the demo
# repository has the same SHAs on every machine.
DEMO_HISTORY = (
    ("r1", "2026-01-05T09:00:00+00:00", "shop: first release (namespace, settings, web)"),
    ("r2", "2026-01-12T09:00:00+00:00", "web: nginx 1.27 with 3 replicas; add a redis cache"),
    ("r3", "2026-01-19T09:00:00+00:00", "add the queue worker; drop the GREETING setting"),
)
_DEMO_GIT_ENV = {"GIT_AUTHOR_NAME": "Shop Team", "GIT_AUTHOR_EMAIL": "shop@example.com",
                 "GIT_COMMITTER_NAME": "Shop Team", "GIT_COMMITTER_EMAIL": "shop@example.com",
                 "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def build_demo_repo(dest: Path) -> Path:
    """Make the example GitOps repository at `dest` (a new or empty directory): one commit per
    directory of `examples/demo-repo`, each a snapshot of the whole tree. Returns `dest`."""
    if dest.exists() and any(dest.iterdir()):
        raise UserError(f"{dest}: not empty; the demo repository needs a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    _git(dest, "init", "-q", "-b", "main")
    for directory, date, message in DEMO_HISTORY:
        for item in dest.iterdir():
            if item.name != ".git":
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        shutil.copytree(DEMO_SOURCE / directory, dest, dirs_exist_ok=True)
        # Copies keep their sizes and times (and may reuse inodes): git's index could take a
        # changed file for unchanged. A fresh index hashes every file.
        (dest / ".git" / "index").unlink(missing_ok=True)
        _git(dest, "add", "-A")
        _git(dest, "commit", "-q", "-m", message, date=date)
    return dest


def _git(repo: Path, *args: str, date: str | None = None) -> None:
    env = {**os.environ, **_DEMO_GIT_ENV}
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    done = subprocess.run(["git", "-C", str(repo), "-c", "commit.gpgsign=false", *args],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"{repo}: git {args[0]} failed: {done.stderr.strip()}")
