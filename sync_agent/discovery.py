"""What the API server serves: kinds, versions, plurals and scope, from aggregated discovery.

Two requests (`/api` and `/apis`) describe every group. Validation uses it to tell a kind the
cluster does not serve from an API version the cluster no longer serves; every other stage uses
it to build URLs and to know whether a kind is namespaced.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sync_agent.kube import AGGREGATED_DISCOVERY, Kube, ResourceType


@dataclass
class Discovery:
    by_gvk: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    # (group, kind) -> served versions, the group's preferred version first
    versions: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))

    def lookup(self, group: str, version: str, kind: str) -> ResourceType | None:
        return self.by_gvk.get((group, version, kind))

    def served_versions(self, group: str, kind: str) -> list[str]:
        return self.versions.get((group, kind), [])

    def preferred(self, group: str, kind: str) -> ResourceType | None:
        served = self.served_versions(group, kind)
        return self.by_gvk[(group, served[0], kind)] if served else None

    def add(self, rt: ResourceType) -> None:
        if (rt.group, rt.version, rt.kind) not in self.by_gvk:
            self.by_gvk[(rt.group, rt.version, rt.kind)] = rt
            self.versions[(rt.group, rt.kind)].append(rt.version)


def discover(kube: Kube) -> Discovery:
    found = Discovery()
    for path in ("/api", "/apis"):
        document = kube.request("GET", path, accept=AGGREGATED_DISCOVERY)
        for group in document.get("items", []):
            name = group.get("metadata", {}).get("name", "")
            for version in group.get("versions", []):
                for resource in version.get("resources", []):
                    kind = resource.get("responseKind", {}).get("kind")
                    if not kind or "/" in resource["resource"]:
                        continue
                    found.add(ResourceType(group=name, version=version["version"], kind=kind,
                                           plural=resource["resource"],
                                           namespaced=resource.get("scope") == "Namespaced"))
    return found


def from_crd(crd: dict) -> list[ResourceType]:
    """The kinds a CustomResourceDefinition in the revision will serve once applied."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    return [ResourceType(group=spec.get("group", ""), version=v["name"],
                         kind=names.get("kind", ""), plural=names.get("plural", ""),
                         namespaced=namespaced)
            for v in spec.get("versions", []) if v.get("served", True)]
