"""The pinned helm binary: where it lives in the cache, and what to tell a user without it.

Helm v3 (not v4): Flux's helm-controller and the Helm Operator, whose HelmReleases this
project restores, render with the Helm 3 engine, and `helm template` v3 output is what their
users have seen applied; v4 changes defaults (server-side apply, plugin post-renderers) that a
render-only use gains nothing from. `bootstrap/binaries.py` builds it from the Go module.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sync_agent.paths import cache_root

HELM_MODULE = "helm.sh/helm/v3"
HELM_VERSION = "v3.22.0"
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
HELM_LDFLAGS = ("-s -w -X helm.sh/helm/v3/internal/version.version=" + HELM_VERSION
                + " -X helm.sh/helm/v3/internal/version.gitTreeState=clean")


def bin_dir() -> Path:
    return cache_root() / "bin" / f"helm-{HELM_VERSION}"


def cached() -> Path | None:
    """The helm `gitops-restore cluster-bin` built, or None when it has not built it yet."""
    path = bin_dir() / "helm"
    return path if os.access(path, os.X_OK) else None


def helm_path() -> Path | None:
    """The built helm, else one on PATH (the agent's image carries the same build in
    /usr/local/bin, and has no cache), else None."""
    found = shutil.which("helm")
    return cached() or (Path(found) if found else None)
