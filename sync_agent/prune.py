"""Delete what the inventory owns and the revision no longer declares, in reverse stage order.

Called by the engine after a successful apply, with the PruneItems `plan` decided (data-holding
kinds, opted-out objects and objects another owner took are already marked KEEP there, and the
mass-prune guard has run). Each delete carries the UID and resourceVersion seen when planning
as preconditions, so the server deletes only that object as it was when we checked its mark.
When it changed meanwhile (409) the live object is read again and its mark checked again: a
recreated object (new UID) is never deleted, nor one another owner took in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sync_agent import events, order
from sync_agent.changes import Action, Change
from sync_agent.conventions import PRUNE_ANNOTATION
from sync_agent.errors import Failed
from sync_agent.kube import DEFAULT_WORKERS, ApiError, Kube
from sync_agent.plan import OPTED_OUT, PruneItem, not_ours
from sync_agent.workers import map_batched, reporting_errors

# Kept, still owned: the object was deleted and made again since the plan, so it is not the
# object we decided to delete; the next run checks its mark afresh.
RECREATED = "recreated since the plan (new UID); not deleted, the next run checks it again"
_RECHECKS = 5  # times an object that keeps changing is read again before we give up


class PruneError(Failed):
    def __init__(self, problems: list[str], done: list[Change]):
        self.problems = problems
        self.done = done
        super().__init__("\n".join(problems))


def prune(kube: Kube, items: Sequence[PruneItem], sync_name: str,
          workers: int = DEFAULT_WORKERS, emit: events.EventSink = events.ignore
          ) -> list[Change]:
    by_ref = {item.ref: item for item in items}
    done = [Change(i.ref, Action.KEEP, i.detail)
            for i in items if i.action is Action.KEEP]
    to_delete = [i.ref for i in items if i.action is Action.DELETE]
    problems: list[str] = []

    delete = reporting_errors(lambda item: _delete_if_ours(kube, item, sync_name),
                              lambda item, e: f"{item.ref}: delete failed: {e}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _, refs in reversed(order.group_by_stage(to_delete)):
            stage_items = [by_ref[r] for r in refs]
            results = map_batched(pool, delete, stage_items, workers)
            for item, result in zip(stage_items, results, strict=True):
                if isinstance(result, str):
                    problems.append(result)
                    continue
                done.append(result)
                emit(events.ObjectDone("prune", item.ref, result.action.value))
    if problems:
        raise PruneError(problems, done)
    return done


def _delete_if_ours(kube: Kube, item: PruneItem, sync_name: str) -> Change | str:
    """Delete the object planned, only while it is that object and still ours."""
    version = item.resource_version
    for _ in range(_RECHECKS):
        try:
            deleted = kube.delete(item.rt, item.ref.namespace, item.ref.name, uid=item.uid,
                                  resource_version=version)
            return Change(item.ref, Action.DELETE, "" if deleted else "already gone")
        except ApiError as e:
            if e.status != 409:
                raise
        live = kube.get(item.rt, item.ref.namespace, item.ref.name)
        if live is None:  # deleted by someone else meanwhile
            return Change(item.ref, Action.DELETE, "already gone")
        meta = live.get("metadata", {})
        if item.uid and meta.get("uid") != item.uid:
            return Change(item.ref, Action.KEEP, RECREATED)
        other = not_ours(live, sync_name)
        if other:
            return Change(item.ref, Action.KEEP, other)
        if (meta.get("annotations") or {}).get(PRUNE_ANNOTATION) == "disabled":
            return Change(item.ref, Action.KEEP, OPTED_OUT)
        version = meta.get("resourceVersion", "")
    return (f"{item.ref}: delete failed: the object changed {_RECHECKS} times while being "
            "checked; it stays in the inventory and the next run tries again")
