"""Delete what the inventory owns and the revision no longer declares, in reverse stage order.

Called by the engine after a successful apply, with the PruneItems `plan` decided (data-holding
kinds and opted-out objects are already marked KEEP there, and the mass-prune guard has run).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sync_agent import events, order
from sync_agent.changes import Action, Change
from sync_agent.errors import SyncError
from sync_agent.kube import DEFAULT_WORKERS, ApiError, Kube, Unreachable
from sync_agent.plan import PruneItem
from sync_agent.workers import map_batched


class PruneError(SyncError):
    def __init__(self, problems: list[str], done: list[Change]):
        self.problems = problems
        self.done = done
        super().__init__("\n".join(problems))


def prune(kube: Kube, items: Sequence[PruneItem], workers: int = DEFAULT_WORKERS,
          emit: events.EventSink = events.ignore) -> list[Change]:
    by_ref = {item.ref: item for item in items}
    done = [Change(i.ref, Action.KEEP, i.detail, i.rt.api_version)
            for i in items if i.action is Action.KEEP]
    to_delete = [i.ref for i in items if i.action is Action.DELETE]
    problems: list[str] = []

    def delete(item: PruneItem) -> str:
        try:
            kube.delete(item.rt, item.ref.namespace, item.ref.name)
            return ""
        except Unreachable:
            raise  # every other delete would fail alike: stop the run
        except ApiError as e:
            return f"{item.ref}: delete failed: {e}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _, refs in reversed(order.group_by_stage(to_delete)):
            stage_items = [by_ref[r] for r in refs]
            results = map_batched(pool, delete, stage_items, workers)
            for item, error in zip(stage_items, results, strict=True):
                if error:
                    problems.append(error)
                else:
                    done.append(Change(item.ref, Action.DELETE, "", item.rt.api_version))
                    emit(events.ObjectDone("prune", item.ref, Action.DELETE.value))
    if problems:
        raise PruneError(problems, done)
    return done
