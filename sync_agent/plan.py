"""Decide what a restore will do, object by object, without changing anything.

Called by the engine after `validate.prepare`. Lists the live objects this sync owns (one LIST
per kind, by label), server-side dry-runs every object that may change, and works out what
prune would delete. Dry-run errors are collected and raised together, so bad input changes
nothing. `plan` and `verify` stop here; `restore` hands the Plan to `apply`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sync_agent import events, inventory, ownership, sops
from sync_agent.changes import Action, Change, ChangeSet, Desired
from sync_agent.conventions import PRUNE_ANNOTATION, SYNC_LABEL
from sync_agent.discovery import Discovery
from sync_agent.errors import ValidationError
from sync_agent.kube import DEFAULT_WORKERS, ApiError, Kube, ResourceType
from sync_agent.objects import ObjectRef
from sync_agent.workers import map_batched

DATA_KINDS = frozenset({"PersistentVolumeClaim", "PersistentVolume", "Namespace"})
OPTED_OUT = f"{PRUNE_ANNOTATION}: disabled"  # kept, and no longer owned
HOLDS_DATA = "holds data; pass --prune-data to delete it"  # kept, still owned
DROPPED = "dropped from this inventory"  # the end of every "no longer ours" detail
# A namespace the revision's objects live in, even if the revision does not declare it:
# deleting it would delete them too. Kept, still owned.
HOLDS_REVISION = "the revision's objects are in it; it is not deleted while they are"
STILL_OWNED = (HOLDS_DATA, HOLDS_REVISION)  # kept and left in the inventory
# Fields the server owns; they differ between a dry-run result and the live object even when
# nothing we declare changed.
VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation")


@dataclass(frozen=True)
class PruneItem:
    """What prune does with one object the inventory lists and the revision does not."""

    ref: ObjectRef
    rt: ResourceType
    action: Action  # DELETE or KEEP
    detail: str = ""
    # The live object seen when planning: prune deletes exactly that one (see prune.py).
    uid: str = ""
    resource_version: str = ""


@dataclass(frozen=True)
class PlanOptions:
    sync_name: str
    prune: bool = False
    prune_data: bool = False
    allow_mass_prune: bool = False
    force: bool = False
    workers: int = DEFAULT_WORKERS
    # Skip the dry-run of objects whose declared body and live state are as we last left them.
    trust_inventory: bool = True
    # For verify: an object the API server rejects (an immutable field, a forbidden update) is
    # a difference to report, not bad input; and no safety flag is needed to compare.
    compare_only: bool = False


@dataclass
class Plan:
    desired: list[Desired]
    actions: dict[ObjectRef, Change] = field(default_factory=dict)
    prune: list[PruneItem] = field(default_factory=list)
    # The safety flags this plan relies on (given) or lacks (then also a problem), with why:
    # "--force", "--allow-mass-prune", "--prune-data".
    needs: dict[str, str] = field(default_factory=dict)
    # Objects a dry-run found as applying them would leave them (ownership too, unless we
    # created them by POST), by the owned-fields digest that shows it: the inventory records
    # them as if just applied, so the next run trusts them without a dry-run.
    confirmed: dict[ObjectRef, str] = field(default_factory=dict)
    # Objects to update that we created by POST: apply turns their ownership into ours by
    # server-side apply first (ownership.upgrade).
    to_upgrade: set[ObjectRef] = field(default_factory=set)

    def to_apply(self) -> list[Desired]:
        """Objects to send, deferred ones included (their action is only known after)."""
        return [d for d in self.desired
                if d.deferred or self.actions[d.ref].action is not Action.UNCHANGED]

    def change_set(self) -> ChangeSet:
        changes = ChangeSet()
        for d in self.desired:
            changes.add(self.actions[d.ref])
        for item in self.prune:
            changes.add(Change(item.ref, item.action, item.detail))
        return changes


def make_plan(kube: Kube, desired: Sequence[Desired], previous: inventory.Inventory | None,
              found: Discovery, existing_namespaces: set[str], options: PlanOptions,
              emit: events.EventSink = events.ignore, problems: Sequence[str] = ()) -> Plan:
    """Dry-run and decide; raise one ValidationError with `problems` (from validation) and
    every problem found here."""
    # Trusting the inventory, most objects need only their managed fields: list metadata and
    # fetch the whole object only where a dry-run result must be compared with it.
    live = list_owned(kube, {d.rt for d in desired} | _previous_types(previous, found),
                      options.sync_name, metadata_only=options.trust_inventory)
    plan = Plan(desired=list(desired))
    checks = _DryRuns(kube, live, existing_namespaces, options, list(problems))
    to_check = []
    for d in desired:
        change = _settled(d, live.get(d.ref), previous, options)
        if change is None:
            to_check.append(d)
        else:
            plan.actions[d.ref] = change
            emit(events.ObjectDone("validate", d.ref, change.action.value))
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        for d, change in zip(to_check, map_batched(pool, checks.check, to_check, options.workers),
                             strict=True):
            plan.actions[d.ref] = change
            emit(events.ObjectDone("validate", d.ref, change.action.value))
    if options.prune:
        plan.prune = _prune_items(kube, desired, previous, live, found, options, checks.problems,
                                  plan.needs)
    if checks.immutable_changes:
        plan.needs["--force"] = _summary(sorted(checks.immutable_changes))
    plan.confirmed = checks.confirmed
    plan.to_upgrade = checks.to_upgrade
    if checks.problems:
        raise ValidationError(checks.problems, plan.needs)
    return plan


def _settled(d: Desired, live: dict | None, previous: inventory.Inventory | None,
             options: PlanOptions) -> Change | None:
    """The change decided without a request, if it can be."""
    if d.deferred:
        return Change(d.ref, Action.CREATE, "validated once its CRD is established")
    if options.trust_inventory and _as_we_left_it(d, live, previous):
        return Change(d.ref, Action.UNCHANGED, "")
    return None


@dataclass
class _DryRuns:
    """Dry-runs the objects that may change, on many threads; what the API server refuses is
    collected in `problems` (one ValidationError for all) and `immutable_changes`."""

    kube: Kube
    live: dict[ObjectRef, dict]
    existing_namespaces: set[str]
    options: PlanOptions
    problems: list[str]
    immutable_changes: list[str] = field(default_factory=list)  # "Deployment/ns/web: ..."
    confirmed: dict[ObjectRef, str] = field(default_factory=dict)  # Plan.confirmed
    to_upgrade: set[ObjectRef] = field(default_factory=set)  # Plan.to_upgrade

    def check(self, d: Desired) -> Change:
        current = self.live.get(d.ref)
        try:
            if current is not None and self.options.trust_inventory:
                current = self.kube.get(d.rt, d.ref.namespace, d.ref.name)
            change, owned = _dry_run(self.kube, d, current, self.existing_namespaces)
        except ApiError as e:
            if e.about_server:  # not the object's fault: the run fails (exit 1), not "invalid"
                raise
            return self._refused(d, current, e)
        if owned:
            self.confirmed[d.ref] = owned
        # Not listed as ours (another sync's, or made by hand): upgrade reads it to find out.
        if change.action is Action.UPDATE and (current is None
                                               or ownership.created_by_us(current)):
            self.to_upgrade.add(d.ref)
        return change

    def _refused(self, d: Desired, current: dict | None, e: ApiError) -> Change:
        immutable = _immutable_fields(e)
        if self.options.compare_only:
            return _rejected(d, current, immutable, e)
        if immutable:
            self.immutable_changes.append(f"{d.ref}: immutable {immutable} changed")
            if self.options.force:
                return Change(d.ref, Action.RECREATE, f"immutable {immutable} changed")
            self.problems.append(f"{d.origin}: {d.ref}: field {immutable} is immutable and the "
                                 "revision changes it; pass --force to delete and recreate "
                                 "the object")
        else:
            self.problems.append(f"{d.origin}: {d.ref}: the API server rejected it in a "
                                 f"dry-run: {shown_error(e, d)}")
        return Change(d.ref, Action.UNCHANGED, "rejected")


def _rejected(d: Desired, live: dict | None, immutable: str, error: ApiError) -> Change:
    """For verify: a dry-run the API server rejects still says the live object differs."""
    if immutable:
        return Change(d.ref, Action.RECREATE, f"immutable {immutable} differs; restore needs "
                      "--force to recreate it")
    return Change(d.ref, Action.CREATE if live is None else Action.UPDATE,
                  f"the API server rejects the revision's object: {error}")


def _summary(reasons: list[str]) -> str:
    more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return reasons[0] + more


def dry_run(kube: Kube, d: Desired, live: dict | None, existing_namespaces: set[str]) -> Change:
    return _dry_run(kube, d, live, existing_namespaces)[0]


def _dry_run(kube: Kube, d: Desired, live: dict | None, existing_namespaces: set[str]
             ) -> tuple[Change, str]:
    """The change, and for an unchanged object whose ownership an apply would not change
    either (or that we created by POST), the owned-fields digest (else "")."""
    if d.ref.namespace and d.ref.namespace not in existing_namespaces:
        # The namespace comes in this revision, so the object cannot be dry-run where it will
        # live. Validate it as a create in `default`: schema and admission run before the
        # existence check, so AlreadyExists still means the object itself is valid.
        body = {**d.body, "metadata": {**d.body["metadata"], "namespace": "default"}}
        try:
            kube.create_dry_run(d.rt, body, "default")
        except ApiError as e:
            if e.status != 409:
                raise
        return Change(d.ref, Action.CREATE, ""), ""
    created, result = kube.apply(d.rt, d.body, dry_run=True, metadata_only=live is None)
    if created:
        return Change(d.ref, Action.CREATE, ""), ""
    differences = differing_fields(live, result) if live is not None else ["ownership"]
    if not differences:
        # An object we created by POST gains an Apply entry in any apply's result, its Update
        # entry standing for the same fields; its content being equal is what counts then.
        owned = ownership.owned_fields_digest(live)
        same = ownership.created_by_us(live) or owned == ownership.owned_fields_digest(result)
        confirmed = owned if owned and same else ""
        return Change(d.ref, Action.UNCHANGED, ""), confirmed
    if d.decrypted:
        return Change(d.ref, Action.UPDATE, f"{sops.ENCRYPTED} (changes)"), ""
    return Change(d.ref, Action.UPDATE, ", ".join(differences[:5])), ""


def shown_error(error: ApiError, d: Desired) -> str:
    """The server's message, without the values of an object decrypted from a SOPS file."""
    return sops.without_values(str(error), d.body) if d.decrypted else str(error)


def list_owned(kube: Kube, types: set[ResourceType], sync_name: str,
               metadata_only: bool = False) -> dict[ObjectRef, dict]:
    """Live objects carrying this sync's label, one LIST per kind across all namespaces."""
    live: dict[ObjectRef, dict] = {}
    selector = f"{SYNC_LABEL}={sync_name}"

    def list_one(rt: ResourceType) -> list[tuple[ObjectRef, dict]]:
        try:
            items = kube.list(rt, label_selector=selector, metadata_only=metadata_only)
        except ApiError as e:
            if e.status == 404:  # kind not served (yet): nothing of it exists
                return []
            raise
        return [(ObjectRef(rt.group, rt.kind, o["metadata"].get("namespace", ""),
                           o["metadata"]["name"]), o) for o in items]

    with ThreadPoolExecutor(max_workers=8) as pool:
        for pairs in pool.map(list_one, sorted(types, key=lambda t: (t.group, t.kind))):
            live.update(pairs)
    return live


def differing_fields(live: dict, result: dict, depth: int = 3) -> list[str]:
    """Dotted paths (to `depth` levels) where a dry-run result differs from the live object."""
    return _diff(_comparable(live), _comparable(result), "", depth)


def _comparable(obj: dict) -> dict:
    obj = dict(obj)
    meta = dict(obj.get("metadata", {}))
    for key in VOLATILE_METADATA:
        meta.pop(key, None)
    obj["metadata"] = meta
    return obj


def _diff(a, b, prefix: str, depth: int) -> list[str]:
    if a == b:
        return []
    if depth == 0 or not isinstance(a, dict) or not isinstance(b, dict):
        return [prefix or "(object)"]
    paths = []
    for key in sorted(set(a) | set(b)):
        paths.extend(_diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key,
                           depth - 1))
    return paths


def _as_we_left_it(d: Desired, live: dict | None, previous: inventory.Inventory | None) -> bool:
    """True when we sent this exact body last time and nobody has taken a field from us since.

    Server-side apply moves a field to whoever changes it, so an unchanged owned-fields digest
    means every value we declared is still live; a deleted object is simply absent.
    """
    entry = previous.by_ref.get(d.ref) if previous else None
    if live is None or entry is None:
        return False
    return bool(entry.digest) and entry.digest == d.digest \
        and entry.owned == ownership.owned_fields_digest(live)


def _served(entry: inventory.Entry, found: Discovery) -> ResourceType | None:
    """The type to reach an owned object by: as recorded, else the version served now."""
    ref = entry.ref
    return found.lookup(ref.group, entry.version, ref.kind) \
        or found.preferred(ref.group, ref.kind)


def _previous_types(previous: inventory.Inventory | None, found: Discovery
                    ) -> set[ResourceType]:
    types = {_served(entry, found) for entry in previous.entries} if previous else set()
    return types - {None}


def _immutable_fields(error: ApiError) -> str:
    """Fields the server refuses to change in place ("" if the error is something else).

    Besides fields called immutable, a StatefulSet refuses any update to its spec other than
    a few fields ("spec: Forbidden: updates to statefulset spec for fields other than ..."),
    e.g. a larger volumeClaimTemplates: recreating it keeps its claims, as `--force` does.
    """
    if error.status != 422:
        return ""
    fields = [c.get("field", "") for c in error.causes
              if "immutable" in c.get("message", "")
              or c.get("message", "").startswith("Forbidden: updates to")]
    if not fields and "immutable" in str(error):
        fields = ["(unnamed)"]
    return ", ".join(f for f in fields if f)


def not_ours(obj: dict, sync_name: str) -> str:
    """Why a live object is no longer this sync's to prune ("" while it carries our mark).

    Apply sets the label SYNC_LABEL=<sync name> on every object; whoever applies the object
    next under another sync (or another tool taking the label over, or someone removing it)
    takes it from us, as Flux's prune checks its own labels before deleting.
    """
    owner = (obj.get("metadata", {}).get("labels") or {}).get(SYNC_LABEL)
    if owner == sync_name:
        return ""
    if owner:
        return f"now owned by sync {owner!r}; {DROPPED}"
    return f"no longer labelled {SYNC_LABEL}={sync_name} (no owner); {DROPPED}"


def _prune_items(kube: Kube, desired: Sequence[Desired], previous: inventory.Inventory | None,
                 live: dict[ObjectRef, dict], found: Discovery, options: PlanOptions,
                 problems: list[str], needs: dict[str, str]) -> list[PruneItem]:
    """What prune does with each object the inventory lists and the revision does not.

    Only objects that exist and still carry this sync's mark are candidates; the mass-prune
    guard compares the deletes with the listed objects that exist and carry the mark, so
    entries of objects that are gone (or were never there) cannot dilute it.
    """
    wanted = {d.ref for d in desired}
    used_namespaces = {d.ref.namespace for d in desired}
    items: list[PruneItem] = []
    listed = previous.by_ref if previous else {}
    owned = sum(1 for ref in listed if ref in wanted and ref in live)
    for entry in inventory.to_prune(previous, wanted):
        ref, rt = entry.ref, _served(entry, found)
        if rt is None:
            continue  # the kind is no longer served, so no such object can exist
        obj = live.get(ref) or kube.get(rt, ref.namespace, ref.name)
        if obj is None:
            continue
        meta = obj.get("metadata", {})
        seen = dict(uid=meta.get("uid", ""), resource_version=meta.get("resourceVersion", ""))
        other = not_ours(obj, options.sync_name)
        if other:
            items.append(PruneItem(ref, rt, Action.KEEP, other))
            continue
        owned += 1
        annotations = meta.get("annotations") or {}
        if annotations.get(PRUNE_ANNOTATION) == "disabled":
            items.append(PruneItem(ref, rt, Action.KEEP, OPTED_OUT, **seen))
        elif ref.kind == "Namespace" and ref.group == "" and ref.name in used_namespaces:
            items.append(PruneItem(ref, rt, Action.KEEP, HOLDS_REVISION, **seen))
        elif ref.kind in DATA_KINDS and ref.group == "" and not options.prune_data:
            items.append(PruneItem(ref, rt, Action.KEEP, HOLDS_DATA, **seen))
        else:
            items.append(PruneItem(ref, rt, Action.DELETE, **seen))
    _check_guards(items, bool(desired), owned, options, problems, needs)
    return items


def _check_guards(items: list[PruneItem], declares_anything: bool, owned: int,
                  options: PlanOptions, problems: list[str], needs: dict[str, str]) -> None:
    """Record which safety flags the prune needs (drills report them) and refuse, without
    the flag, a prune of more than half of what this sync owns."""
    data = sorted(str(i.ref) for i in items
                  if i.action is Action.DELETE and i.ref.kind in DATA_KINDS and i.ref.group == "")
    if data and not options.compare_only:
        needs["--prune-data"] = _summary([f"deletes {ref}" for ref in data])
    deletes = sum(1 for i in items if i.action is Action.DELETE)
    if deletes and (not declares_anything or deletes * 2 > owned):
        mass = (f"prune would delete {deletes} of {owned} owned objects" +
                (" (the revision declares nothing)" if not declares_anything else ""))
        if not options.compare_only:
            needs["--allow-mass-prune"] = mass
        if not options.allow_mass_prune:
            problems.append(f"inventory {options.sync_name}: {mass}; check --path and --ref, "
                            "or pass --allow-mass-prune")
    return items
