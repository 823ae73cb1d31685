"""What happens to a chart's hook objects, as a table (`helm.sh/hook` annotation values).

A restore installs or upgrades a release; it never deletes, rolls back or tests one through
Helm. So: pre-install/pre-upgrade hooks are applied in their own stage before every release
object (order.PRE_HOOKS); post-install/post-upgrade hooks are applied with the release's
objects (the staged order already puts them after what they usually need); test, delete and
rollback hooks are left out and reported. Hooks are applied, not awaited to completion, and
`helm.sh/hook-delete-policy` is not acted on: the inventory owns hook objects like any other.
"""

from __future__ import annotations

from typing import Any

HOOK_ANNOTATION = "helm.sh/hook"
PRE = "pre"  # applied in the PRE_HOOKS stage, before the release's objects
WITH = "with"  # applied in its kind's stage, like the release's objects
SKIP = "skip"  # left out of the restore, named in the report

POLICY: dict[str, str] = {
    "pre-install": PRE,
    "pre-upgrade": PRE,
    "post-install": WITH,
    "post-upgrade": WITH,
    "test": SKIP,
    "test-success": SKIP,
    "test-failure": SKIP,
    "pre-delete": SKIP,
    "post-delete": SKIP,
    "pre-rollback": SKIP,
    "post-rollback": SKIP,
}
_RANK = {PRE: 0, WITH: 1, SKIP: 2}


def hooks_of(body: dict[str, Any]) -> list[str]:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(HOOK_ANNOTATION)
    return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else []


def decide(body: dict[str, Any]) -> str | None:
    """PRE, WITH or SKIP for a hook object; None for an ordinary release object.

    An object that is several hooks at once takes the earliest treatment any of them asks.
    """
    hooks = hooks_of(body)
    if not hooks:
        return None
    return min((POLICY.get(h, SKIP) for h in hooks), key=_RANK.__getitem__)


def is_pre_hook(body: dict[str, Any]) -> bool:
    return decide(body) == PRE
