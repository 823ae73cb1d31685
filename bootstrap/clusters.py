"""The record of clusters gitops-restore provisioned: one directory per name under the state root.

`cluster.json` in that directory says which provider made the cluster and where its
kubeconfig is; `provision` writes it, `destroy` and the other commands read it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from bootstrap.errors import UserError
from sync_agent.paths import state_root

PROVIDERS = ("local", "kind", "existing")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


@dataclass(frozen=True)
class ClusterRecord:
    name: str
    provider: str
    kubeconfig: str
    context: str

    def to_json(self) -> dict:
        return asdict(self)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UserError(f"cluster name {name!r}: use 1-40 lowercase letters, digits and '-', "
                        "starting and ending with a letter or digit")
    return name


def cluster_dir(name: str) -> Path:
    return state_root() / "clusters" / check_name(name)


def load(name: str) -> ClusterRecord:
    path = cluster_dir(name) / "cluster.json"
    if not path.exists():
        known = ", ".join(r.name for r in list_all()) or "none"
        raise UserError(f"cluster {name!r}: no such cluster was provisioned (known: {known}); "
                        "see `gitops-restore provision --help`")
    return ClusterRecord(**json.loads(path.read_text()))


def save(record: ClusterRecord) -> None:
    path = cluster_dir(record.name) / "cluster.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.to_json(), indent=2))


def list_all() -> list[ClusterRecord]:
    root = state_root() / "clusters"
    records = []
    for path in sorted(root.glob("*/cluster.json")):
        records.append(ClusterRecord(**json.loads(path.read_text())))
    return records
