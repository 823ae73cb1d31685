"""Make a cluster match a Git revision: the pipeline end to end, timed phase by phase.

source (fetch, resolve) -> render -> validate (discovery, prepare, dry-run plan) -> apply by
stage -> prune -> health. `restore` runs it all (or stops after the plan, for `plan`),
`verify` compares without writing. Called by bootstrap's commands and by the in-cluster agent;
it knows nothing of either.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sync_agent import (
    collector,
    digests,
    discovery,
    events,
    inventory,
    lock,
    render_cache,
    signatures,
    source,
    sync_identity,
)
from sync_agent import health as health_mod
from sync_agent import render as render_mod
from sync_agent.apply import Applied, ApplyError, ApplyOptions, apply_plan
from sync_agent.changes import Action, Change, ChangeSet, Desired
from sync_agent.conventions import NAMESPACE_RT, PRUNE_ANNOTATION, SYNC_LABEL
from sync_agent.helm import capabilities, upgrades
from sync_agent.helm.context import HelmContext, HelmSettings
from sync_agent.kube import DEFAULT_WORKERS, Kube
from sync_agent.objects import RenderResult, Revision
from sync_agent.plan import STILL_OWNED, Plan, PlanOptions, list_owned, make_plan
from sync_agent.prune import RECREATED, PruneError, prune
from sync_agent.render_options import DEFAULTS, RenderOptions
from sync_agent.validate import CREATED_NAMESPACE, ValidateOptions, prepare


@dataclass(frozen=True)
class SourceSpec:
    """Which declared state: repository, revision (ref or time) and path in it."""

    repo: str
    ref: str | None = None
    at: datetime | None = None
    path: str = ""
    ignore: tuple[str, ...] = ()
    auth: source.GitAuth | None = None
    render: RenderOptions = DEFAULTS  # bounds, and whether remote kustomize bases may be fetched
    verify: signatures.Policy | None = None  # --verify-signatures: checked before rendering
    helm: HelmSettings = HelmSettings()  # --helm, --offline, chart repository credentials


@dataclass(frozen=True)
class SyncOptions:
    sync_name: str
    namespace: str = "default"  # for namespaced objects that name none, as kubectl
    prune: bool = False
    prune_data: bool = False
    allow_mass_prune: bool = False
    create_namespaces: bool = False
    force: bool = False  # delete and recreate objects whose immutable fields changed
    wait: bool = False
    timeout: float = 600.0  # for --wait
    workers: int = DEFAULT_WORKERS
    plan_only: bool = False
    lock_timeout: float = 120.0  # how long to wait for another writer of the sync (lock.py)
    # Apply under this name even though its inventory records another repository or path.
    take_over: bool = False


@dataclass
class Report:
    """What a run did, per object and per phase; every report names the resolved SHA."""

    sync_name: str
    revision: Revision
    path: str
    changes: ChangeSet = field(default_factory=ChangeSet)
    phases: list[tuple[str, float]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    helm: list[str] = field(default_factory=list)  # per release: rendered or left as-is
    unhealthy: list[health_mod.Health] = field(default_factory=list)
    # Not ready for want of a controller the cluster lacks (health.State.UNSERVED): reported,
    # never a failure.
    warnings: list[health_mod.Health] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    signatures: list[signatures.Signed] = field(default_factory=list)  # verified, target first
    # Safety flags the run relied on (--force, --allow-mass-prune, --prune-data), with why.
    needs: dict[str, str] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(seconds for _, seconds in self.phases)

    def to_json(self) -> dict:
        return {
            "sync": self.sync_name,
            "repo": self.revision.repo,
            "ref": self.revision.ref,
            "sha": self.revision.sha,
            "committed_at": self.revision.committed_at,
            "path": self.path,
            "counts": self.changes.count(),
            "changes": [{"object": str(c.ref), "action": c.action.value, "detail": c.detail}
                        for c in self.changes.changes],
            "phases": [{"phase": p, "seconds": round(s, 3)} for p, s in self.phases],
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
            "helm": self.helm,
            "unhealthy": [{"object": str(h.ref), "reason": h.reason} for h in self.unhealthy],
            "warnings": [{"object": str(h.ref), "reason": h.reason} for h in self.warnings],
            "errors": self.errors,
            "signatures": [s.to_json() for s in self.signatures],
            "needs": [{"flag": f, "reason": why} for f, why in self.needs.items()],
        }


class _Timer:
    def __init__(self, report: Report, emit: events.EventSink):
        self.report, self.emit = report, emit

    @contextmanager
    def phase(self, name: str, total: int = 0) -> Iterator[None]:
        self.emit(events.PhaseStarted(name, total))
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - started
            self.report.phases.append((name, seconds))
            self.emit(events.PhaseFinished(name, seconds))


def fetch(spec: SourceSpec) -> tuple[object, Revision]:
    repo = source.open_repository(spec.repo, spec.auth)
    return repo, source.resolve(repo, spec.repo, ref=spec.ref, at=spec.at)


def render_revision(repo, revision: Revision, spec: SourceSpec,
                    helm: HelmContext | None = None) -> RenderResult:
    """The objects `spec` declares at `revision`; from the render cache when this commit was
    rendered before with the same inputs, without exporting or parsing it (`render_cache`)."""
    inputs = render_cache.Inputs(spec.repo, revision.sha, spec.path, spec.ignore, spec.render,
                                 helm)
    entry = render_cache.key(inputs) if render_cache.cacheable(inputs) else None
    if entry and (hit := render_cache.load(entry, revision)):
        return hit
    with tempfile.TemporaryDirectory(prefix="gitops-restore-tree-") as tree:
        left_out = source.export_tree(repo, revision.sha, Path(tree))
        result = render_mod.render(Path(tree), spec.path, revision, spec.ignore, spec.render,
                                   left_out, helm)
    if entry:
        render_cache.store(entry, result)
    return result


def helm_context(kube: Kube, spec: SourceSpec, options: SyncOptions) -> HelmContext:
    """What Helm rendering needs from the cluster: its version and served APIs."""
    return HelmContext(spec.helm, lambda: capabilities.of_cluster(kube, discovery.discover(kube)),
                       spec.repo, options.namespace)


def _fetch_and_render(spec: SourceSpec, options: SyncOptions, emit: events.EventSink,
                      kube: Kube) -> tuple[Report, _Timer, RenderResult]:
    started = time.monotonic()
    emit(events.PhaseStarted("fetch"))
    repo, revision = fetch(spec)
    report = Report(options.sync_name, revision, spec.path)
    report.phases.append(("fetch", time.monotonic() - started))
    emit(events.PhaseFinished("fetch", report.phases[-1][1]))
    timer = _Timer(report, emit)
    if spec.verify is not None:
        with timer.phase("signatures"):
            report.signatures = verify_signatures(kube, repo, revision, spec, options.sync_name)
    with timer.phase("render"):
        rendered = render_revision(repo, revision, spec, helm_context(kube, spec, options))
        report.skipped = list(rendered.skipped)
        report.helm = list(rendered.helm)
    return report, timer, rendered


def verify_signatures(kube: Kube, repo, revision: Revision, spec: SourceSpec,
                      sync_name: str) -> list[signatures.Signed]:
    """Raises signatures.SignatureError (exit 2) before anything is rendered or applied."""
    old = inventory.load(kube, sync_name) if spec.verify.mode == "chain" else None
    return signatures.verify(str(repo.git_dir), revision.sha, spec.verify,
                             ref=spec.ref if spec.at is None else None,
                             last_applied=old.revision if old else "")


@collector.paused()
def restore(kube: Kube, spec: SourceSpec, options: SyncOptions,
            emit: events.EventSink = events.ignore, guard: lock.Guard | None = None) -> Report:
    """Restore (or, with plan_only, plan) the cluster to the declared state of `spec`.

    Everything after rendering runs under the sync's one-writer lock: taken here (waiting up
    to options.lock_timeout), unless the caller holds it and passes its `guard` (the agent).
    """
    report, timer, rendered = _fetch_and_render(spec, options, emit, kube)
    if options.plan_only:
        return _restore(kube, spec, options, emit, report, timer, rendered, None)
    if guard is not None:
        return _restore(kube, spec, options, lock.checked(emit, guard), report, timer,
                        rendered, guard)
    with timer.phase("lock"):
        held = lock.acquire(kube, options.sync_name, options.lock_timeout, emit)
    try:
        return _restore(kube, spec, options, lock.checked(emit, held), report, timer,
                        rendered, held)
    finally:
        held.release()


def _restore(kube: Kube, spec: SourceSpec, options: SyncOptions, emit: events.EventSink,
             report: Report, timer: _Timer, rendered: RenderResult,
             guard: lock.Guard | None) -> Report:
    revision = report.revision
    with timer.phase("validate", len(rendered.resources)):
        key = digests.cluster_key(kube, create=not options.plan_only)
        plan, old, namespaces = _validate_and_plan(
            kube, spec, rendered, options, emit, key,
            PlanOptions(options.sync_name, prune=options.prune, prune_data=options.prune_data,
                        allow_mass_prune=options.allow_mass_prune, force=options.force,
                        workers=options.workers))
    report.changes = plan.change_set()
    report.helm.extend(upgrades.chart_changes(kube, plan))
    report.needs = dict(plan.needs)
    if options.plan_only:
        return report

    book = _InventoryWriter(kube, options, spec, revision, old, guard)
    pending = inventory.merge(old, book.record(_to_own(plan, old)))
    if pending.entries != (old.entries if old else ()):
        book.save(pending)
    try:
        applied, timings = apply_plan(kube, plan, namespaces,
                                      ApplyOptions(workers=options.workers), emit)
    except ApplyError as e:
        report.phases.extend((t.phase, t.seconds) for t in e.timings)
        book.save(inventory.merge(old, book.record(a.entry for a in e.applied)))
        raise
    report.phases.extend((t.phase, t.seconds) for t in timings)
    report.changes = _change_set(plan, applied)

    with timer.phase("prune", len(plan.prune)):
        try:
            pruned = prune(kube, plan.prune, options.sync_name, options.workers, emit)
        except PruneError as e:
            report.errors.extend(e.problems)
            pruned = e.done
    for change in pruned:
        report.changes.add(change)
    with timer.phase("inventory"):
        book.save(book.record(_final_entries(plan, applied, old, pruned)))
    if options.wait:
        report.unhealthy = _wait_healthy(kube, plan.desired, options, report, emit)
    return report


def _validate_and_plan(kube: Kube, spec: SourceSpec, rendered: RenderResult,
                       options: SyncOptions, emit: events.EventSink, digest_key: bytes,
                       plan_options: PlanOptions):
    found = discovery.discover(kube)
    listed = kube.list(NAMESPACE_RT)
    namespaces = {o["metadata"]["name"] for o in listed}
    ours = frozenset(o["metadata"]["name"] for o in listed
                     if (o["metadata"].get("labels") or {}).get(SYNC_LABEL) == options.sync_name)
    desired, problems = prepare(rendered.resources, found, namespaces,
                                ValidateOptions(options.sync_name, options.namespace,
                                                options.create_namespaces,
                                                owned_namespaces=ours,
                                                digest_key=digest_key))
    old = inventory.load(kube, options.sync_name)
    if old is not None and not options.take_over:
        sync_identity.check(old.name, old.repo, old.path, spec.repo, spec.path)
    plan = make_plan(kube, desired, old, found, namespaces, plan_options, emit, problems)
    return plan, old, namespaces


@collector.paused()
def verify(kube: Kube, spec: SourceSpec, options: SyncOptions,
           emit: events.EventSink = events.ignore) -> Report:
    """Compare the live cluster with the revision, writing nothing.

    Every declared object is dry-run (nothing is trusted from the inventory): CREATE means
    missing, UPDATE (or RECREATE, an immutable field) drifted, the detail names the fields;
    DELETE an extra owned object. KEEP is what restore keeps or creates by its own rules, with
    the same options: a namespace made by --create-namespaces, a data-holding object without
    --prune-data, a namespace the revision's objects are in. It is not drift.

    A namespace the revision uses but neither declares nor finds is reported missing (with
    its objects) whatever the options, so a failed restore's verify says what differs.
    """
    report, timer, rendered = _fetch_and_render(spec, options, emit, kube)
    with timer.phase("verify", len(rendered.resources)):
        # Nothing is trusted from the inventory here, so no digest is compared (no key needed).
        plan, _, _ = _validate_and_plan(
            kube, spec, rendered, dataclasses.replace(options, create_namespaces=True), emit, b"",
            PlanOptions(options.sync_name, prune=True, prune_data=options.prune_data,
                        allow_mass_prune=True, trust_inventory=False, compare_only=True,
                        workers=options.workers))
        desired = plan.desired
        report.changes = _verified(plan, options.create_namespaces)
        _add_unlisted_extras(kube, plan, desired, report.changes, options.sync_name)
    if options.wait:
        report.unhealthy = _wait_healthy(kube, desired, options, report, emit)
    return report


def _wait_healthy(kube: Kube, desired: list[Desired], options: SyncOptions, report: Report,
                  emit: events.EventSink) -> list[health_mod.Health]:
    started = time.monotonic()  # health.wait emits its own phase events
    not_ready = health_mod.wait(kube, [(d.rt, d.ref) for d in desired], options.timeout,
                                emit=emit, phase="health")
    report.phases.append(("health", time.monotonic() - started))
    report.warnings = [h for h in not_ready if h.warning]
    return [h for h in not_ready if not h.warning]


def _verified(plan: Plan, create_namespaces: bool) -> ChangeSet:
    """The plan as verify reports it: a namespace --create-namespaces made is kept, not in
    sync; one it would make is missing, and says whether restore is given the flag."""
    changes = plan.change_set()
    created = {d.ref for d in plan.desired if d.origin == CREATED_NAMESPACE}
    users = Counter(d.ref.namespace for d in plan.desired if created)
    for i, change in enumerate(changes.changes):
        if change.ref not in created:
            continue
        objects = f"{users[change.ref.name]} object(s) of the revision are in it"
        if change.action is Action.UNCHANGED:
            changes.changes[i] = dataclasses.replace(
                change, action=Action.KEEP,
                detail=f"created by --create-namespaces: {objects}, none declares it")
        elif change.action is Action.CREATE and not create_namespaces:
            changes.changes[i] = dataclasses.replace(
                change, detail=f"{objects}, none declares it: restore needs --create-namespaces")
    return changes


def _add_unlisted_extras(kube: Kube, plan: Plan, desired: list[Desired], changes: ChangeSet,
                         sync_name: str) -> None:
    """Objects labelled as ours that neither the revision nor the inventory lists."""
    known = {d.ref for d in desired} | {i.ref for i in plan.prune}
    types = {d.rt for d in desired} | {i.rt for i in plan.prune}
    for ref, live in list_owned(kube, types, sync_name, metadata_only=True).items():
        annotations = live["metadata"].get("annotations") or {}
        if ref not in known and annotations.get(PRUNE_ANNOTATION) != "disabled":
            changes.add(Change(ref, Action.DELETE, "labelled as owned, not in the inventory"))


# --- inventory bookkeeping -------------------------------------------------------------------

def _to_own(plan: Plan, old: inventory.Inventory | None) -> list[inventory.Entry]:
    """Before the first write: everything the run may create is owned from now on, so an
    interrupted restore can still prune it later; and nothing it is about to change keeps a
    digest, since a write cut short would leave the inventory describing the old body."""
    recorded = old.by_ref if old else {}
    return [inventory.Entry.of(d) for d in plan.desired
            if d.ref not in recorded or plan.actions[d.ref].action is not Action.UNCHANGED]


def _final_entries(plan: Plan, applied: list[Applied], old: inventory.Inventory | None,
                   pruned: list[Change]) -> list[inventory.Entry]:
    """The revision's record: each declared object as applied now, else as a dry-run confirmed it
    unchanged, else as recorded, else new; and each object prune kept as still ours or failed to
    delete, as recorded (the next run decides again). Later entries win (inventory.Inventory)."""
    recorded = old.by_ref if old else {}
    dropped = {c.ref for c in pruned
               if not (c.action is Action.KEEP and c.detail in (*STILL_OWNED, RECREATED))}
    kept = [recorded[i.ref] for i in plan.prune if i.ref not in dropped]
    declared = [_confirmed(plan, d) or recorded.get(d.ref) or inventory.Entry.of(d)
                for d in plan.desired]
    return [*kept, *declared, *(a.entry for a in applied)]


def _confirmed(plan: Plan, d: Desired) -> inventory.Entry | None:
    owned = plan.confirmed.get(d.ref)
    return inventory.Entry(d.ref, d.rt.version, d.digest, owned) if owned else None


def _change_set(plan: Plan, applied: list[Applied]) -> ChangeSet:
    done = {a.change.ref: a.change for a in applied}
    changes = ChangeSet()
    for d in plan.desired:
        changes.add(done.get(d.ref, plan.actions[d.ref]))
    return changes


@dataclass
class _InventoryWriter:
    """Writes a run's inventory records while the run holds the sync's lock, each on the
    version the load or the previous write left: a record another writer changed meanwhile
    is a conflict (inventory.InventoryConflict), never overwritten."""

    kube: Kube
    options: SyncOptions
    spec: SourceSpec
    revision: Revision
    old: inventory.Inventory | None
    guard: lock.Guard
    version: str = ""

    def __post_init__(self) -> None:
        self.version = self.old.resource_version if self.old else ""

    def record(self, entries: Iterable[inventory.Entry]) -> inventory.Inventory:
        """The complete record of this run's revision with `entries` (inventory.merge makes
        the incomplete records)."""
        spec, revision = self.spec, self.revision
        return inventory.Inventory(
            name=self.options.sync_name, revision=revision.sha, ref=revision.ref,
            applied_at=datetime.now(UTC).isoformat(timespec="seconds"), entries=tuple(entries),
            path=sync_identity.path_of(spec.path), repo=sync_identity.recorded(spec.repo))

    def save(self, record: inventory.Inventory) -> None:
        self.guard.check("writing the inventory")
        old = self.old
        if old is not None and self.version == old.resource_version \
                and dataclasses.replace(record, applied_at=old.applied_at) == old:
            return  # an idle sync writes nothing: the stored record says all of this already
        self.version = inventory.save(self.kube, record, expected=self.version)
