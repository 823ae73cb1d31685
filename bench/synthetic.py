"""Synthetic GitOps repositories for benchmarks: the kinds a fleet repository holds (config,
Secrets, Services, Deployments, RBAC, CRDs and their custom resources) spread over 20
namespaces, written as multi-document YAML files and committed to a real Git repo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

NAMESPACES = 20
OBJECTS_PER_FILE = 100
GROUP = "bench.gitops-restore.io"
CUSTOM_KINDS = ("Widget", "Gadget", "Gizmo")  # one CRD each
CLUSTER_ROLES = 2
CLUSTER_FILE = "00-cluster.yaml"  # every cluster-scoped object
# Namespaced kinds, in turn: what a real fleet repository holds most of.
MIX = ("ConfigMap", "Secret", "Service", "Deployment", "ServiceAccount", "Role", "RoleBinding",
       "Custom")


def objects(total: int, namespaces: int = NAMESPACES, prefix: str = "bench") -> list[dict]:
    """`total` objects: Namespaces, a few CRDs and ClusterRoles, then ConfigMaps, Secrets,
    Services, Deployments (replicas 0, so the benchmark measures the API, not kwok's pod
    simulation), ServiceAccounts, Roles, RoleBindings and custom resources, in turn."""
    result = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{prefix}-{n:02d}"}}
              for n in range(namespaces)]
    result += [_crd(kind) for kind in CUSTOM_KINDS]
    result += [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": f"{prefix}-reader-{n}"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                           "verbs": ["get", "list"]}]} for n in range(CLUSTER_ROLES)]
    for i in range(total - len(result)):
        ns = f"{prefix}-{i % namespaces:02d}"
        name = f"obj-{i:05d}"
        result.append(_namespaced(MIX[i % len(MIX)], name, ns, i))
    return result


def _crd(kind: str) -> dict:
    plural = kind.lower() + "s"
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}"},
            "spec": {"group": GROUP, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                               "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                             "type": "object",
                             "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


def _namespaced(kind: str, name: str, ns: str, i: int) -> dict:
    meta = {"name": name, "namespace": ns, "labels": {"app": name}}
    if kind == "ConfigMap":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta,
                "data": {"index": str(i), "payload": "x" * 200}}
    if kind == "Secret":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "type": "Opaque",
                "stringData": {"token": f"not-a-secret-{i}"}}
    if kind == "Service":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta,
                "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}
    if kind == "Deployment":
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": {
            "replicas": 0, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "containers": [{"name": "app", "image": "nginx:1.27"}]}}}}
    if kind == "ServiceAccount":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta}
    if kind == "Role":
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}
    if kind == "RoleBinding":
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}
    custom = CUSTOM_KINDS[(i // len(MIX)) % len(CUSTOM_KINDS)]
    return {"apiVersion": f"{GROUP}/v1", "kind": custom, "metadata": meta,
            "spec": {"size": i % 7, "color": "blue"}}


def write_tree(items: list[dict], root: Path) -> None:
    """Cluster-scoped objects in 00-cluster.yaml (kubectl applies files in name order), then
    the rest grouped by namespace and kind, OBJECTS_PER_FILE documents a file."""
    root.mkdir(parents=True, exist_ok=True)
    cluster_scoped = [o for o in items if "namespace" not in o["metadata"]]
    (root / CLUSTER_FILE).write_text(yaml.safe_dump_all(cluster_scoped))
    groups: dict[tuple[str, str], list[dict]] = {}
    for o in items:
        if "namespace" in o["metadata"]:
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


# Collection paths, in the order gitops-restore's stages send the kinds: Namespaces, CRDs and
# ClusterRoles, then namespaced config and RBAC, then the workloads, then custom resources.
# Sent in that order the probe, like the restore, is not slowed by the controllers' work on
# Deployments (a ReplicaSet each) until the end.
_CUSTOM = {kind: f"/apis/{GROUP}/v1/namespaces/{{ns}}/{kind.lower()}s" for kind in CUSTOM_KINDS}
_WAVES = (
    {"Namespace": "/api/v1/namespaces",
     "CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
     "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles"},
    {"ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
     "Secret": "/api/v1/namespaces/{ns}/secrets",
     "Service": "/api/v1/namespaces/{ns}/services",
     "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
     "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
     "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"},
    {"Deployment": "/apis/apps/v1/namespaces/{ns}/deployments"},
    _CUSTOM,
)


def probe_lines(items: list[dict], path: Path) -> None:
    """The raw probe's input: collection paths and bodies in waves separated by barriers.
    The CRDs are established long before the last wave starts (thousands of requests later)."""
    with path.open("w") as out:
        for number, wave in enumerate(_WAVES):
            if number:
                out.write(json.dumps({"barrier": True}) + "\n")
            for o in items:
                if o["kind"] in wave:
                    collection = wave[o["kind"]].format(ns=o["metadata"].get("namespace"))
                    out.write(json.dumps({"path": collection, "body": o}) + "\n")
