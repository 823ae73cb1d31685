"""`helm template` output kept by a digest of everything that shapes it.

A DR run renders the same revision several times (plan, restore, verify; the agent every
interval; a drill three times): the output of `helm template` depends only on the helm version,
the chart's files, the release name and namespace, the values, the CRD switch and the cluster's
version and API versions, so it is stored under the hash of exactly those and reused. Only
successful renders are kept; the oldest entries go beyond MAX_ENTRIES.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from sync_agent.helm.binary import HELM_VERSION
from sync_agent.paths import cache_root

MAX_ENTRIES = 2000


def directory() -> Path:
    return cache_root() / "helm" / "rendered"


def key(chart: Path, inputs: dict) -> str:
    digest = hashlib.sha256(HELM_VERSION.encode())
    digest.update(json.dumps(inputs, sort_keys=True).encode())
    for file in _chart_files(chart):
        digest.update(file.relative_to(chart).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def load(entry: str) -> str | None:
    path = directory() / f"{entry}.yaml"
    try:
        return path.read_text()
    except OSError:
        return None


def store(entry: str, text: str) -> None:
    folder = directory()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as out:
        out.write(text)
    os.replace(out.name, folder / f"{entry}.yaml")
    entries = sorted(folder.glob("*.yaml"), key=lambda p: p.stat().st_mtime)
    for old in entries[:-MAX_ENTRIES]:
        old.unlink(missing_ok=True)


def _chart_files(chart: Path) -> list[Path]:
    if chart.is_file():  # an archive
        return [chart]
    return sorted(p for p in chart.rglob("*") if p.is_file())
