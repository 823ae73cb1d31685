"""What flows from validation to apply and into reports: desired objects and their changes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from sync_agent.kube import ResourceType
from sync_agent.objects import ObjectRef, Origin


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    RECREATE = "recreate"  # an immutable field changed and --force was given
    UNCHANGED = "unchanged"
    DELETE = "delete"
    KEEP = "keep"  # would be pruned, but holds data or opted out


@dataclass(frozen=True)
class Desired:
    """One object of the revision, ready to send: namespace defaulted, ownership label added."""

    ref: ObjectRef
    rt: ResourceType
    body: dict[str, Any]
    origin: Origin
    digest: str  # hash of `body`: equal digests mean the same declared object
    # Validated by dry-run only once an earlier stage exists (CR of a CRD in this revision).
    deferred: bool = False
    # From a SOPS-encrypted file: reports show `<encrypted>`, not which fields differ.
    decrypted: bool = False


@dataclass(frozen=True)
class Change:
    ref: ObjectRef
    action: Action
    detail: str = ""  # why kept, which fields differ, ...


@dataclass
class ChangeSet:
    changes: list[Change] = field(default_factory=list)

    def add(self, change: Change) -> None:
        self.changes.append(change)

    def count(self) -> dict[str, int]:
        counts = {action.value: 0 for action in Action}
        for change in self.changes:
            counts[change.action.value] += 1
        return counts

    def of(self, *actions: Action) -> list[Change]:
        return [c for c in self.changes if c.action in actions]

    @property
    def changed(self) -> bool:
        return any(c.action not in (Action.UNCHANGED, Action.KEEP) for c in self.changes)
