"""Synthetic GitOps repositories for benchmarks: ConfigMaps, Services and Deployments spread
over 20 namespaces, written as multi-document YAML files and committed to a real Git repo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

NAMESPACES = 20
OBJECTS_PER_FILE = 100


def objects(total: int, namespaces: int = NAMESPACES, prefix: str = "bench") -> list[dict]:
    """`total` objects including the Namespaces: a third each ConfigMaps, Services and
    Deployments (replicas 0, so the benchmark measures the API, not kwok's pod simulation)."""
    result = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{prefix}-{n:02d}"}}
              for n in range(namespaces)]
    for i in range(total - namespaces):
        ns = f"{prefix}-{i % namespaces:02d}"
        name = f"obj-{i:05d}"
        kind = ("ConfigMap", "Service", "Deployment")[i % 3]
        meta = {"name": name, "namespace": ns, "labels": {"app": name}}
        if kind == "ConfigMap":
            result.append({"apiVersion": "v1", "kind": kind, "metadata": meta,
                           "data": {"index": str(i), "payload": "x" * 200}})
        elif kind == "Service":
            result.append({"apiVersion": "v1", "kind": kind, "metadata": meta,
                           "spec": {"selector": {"app": name},
                                    "ports": [{"port": 80, "targetPort": 8080}]}})
        else:
            result.append({"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": {
                "replicas": 0, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {
                    "containers": [{"name": "app", "image": "nginx:1.27"}]}}}})
    return result


def write_tree(items: list[dict], root: Path) -> None:
    """Namespaces in 00-namespaces.yaml (kubectl applies files in name order), then the rest
    grouped by namespace and kind, OBJECTS_PER_FILE documents a file."""
    root.mkdir(parents=True, exist_ok=True)
    namespaces = [o for o in items if o["kind"] == "Namespace"]
    (root / "00-namespaces.yaml").write_text(yaml.safe_dump_all(namespaces))
    groups: dict[tuple[str, str], list[dict]] = {}
    for o in items:
        if o["kind"] != "Namespace":
            groups.setdefault((o["metadata"]["namespace"], o["kind"]), []).append(o)
    for (ns, kind), group in groups.items():
        for start in range(0, len(group), OBJECTS_PER_FILE):
            chunk = group[start:start + OBJECTS_PER_FILE]
            path = root / ns / f"{kind.lower()}-{start // OBJECTS_PER_FILE:03d}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(yaml.safe_dump_all(chunk))


def git_commit(repo: Path, message: str) -> None:
    env_args = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    if not (repo / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *env_args, "commit", "-q", "-m", message], check=True)


# Collection paths, in the order gitops-restore's stages send the kinds: Namespaces, then
# ConfigMaps and Services, then the workloads. Sent in that order the probe, like the restore,
# is not slowed by the controllers' work on Deployments (a ReplicaSet each) until the end.
_WAVES = (
    {"Namespace": "/api/v1/namespaces"},
    {"ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
     "Service": "/api/v1/namespaces/{ns}/services"},
    {"Deployment": "/apis/apps/v1/namespaces/{ns}/deployments"},
)


def probe_lines(items: list[dict], path: Path) -> None:
    """The raw probe's input: collection paths and bodies in waves separated by barriers."""
    with path.open("w") as out:
        for number, wave in enumerate(_WAVES):
            if number:
                out.write(json.dumps({"barrier": True}) + "\n")
            for o in items:
                if o["kind"] in wave:
                    collection = wave[o["kind"]].format(ns=o["metadata"].get("namespace"))
                    out.write(json.dumps({"path": collection, "body": o}) + "\n")
