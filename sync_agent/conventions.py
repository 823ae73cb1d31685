"""The names gitops-restore gives things in a cluster, and the formats of its durations and times.

Every namespace, label, annotation and field manager the tool writes into a cluster is spelled
here once, so this file says what the tool leaves behind; the engine, the agent and bootstrap's
services import these rather than spelling them again. Also here: the built-in resource types
the tool reads and writes for itself (its namespace, Secrets, inventory ConfigMaps, Leases,
Events; the Pods and Services health reads), `parse_duration` for every duration a user gives
(options, `spec.interval`) and `utc_now` for the times it records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from sync_agent.errors import ConfigError
from sync_agent.objects import ResourceType

TOOL = "gitops-restore"
DOMAIN = "gitops-restore.io"  # prefix of the tool's labels and annotations; the Sync API group
NAMESPACE = "gitops-restore-system"  # Syncs, agents, their Secrets and Leases, inventories

# Server-side apply field managers.
FIELD_MANAGER = TOOL  # what a sync applies, and its inventory
INSTALL_FIELD_MANAGER = f"{TOOL}-install"  # what `agent install` applies

# Labels.
MANAGED_BY = "app.kubernetes.io/managed-by"  # = TOOL on what the tool makes for itself
SYNC_LABEL = f"{DOMAIN}/sync"  # on every applied object: the sync that owns it
INVENTORY_LABEL = f"{DOMAIN}/inventory"  # on an inventory's ConfigMaps: the sync's name
SHARD_LABEL = f"{DOMAIN}/inventory-shard"  # on an inventory's shard ConfigMaps: the index
DEPLOY_KEY_LABEL = f"{DOMAIN}/deploy-key"  # on a deploy-key Secret: the key's name
SOPS_AGE_LABEL = f"{DOMAIN}/sops-age"  # on an age-key Secret: the sync it decrypts for

# Annotations.
PRUNE_ANNOTATION = f"{DOMAIN}/prune"  # "disabled" on an object: prune keeps it
LEASE_BUSY = f"{DOMAIN}/busy"  # on a sync's Lease: "true" while its holder writes
LEASE_HOLDER = f"{DOMAIN}/holder"  # on a sync's Lease: who holds it, for people
REPO_ANNOTATION = f"{DOMAIN}/repo"  # on a deploy-key Secret: the repository (no credentials)
FINGERPRINT_ANNOTATION = f"{DOMAIN}/fingerprint"  # on a deploy-key Secret: the public key's
AGENT_ANNOTATION = f"{DOMAIN}/agent"  # on a Sync served by a local agent process
CHART_ANNOTATION = f"{DOMAIN}/helm-chart"  # on objects rendered from a chart: "<chart> <ver>"

# Built-in resource types the tool reads and writes for itself.
NAMESPACE_RT = ResourceType("", "v1", "Namespace", "namespaces", namespaced=False)
SECRET_RT = ResourceType("", "v1", "Secret", "secrets", namespaced=True)
CONFIGMAP_RT = ResourceType("", "v1", "ConfigMap", "configmaps", namespaced=True)
EVENT_RT = ResourceType("", "v1", "Event", "events", namespaced=True)
POD_RT = ResourceType("", "v1", "Pod", "pods", namespaced=True)
SERVICE_RT = ResourceType("", "v1", "Service", "services", namespaced=True)
LEASE_RT = ResourceType("coordination.k8s.io", "v1", "Lease", "leases", namespaced=True)

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def managed_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels of an object the tool makes for itself (its namespace, Secrets, records)."""
    return {MANAGED_BY: TOOL, **(extra or {})}


def parse_duration(text: str, option: str, positive: bool = False) -> float:
    """Seconds in `90s`, `10m`, `1h`, `500ms` or plain seconds; `option` names the value in the
    error. `positive`: zero is refused too (intervals and lease times; a timeout may be 0)."""
    match = _DURATION.fullmatch(text or "")
    if not match:
        raise ConfigError(f"{option} {text!r}: use a duration such as 90s, 10m or 1h")
    seconds = float(match.group(1)) * _SECONDS[match.group(2) or "s"]
    if positive and seconds <= 0:
        raise ConfigError(f"{option} {text!r}: must be more than zero")
    return seconds


def utc_now() -> str:
    """Now, as Kubernetes writes times (RFC 3339, UTC, whole seconds): `2026-11-30T12:00:00Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
