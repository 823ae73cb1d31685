"""What rendering Helm needs to know: the user's settings and the cluster's capabilities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

MODES = ("auto", "render", "controller")


@dataclass(frozen=True)
class HelmSettings:
    """From the command line: how HelmReleases are handled and how charts are fetched."""

    mode: str = "auto"  # auto: render unless the cluster serves the HelmRelease kind
    offline: bool = False  # charts and indexes only from the cache
    ca_file: Path | None = None  # a private CA for HTTPS chart repositories (also Git's)
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Capabilities:
    """The target cluster as `helm template` should see it, and which kinds it serves."""

    kube_version: str  # v1.36.3
    api_versions: tuple[str, ...]  # group/version and group/version/Kind, as helm's --api-versions
    served: frozenset[tuple[str, str]]  # (group, kind)
    cluster_scoped: frozenset[tuple[str, str]]  # (group, kind) not namespaced

    def serves(self, api_version: str, kind: str) -> bool:
        return (api_version.rpartition("/")[0], kind) in self.served


@dataclass(frozen=True)
class HelmContext:
    settings: HelmSettings
    capabilities_of: Callable[[], Capabilities]  # asked once, and only if Helm renders
    repo_url: str  # --repo, to recognise a GitRepository that is this repository
    namespace: str  # --namespace: where a chart under --path is released

    @cached_property
    def capabilities(self) -> Capabilities:
        """Read on first use: a revision without charts or HelmReleases (most of them, on
        every agent interval) costs the cluster no discovery or version request for Helm."""
        return self.capabilities_of()
