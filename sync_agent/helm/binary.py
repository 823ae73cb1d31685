"""The pinned helm, and the renderer linking its packages: where they live in the cache.

Helm v3 (not v4): Flux's helm-controller and the Helm Operator, whose HelmReleases this
project restores, render with the Helm 3 engine, and `helm template` v3 output is what their
users have seen applied; v4 changes defaults (server-side apply, plugin post-renderers) that a
render-only use gains nothing from. `bootstrap/binaries.py` builds it from the Go module.

Charts are rendered by `helm-renderer` (the Go program in `renderer/`, linking the same Helm
packages): `helm template` semantics for many releases in one process. Its cache directory is
named by a digest of its source, so a changed renderer is rebuilt, never run stale. The helm
binary itself still makes and pulls charts (`helm pull` for OCI).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from sync_agent.paths import cache_root

HELM_MODULE = "helm.sh/helm/v3"
HELM_VERSION = "v3.22.0"
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
HELM_LDFLAGS = ("-s -w -X helm.sh/helm/v3/internal/version.version=" + HELM_VERSION
                + " -X helm.sh/helm/v3/internal/version.gitTreeState=clean")


RENDERER = "helm-renderer"
RENDERER_MODULE = "gitops-restore.local/helm-renderer"  # renderer/go.mod
RENDERER_SOURCE = Path(__file__).resolve().parent / "renderer"


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


def renderer_digest() -> str:
    """What the renderer is built from: its source files, digested (12 hex digits)."""
    digest = hashlib.sha256(HELM_VERSION.encode())
    for file in sorted(p for p in RENDERER_SOURCE.glob("*") if p.is_file()):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:12]


def renderer_dir() -> Path:
    return bin_dir() / f"renderer-{renderer_digest()}"


def renderer_path() -> Path | None:
    """The renderer `cluster-bin` built from this source, else one on PATH (the agent's
    image), else None."""
    built = renderer_dir() / RENDERER
    if os.access(built, os.X_OK):
        return built
    found = shutil.which(RENDERER)
    return Path(found) if found else None
