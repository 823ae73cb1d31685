"""Apply a plan in stages: concurrently within a stage, waiting where later stages depend.

Called by the engine with a Plan from `plan.make_plan`. CRDs and Namespaces go first and are
waited for (Established / Active); custom resources whose CRD came in this revision are
dry-run only then, and a failure there stops before their stage is written. Each applied
object's owned-fields digest is returned so the inventory can later tell that it is intact.
On failure, ApplyError carries what was applied so far.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sync_agent import events, health, inventory, order
from sync_agent.changes import Action, Change, Desired
from sync_agent.errors import Failed, ValidationError
from sync_agent.helm import hooks
from sync_agent.kube import DEFAULT_WORKERS, ApiError, Kube
from sync_agent.ownership import owned_fields_digest, upgrade
from sync_agent.plan import Plan, dry_run, shown_error
from sync_agent.workers import map_batched, reporting_errors


@dataclass(frozen=True)
class Applied:
    """An object we sent: what it came to, and what the inventory keeps of it."""

    change: Change
    entry: inventory.Entry  # with the digests of the body sent and of the fields we own


DELETE_TIMEOUT = 60.0  # how long an object --force recreates may take to go (finalizers)


@dataclass(frozen=True)
class StageTiming:
    phase: str  # apply:<stage>
    seconds: float
    objects: int


class ApplyError(Failed):
    def __init__(self, problems: list[str], applied: list[Applied],
                 timings: list[StageTiming]):
        self.problems = problems
        self.applied = applied
        self.timings = timings
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class ApplyOptions:
    workers: int = DEFAULT_WORKERS
    definitions_timeout: float = 120.0  # how long CRDs may take to become Established


@dataclass
class _Progress:
    applied: list[Applied] = field(default_factory=list)
    timings: list[StageTiming] = field(default_factory=list)


def apply_plan(kube: Kube, plan: Plan, existing_namespaces: set[str],
               options: ApplyOptions = ApplyOptions(),
               emit: events.EventSink = events.ignore) -> tuple[list[Applied], list[StageTiming]]:
    by_ref = {d.ref: d for d in plan.to_apply()}
    progress = _Progress()
    apply_one = reporting_errors(lambda d: _apply_one(kube, d, plan.actions[d.ref],
                                                       d.ref in plan.to_upgrade),
                                 _apply_failed)
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        pre_hooks = frozenset(r for r, d in by_ref.items() if hooks.is_pre_hook(d.body))
        for stage, refs in order.group_by_stage(by_ref, pre_hooks):
            phase = f"apply:{stage.name}"
            emit(events.PhaseStarted(phase, len(refs)))
            started = time.monotonic()
            objects = [by_ref[r] for r in refs]
            deferred = [d for d in objects if d.deferred]
            if deferred:
                _validate_deferred(kube, pool, deferred, existing_namespaces, plan, progress)
            problems: list[str] = []
            results = map_batched(pool, apply_one, objects, options.workers)
            for d, result in zip(objects, results, strict=True):
                if isinstance(result, str):
                    problems.append(result)
                else:
                    progress.applied.append(result)
                    emit(events.ObjectDone(phase, d.ref, result.change.action.value))
            if stage.wait_ready and not problems:
                problems.extend(_wait_definitions(kube, objects, options.definitions_timeout))
            seconds = time.monotonic() - started
            progress.timings.append(StageTiming(phase, seconds, len(objects)))
            emit(events.PhaseFinished(phase, seconds))
            if problems:
                raise ApplyError(sorted(problems), progress.applied, progress.timings)
    return progress.applied, progress.timings


def _apply_failed(d: Desired, error: ApiError) -> str:
    return f"{d.origin}: {d.ref}: {shown_error(error, d)}"


def _apply_one(kube: Kube, d: Desired, planned: Change, upgrade_first: bool
               ) -> Applied | str:
    if planned.action is Action.RECREATE and not _deleted(kube, d):
        return f"{d.origin}: {d.ref}: still present {DELETE_TIMEOUT:.0f}s after its delete"
    if planned.action in (Action.CREATE, Action.RECREATE):
        created, stored = _create(kube, d)
    else:
        if upgrade_first:
            upgrade(kube, d.rt, d.ref.namespace, d.ref.name)
        created, stored = kube.apply(d.rt, d.body, metadata_only=True)
    if planned.action is Action.RECREATE:
        action = Action.RECREATE
    else:
        action = Action.CREATE if created else Action.UPDATE
    change = Change(d.ref, action, planned.detail)
    return Applied(change, inventory.Entry(d.ref, d.rt.version, d.digest,
                                           owned_fields_digest(stored)))


def _create(kube: Kube, d: Desired) -> tuple[bool, dict]:
    """A new object by POST: a third less of the API server's work than a server-side apply
    that creates it (ownership.py says what that means for its fields). Should the object
    exist by now, or the POST be refused where the dry-run apply was not, it is applied."""
    try:
        return True, kube.create(d.rt, d.body)
    except ApiError as e:
        if e.about_server or e.status >= 500:
            raise
    return kube.apply(d.rt, d.body, metadata_only=True)


def _validate_deferred(kube: Kube, pool: ThreadPoolExecutor, deferred: Sequence[Desired],
                       existing_namespaces: set[str], plan: Plan, progress: _Progress) -> None:
    """Dry-run custom resources whose CRD was applied in an earlier stage of this run."""
    problems: list[str] = []

    def check(d: Desired) -> None:
        for attempt in range(20):  # the new API may take a moment to be served after Established
            try:
                plan.actions[d.ref] = dry_run(kube, d, None, existing_namespaces)
                return
            except ApiError as e:
                if e.about_server:
                    raise
                if e.status == 404 and attempt < 19:
                    time.sleep(0.25)
                    continue
                problems.append(f"{d.origin}: {d.ref}: the API server rejected it in a "
                                f"dry-run: {shown_error(e, d)}")
                return

    list(pool.map(check, deferred))
    if problems:
        error = ValidationError(sorted(problems))
        raise ApplyError(error.problems, progress.applied, progress.timings) from error


def _wait_definitions(kube: Kube, objects: Sequence[Desired], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    pending = [d for d in objects if d.ref.kind in ("CustomResourceDefinition", "Namespace")]
    while pending:
        still = []
        for d in pending:
            live = kube.get(d.rt, d.ref.namespace, d.ref.name)
            if live is None or health.assess(live)[0] is not health.State.READY:
                still.append(d)
        pending = still
        if not pending:
            break
        if time.monotonic() > deadline:
            return [f"{d.ref}: not Established/Active after {timeout:.0f}s" for d in pending]
        time.sleep(0.2)
    return []


def _deleted(kube: Kube, d: Desired) -> bool:
    """Delete `d` (to recreate it) and wait until it is gone; False if it is still there."""
    kube.delete(d.rt, d.ref.namespace, d.ref.name, propagation="Foreground")
    deadline = time.monotonic() + DELETE_TIMEOUT
    while kube.get(d.rt, d.ref.namespace, d.ref.name) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
