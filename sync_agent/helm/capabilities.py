"""The cluster as `helm template` should see it: its version and what it serves."""

from __future__ import annotations

from sync_agent.discovery import Discovery
from sync_agent.helm import binary
from sync_agent.helm.context import Capabilities, HelmContext, HelmSettings
from sync_agent.kube import Kube
from sync_agent.paths import K8S_VERSION


def of_cluster(kube: Kube, found: Discovery) -> Capabilities:
    version = kube.request("GET", "/version").get("gitVersion", "")
    api_versions: set[str] = set()
    for rt in found.by_gvk.values():
        group_version = f"{rt.group}/{rt.version}" if rt.group else rt.version
        api_versions.update((group_version, f"{group_version}/{rt.kind}"))
    return Capabilities(
        kube_version=version.split("+", 1)[0],
        api_versions=tuple(sorted(api_versions)),
        served=frozenset((rt.group, rt.kind) for rt in found.by_gvk.values()),
        cluster_scoped=frozenset((rt.group, rt.kind) for rt in found.by_gvk.values()
                                 if not rt.namespaced))


def without_cluster(repo_url: str) -> HelmContext | None:
    """For history, which compares revisions with no cluster at hand: chart directories are
    rendered for the pinned Kubernetes version, HelmReleases kept as objects (a chart bump
    then shows as a changed HelmRelease), nothing fetched. None when the renderer is not
    built."""
    if binary.renderer_path() is None:
        return None
    caps = Capabilities(kube_version=K8S_VERSION, api_versions=(), served=frozenset(),
                        cluster_scoped=CLUSTER_SCOPED)
    return HelmContext(HelmSettings(mode="controller", offline=True), lambda: caps, repo_url,
                       "default")


CLUSTER_SCOPED = frozenset({
    ("", "Namespace"), ("", "PersistentVolume"), ("", "Node"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("storage.k8s.io", "StorageClass"), ("scheduling.k8s.io", "PriorityClass"),
    ("networking.k8s.io", "IngressClass"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("apiregistration.k8s.io", "APIService")})
