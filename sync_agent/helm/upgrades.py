"""Which releases' charts change with this revision: plan and restore say so per release.

Every object rendered from a chart carries `conventions.CHART_ANNOTATION` ("web 1.1.0"). For each
release in the plan, the first of its objects that already exists in the cluster is read back;
if it was applied from another chart version (a range such as `1.x` now resolving to a newer
chart, or a chart bumped in Git), the note names both versions.
"""

from __future__ import annotations

from sync_agent.changes import Action
from sync_agent.conventions import CHART_ANNOTATION
from sync_agent.helm import semver
from sync_agent.helm.template import RELEASE_NAME, RELEASE_NAMESPACE
from sync_agent.kube import Kube
from sync_agent.plan import Plan

_EXISTING = (Action.UNCHANGED, Action.UPDATE, Action.RECREATE)


def chart_changes(kube: Kube, plan: Plan) -> list[str]:
    releases: dict[tuple[str, str], list] = {}
    for d in plan.desired:
        annotations = d.body.get("metadata", {}).get("annotations") or {}
        action = plan.actions.get(d.ref)
        if CHART_ANNOTATION in annotations and action is not None and action.action in _EXISTING:
            key = (annotations.get(RELEASE_NAMESPACE, ""), annotations.get(RELEASE_NAME, ""))
            releases.setdefault(key, []).append(d)
    notes = []
    for (namespace, name), objects in sorted(releases.items()):
        now = objects[0].body["metadata"]["annotations"][CHART_ANNOTATION]
        for d in objects[:3]:  # a few reads at most per release
            live = kube.get(d.rt, d.ref.namespace, d.ref.name)
            was = ((live or {}).get("metadata", {}).get("annotations") or {}).get(
                CHART_ANNOTATION)
            if was:
                if was != now:
                    notes.append(f"release {namespace}/{name}: chart {was} -> {now}"
                                 f"{_direction(was, now)}")
                break
    return notes


def _direction(was: str, now: str) -> str:
    old, new = semver.parse(was.rpartition(" ")[2]), semver.parse(now.rpartition(" ")[2])
    if old is None or new is None or old.key == new.key:
        return ""
    return " (a newer chart)" if new.key > old.key else " (an older chart)"
